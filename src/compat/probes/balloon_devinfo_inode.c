// SPDX-License-Identifier: GPL-2.0
/* 5.10: migration needs a pseudo-fs inode in balloon_dev_info (gone in 5.19) */
#if __has_include("linux/balloon.h")
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

int balloon_probe_inode = offsetof(struct balloon_dev_info, inode);
