// SPDX-License-Identifier: GPL-2.0
/* after 6.12: ballooned pages have a node counter (the "Balloon:" line of /proc/meminfo) */
#include <linux/mmzone.h>

int balloon_probe_nr_balloon_pages = NR_BALLOON_PAGES;
