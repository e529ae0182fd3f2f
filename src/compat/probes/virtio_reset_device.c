// SPDX-License-Identifier: GPL-2.0
/* 5.17: virtio_reset_device() wraps config->reset() (and synchronises callbacks) */
#include <linux/virtio.h>

void balloon_probe_reset(struct virtio_device *vdev);
void balloon_probe_reset(struct virtio_device *vdev)
{
	virtio_reset_device(vdev);
}
