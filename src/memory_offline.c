// SPDX-License-Identifier: GPL-2.0
/*
 * Memory offlining and the virtio balloon: our 2 MiB blocks cannot
 * migrate, so before their memory goes offline (hot-unplug, virtio-mem,
 * or a block offlined by hand) they leave the balloon, the host told as
 * for any deflation, and the balloon takes their place elsewhere.
 *
 * Blocks are marked offline from their allocation on (compat/balloon.h),
 * so the isolation that starts an offlining lets through a block that an
 * inflation holds on its way to the host, too; the range stays recorded
 * until the offlining ends, and such a block is freed instead of going
 * into the balloon (blocks_going_offline()).
 */
#include <linux/memory.h>

#include "virtio_balloon.h"

/*
 * The blocks in [@start, @start + @nr) leave the balloon, a batch at a
 * time; returns the frames that left.  Single balloon pages migrate out
 * of the range by themselves.  The range is isolated already, so nothing
 * allocates from it again.  The caller holds balloon_lock.
 */
static unsigned int blocks_leave_range(struct virtio_balloon *vb,
				       unsigned long start, unsigned long nr)
{
	unsigned int freed = 0, nblocks = 0, done;
	struct page *page, *next;
	unsigned long pfn;
	LIST_HEAD(blocks);
	LIST_HEAD(none);

	list_for_each_entry_safe(page, next, &vb->blocks, lru) {
		pfn = page_to_pfn(page);
		if (pfn < start || pfn >= start + nr)
			continue;
		list_move_tail(&page->lru, &blocks);
		nblocks++;
		if (nblocks * VB_BLOCK_FRAMES + VB_BLOCK_FRAMES <= vb->batch_max)
			continue;
		done = release_lists(vb, &blocks, nblocks, &none, nblocks * VB_BLOCK_FRAMES);
		if (!done)
			return freed;
		freed += done;
		nblocks = 0;
	}
	if (nblocks)
		freed += release_lists(vb, &blocks, nblocks, &none, nblocks * VB_BLOCK_FRAMES);
	return freed;
}

/*
 * The blocks on @blocks, on their way into the balloon, whose memory is
 * going offline are freed; returns how many.  The caller holds
 * balloon_lock.
 */
unsigned int blocks_going_offline(struct virtio_balloon *vb,
				  struct list_head *blocks)
{
	unsigned long start = vb->offlining_start, pfn;
	struct page *page, *next;
	unsigned int n = 0;
	LIST_HEAD(out);

	if (!vb->offlining_nr)
		return 0;
	list_for_each_entry_safe(page, next, blocks, lru) {
		pfn = page_to_pfn(page);
		if (pfn < start || pfn >= start + vb->offlining_nr)
			continue;
		list_move_tail(&page->lru, &out);
		n++;
	}
	free_new_blocks(&out);
	return n;
}

int virtio_balloon_memory_notify(struct notifier_block *nb,
				 unsigned long action, void *arg)
{
	struct virtio_balloon *vb = container_of(nb, struct virtio_balloon, memory_nb);
	struct memory_notify *mn = arg;
	unsigned long end = mn->start_pfn + mn->nr_pages;
	unsigned int freed;
	struct page *page;
	bool stuck = false;

	if (action == MEM_OFFLINE || action == MEM_CANCEL_OFFLINE) {
		mutex_lock(&vb->balloon_lock);
		vb->offlining_nr = 0;
		mutex_unlock(&vb->balloon_lock);
	}
	if (action != MEM_GOING_OFFLINE)
		return NOTIFY_OK;

	mutex_lock(&vb->balloon_lock);
	vb->offlining_start = mn->start_pfn;
	vb->offlining_nr = mn->nr_pages;
	freed = blocks_leave_range(vb, mn->start_pfn, mn->nr_pages);
	/* A host that could not be told keeps its blocks: no offlining. */
	list_for_each_entry(page, &vb->blocks, lru)
		if (page_to_pfn(page) >= mn->start_pfn && page_to_pfn(page) < end)
			stuck = true;
	WRITE_ONCE(vb->offline_frames, vb->offline_frames + freed);
	mutex_unlock(&vb->balloon_lock);
	if (freed) {
		update_balloon_size(vb);
		vb_follow_target(vb);
	}
	return stuck ? NOTIFY_BAD : NOTIFY_OK;
}
