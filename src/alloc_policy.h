/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Allocation policy of the virtio balloon: 2 MiB blocks first.
 *
 * Inflation takes whole 2 MiB blocks while the page allocator has them
 * free, and single pages only for the rest:
 *  - one allocation and one list entry per 512 frames instead of 512;
 *  - a block stays whole in the balloon and is freed whole on deflation,
 *    so the guest gets back memory its huge pages can use again;
 *  - a block is asked for without reclaim or compaction: the balloon
 *    takes what is free and never works to make more of it;
 *  - with 4 KiB pages a block is a whole pageblock, so holding it
 *    fragments nothing and compaction has nothing to gain by moving it.
 *    Blocks are therefore not migratable (single balloon pages are), and
 *    they are asked for without __GFP_MOVABLE so that they never come
 *    from ZONE_MOVABLE or CMA, whose pages must stay movable.
 *
 * Frames go to the host in batches: up to VB_BATCH_REQS requests (of the
 * shape request_shape.h picks) per notification, and the driver waits
 * once per batch.  The first batch after a new target is one request of
 * single pages, as the kernel's own driver sends, so the host sees the
 * balloon move as soon as it would with that driver; batches then grow
 * by VB_BATCH_GROWTH up to the full size.
 */
#ifndef BALLOON_ALLOC_POLICY_H
#define BALLOON_ALLOC_POLICY_H

#include <linux/gfp.h>
#include <linux/log2.h>
#include <linux/sizes.h>
#include <linux/virtio_balloon.h>

/*
 * Frames in one short request (one descriptor), what every device model
 * takes; request_shape.h says when a request may hold a whole block.
 */
#define VB_PFNS_MAX		256
/* Requests per notification, if the ring has room for them. */
#define VB_BATCH_REQS		16
#define VB_BATCH_MAX		(VB_PFNS_MAX * VB_BATCH_REQS)
#define VB_BATCH_FIRST		VB_PFNS_MAX
#define VB_BATCH_GROWTH		4

#define VB_BLOCK_BYTES		SZ_2M
#define VB_BLOCK_ORDER		(ilog2(VB_BLOCK_BYTES) - PAGE_SHIFT)
#define VB_BLOCK_FRAMES		((unsigned int)(VB_BLOCK_BYTES >> VIRTIO_BALLOON_PFN_SHIFT))
/* Only what is free now: no reclaim, no compaction, no reserves. */
#define VB_BLOCK_GFP		((GFP_HIGHUSER & ~__GFP_RECLAIM) | __GFP_NORETRY | \
				 __GFP_NOWARN | __GFP_NOMEMALLOC)

static inline struct page *vb_block_alloc(void)
{
	return alloc_pages(VB_BLOCK_GFP, VB_BLOCK_ORDER);
}

static inline void vb_block_free(struct page *page)
{
	__free_pages(page, VB_BLOCK_ORDER);
}

/* Size of the batch after @cur frames went through in full. */
static inline unsigned int vb_batch_next(unsigned int cur, unsigned int max)
{
	return min(cur * VB_BATCH_GROWTH, max);
}

#endif /* BALLOON_ALLOC_POLICY_H */
