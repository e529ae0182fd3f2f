// SPDX-License-Identifier: GPL-2.0
/* 7.0: the core adjusts managed page counts when balloon_dev_info asks it to */
#if __has_include("linux/balloon.h")
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

int balloon_probe_adjust = offsetof(struct balloon_dev_info, adjust_managed_page_count);
