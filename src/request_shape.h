/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Request shape: how many frames one request (one element of one
 * descriptor) carries, for the device model at the other end.
 *
 *  - Firecracker, whose balloon sits on virtio-mmio, reads only the first
 *    descriptor of an element and skips one of more than 256 frames
 *    without an error: the guest would think memory given back that the
 *    host still backs.  Every transport but PCI gets at most 256.
 *  - QEMU, on virtio-pci, frees a host page larger than 4 KiB (hugetlb
 *    backing, 64 KiB host pages) only when all of its frames arrive in
 *    one element, and forgets a partial one at the next.  A 2 MiB block
 *    (alloc_policy.h) goes there whole, as one request of 512 frames,
 *    so a guest backed by 2 MiB huge pages returns them.
 *
 * The request_frames module parameter overrides the choice (256 or 512)
 * for a device model that needs the other shape.
 */
#ifndef BALLOON_REQUEST_SHAPE_H
#define BALLOON_REQUEST_SHAPE_H

#include <linux/device.h>
#include <linux/pci.h>
#include <linux/virtio.h>

#include "alloc_policy.h"

#define VB_REQ_SHORT		VB_PFNS_MAX
#define VB_REQ_LONG		VB_BLOCK_FRAMES

/* Frames per request for @vdev; @param is the module parameter (0: auto). */
static inline unsigned int vb_request_frames(struct virtio_device *vdev,
					     unsigned int param)
{
	if (param == VB_REQ_SHORT || param == VB_REQ_LONG)
		return param;
	return vdev->dev.parent && dev_is_pci(vdev->dev.parent) ?
		VB_REQ_LONG : VB_REQ_SHORT;
}

#endif /* BALLOON_REQUEST_SHAPE_H */
