// SPDX-License-Identifier: GPL-2.0
/*
 * balloon_limit - the physical limit of a balloon, for make bench only.
 *
 * Allocates nr_frames 4 KiB frames' worth of pages (default 262144, 1 GiB)
 * in blocks of 2^order pages with the flags a balloon uses, then frees
 * them, and reports both times: what inflate and deflate would cost with
 * no balloon protocol at all.  order=0 uses the balloon page flags,
 * order=9 the 2 MiB-block flags (no reclaim, no compaction).  The work
 * runs at load time; the result is one line in the kernel log:
 *	balloon_limit: order O frames F alloc_ns A free_ns B failed N
 * and the parameters alloc_ns, free_ns and failed (read-only).
 * Never shipped: tests/bench/ builds it, the packages take only src/.
 */
#include <linux/gfp.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/slab.h>

static unsigned int order;
module_param(order, uint, 0444);
MODULE_PARM_DESC(order, "allocation order: 0 (single pages) or 9 (2 MiB blocks on 4 KiB pages)");

static unsigned long nr_frames = 262144;
module_param(nr_frames, ulong, 0444);
MODULE_PARM_DESC(nr_frames, "4 KiB frames to allocate (default 262144, 1 GiB)");

static unsigned long long alloc_ns;
module_param(alloc_ns, ullong, 0444);
MODULE_PARM_DESC(alloc_ns, "result: nanoseconds spent allocating");

static unsigned long long free_ns;
module_param(free_ns, ullong, 0444);
MODULE_PARM_DESC(free_ns, "result: nanoseconds spent freeing");

static unsigned long failed;
module_param(failed, ulong, 0444);
MODULE_PARM_DESC(failed, "result: blocks that could not be allocated");

static gfp_t limit_gfp(void)
{
	if (order)
		return (GFP_HIGHUSER & ~__GFP_RECLAIM) | __GFP_NORETRY |
		       __GFP_NOWARN | __GFP_NOMEMALLOC;
	return GFP_HIGHUSER_MOVABLE | __GFP_NOMEMALLOC | __GFP_NORETRY |
	       __GFP_NOWARN;
}

static int __init balloon_limit_init(void)
{
	unsigned long nr_blocks, got = 0, i;
	struct page **pages;
	gfp_t gfp = limit_gfp();
	u64 t0;

	/* order 9 is the largest every kernel from 5.10 to 7.2 can give */
	if (order > 9 || !nr_frames)
		return -EINVAL;
	/* frames are 4 KiB whatever the page size, as in the balloon protocol */
	nr_blocks = nr_frames >> (PAGE_SHIFT - 12) >> order;
	pages = kvmalloc_array(nr_blocks, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return -ENOMEM;

	t0 = ktime_get_ns();
	for (i = 0; i < nr_blocks; i++) {
		struct page *page = alloc_pages(gfp, order);

		if (page)
			pages[got++] = page;
		else
			failed++;
		cond_resched();
	}
	alloc_ns = ktime_get_ns() - t0;

	t0 = ktime_get_ns();
	for (i = 0; i < got; i++) {
		__free_pages(pages[i], order);
		cond_resched();
	}
	free_ns = ktime_get_ns() - t0;
	kvfree(pages);

	pr_info("balloon_limit: order %u frames %lu alloc_ns %llu free_ns %llu failed %lu\n",
		order, nr_frames, alloc_ns, free_ns, failed);
	return 0;
}

static void __exit balloon_limit_exit(void)
{
}

module_init(balloon_limit_init);
module_exit(balloon_limit_exit);
MODULE_DESCRIPTION("Balloon allocation limit for make bench (test only)");
MODULE_LICENSE("GPL");
