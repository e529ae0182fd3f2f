// SPDX-License-Identifier: GPL-2.0
/* 6.12: stats tags 10-15 (OOM kills, allocation stalls, scan and reclaim amounts) */
#include <linux/virtio_balloon.h>

int balloon_probe_s_oom_kill = VIRTIO_BALLOON_S_OOM_KILL;
