// SPDX-License-Identifier: GPL-2.0
/* 7.0: MIGRATEPAGE_SUCCESS is gone, migration callbacks return 0 */
#if __has_include("linux/balloon.h")
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

int balloon_probe_mps = MIGRATEPAGE_SUCCESS;
