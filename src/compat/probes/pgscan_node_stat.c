// SPDX-License-Identifier: GPL-2.0
/* about 7.0: PGSCAN_* and PGSTEAL_* moved from vm events to node stats */
#include <linux/mm.h>
#include <linux/vmstat.h>

#pragma GCC diagnostic error "-Wenum-conversion"
enum node_stat_item balloon_probe_pgscan = PGSCAN_KSWAPD;
