// SPDX-License-Identifier: GPL-2.0
/* about 6.11: virtio_find_vqs() takes struct virtqueue_info[] instead of callbacks[] and names[] */
#include <linux/virtio_config.h>

int balloon_probe_vqi(struct virtio_device *vdev, struct virtqueue *vqs[]);
int balloon_probe_vqi(struct virtio_device *vdev, struct virtqueue *vqs[])
{
	struct virtqueue_info info[1] = { { .name = "x" } };

	return virtio_find_vqs(vdev, 1, vqs, info, NULL);
}
