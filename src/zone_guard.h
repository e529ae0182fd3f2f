/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Zone guard: what a balloon may take from each zone of the guest.
 *
 * The page allocator guards its zones with watermarks, and a large
 * block asked for without reclaim goes down to the min watermark: the
 * last pages that atomic allocations, slab and page tables live on.
 * The kernel's own balloon drivers take movable single pages, which come
 * from ZONE_MOVABLE first and which compaction and memory offlining can
 * move.  Ours take 2 MiB blocks, which nothing can move, so the blocks
 * must come only from memory the kernel can spare:
 *  - no zone the kernel allocates from for itself (every zone but
 *    ZONE_MOVABLE) ends below its low watermark plus its lowmem_reserve,
 *    the part lower zones keep from allocations that could go higher;
 *  - while a movable zone has free memory, inflation takes movable
 *    single pages there first, as the kernel's driver does, so the
 *    kernel's zones end no lower than that driver leaves them;
 *  - no block in memory a driver added and manages (virtio-mem,
 *    dax/kmem: "System RAM (virtio_mem)" in /proc/iomem).  virtio-mem
 *    takes such memory back a few MiB at a time out of online memory
 *    blocks, with alloc_contig_range(): movable pages move, a block
 *    cannot, and no memory notifier tells us (memory_offline.c only
 *    sees whole memory blocks go offline).  Movable single pages are
 *    taken there instead, as by the kernel's driver.
 * Both drivers ask the guard after each block: a block it refuses goes
 * straight back to the allocator.  The same watermarks tell a balloon's
 * shrinker whether the guest is really short of memory.
 */
#ifndef BALLOON_ZONE_GUARD_H
#define BALLOON_ZONE_GUARD_H

#include <linux/ioport.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/nodemask.h>
#include <linux/vmstat.h>

/* Free pages @zone keeps from the balloon. */
static inline unsigned long balloon_zone_floor(const struct zone *zone)
{
	long reserve = 0;
	int i;

	for (i = 0; i < MAX_NR_ZONES; i++)
		reserve = max(reserve, zone->lowmem_reserve[i]);
	return low_wmark_pages(zone) + reserve;
}

static inline int balloon_res_found(struct resource *res, void *arg)
{
	return 1;
}

/*
 * Is @page in memory a driver manages?  Such memory is added in whole
 * memory blocks, so a block's first page answers for the block.  The
 * resources nest (a virtio-mem device's range above its "System RAM
 * (virtio_mem)" parts): the walk looks at every level.
 */
static inline bool balloon_driver_managed(struct page *page)
{
	u64 start = PFN_PHYS(page_to_pfn(page));

	return walk_iomem_res_desc(IORES_DESC_NONE,
				   IORESOURCE_SYSTEM_RAM | IORESOURCE_SYSRAM_DRIVER_MANAGED,
				   start, start + PAGE_SIZE - 1, NULL, balloon_res_found) == 1;
}

/* May the balloon keep @page, just allocated from the kernel's zones? */
static inline bool balloon_zone_may_keep(struct page *page)
{
	struct zone *zone = page_zone(page);

	if (zone_idx(zone) == ZONE_MOVABLE)
		return true;
	if (balloon_driver_managed(page))
		return false;
	return zone_page_state_snapshot(zone, NR_FREE_PAGES) >=
		balloon_zone_floor(zone);
}

/*
 * Pages the movable zones can give before they reach their low
 * watermark, as far as the kernel's driver takes them: there, inflation
 * takes movable single pages first.
 */
static inline unsigned long balloon_movable_spare(void)
{
	unsigned long spare = 0, free, mark;
	struct zone *zone;
	int nid;

	for_each_online_node(nid) {
		zone = &NODE_DATA(nid)->node_zones[ZONE_MOVABLE];
		if (!populated_zone(zone))
			continue;
		free = zone_page_state_snapshot(zone, NR_FREE_PAGES);
		mark = low_wmark_pages(zone);
		if (free > mark)
			spare += free - mark;
	}
	return spare;
}

/*
 * Is the guest short of memory for an allocation with @gfp?  Reclaim
 * for a page allocation starts once every zone it may use is down to
 * its watermarks; reclaim asked for while a zone still has memory to
 * give that allocation (drop_caches, memory.reclaim, a large allocation
 * compacting) is no shortage, and no reason for a balloon to give
 * memory back.  Free pages the allocation cannot use (the high-order
 * atomic reserve; CMA, unless it is movable) do not count.
 */
static inline bool balloon_zones_short(gfp_t gfp)
{
	enum zone_type high = gfp_zone(gfp);
	long free, mark;
	struct zone *zone;
	int nid, i;

	for_each_online_node(nid) {
		for (i = 0; i <= high; i++) {
			zone = &NODE_DATA(nid)->node_zones[i];
			if (!populated_zone(zone))
				continue;
			free = zone_page_state_snapshot(zone, NR_FREE_PAGES);
			free -= READ_ONCE(zone->nr_reserved_highatomic);
			if (!(gfp & __GFP_MOVABLE))
				free -= zone_page_state_snapshot(zone, NR_FREE_CMA_PAGES);
			mark = high_wmark_pages(zone) + zone->lowmem_reserve[high];
			if (free >= mark)
				return false;
		}
	}
	return true;
}

#endif /* BALLOON_ZONE_GUARD_H */
