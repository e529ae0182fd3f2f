/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the virtio balloon driver needs from kernels 5.10 to 7.2, presented
 * as the newest API: virtqueue lookup, device reset, page reporting
 * limits, page poisoning, workqueue flags and the sources of the memory
 * statistics.  Every branch here is chosen by a probe (compat/probes/).
 */
#ifndef BALLOON_COMPAT_VIRTIO_H
#define BALLOON_COMPAT_VIRTIO_H

#include "compat/compat.h"

#include <linux/mm.h>
#include <linux/page_reporting.h>
#include <linux/virtio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/vmstat.h>
#include <linux/workqueue.h>

/* 6.11: virtio_find_vqs() takes one struct virtqueue_info per queue. */
#ifdef HAVE_VIRTQUEUE_INFO
static inline int compat_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
				  struct virtqueue *vqs[],
				  struct virtqueue_info info[])
{
	return virtio_find_vqs(vdev, nvqs, vqs, info, NULL);
}
#else
struct virtqueue_info {
	const char *name;
	vq_callback_t *callback;
	bool ctx;
};

/* Enough for the balloon's five queues; more is a bug in the caller. */
#define COMPAT_FIND_VQS_MAX 8

static inline int compat_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
				  struct virtqueue *vqs[],
				  struct virtqueue_info info[])
{
	vq_callback_t *callbacks[COMPAT_FIND_VQS_MAX];
	const char *names[COMPAT_FIND_VQS_MAX];
	unsigned int i;

	if (WARN_ON(nvqs > COMPAT_FIND_VQS_MAX))
		return -EINVAL;
	for (i = 0; i < nvqs; i++) {
		callbacks[i] = info[i].callback;
		names[i] = info[i].name;
	}
	return virtio_find_vqs(vdev, nvqs, vqs, callbacks, names, NULL);
}
#endif

/* 5.17: virtio_reset_device(); before it drivers called the op directly. */
#ifndef HAVE_VIRTIO_RESET_DEVICE
static inline void virtio_reset_device(struct virtio_device *vdev)
{
	vdev->config->reset(vdev);
}
#endif

/* 6.17: WQ_PERCPU spells out the per-cpu default; 0 means the same before. */
#ifndef HAVE_WQ_PERCPU
#define WQ_PERCPU 0
#endif

/*
 * 5.11: page_poisoning_enabled_static().  On 5.10 poisoning only matters
 * to the host when the kernel checks the poison on allocation, which
 * PAGE_POISONING_NO_SANITY turns off.
 */
#ifndef HAVE_PAGE_POISONING_ENABLED_STATIC
static inline bool page_poisoning_enabled_static(void)
{
	return page_poisoning_enabled() &&
	       !IS_ENABLED(CONFIG_PAGE_POISONING_NO_SANITY);
}
#endif

/*
 * Tell the page reporting core how much one report may hold (the size of
 * the reporting ring) and the smallest order worth reporting (negative:
 * the core's default, pageblock_order).
 *
 * Before 7.0 the core always fills up to PAGE_REPORTING_CAPACITY entries,
 * so a smaller ring cannot be used at all, and order 0 asked for the
 * default.  From 7.0 the core sizes reports by @capacity and order 0 means
 * order 0, the default being PAGE_REPORTING_ORDER_UNSPECIFIED.
 */
static inline int compat_page_reporting_limits(struct page_reporting_dev_info *pr,
					       unsigned int ring_size, int order)
{
#ifdef HAVE_PR_CAPACITY
	pr->capacity = min_t(unsigned int, ring_size, PAGE_REPORTING_CAPACITY);
#else
	if (ring_size < PAGE_REPORTING_CAPACITY)
		return -ENOSPC;
#endif
#ifdef HAVE_PR_ORDER
	if (order >= 0)
		pr->order = order;
#ifdef HAVE_PR_ORDER_UNSPECIFIED
	else
		pr->order = PAGE_REPORTING_ORDER_UNSPECIFIED;
#endif
#endif
	return 0;
}

/*
 * 6.12: six more statistics tags (OOM kills, allocation stalls, scan and
 * reclaim amounts).  Their numbers are fixed by the virtio specification
 * and every kernel we support counts those events, so we send all sixteen
 * tags whatever the kernel's header knows.
 */
#ifndef HAVE_VIRTIO_BALLOON_S_OOM_KILL
#define VIRTIO_BALLOON_S_OOM_KILL	10
#define VIRTIO_BALLOON_S_ALLOC_STALL	11
#define VIRTIO_BALLOON_S_ASYNC_SCAN	12
#define VIRTIO_BALLOON_S_DIRECT_SCAN	13
#define VIRTIO_BALLOON_S_ASYNC_RECLAIM	14
#define VIRTIO_BALLOON_S_DIRECT_RECLAIM	15
#endif
#define BALLOON_STATS_MAX 16

/*
 * About 7.0: page scan and steal counts are node statistics, no longer vm
 * events; @events is what all_vm_events() filled in.
 */
#ifdef HAVE_PGSCAN_NODE_STAT
static inline unsigned long balloon_reclaim_stat(const unsigned long *events,
						 enum node_stat_item item)
{
	return global_node_page_state(item);
}
#else
static inline unsigned long balloon_reclaim_stat(const unsigned long *events,
						 enum vm_event_item item)
{
	return events[item];
}
#endif

#ifdef CONFIG_VM_EVENT_COUNTERS
/* Allocation stalls are counted per zone type; the zones a kernel has vary. */
static inline unsigned long balloon_alloc_stalls(const unsigned long *events)
{
	unsigned long stalls = events[ALLOCSTALL_NORMAL] + events[ALLOCSTALL_MOVABLE];

#ifdef CONFIG_ZONE_DMA
	stalls += events[ALLOCSTALL_DMA];
#endif
#ifdef CONFIG_ZONE_DMA32
	stalls += events[ALLOCSTALL_DMA32];
#endif
#ifdef CONFIG_HIGHMEM
	stalls += events[ALLOCSTALL_HIGH];
#endif
	return stalls;
}
#endif

/*
 * after 6.12 (7.2 has it): virtio drivers get a shutdown callback, whose
 * default virtio_device_shutdown() breaks and resets the device.  Before,
 * the virtio bus had no shutdown step at all: a driver's callback would
 * never run, so the initialiser leaves it out (hence __maybe_unused on
 * the driver's function).
 */
#ifdef HAVE_VIRTIO_DRIVER_SHUTDOWN
#define VIRTIO_DRIVER_SHUTDOWN(fn)	.shutdown = (fn),
#else
#define VIRTIO_DRIVER_SHUTDOWN(fn)
static inline void virtio_device_shutdown(struct virtio_device *dev)
{
}
#endif

#endif /* BALLOON_COMPAT_VIRTIO_H */
