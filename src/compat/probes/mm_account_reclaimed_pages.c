// SPDX-License-Identifier: GPL-2.0
/* 6.4: memory freed outside the LRU is credited to reclaim through one helper */
#include <linux/swap.h>

void balloon_probe_account_reclaimed(void);
void balloon_probe_account_reclaimed(void)
{
	mm_account_reclaimed_pages(1);
}
