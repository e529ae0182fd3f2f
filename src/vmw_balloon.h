/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The VMware balloon's state, shared by the files of the module:
 * vmw_balloon_main.c (the protocol, inflation and deflation, the work,
 * the shrinker, migration, load and unload) and vmw_balloon_status.c
 * (the debugfs file and the sysfs status view).
 */
#ifndef BALLOON_VMW_BALLOON_H
#define BALLOON_VMW_BALLOON_H

#include <linux/atomic.h>
#include <linux/kobject.h>
#include <linux/list.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/workqueue.h>

#include "compat/compat.h"
#include "compat/balloon.h"
#include "compat/vmw.h"
#include "balloon_state.h"
#include "vmw_poll_policy.h"
#include "vmw_protocol.h"

/* Signalled wakeups only where the kernel has VMCI doorbells. */
#define VMW_BALLOON_CAPS_WAKEUP		(VMW_DOORBELL_AVAILABLE ?	\
					 VMW_BALLOON_SIGNALLED_WAKEUP_CMD : 0)

#define VMW_BALLOON_CAPABILITIES	(VMW_BALLOON_BASIC_CMDS |	\
					 VMW_BALLOON_BATCHED_CMDS |	\
					 VMW_BALLOON_BATCHED_2M_CMDS |	\
					 VMW_BALLOON_CAPS_WAKEUP |	\
					 (IS_ENABLED(CONFIG_64BIT) ?	\
					  VMW_BALLOON_64_BIT_TARGET : 0))

enum vmballoon_page_size {
	VMW_BALLOON_4K_PAGE,
	VMW_BALLOON_2M_PAGE,
	VMW_BALLOON_NUM_PAGE_SIZES
};

enum vmballoon_page_stat {
	VMW_BALLOON_PAGE_STAT_ALLOC,
	VMW_BALLOON_PAGE_STAT_ALLOC_FAIL,
	VMW_BALLOON_PAGE_STAT_REFUSED_ALLOC,
	VMW_BALLOON_PAGE_STAT_REFUSED_FREE,
	VMW_BALLOON_PAGE_STAT_FREE,
	VMW_BALLOON_PAGE_STAT_NUM
};

enum vmballoon_stat {
	VMW_BALLOON_STAT_TIMER,
	VMW_BALLOON_STAT_DOORBELL,
	VMW_BALLOON_STAT_RESET,
	VMW_BALLOON_STAT_SHRINK,
	VMW_BALLOON_STAT_SHRINK_FREE,
	VMW_BALLOON_STAT_NUM
};

struct vmballoon_stats {
	atomic64_t cmd[VMW_BALLOON_CMD_NUM];
	atomic64_t cmd_fail[VMW_BALLOON_CMD_NUM];
	atomic64_t gen[VMW_BALLOON_STAT_NUM];
	atomic64_t page[VMW_BALLOON_PAGE_STAT_NUM][VMW_BALLOON_NUM_PAGE_SIZES];
};

struct vmballoon {
	/* 4 KiB pages held by the host; migratable. */
	struct balloon_dev_info b_dev_info;

	/* 2 MiB pages held by the host. */
	struct list_head huge_pages;
	spinlock_t huge_pages_lock;	/* protects huge_pages */

	/* Size of the balloon in 4 KiB frames, both page sizes together. */
	atomic64_t size;

	/* What the host asked for, in frames, clamped to guest RAM. */
	unsigned long target;
	bool target_clamped;
	bool target_wide;
	bool target_moved;		/* since the state was last noted */
	bool reserve_hit;

	/*
	 * Protocol state, set up by vmballoon_reset() under conf_sem held
	 * for writing; everybody else holds it for reading.
	 */
	struct rw_semaphore conf_sem;
	bool stopping;			/* unloading: no work, no new doorbell */
	bool reset_required;
	unsigned long capabilities;
	enum vmballoon_page_size max_page_size;
	bool batching;
	bool host_silent;
	unsigned int vain_credit;	/* see vmw_refused_policy.h */
	struct vmballoon_poll poll;	/* see vmw_poll_policy.h */
	struct list_head held;		/* refused 4 KiB pages kept for a round */
	unsigned int n_held;
	unsigned long last_error;	/* status of the last failed command */

	/* The backdoor and the batch page are used under comm_lock. */
	spinlock_t comm_lock;
	u64 *batch_page;

	struct delayed_work dwork;

	/* The shrinker, if enabled, pauses inflation until shrink_timeout. */
	struct shrinker *shrinker;
	unsigned long shrink_timeout;

	struct vmw_doorbell doorbell;

	struct dentry *dbg_entry;
	struct kobject *status_kobj;
	struct vmballoon_stats stats;

	/* Migrations turned away during a reset or the unload, and pop's waits. */
	atomic_t migrations_held;
	unsigned long pop_waits;

	/* Moving, reached or stuck, and why (balloon_state.h). */
	struct balloon_status status;
};

static inline unsigned int vmballoon_page_order(enum vmballoon_page_size size)
{
	return size == VMW_BALLOON_2M_PAGE ? VMW_BALLOON_2M_ORDER : 0;
}

static inline unsigned int vmballoon_page_frames(enum vmballoon_page_size size)
{
	return 1U << vmballoon_page_order(size);
}

/* vmw_balloon_main.c */
unsigned long vmballoon_floor_pages(void);

/* vmw_balloon_status.c */
void vmballoon_status_init(struct vmballoon *b);
void vmballoon_status_exit(struct vmballoon *b);

#endif /* BALLOON_VMW_BALLOON_H */
