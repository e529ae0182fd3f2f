// SPDX-License-Identifier: GPL-2.0
/* 7.0: <linux/balloon_compaction.h> became <linux/balloon.h>, core-owned bookkeeping */
#include <linux/balloon.h>

struct balloon_dev_info balloon_probe_linux_balloon_h;
