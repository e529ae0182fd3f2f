/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The virtio balloon's device state, shared by the files of the module:
 * virtio_balloon_main.c (the balloon, statistics, reporting, probe and
 * removal), pressure_policy.c (giving memory back under pressure),
 * virtio_balloon_status.c (debugfs and the sysfs status view),
 * free_page_hint.c (hints for live migration) and memory_offline.c
 * (blocks leave before their memory goes offline).
 */
#ifndef BALLOON_VIRTIO_BALLOON_H
#define BALLOON_VIRTIO_BALLOON_H

#include <linux/device.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/notifier.h>
#include <linux/page_reporting.h>
#include <linux/spinlock.h>
#include <linux/virtio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/vm_event_item.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "compat/compat.h"
#include "compat/balloon.h"
#include "compat/virtio.h"
#include "alloc_policy.h"
#include "pressure_policy.h"
#include "balloon_state.h"

/* The balloon protocol counts in 4 KiB frames, whatever the page size. */
#define VB_FRAMES_PER_PAGE	((unsigned int)(PAGE_SIZE >> VIRTIO_BALLOON_PFN_SHIFT))
/* What the OOM notifier asks the pressure policy for (16 MiB). */
#define VB_OOM_FRAMES		(SZ_16M >> VIRTIO_BALLOON_PFN_SHIFT)
/* Run before other OOM notifiers that only drop caches. */
#define VB_OOM_PRIORITY		80

/* Free page hints are sent in blocks of the largest buddy order. */
#define VB_HINT_ORDER		ilog2(MAX_ORDER_NR_PAGES)
#define VB_HINT_PAGES		BIT(VB_HINT_ORDER)
#define VB_HINT_BYTES		(PAGE_SIZE << VB_HINT_ORDER)
/* Only truly free memory: no reclaim, no reserves, no warnings. */
#define VB_HINT_GFP		(__GFP_NORETRY | __GFP_NOWARN | __GFP_NOMEMALLOC)

/* Queue numbers; a queue whose feature is off gets no slot. */
enum {
	VB_VQ_INFLATE,
	VB_VQ_DEFLATE,
	VB_VQ_STATS,
	VB_VQ_FREE_PAGE,
	VB_VQ_REPORTING,
	VB_VQ_MAX
};

/* Which work keeps the system awake (see vb_stay_awake()). */
enum {
	VB_WAKE_SIZE,
	VB_WAKE_STATS,
	VB_WAKE_NR
};

struct virtio_balloon {
	struct virtio_device *vdev;
	struct virtqueue *inflate_vq, *deflate_vq, *stats_vq;
	struct virtqueue *free_page_vq, *reporting_vq;

	/* Follows the host's target; requeued with a delay when stuck. */
	struct delayed_work size_work;
	struct work_struct stats_work;

	/* Set on removal: host events no longer queue work. */
	spinlock_t stop_update_lock;
	bool stop_update;

	/* Serialises the pfns array and balloon contents. */
	struct mutex balloon_lock;
	/* Frames in the balloon, as reported to the host in "actual". */
	unsigned int num_pages;
	/* 2 MiB blocks in the balloon (alloc_policy.h); not migratable. */
	struct list_head blocks;
	unsigned long num_blocks;
	/* Frames per batch now, and at most (what the rings hold). */
	unsigned int batch;
	unsigned int batch_max;
	/* Frames per request (request_shape.h). */
	unsigned int req_frames;
	/* Frames of the requests under way: VB_BATCH_MAX, or what fitted. */
	__virtio32 *pfns;
	unsigned int pfns_order;
	/* Completions of inflate, deflate and reporting requests. */
	wait_queue_head_t acked;
	/* Requests and notifications sent, largest request (frames). */
	unsigned long requests;
	unsigned long kicks;
	unsigned int request_max;
	/* The host's target as last seen, and the last error talking to it. */
	u32 target;
	int last_error;

