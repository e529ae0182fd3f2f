// SPDX-License-Identifier: GPL-2.0
/* balloon_dev_info has a migratepage callback (needs balloon compaction/migration) */
#if __has_include("linux/balloon.h")
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

int balloon_probe_migratepage = offsetof(struct balloon_dev_info, migratepage);
