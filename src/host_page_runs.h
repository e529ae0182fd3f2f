/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Host page runs: single balloon pages that happen to cover a whole
 * 2 MiB host page reach the host in one request, as a block does
 * (request_shape.h).
 *
 * Where inflation takes movable single pages (a movable zone has them to
 * spare, zone_guard.h), a QEMU backed by 2 MiB huge pages frees none of
 * its pages: it frees one only when all 512 of its frames arrive in one
 * element, in a row.  The allocator often hands out single pages that
 * are physically contiguous, one after the other, so the single pages'
 * frames of an inflation batch are sorted, and each run of VB_BLOCK_FRAMES
 * consecutive frames that starts on a 2 MiB boundary is moved to the
 * front of them, where it fills one request of its own; the other frames
 * follow.  The pages stay single, movable balloon pages: migration,
 * offlining and deflation treat them as before.  A guest page's frames
 * stay together (every part moved is a multiple of a page's frames).
 * Done only where a request holds a whole block (virtio-pci); elsewhere
 * the frames go in their old order.
 */
#ifndef BALLOON_HOST_PAGE_RUNS_H
#define BALLOON_HOST_PAGE_RUNS_H

#include <linux/sort.h>
#include <linux/types.h>

#include "alloc_policy.h"

static int vb_frame_cmp(const void *a, const void *b)
{
	u32 x = *(const u32 *)a, y = *(const u32 *)b;

	return x < y ? -1 : x > y;
}

static inline void vb_frames_reverse(u32 *f, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n / 2; i++)
		swap(f[i], f[n - 1 - i]);
}

/* Move the last @n - @k of the @n frames at @f before the first @k. */
static inline void vb_frames_rotate(u32 *f, unsigned int n, unsigned int k)
{
	vb_frames_reverse(f, k);
	vb_frames_reverse(f + k, n - k);
	vb_frames_reverse(f, n);
}

/*
 * Sort the @n distinct frames at @f and put each whole, aligned run of
 * VB_BLOCK_FRAMES first, in order.  Returns how many runs there were.
 * Behind a run moved forward, the frames it passed (all smaller than the
 * run, none part of a run) are left before the rest, which is still
 * sorted: the search goes on there.
 */
static inline unsigned int vb_host_page_runs_first(u32 *f, unsigned int n)
{
	unsigned int runs = 0, i = 0;

	sort(f, n, sizeof(*f), vb_frame_cmp, NULL);
	while (i + VB_BLOCK_FRAMES <= n) {
		if (f[i] % VB_BLOCK_FRAMES ||
		    f[i + VB_BLOCK_FRAMES - 1] != f[i] + VB_BLOCK_FRAMES - 1) {
			i++;
			continue;
		}
		if (i > runs * VB_BLOCK_FRAMES)
			vb_frames_rotate(f + runs * VB_BLOCK_FRAMES,
					 i + VB_BLOCK_FRAMES - runs * VB_BLOCK_FRAMES,
					 i - runs * VB_BLOCK_FRAMES);
		runs++;
		i += VB_BLOCK_FRAMES;
	}
	return runs;
}

#endif /* BALLOON_HOST_PAGE_RUNS_H */
