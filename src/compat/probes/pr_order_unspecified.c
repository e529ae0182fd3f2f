// SPDX-License-Identifier: GPL-2.0
/* about 7.0: report order 0 means order 0; PAGE_REPORTING_ORDER_UNSPECIFIED asks for the default */
#include <linux/page_reporting.h>

int balloon_probe_pr_unspec = PAGE_REPORTING_ORDER_UNSPECIFIED;
