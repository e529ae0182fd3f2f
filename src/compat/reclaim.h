/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Crediting memory a shrinker freed outside the LRU lists to the reclaim
 * that asked for it, so that reclaim stops once it has enough instead of
 * going on to scan (and drop) the page cache.  6.4 named it
 * mm_account_reclaimed_pages(); before, shrinkers of slab caches added to
 * current->reclaim_state->reclaimed_slab directly.
 */
#ifndef BALLOON_COMPAT_RECLAIM_H
#define BALLOON_COMPAT_RECLAIM_H

#include "compat/compat.h"

#include <linux/sched.h>
#include <linux/swap.h>

#ifndef HAVE_MM_ACCOUNT_RECLAIMED_PAGES
static inline void mm_account_reclaimed_pages(unsigned long pages)
{
	if (current->reclaim_state)
		current->reclaim_state->reclaimed_slab += pages;
}
#endif

#endif /* BALLOON_COMPAT_RECLAIM_H */
