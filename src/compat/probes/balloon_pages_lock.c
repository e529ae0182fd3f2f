// SPDX-License-Identifier: GPL-2.0
/* <= 6.x: balloon_dev_info has its own pages_lock (7.0 moved it into mm/balloon.c) */
#if __has_include("linux/balloon.h")
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

int balloon_probe_pages_lock = offsetof(struct balloon_dev_info, pages_lock);
