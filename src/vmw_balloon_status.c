// SPDX-License-Identifier: GPL-2.0
/*
 * Status view of the VMware balloon: the debugfs file "vmmemctl" with
 * every counter, under the in-tree driver's file and field names (tools
 * parse them), and a read-only sysfs group, /sys/module/vmw_balloon/
 * status/, that needs no debugfs.
 */
#define pr_fmt(fmt) "balloon-dkms: " KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/sysfs.h>

#include "vmw_balloon.h"

/* Names as in the debugfs file of the in-tree driver; tools parse them. */
static const char * const vmballoon_cmd_names[VMW_BALLOON_CMD_NUM] = {
	[VMW_BALLOON_CMD_START]			= "start",
	[VMW_BALLOON_CMD_GET_TARGET]		= "target",
	[VMW_BALLOON_CMD_LOCK]			= "lock",
	[VMW_BALLOON_CMD_UNLOCK]		= "unlock",
	[VMW_BALLOON_CMD_GUEST_ID]		= "guestType",
	[VMW_BALLOON_CMD_BATCHED_LOCK]		= "batchLock",
	[VMW_BALLOON_CMD_BATCHED_UNLOCK]	= "batchUnlock",
	[VMW_BALLOON_CMD_BATCHED_2M_LOCK]	= "2m-lock",
	[VMW_BALLOON_CMD_BATCHED_2M_UNLOCK]	= "2m-unlock",
	[VMW_BALLOON_CMD_VMCI_DOORBELL_SET]	= "doorbellSet",
};

static const char * const vmballoon_page_size_names[] = {
	[VMW_BALLOON_4K_PAGE]	= "4k",
	[VMW_BALLOON_2M_PAGE]	= "2M",
};

static const char * const vmballoon_page_stat_names[] = {
	[VMW_BALLOON_PAGE_STAT_ALLOC]		= "alloc",
	[VMW_BALLOON_PAGE_STAT_ALLOC_FAIL]	= "allocFail",
	[VMW_BALLOON_PAGE_STAT_REFUSED_ALLOC]	= "errAlloc",
	[VMW_BALLOON_PAGE_STAT_REFUSED_FREE]	= "errFree",
	[VMW_BALLOON_PAGE_STAT_FREE]		= "free",
};

static const char * const vmballoon_stat_names[] = {
	[VMW_BALLOON_STAT_TIMER]	= "timer",
	[VMW_BALLOON_STAT_DOORBELL]	= "doorbell",
	[VMW_BALLOON_STAT_RESET]	= "reset",
	[VMW_BALLOON_STAT_SHRINK]	= "shrink",
	[VMW_BALLOON_STAT_SHRINK_FREE]	= "shrinkFree",
};

/* debugfs: the same file and field names as the in-tree driver. */
static int vmballoon_debug_show(struct seq_file *f, void *offset)
{
	struct vmballoon *b = f->private;
	struct vmballoon_stats *st = &b->stats;
	int i, j;

	seq_printf(f, "%-22s: %#16lx\n", "balloon capabilities",
		   (unsigned long)VMW_BALLOON_CAPABILITIES);
	seq_printf(f, "%-22s: %#16lx\n", "used capabilities",
		   b->capabilities);
	seq_printf(f, "%-22s: %16s\n", "is resetting",
		   READ_ONCE(b->reset_required) ? "y" : "n");
	seq_printf(f, "%-22s: %16lu\n", "target", READ_ONCE(b->target));
	seq_printf(f, "%-22s: %16llu\n", "current",
		   (u64)atomic64_read(&b->size));

	for (i = 0; i < VMW_BALLOON_CMD_NUM; i++) {
		if (!vmballoon_cmd_names[i])
			continue;
		seq_printf(f, "%-22s: %16llu (%llu failed)\n",
			   vmballoon_cmd_names[i],
			   (u64)atomic64_read(&st->cmd[i]),
			   (u64)atomic64_read(&st->cmd_fail[i]));
	}
	for (i = 0; i < VMW_BALLOON_STAT_NUM; i++)
		seq_printf(f, "%-22s: %16llu\n", vmballoon_stat_names[i],
			   (u64)atomic64_read(&st->gen[i]));
	for (i = 0; i < VMW_BALLOON_PAGE_STAT_NUM; i++)
		for (j = 0; j < VMW_BALLOON_NUM_PAGE_SIZES; j++)
			seq_printf(f, "%-18s(%s): %16llu\n",
				   vmballoon_page_stat_names[i],
				   vmballoon_page_size_names[j],
				   (u64)atomic64_read(&st->page[i][j]));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vmballoon_debug);

