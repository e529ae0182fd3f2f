// SPDX-License-Identifier: GPL-2.0
/* about 7.0: page_reporting_dev_info.capacity lets the driver size report batches to its ring */
#include <linux/page_reporting.h>

int balloon_probe_pr_capacity = offsetof(struct page_reporting_dev_info, capacity);
