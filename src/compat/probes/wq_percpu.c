// SPDX-License-Identifier: GPL-2.0
/* about 6.17: WQ_PERCPU names the per-cpu default explicitly (an enum: #ifdef cannot see it) */
#include <linux/workqueue.h>

int balloon_probe_wq_percpu = WQ_PERCPU;