/*
 * The same state without debugfs, read-only, in /sys/module/vmw_balloon/
 * status/: sizes in 4 KiB frames, refused_frames locks and unlocks the
 * host refused, last_error the host's status for the last command it
 * failed (0: none), capabilities those in use, floor_pages the floor
 * (floor_mb) in pages, state and reason whether
 * the balloon is at its target or why it stopped short (balloon_state.h;
 * poll() on state wakes at every change).
 */
static u64 vmballoon_refused_frames(struct vmballoon *b)
{
	atomic64_t (*st)[VMW_BALLOON_NUM_PAGE_SIZES] = b->stats.page;
	u64 n = 0;
	int i;

	for (i = 0; i < VMW_BALLOON_NUM_PAGE_SIZES; i++)
		n += vmballoon_page_frames(i) *
		     (atomic64_read(&st[VMW_BALLOON_PAGE_STAT_REFUSED_ALLOC][i]) +
		      atomic64_read(&st[VMW_BALLOON_PAGE_STAT_REFUSED_FREE][i]));
	return n;
}

/* The balloon the sysfs attributes show: there is one. */
static struct vmballoon *vmb;

#define VMW_STATUS_ATTR(name, fmt, value)				\
static ssize_t name##_show(struct kobject *kobj,			\
			   struct kobj_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, fmt "\n", value);			\
}									\
static struct kobj_attribute vmballoon_attr_##name = __ATTR_RO(name)

VMW_STATUS_ATTR(size_frames, "%llu", (u64)atomic64_read(&vmb->size));
VMW_STATUS_ATTR(target_frames, "%lu", READ_ONCE(vmb->target));
VMW_STATUS_ATTR(refused_frames, "%llu", vmballoon_refused_frames(vmb));
VMW_STATUS_ATTR(last_error, "%lu", READ_ONCE(vmb->last_error));
VMW_STATUS_ATTR(floor_pages, "%lu", vmballoon_floor_pages());
VMW_STATUS_ATTR(state, "%s", balloon_state_names[READ_ONCE(vmb->status.state)]);
VMW_STATUS_ATTR(reason, "%s", balloon_reason_names[READ_ONCE(vmb->status.reason)]);

static const char * const vmballoon_cap_names[] = {
	"basic", "batched", "batched_2m", "signalled_wakeup", "64bit_target",
};

static ssize_t capabilities_show(struct kobject *kobj,
				 struct kobj_attribute *attr, char *buf)
{
	unsigned long caps = READ_ONCE(vmb->capabilities);
	int i, len = 0;

	for (i = 0; i < ARRAY_SIZE(vmballoon_cap_names); i++)
		if (caps & VMW_BALLOON_BASIC_CMDS << i)
			len += sysfs_emit_at(buf, len, "%s%s", len ? " " : "",
					     vmballoon_cap_names[i]);
	return len + sysfs_emit_at(buf, len, "\n");
}

static struct kobj_attribute vmballoon_attr_capabilities = __ATTR_RO(capabilities);

static struct attribute *vmballoon_status_attrs[] = {
	&vmballoon_attr_size_frames.attr,
	&vmballoon_attr_target_frames.attr,
	&vmballoon_attr_refused_frames.attr,
	&vmballoon_attr_last_error.attr,
	&vmballoon_attr_capabilities.attr,
	&vmballoon_attr_floor_pages.attr,
	&vmballoon_attr_state.attr,
	&vmballoon_attr_reason.attr,
	NULL
};

static const struct attribute_group vmballoon_status_group = {
	.attrs = vmballoon_status_attrs,
};

void vmballoon_status_init(struct vmballoon *b)
{
	vmb = b;
	b->dbg_entry = debugfs_create_file("vmmemctl", 0444, NULL, b,
					   &vmballoon_debug_fops);
	b->status_kobj = kobject_create_and_add("status",
						&THIS_MODULE->mkobj.kobj);
	if (b->status_kobj &&
	    sysfs_create_group(b->status_kobj, &vmballoon_status_group)) {
		kobject_put(b->status_kobj);
		b->status_kobj = NULL;
	}
	if (!b->status_kobj)
		pr_warn("no status view in sysfs\n");
}

void vmballoon_status_exit(struct vmballoon *b)
{
	debugfs_remove(b->dbg_entry);
	kobject_put(b->status_kobj);
}