	/* The floor by default (floor_mb = -1), and the retry state. */
	unsigned long reserve;
	unsigned int retry_ms;
	bool out_of_puff;
	/* Moving, reached or stuck, and why (balloon_state.h). */
	struct balloon_status status;
	enum balloon_reason short_of;

	/* Giving memory back under pressure (pressure_policy.h). */
	struct shrinker *pressure_shrinker;
	struct vb_pressure pressure;
	/* The task allocating for the balloon: its reclaim is no pressure. */
	struct task_struct *filler;

	struct balloon_dev_info vb_dev_info;

	/* Memory statistics, refilled for each host request. */
	struct virtio_balloon_stat stats[BALLOON_STATS_MAX];
	unsigned int num_stats;
	unsigned long events[NR_VM_EVENT_ITEMS];

	/* Free page hinting: blocks held while the host migrates. */
	struct workqueue_struct *hint_wq;
	struct work_struct hint_work;
	/* Protects hint_blocks and hint_nr_blocks (the shrinker is async). */
	spinlock_t hint_lock;
	struct list_head hint_blocks;
	unsigned long hint_nr_blocks;
	/* Bit 0: the host's command id changed, read it again. */
	unsigned long hint_id_stale;
	u32 hint_id_host;
	__virtio32 hint_id_active;
	__virtio32 hint_id_stop;
	struct shrinker *hint_shrinker;

	unsigned long hint_rounds;
	unsigned long hint_sent;

	struct notifier_block oom_nb;
	/* Gives blocks back before their memory goes offline. */
	struct notifier_block memory_nb;
	unsigned long offline_frames;
	/* The range going offline now, if any (under balloon_lock). */
	unsigned long offlining_start, offlining_nr;
	unsigned long oom_frames;
	struct page_reporting_dev_info pr_dev_info;
	bool reporting;
	unsigned long reports;
	u32 poison_val;

	struct dentry *debugfs;

	/* Keeps suspend away while host requests are being handled. */
	struct wakeup_source *ws;
	/*
	 * Protects wakeup_pending and wakeup_seq: set from interrupts,
	 * cleared by work.  Each host event bumps its reason's sequence
	 * number, so work relaxes only for the events it has seen.
	 */
	spinlock_t wakeup_lock;
	unsigned int wakeup_pending;
	unsigned long wakeup_seq[VB_WAKE_NR];
};

static inline bool vb_has(struct virtio_balloon *vb, unsigned int fbit)
{
	return virtio_has_feature(vb->vdev, fbit);
}

/* virtio_balloon_main.c */
unsigned int __leak_balloon(struct virtio_balloon *vb, size_t num);
unsigned int release_lists(struct virtio_balloon *vb, struct list_head *blocks,
			   unsigned int nblocks, struct list_head *pages,
			   unsigned int frames);
void update_balloon_size(struct virtio_balloon *vb);
void vb_follow_target(struct virtio_balloon *vb);
unsigned long vb_floor(struct virtio_balloon *vb);
void free_new_blocks(struct list_head *blocks);

/* virtio_balloon_status.c */
void vb_debugfs_init(struct virtio_balloon *vb);
extern const struct attribute_group *vb_status_groups[];

/* pressure_policy.c */
unsigned long pressure_hold(struct virtio_balloon *vb);
int pressure_init(struct virtio_balloon *vb);
void pressure_exit(struct virtio_balloon *vb);

/* free_page_hint.c */
unsigned long hint_release(struct virtio_balloon *vb, unsigned long nr);
int hint_init(struct virtio_balloon *vb);
void hint_exit(struct virtio_balloon *vb);

/* memory_offline.c */
int virtio_balloon_memory_notify(struct notifier_block *nb,
				 unsigned long action, void *arg);
unsigned int blocks_going_offline(struct virtio_balloon *vb,
				  struct list_head *blocks);

#endif /* BALLOON_VIRTIO_BALLOON_H */
