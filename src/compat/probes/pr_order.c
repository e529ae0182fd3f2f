// SPDX-License-Identifier: GPL-2.0
/* 5.14: page_reporting_dev_info has a minimal report order (0 meant pageblock_order until 7.0) */
#include <linux/page_reporting.h>

int balloon_probe_pr_order = offsetof(struct page_reporting_dev_info, order);
