// SPDX-License-Identifier: GPL-2.0
/*
 * Status view of the virtio balloon: its state for people, without
 * reading the source.  A debugfs file with every counter, and a
 * read-only sysfs group (the size, the target, the floor, the last error
 * and the negotiated features) that needs no debugfs.
 *
 * The driver core adds the sysfs group to each device once it is bound
 * and removes it before the device is unbound (.dev_groups).
 */
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/seq_file.h>
#include <linux/sysfs.h>

#include "virtio_balloon.h"

/*
 * debugfs: one file per device with the balloon's view of things, so
 * its state can be seen without reading the source (or this driver's
 * private counters: the kernel's own are in /proc/vmstat).
 */
static int vb_debugfs_show(struct seq_file *f, void *unused)
{
	struct virtio_balloon *vb = f->private;
	u32 target;

	virtio_cread_le(vb->vdev, struct virtio_balloon_config, num_pages, &target);
	seq_printf(f, "driver: %s\n", BALLOON_VERSION);
	seq_printf(f, "target_frames: %u\n", target);
	seq_printf(f, "balloon_frames: %u\n", READ_ONCE(vb->num_pages));
	seq_printf(f, "reserve_pages: %lu\n", vb_floor(vb));
	seq_printf(f, "balloon_blocks: %lu\n", READ_ONCE(vb->num_blocks));
	seq_printf(f, "block_frames: %u\n", VB_BLOCK_FRAMES);
	seq_printf(f, "requests: %lu\n", READ_ONCE(vb->requests));
	seq_printf(f, "kicks: %lu\n", READ_ONCE(vb->kicks));
	seq_printf(f, "request_max_frames: %u\n", READ_ONCE(vb->request_max));
	seq_printf(f, "out_of_puff: %d\n", READ_ONCE(vb->out_of_puff));
	seq_printf(f, "managed_adjust: %d\n", !vb_has(vb, VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	seq_printf(f, "migration: %d\n", balloon_compat_can_migrate());
	seq_printf(f, "stats_tags: %u\n", READ_ONCE(vb->num_stats));
	seq_printf(f, "oom_deflated_frames: %lu\n", READ_ONCE(vb->oom_frames));
	seq_printf(f, "pressure_events: %lu\n", READ_ONCE(vb->pressure.events));
	seq_printf(f, "pressure_frames: %lu\n", READ_ONCE(vb->pressure.frames));
	seq_printf(f, "pressure_hold_ms: %u\n", READ_ONCE(vb->pressure.hold_ms));
	seq_printf(f, "pressure_hold_left_ms: %u\n",
		   jiffies_to_msecs(vb_pressure_left(&vb->pressure)));
	seq_printf(f, "offline_frames: %lu\n", READ_ONCE(vb->offline_frames));
	seq_printf(f, "hint_rounds: %lu\n", READ_ONCE(vb->hint_rounds));
	seq_printf(f, "hint_blocks: %lu\n", READ_ONCE(vb->hint_nr_blocks));
	seq_printf(f, "hint_blocks_sent: %lu\n", READ_ONCE(vb->hint_sent));
	seq_printf(f, "hint_block_bytes: %lu\n", VB_HINT_BYTES);
	seq_printf(f, "reporting: %d\n", vb->reporting);
	seq_printf(f, "reports: %lu\n", READ_ONCE(vb->reports));
	seq_printf(f, "poison_val: 0x%08x\n", vb->poison_val);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vb_debugfs);

void vb_debugfs_init(struct virtio_balloon *vb)
{
	char name[64];

	snprintf(name, sizeof(name), "%s-%s", KBUILD_MODNAME, dev_name(&vb->vdev->dev));
	vb->debugfs = debugfs_create_file(name, 0444, NULL, vb, &vb_debugfs_fops);
}

/*
 * The same state without debugfs, read-only, in the device's directory:
 * /sys/bus/virtio/devices/virtio<N>/balloon/.
 */
#define VB_STATUS_ATTR(name, fmt, value)				\
static ssize_t name##_show(struct device *dev,				\
			   struct device_attribute *attr, char *buf)	\
{									\
	struct virtio_balloon *vb = dev_to_virtio(dev)->priv;		\
									\
	return sysfs_emit(buf, fmt "\n", value);			\
}									\
static DEVICE_ATTR_RO(name)

VB_STATUS_ATTR(size_frames, "%u", READ_ONCE(vb->num_pages));
VB_STATUS_ATTR(target_frames, "%u", READ_ONCE(vb->target));
VB_STATUS_ATTR(blocks, "%lu", READ_ONCE(vb->num_blocks));
VB_STATUS_ATTR(floor_pages, "%lu", vb_floor(vb));
VB_STATUS_ATTR(out_of_puff, "%d", READ_ONCE(vb->out_of_puff));
VB_STATUS_ATTR(pressure_frames, "%lu", READ_ONCE(vb->pressure.frames));
VB_STATUS_ATTR(last_error, "%d", READ_ONCE(vb->last_error));

VB_STATUS_ATTR(state, "%s", balloon_state_names[READ_ONCE(vb->status.state)]);
VB_STATUS_ATTR(reason, "%s", balloon_reason_names[READ_ONCE(vb->status.reason)]);

static const char * const feature_names[] = {
	[VIRTIO_BALLOON_F_MUST_TELL_HOST] = "must_tell_host",
	[VIRTIO_BALLOON_F_STATS_VQ] = "stats_vq",
	[VIRTIO_BALLOON_F_DEFLATE_ON_OOM] = "deflate_on_oom",
	[VIRTIO_BALLOON_F_FREE_PAGE_HINT] = "free_page_hint",
	[VIRTIO_BALLOON_F_PAGE_POISON] = "page_poison",
	[VIRTIO_BALLOON_F_REPORTING] = "reporting",
};

static ssize_t features_show(struct device *dev, struct device_attribute *attr,
			     char *buf)
{
	struct virtio_balloon *vb = dev_to_virtio(dev)->priv;
	int len = 0;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(feature_names); i++)
		if (vb_has(vb, i))
			len += sysfs_emit_at(buf, len, "%s%s", len ? " " : "",
					     feature_names[i]);
	return len + sysfs_emit_at(buf, len, "\n");
}
static DEVICE_ATTR_RO(features);

static struct attribute *vb_status_attrs[] = {
	&dev_attr_size_frames.attr,
	&dev_attr_target_frames.attr,
	&dev_attr_blocks.attr,
	&dev_attr_floor_pages.attr,
	&dev_attr_out_of_puff.attr,
	&dev_attr_pressure_frames.attr,
	&dev_attr_last_error.attr,
	&dev_attr_features.attr,
	&dev_attr_state.attr,
	&dev_attr_reason.attr,
	NULL
};

static const struct attribute_group vb_status_group = {
	.name = "balloon",
	.attrs = vb_status_attrs,
};

const struct attribute_group *vb_status_groups[] = {
	&vb_status_group,
	NULL
};
