// SPDX-License-Identifier: GPL-2.0
/* after 6.12 (7.2 has it): virtio_driver.shutdown replaces virtio_device_shutdown() */
#include <linux/virtio.h>

static void balloon_probe_shutdown(struct virtio_device *vdev)
{
	virtio_device_shutdown(vdev);
}

struct virtio_driver balloon_probe_drv = { .shutdown = balloon_probe_shutdown };
