// SPDX-License-Identifier: GPL-2.0
/*
 * VMware memory balloon driver.
 *
 * The VMware hypervisor ("the host") asks the guest, through a backdoor
 * I/O port, to hand it a number of pages: the target.  The driver
 * allocates pages, tells the host their frame numbers (LOCK) so that it
 * can take the memory behind them, and gives them back to the guest
 * (UNLOCK) when the target drops.  A RESET from the host means it forgot
 * every page: the guest frees them all without telling it ("pop") and
 * negotiates the protocol again.
 *
 * Pages are 4 KiB, kept in a balloon_dev_info so that compaction can
 * migrate them, or 2 MiB, kept on a private list and never migrated.
 *
 * Nothing the host says is trusted: targets are clamped to guest RAM,
 * capabilities to what we asked for, and every status, per command and
 * per batch entry, is checked before a page changes hands.
 *
 * vmw_protocol.h has the protocol's words (commands, statuses, the
 * backdoor call), vmw_refused_policy.h what pages the host refuses may
 * cost, vmw_balloon.h the balloon's state and vmw_balloon_status.c its
 * debugfs file and sysfs status view.
 */
#define pr_fmt(fmt) "balloon-dkms: " KBUILD_MODNAME ": " fmt

#include "vmw_balloon.h"
#include "compat/shrinker.h"
#include "floor_policy.h"
#include "vmw_refused_policy.h"
#include "zone_guard.h"

#include <linux/atomic.h>
#include <linux/delay.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/kernel.h>
#include <linux/kobject.h>
#include <linux/list.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/rwsem.h>
#include <linux/sizes.h>
#include <linux/spinlock.h>
#include <linux/timekeeping.h>
#include <linux/workqueue.h>
#include <asm/hypervisor.h>

#define BALLOON_TRACE_VMW
#define CREATE_TRACE_POINTS
#include "balloon_trace.h"

MODULE_AUTHOR("VMware, Inc.");
MODULE_DESCRIPTION("VMware Memory Control (Balloon) Driver");
MODULE_VERSION(BALLOON_VERSION);
MODULE_ALIAS("dmi:*:svnVMware*:*");
MODULE_ALIAS("vmware_vmmemctl");
MODULE_LICENSE("GPL");

static bool vmwballoon_shrinker_enable;
module_param(vmwballoon_shrinker_enable, bool, 0444);
MODULE_PARM_DESC(vmwballoon_shrinker_enable,
		 "Give balloon pages back when the guest runs short of memory (default: off)");

/*
 * The balloon never takes the guest below this much available memory
 * (floor_policy.h): by default a 32nd of its RAM, at least 16 MiB and at
 * most 1 GiB, as virtio_balloon.  A host asking for more would only get
 * the guest killed by the OOM killer.
 */
BALLOON_FLOOR_PARAM();

/* The floor in pages: BALLOON_FLOOR_PARAM()'s value, now. */
unsigned long vmballoon_floor_pages(void)
{
	return balloon_floor_pages(&floor_mb, balloon_floor_default());
}

/* pop() waits for pages under migration; it says so this often. */
#define VMW_BALLOON_POP_WARN		(10 * HZ)

/* Inflation pauses this long after the shrinker had to take pages back. */
#define VMW_BALLOON_SHRINK_DELAY	(5 * HZ)

/*
 * 4 KiB pages may be reclaimed for (no OOM, no reserves, no warning);
 * 2 MiB pages are only taken when they are free right away.
 */
#define VMW_BALLOON_2M_GFP	(__GFP_HIGHMEM | __GFP_NOWARN | __GFP_NOMEMALLOC)

static struct vmballoon balloon;

/*
 * Pages on their way to or from the host during one inflation or
 * deflation step.  All pages of a ctl have the same size.
 */
struct vmballoon_ctl {
	enum vmballoon_page_size page_size;
	bool inflate;
	struct list_head pages;		/* to send, then accepted by the host */
	unsigned int n_pages;
	struct list_head refused;	/* the host said no */
	unsigned int n_refused;
	unsigned long refused_status;	/* the last refused entry's status */
	struct list_head spare;		/* 4 KiB pieces of refused 2 MiB pages */
	unsigned int n_spare;
};

static inline void vmballoon_page_stat_add(struct vmballoon *b,
					   enum vmballoon_page_stat stat,
					   enum vmballoon_page_size size,
					   unsigned int n)
{
	atomic64_add(n, &b->stats.page[stat][size]);
}

/*
 * Accept a target from the host.  More than the guest has is clamped to
 * guest RAM.  A value that does not fit 32 bits when 64-bit targets were
 * not negotiated is no target the protocol can carry: it is ignored and
 * the previous target stands (taking it as "all of RAM" would press the
 * guest down to its reserve on a host's bad register).  Each such episode
 * is reported once.
 */
static void vmballoon_set_target(struct vmballoon *b, unsigned long target)
{
	unsigned long limit = totalram_pages();

	if (target > U32_MAX &&
	    !(b->capabilities & VMW_BALLOON_64_BIT_TARGET)) {
		if (!b->target_wide)
			pr_warn("host sent a target of %lu pages without 64-bit targets; ignoring it\n",
				target);
		b->target_wide = true;
		return;
	}
	b->target_wide = false;

	if (target > limit) {
		if (!b->target_clamped)
			pr_warn("host asks for %lu pages, more than the guest's %lu; using %lu\n",
				target, limit, limit);
		b->target_clamped = true;
		target = limit;
	} else {
		b->target_clamped = false;
	}
	if (target != b->target) {
		trace_vmw_balloon_target(b->target, target, BALLOON_SOURCE_HOST);
		WRITE_ONCE(b->target_moved, true);
	}
	WRITE_ONCE(b->target, target);
}

/* Send one command; returns the host's status.  Called under comm_lock. */
static unsigned long vmballoon_cmd(struct vmballoon *b, unsigned int cmd,
				   unsigned long arg1, unsigned long arg2,
				   unsigned long *ecx)
{
	unsigned long status, bx, cx;

	lockdep_assert_held(&b->comm_lock);

	/*
	 * After a RESET the host knows nothing of us: only START may follow
	 * (and the doorbell, which is valid in any state).
	 */
	if (READ_ONCE(b->reset_required) && cmd != VMW_BALLOON_CMD_START &&
	    cmd != VMW_BALLOON_CMD_VMCI_DOORBELL_SET)
		return VMW_BALLOON_ERROR_RESET;

	status = vmballoon_hv(cmd, arg1, arg2, &bx, &cx);
	atomic64_inc(&b->stats.cmd[cmd]);
	trace_vmw_balloon_cmd(cmd, arg1, arg2, status,
			      cmd == VMW_BALLOON_CMD_START ? cx : bx);

	if (status == VMW_BALLOON_SUCCESS) {
		if (BIT(cmd) & VMW_BALLOON_CMDS_WITH_TARGET)
			vmballoon_set_target(b, bx);
	} else if (status != VMW_BALLOON_SUCCESS_WITH_CAPABILITIES ||
		   cmd != VMW_BALLOON_CMD_START) {
		atomic64_inc(&b->stats.cmd_fail[cmd]);
		WRITE_ONCE(b->last_error, status);	/* traced above */
	}
	if (status == VMW_BALLOON_ERROR_RESET)
		WRITE_ONCE(b->reset_required, true);
	if (ecx)
		*ecx = cx;
	return status;
}

static unsigned long vmballoon_cmd_locked(struct vmballoon *b, unsigned int cmd,
					  unsigned long arg1, unsigned long arg2,
					  unsigned long *ecx)
{
	unsigned long status;

	spin_lock(&b->comm_lock);
	status = vmballoon_cmd(b, cmd, arg1, arg2, ecx);
	spin_unlock(&b->comm_lock);
	return status;
}

/*
 * START: offer @caps, learn what the host grants.  START(0) on unload
 * tells the host we are gone; it then forgets every page.
 */
static bool vmballoon_send_start(struct vmballoon *b, unsigned long caps)
{
	unsigned long status, granted = 0;

	status = vmballoon_cmd_locked(b, VMW_BALLOON_CMD_START, caps, 0,
				      &granted);
	switch (status) {
	case VMW_BALLOON_SUCCESS_WITH_CAPABILITIES:
		/* Never use what we did not ask for. */
		b->capabilities = granted & caps;
		break;
	case VMW_BALLOON_SUCCESS:
		b->capabilities = VMW_BALLOON_BASIC_CMDS;
		break;
	default:
		return false;
	}
	return true;
}

/*
 * GET_TARGET tells the host how big the guest is and returns the target.
 * Without 64-bit targets the limit must fit 32 bits: a guest of more than
 * 16 TiB says 16 TiB, the most the host can ask of it then (the in-tree
 * driver sends nothing in that case and so never balloons).
 */
static bool vmballoon_send_get_target(struct vmballoon *b)
{
	unsigned long limit = totalram_pages();

	if (!(b->capabilities & VMW_BALLOON_64_BIT_TARGET))
		limit = min_t(unsigned long, limit, U32_MAX);

	return vmballoon_cmd_locked(b, VMW_BALLOON_CMD_GET_TARGET, limit, 0,
				    NULL) == VMW_BALLOON_SUCCESS;
}

/*
 * How many frames inflation may still take without leaving the guest less
 * available memory than its floor; reported once each time it bites.  No
 * floor: as many as asked, until allocations fail.
 */
static s64 vmballoon_room(struct vmballoon *b, s64 want)
{
	unsigned long floor = vmballoon_floor_pages();
	s64 room = (s64)si_mem_available() - (s64)floor;

	if (!floor || room >= want) {
		b->reserve_hit = false;
		return want;
	}
	if (!b->reserve_hit)
		pr_info("guest memory is low: holding the balloon at %lld of %lu pages\n",
			(s64)atomic64_read(&b->size), READ_ONCE(b->target));
	b->reserve_hit = true;
	return max_t(s64, room, 0);
}

/*
 * How many frames to add (positive) or take out (negative) now.  Nothing
 * while a reset is pending, nothing for less than 2 MiB of deflation
 * unless the balloon is to be emptied, no inflation shortly after the
 * shrinker had to take pages back, nor into the guest's reserve.
 */
static s64 vmballoon_change(struct vmballoon *b)
{
	s64 size = atomic64_read(&b->size);
	s64 target = READ_ONCE(b->target);

	if (READ_ONCE(b->reset_required))
		return 0;
	if (target < size && target != 0 &&
	    size - target < vmballoon_page_frames(VMW_BALLOON_2M_PAGE))
		return 0;
	if (target > size &&
	    time_before(jiffies, READ_ONCE(b->shrink_timeout)))
		return 0;
	if (target > size)
		return vmballoon_room(b, target - size);
	return target - size;
}

static void vmballoon_free_list(struct list_head *pages,
				enum vmballoon_page_size size)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, pages, lru) {
		list_del(&page->lru);
		__free_pages(page, vmballoon_page_order(size));
	}
}

/*
 * Allocate up to @n pages of the ctl's size onto ctl->pages; 4 KiB pieces
 * of refused 2 MiB pages are used first.  Returns false when the allocator
 * ran dry.
 */
static bool vmballoon_alloc(struct vmballoon *b, struct vmballoon_ctl *ctl,
			    unsigned int n)
{
	enum vmballoon_page_size size = ctl->page_size;
	struct page *page;

	while (ctl->n_pages < n) {
		if (size == VMW_BALLOON_4K_PAGE && !list_empty(&ctl->spare)) {
			page = list_first_entry(&ctl->spare, struct page, lru);
			list_del(&page->lru);
			ctl->n_spare--;
		} else if (size == VMW_BALLOON_4K_PAGE) {
			page = balloon_page_alloc();
		} else {
			page = alloc_pages(VMW_BALLOON_2M_GFP,
					   VMW_BALLOON_2M_ORDER);
			/* No 2 MiB page below a zone's floor: 4 KiB ones next. */
			if (page && !balloon_zone_may_keep(page)) {
				__free_pages(page, VMW_BALLOON_2M_ORDER);
				page = NULL;
			}
		}
		if (!page) {
			vmballoon_page_stat_add(b, VMW_BALLOON_PAGE_STAT_ALLOC_FAIL,
						size, 1);
			return false;
		}
		vmballoon_page_stat_add(b, VMW_BALLOON_PAGE_STAT_ALLOC, size, 1);
		list_add_tail(&page->lru, &ctl->pages);
		ctl->n_pages++;
	}
	return true;
}

static unsigned int vmballoon_batch_cmd(enum vmballoon_page_size size,
					bool lock)
{
	if (size == VMW_BALLOON_2M_PAGE)
		return lock ? VMW_BALLOON_CMD_BATCHED_2M_LOCK :
			      VMW_BALLOON_CMD_BATCHED_2M_UNLOCK;
	return lock ? VMW_BALLOON_CMD_BATCHED_LOCK :
		      VMW_BALLOON_CMD_BATCHED_UNLOCK;
}

/* Report a per-page status that makes no sense, once in a while. */
static void vmballoon_odd_status(struct page *page, unsigned long status,
				 bool inflate)
{
	pr_warn_ratelimited("host answered %lu to %s pfn %#lx\n", status,
			    inflate ? "lock" : "unlock", page_to_pfn(page));
}

/*
 * Decide the fate of one page after the host answered @status for it.
 * Returns true if the operation took effect.
 */
static bool vmballoon_page_done(struct vmballoon *b, struct page *page,
				enum vmballoon_page_size size, bool inflate,
				unsigned long status)
{
	switch (status) {
	case VMW_BALLOON_SUCCESS:
		return true;
	case VMW_BALLOON_ERROR_PPN_UNLOCKED:
		/*
		 * Unlocking a page the host does not hold: it is the guest's
		 * already, so the deflation still took effect.
		 */
		if (!inflate) {
			vmballoon_odd_status(page, status, false);
			return true;
		}
		break;
	case VMW_BALLOON_ERROR_PPN_INVALID:
	case VMW_BALLOON_ERROR_PPN_LOCKED:
	case VMW_BALLOON_ERROR_PPN_PINNED:
	case VMW_BALLOON_ERROR_PPN_NOTNEEDED:
	case VMW_BALLOON_ERROR_RESET:
	case VMW_BALLOON_ERROR_BUSY:
		break;
	default:
		vmballoon_odd_status(page, status, inflate);
		break;
	}
	vmballoon_page_stat_add(b, inflate ?
				VMW_BALLOON_PAGE_STAT_REFUSED_ALLOC :
				VMW_BALLOON_PAGE_STAT_REFUSED_FREE, size, 1);
	return false;
}

/* Move a page the host said no to from ctl->pages to ctl->refused. */
static void vmballoon_refuse(struct vmballoon_ctl *ctl, struct page *page,
			     unsigned long status)
{
	list_move_tail(&page->lru, &ctl->refused);
	ctl->n_pages--;
	ctl->n_refused++;
	ctl->refused_status = status;
}

/*
 * Lock (inflate) or unlock (deflate) every page on ctl->pages with one
 * batched command.  Pages the host refused move to ctl->refused.  A
 * failure of the whole command counts for every page: the host may have
 * written statuses for some entries before a RESET, but it forgot those
 * pages then anyway.
 */
static unsigned long vmballoon_send_batch(struct vmballoon *b,
					  struct vmballoon_ctl *ctl)
{
	unsigned long status, entry_status;
	struct page *page, *next;
	unsigned int i = 0, n = ctl->n_pages;

	spin_lock(&b->comm_lock);
	list_for_each_entry(page, &ctl->pages, lru)
		b->batch_page[i++] = (u64)page_to_pfn(page) << PAGE_SHIFT;

	status = vmballoon_cmd(b, vmballoon_batch_cmd(ctl->page_size,
						      ctl->inflate),
			       PHYS_PFN(virt_to_phys(b->batch_page)), n, NULL);

	i = 0;
	list_for_each_entry_safe(page, next, &ctl->pages, lru) {
		entry_status = b->batch_page[i++] & VMW_BALLOON_ENTRY_STATUS;
		if (status != VMW_BALLOON_SUCCESS)
			entry_status = status;
		if (!vmballoon_page_done(b, page, ctl->page_size, ctl->inflate,
					 entry_status))
			vmballoon_refuse(ctl, page, entry_status);
	}
	spin_unlock(&b->comm_lock);
	return status;
}

/*
 * The same without batching: one LOCK or UNLOCK for the one 4 KiB page
 * of the ctl.  Callers send batches of one page in this mode, so that a
 * command the host fails as a whole (BUSY, RESET) fails only its own
 * page, whatever it did with the pages before.
 */
static unsigned long vmballoon_send_single(struct vmballoon *b,
					   struct vmballoon_ctl *ctl)
{
	struct page *page = list_first_entry(&ctl->pages, struct page, lru);
	unsigned long status, pfn = page_to_pfn(page);

	if (pfn > U32_MAX)	/* the protocol has 32 bits */
		status = VMW_BALLOON_ERROR_PPN_INVALID;
	else
		status = vmballoon_cmd_locked(b, ctl->inflate ?
					      VMW_BALLOON_CMD_LOCK :
					      VMW_BALLOON_CMD_UNLOCK, pfn, 1,
					      NULL);
	if (!vmballoon_page_done(b, page, ctl->page_size, ctl->inflate,
				 status))
		vmballoon_refuse(ctl, page, status);

	switch (status) {
	case VMW_BALLOON_ERROR_CMD_INVALID:
	case VMW_BALLOON_ERROR_RESET:
	case VMW_BALLOON_ERROR_BUSY:
		return status;
	default:		/* the page's own status */
		return VMW_BALLOON_SUCCESS;
	}
}

/* Pages one command carries: batches of one without batching. */
static unsigned int vmballoon_batch_max(struct vmballoon *b)
{
	return b->batching ? VMW_BALLOON_BATCH_MAX_PAGES : 1;
}

/*
 * Tell the host about ctl->pages.  Returns 0 when the command went
 * through (some pages may still have been refused) or -EIO when the host
 * failed it as a whole: then this round stops.  CMD_INVALID for a command
 * the host granted means it lost track of us: negotiate again.
 */
static int vmballoon_send(struct vmballoon *b, struct vmballoon_ctl *ctl)
{
	unsigned int n = ctl->n_pages;
	unsigned long status;

	if (!n)
		return 0;
	if (b->batching)
		status = vmballoon_send_batch(b, ctl);
	else
		status = vmballoon_send_single(b, ctl);
	if (ctl->n_pages < n)
		trace_vmw_balloon_refused(ctl->inflate ? BALLOON_VMW_LOCK :
					  BALLOON_VMW_UNLOCK, n - ctl->n_pages,
					  ctl->page_size == VMW_BALLOON_2M_PAGE,
					  ctl->refused_status);

	switch (status) {
	case VMW_BALLOON_SUCCESS:
		return 0;
	case VMW_BALLOON_ERROR_RESET:
	case VMW_BALLOON_ERROR_BUSY:
		break;
	case VMW_BALLOON_ERROR_CMD_INVALID:
		pr_warn_ratelimited("host rejected a %s command it granted; renegotiating\n",
				    ctl->inflate ? "lock" : "unlock");
		WRITE_ONCE(b->reset_required, true);
		break;
	default:
		pr_warn_ratelimited("host failed a %s command with status %lu\n",
				    ctl->inflate ? "lock" : "unlock", status);
		break;
	}
	return -EIO;
}

/* Hand pages the host now owns to the balloon. */
static void vmballoon_enqueue(struct vmballoon *b, struct list_head *pages,
			      enum vmballoon_page_size size)
{
	struct page *page;

	if (list_empty(pages))
		return;
	if (size == VMW_BALLOON_4K_PAGE) {
		balloon_compat_list_enqueue(&b->b_dev_info, pages);
		return;
	}
	/* Offline, counted as inflated and in meminfo's Balloon: line. */
	list_for_each_entry(page, pages, lru)
		balloon_compat_block_insert(page, VMW_BALLOON_2M_ORDER);
	spin_lock(&b->huge_pages_lock);
	list_splice_init(pages, &b->huge_pages);
	spin_unlock(&b->huge_pages_lock);
}

/* Take up to @n pages of @size out of the balloon onto @pages. */
static unsigned int vmballoon_dequeue(struct vmballoon *b,
				      struct list_head *pages,
				      enum vmballoon_page_size size,
				      unsigned int n)
{
	struct page *page, *next;
	unsigned int got = 0;

	if (size == VMW_BALLOON_4K_PAGE)
		return balloon_compat_list_dequeue(&b->b_dev_info, pages, n);

	spin_lock(&b->huge_pages_lock);
	list_for_each_entry_safe(page, next, &b->huge_pages, lru) {
		if (got == n)
			break;
		list_move_tail(&page->lru, pages);
		got++;
	}
	spin_unlock(&b->huge_pages_lock);

	list_for_each_entry(page, pages, lru)
		balloon_compat_block_remove(page, VMW_BALLOON_2M_ORDER);
	return got;
}

/*
 * Break the refused 2 MiB pages of an inflation into 4 KiB pieces for the
 * 4 KiB pass that follows: the host may want most of a large page it
 * refused as a whole.  Up to @keep pieces are kept, the rest freed.
 */
static void vmballoon_split_refused(struct vmballoon_ctl *ctl,
				    unsigned int keep)
{
	struct page *page, *next;
	unsigned int i;

	list_for_each_entry_safe(page, next, &ctl->refused, lru) {
		list_del(&page->lru);
		split_page(page, VMW_BALLOON_2M_ORDER);
		for (i = 0; i < vmballoon_page_frames(VMW_BALLOON_2M_PAGE); i++) {
			if (ctl->n_spare < keep) {
				list_add_tail(&page[i].lru, &ctl->spare);
				ctl->n_spare++;
			} else {
				__free_page(page + i);
			}
		}
	}
	ctl->n_refused = 0;
}

/* A batch is done: ctl->pages are what the host took, @t0 its start. */
static void vmballoon_trace_batch(struct vmballoon_ctl *ctl, u64 t0, int err)
{
	unsigned int n = ctl->n_pages * vmballoon_page_frames(ctl->page_size);
	bool huge = ctl->page_size == VMW_BALLOON_2M_PAGE;

	trace_vmw_balloon_batch(ctl->inflate, huge ? 0 : n, huge ? n : 0,
				ktime_get_ns() - t0, err);
}

static void vmballoon_ctl_init(struct vmballoon_ctl *ctl,
			       enum vmballoon_page_size size, bool inflate)
{
	ctl->page_size = size;
	ctl->inflate = inflate;
	INIT_LIST_HEAD(&ctl->pages);
	INIT_LIST_HEAD(&ctl->refused);
	INIT_LIST_HEAD(&ctl->spare);
	ctl->n_pages = 0;
	ctl->n_refused = 0;
	ctl->n_spare = 0;
}

/*
 * The 4 KiB pass starts: the refused pages the last round kept are
 * refused pages of this one (vmw_refused_policy.h).
 */
static void vmballoon_take_held(struct vmballoon *b, struct vmballoon_ctl *ctl)
{
	list_splice_tail_init(&b->held, &ctl->refused);
	ctl->n_refused += b->n_held;
	b->n_held = 0;
}

static void vmballoon_free_held(struct vmballoon *b)
{
	vmballoon_free_list(&b->held, VMW_BALLOON_4K_PAGE);
	b->n_held = 0;
}

/* The 2 MiB pass is over: go on with 4 KiB pages and pieces. */
static void vmballoon_to_4k(struct vmballoon *b, struct vmballoon_ctl *ctl,
			    const struct vmballoon_round *round)
{
	vmballoon_split_refused(ctl, round->held_max / 2);
	ctl->page_size = VMW_BALLOON_4K_PAGE;
	vmballoon_take_held(b, ctl);
}

/*
 * One inflation command of up to @n pages: allocate them, send them, and
 * put what the host took in the balloon.  *@allocated says whether the
 * allocator gave all @n.  Returns the send's result.
 */
static int vmballoon_inflate_cmd(struct vmballoon *b, struct vmballoon_ctl *ctl,
				 struct vmballoon_round *round, unsigned int n,
				 bool *allocated)
{
	unsigned int frames = vmballoon_page_frames(ctl->page_size);
	unsigned int refused = ctl->n_refused;
	u64 t0 = ktime_get_ns();
	int err;

	*allocated = vmballoon_alloc(b, ctl, n);
	err = vmballoon_send(b, ctl);
	vmballoon_trace_batch(ctl, t0, err);
	vmballoon_round_account(round, &b->vain_credit,
				ctl->page_size == VMW_BALLOON_2M_PAGE,
				ctl->n_pages, ctl->n_refused - refused);
	vmballoon_poll_account(&b->poll, frames, ctl->n_pages,
			       ctl->n_refused - refused);
	if (err)
		b->poll.failed = true;
	atomic64_add((u64)ctl->n_pages * frames, &b->size);
	vmballoon_enqueue(b, &ctl->pages, ctl->page_size);
	ctl->n_pages = 0;
	return err;
}

/*
 * The inflation round ended for @why: its refused 4 KiB pages are kept
 * for the next round or freed (vmw_refused_policy.h), and so are the
 * spare pieces.  Short of the target, the next round, a second from now,
 * goes on.
 */
static void vmballoon_inflate_end(struct vmballoon *b, struct vmballoon_ctl *ctl,
				  const struct vmballoon_round *round,
				  enum balloon_reason why)
{
	s64 size = atomic64_read(&b->size);
	s64 target = READ_ONCE(b->target);

	/* Kept only while the floor leaves room for more, with them held. */
	if (ctl->page_size == VMW_BALLOON_4K_PAGE &&
	    vmballoon_round_keeps(round, why, ctl->n_refused) &&
	    vmballoon_change(b) > 0) {
		list_splice_init(&ctl->refused, &b->held);
		b->n_held = ctl->n_refused;
	} else {
		vmballoon_free_held(b);
		vmballoon_free_list(&ctl->refused, ctl->page_size);
	}
	vmballoon_free_list(&ctl->spare, VMW_BALLOON_4K_PAGE);
	if (size < target)
		trace_vmw_balloon_backoff(size, target - size, MSEC_PER_SEC);
}

/*
 * Grow the balloon towards the target in batches (of one page without
 * batching): 2 MiB pages first, then 4 KiB pages when large pages run
 * out, the host refuses too many or less than a large page is left to
 * take.  What refused pages may cost is vmw_refused_policy.h's to say.
 * Whatever a command's fate, the pages the host took are in the balloon.
 * Returns why the round ended short, if the guest or the host said no.
 */
static enum balloon_reason vmballoon_inflate(struct vmballoon *b)
{
	enum balloon_reason why = BALLOON_REASON_NONE;
	unsigned int batch_max = vmballoon_batch_max(b);
	struct vmballoon_round round;
	struct vmballoon_ctl ctl;
	s64 change;

	vmballoon_round_init(&round, b->batching);
	vmballoon_poll_round_start(&b->poll);
	vmballoon_ctl_init(&ctl, b->max_page_size, true);
	if (ctl.page_size == VMW_BALLOON_4K_PAGE)
		vmballoon_take_held(b, &ctl);

	while ((change = vmballoon_change(b)) > 0) {
		bool huge = ctl.page_size == VMW_BALLOON_2M_PAGE, allocated;
		unsigned int n;

		/*
		 * Never more than asked: the change may be what is left
		 * above the guest's reserve.  Less than a large page to
		 * go is taken in 4 KiB pages.
		 */
		n = min_t(u64, batch_max,
			  div_u64(change, vmballoon_page_frames(ctl.page_size)));
		if (!n) {
			vmballoon_to_4k(b, &ctl, &round);
			continue;
		}
		n = min(n, vmballoon_round_room(&round, huge, ctl.n_refused,
						ctl.n_spare));
		if (!n) {
			why = BALLOON_HOST_REFUSED;
			break;
		}
		if (vmballoon_inflate_cmd(b, &ctl, &round, n, &allocated))
			break;
		if (huge && (!allocated ||
			     ctl.n_refused >= VMW_BALLOON_MAX_REFUSED)) {
			vmballoon_to_4k(b, &ctl, &round);
		} else if (!huge && !allocated) {
			why = BALLOON_NO_MEMORY;
			break;
		} else if (!huge && vmballoon_round_over(&round, b->vain_credit,
							 ctl.n_refused,
							 ctl.n_spare)) {
			why = BALLOON_HOST_REFUSED;
			break;
		}
		cond_resched();
	}
	vmballoon_inflate_end(b, &ctl, &round, why);
	return why;
}

/*
 * Frames a deflation still has to give back after taking out @tried:
 * what is left of @n_frames, or down to the target when @n_frames is 0.
 * The 2 MiB slack decides whether to start, not where to end.
 */
static s64 vmballoon_deflate_todo(struct vmballoon *b, u64 n_frames, u64 tried)
{
	if (n_frames)
		return n_frames - tried;
	if (!tried)
		return -vmballoon_change(b);
	return atomic64_read(&b->size) - (s64)READ_ONCE(b->target);
}

/*
 * One deflation command: take up to @want pages of the ctl's size out of
 * the balloon (*@got of them), have the host unlock them (@coordinated)
 * or not (pop: it forgot them), free what it let go (ctl->n_pages) and
 * put back what it kept, for now.  Returns whether the command failed.
 */
static bool vmballoon_deflate_cmd(struct vmballoon *b, struct vmballoon_ctl *ctl,
				  unsigned int want, bool coordinated,
				  unsigned int *got)
{
	enum vmballoon_page_size size = ctl->page_size;
	u64 t0 = ktime_get_ns();
	bool failed = false;

	*got = vmballoon_dequeue(b, &ctl->pages, size, want);
	ctl->n_pages = *got;

	/* ctl->pages: what the host unlocked, whatever else failed */
	if (coordinated && vmballoon_send(b, ctl))
		failed = true;
	if (coordinated && *got)
		vmballoon_trace_batch(ctl, t0, failed ? -EIO : 0);
	else if (ctl->n_pages)
		trace_vmw_balloon_refused(BALLOON_VMW_RESET, ctl->n_pages,
					  size == VMW_BALLOON_2M_PAGE,
					  VMW_BALLOON_ERROR_RESET);

	atomic64_sub((u64)ctl->n_pages * vmballoon_page_frames(size), &b->size);
	vmballoon_page_stat_add(b, VMW_BALLOON_PAGE_STAT_FREE, size,
				ctl->n_pages);
	vmballoon_free_list(&ctl->pages, size);
	vmballoon_enqueue(b, &ctl->refused, size);
	return failed;
}

/*
 * Shrink the balloon by @n_frames, or towards the target when @n_frames
 * is 0.  4 KiB pages go first.  @coordinated: ask the host to unlock each
 * page; otherwise (pop) just free them, the host has forgotten them.
 * Returns the number of frames given back to the guest.
 */
static u64 vmballoon_deflate(struct vmballoon *b, u64 n_frames,
			     bool coordinated)
{
	enum vmballoon_page_size size = VMW_BALLOON_4K_PAGE;
	unsigned int batch_max = coordinated ? vmballoon_batch_max(b) :
					       VMW_BALLOON_BATCH_MAX_PAGES;
	u64 tried = 0, freed = 0;
	struct vmballoon_ctl ctl;

	for (;;) {
		unsigned int frames = vmballoon_page_frames(size), want, got;
		s64 todo = vmballoon_deflate_todo(b, n_frames, tried);
		bool failed;

		if (todo <= 0 || (coordinated && READ_ONCE(b->reset_required)))
			break;
		/* Towards a target: no large page that would go below it. */
		if (n_frames || !READ_ONCE(b->target))
			todo = DIV_ROUND_UP_ULL(todo, frames);
		else
			todo = div_u64(todo, frames);
		if (!todo)
			break;
		want = min_t(u64, batch_max, todo);
		vmballoon_ctl_init(&ctl, size, false);
		failed = vmballoon_deflate_cmd(b, &ctl, want, coordinated, &got);
		tried += (u64)got * frames;
		freed += (u64)ctl.n_pages * frames;
		if (failed)
			break;
		if (got < want || ctl.n_pages < got) {
			if (size == VMW_BALLOON_2M_PAGE)
				break;
			size = VMW_BALLOON_2M_PAGE;
		}
		cond_resched();
	}
	return freed;
}

/*
 * Free every page without telling the host, which forgot them.  Pages
 * isolated for migration come back to the list shortly (the migration
 * callback fails while conf_sem is held for writing), so wait for them as
 * long as it takes: they are still ours, and a page given up for lost
 * would come back later to a balloon that no longer counts it, or no
 * longer exists.
 */
static void vmballoon_pop(struct vmballoon *b)
{
	unsigned long since = jiffies;
	u64 size;

	while ((size = atomic64_read(&b->size)) != 0) {
		if (vmballoon_deflate(b, size, false)) {
			since = jiffies;
			continue;
		}
		b->pop_waits++;
		if (time_after(jiffies, since + VMW_BALLOON_POP_WARN)) {
			pr_warn("still waiting for %llu frames under migration\n",
				size);
			since = jiffies;
		}
		usleep_range(100, 200);
	}
}

static void vmballoon_doorbell(void *client_data)
{
	struct vmballoon *b = client_data;

	atomic64_inc(&b->stats.gen[VMW_BALLOON_STAT_DOORBELL]);
	mod_delayed_work(system_freezable_wq, &b->dwork, 0);
}

static void vmballoon_vmci_cleanup(struct vmballoon *b)
{
	if (b->capabilities & VMW_BALLOON_SIGNALLED_WAKEUP_CMD)
		vmballoon_cmd_locked(b, VMW_BALLOON_CMD_VMCI_DOORBELL_SET,
				     VMW_DOORBELL_NONE, VMW_DOORBELL_NONE, NULL);
	vmw_doorbell_destroy(&b->doorbell);
}

/*
 * Let the host ring us when the target changes, if it offered to (it is
 * never asked to where the kernel has no VMCI doorbells).  On any failure
 * we keep polling once a second, which works as well, later.
 */
static void vmballoon_vmci_init(struct vmballoon *b)
{
	unsigned long status;
	int err;

	if (!(b->capabilities & VMW_BALLOON_SIGNALLED_WAKEUP_CMD))
		return;

	err = vmw_doorbell_create(&b->doorbell, vmballoon_doorbell, b);
	if (err) {
		pr_info("no VMCI doorbell (error %d); polling every second\n",
			err);
		return;
	}
	status = vmballoon_cmd_locked(b, VMW_BALLOON_CMD_VMCI_DOORBELL_SET,
				      vmw_doorbell_context(&b->doorbell),
				      vmw_doorbell_resource(&b->doorbell), NULL);
	if (status != VMW_BALLOON_SUCCESS) {
		pr_info("host did not take the VMCI doorbell (status %lu); polling every second\n",
			status);
		vmballoon_vmci_cleanup(b);
	}
}

/*
 * Set up the commands the host granted: batching needs the batch page,
 * 2 MiB pages need batching.  Without BASIC or BATCHED there is no way to
 * balloon at all.
 */
static bool vmballoon_setup_cmds(struct vmballoon *b)
{
	unsigned long caps = b->capabilities;

	if (caps & VMW_BALLOON_BATCHED_CMDS) {
		if (!b->batch_page)
			b->batch_page = (u64 *)get_zeroed_page(GFP_KERNEL);
		if (!b->batch_page)
			return false;
		b->batching = true;
	} else if (caps & VMW_BALLOON_BASIC_CMDS) {
		b->batching = false;
	} else {
		pr_warn_once("host granted neither basic nor batched commands (%#lx)\n",
			     caps);
		return false;
	}

	b->vain_credit = vmballoon_credit_max(b->batching);
	if (b->batching && (caps & VMW_BALLOON_BATCHED_2M_CMDS))
		b->max_page_size = VMW_BALLOON_2M_PAGE;
	else
		b->max_page_size = VMW_BALLOON_4K_PAGE;
	return true;
}

/*
 * (Re)start the protocol: the host forgot our pages (it sent RESET, or
 * this is the first contact), so free them all, then START, set up the
 * granted commands and say who we are.
 */
static void vmballoon_reset(struct vmballoon *b)
{
	down_write(&b->conf_sem);
	if (b->stopping)
		goto out;

	vmballoon_vmci_cleanup(b);
	vmballoon_pop(b);
	vmballoon_free_held(b);

	if (!vmballoon_send_start(b, VMW_BALLOON_CAPABILITIES)) {
		if (!b->host_silent)
			pr_info("the balloon host does not answer; retrying every second\n");
		b->host_silent = true;
		goto out;
	}
	b->host_silent = false;
	if (!vmballoon_setup_cmds(b)) {
		/* Tell the host we cannot work this way; try again later. */
		vmballoon_send_start(b, 0);
		goto out;
	}

	WRITE_ONCE(b->reset_required, false);
	vmballoon_vmci_init(b);
	if (vmballoon_cmd_locked(b, VMW_BALLOON_CMD_GUEST_ID,
				 VMW_BALLOON_GUEST_ID, 0, NULL))
		pr_err_ratelimited("host did not take the guest type\n");
	atomic64_inc(&b->stats.gen[VMW_BALLOON_STAT_RESET]);
out:
	up_write(&b->conf_sem);
}

/*
 * Set the balloon's state and tell waiters on a change (balloon_state.h):
 * poll() on status/state, and udev with a change uevent of the module
 * (the status directory is no device, and the module kset sends the
 * uevents of the module's own kobject only).
 */
static void vmballoon_state_set(struct vmballoon *b, enum balloon_state state,
				enum balloon_reason why)
{
	balloon_state_change(b->status_kobj, NULL, &THIS_MODULE->mkobj.kobj,
			     &b->status, state, why);
}

/*
 * The balloon's state after a tick in which inflation, if any, ended for
 * @why: reached (within the 2 MiB a deflation leaves), stuck short of
 * the target when the guest or the host holds it back, moving otherwise.
 * Returns what holds it back, as the status view says it: a round cut
 * short by the floor or the shrinker's hold is not one to poll soon after.
 */
static enum balloon_reason vmballoon_note_state(struct vmballoon *b,
						enum balloon_reason why)
{
	s64 size = atomic64_read(&b->size);
	s64 target = READ_ONCE(b->target);
	enum balloon_state state = BALLOON_STUCK;

	if (size == target ||
	    (target && size > target &&
	     size - target < vmballoon_page_frames(VMW_BALLOON_2M_PAGE)))
		state = BALLOON_REACHED;
	else if (READ_ONCE(b->reset_required) || size > target)
		state = BALLOON_MOVING;
	else if (time_before(jiffies, READ_ONCE(b->shrink_timeout)))
		why = BALLOON_PRESSURE_HOLD;
	else if (b->reserve_hit)
		why = BALLOON_FLOOR;
	else if (why == BALLOON_REASON_NONE)
		state = BALLOON_MOVING;
	vmballoon_state_set(b, state, why);
	return why;
}

/*
 * Once a second, sooner while the host takes pages (vmw_poll_policy.h),
 * or when the doorbell rings: follow the host's target.
 */
static void vmballoon_work(struct work_struct *work)
{
	struct vmballoon *b = container_of(to_delayed_work(work),
					   struct vmballoon, dwork);
	enum balloon_reason why = BALLOON_REASON_NONE;
	unsigned long delay;
	s64 change = 0;

	if (READ_ONCE(b->reset_required))
		vmballoon_reset(b);

	down_read(&b->conf_sem);
	if (b->stopping) {
		up_read(&b->conf_sem);
		return;
	}
	atomic64_inc(&b->stats.gen[VMW_BALLOON_STAT_TIMER]);
	vmballoon_credit_refill(&b->vain_credit, vmballoon_poll_refills(&b->poll),
				b->batching);
	if (!READ_ONCE(b->reset_required) && vmballoon_send_get_target(b))
		change = vmballoon_change(b);
	/* A new target: on the move until this tick says otherwise. */
	if (change && READ_ONCE(b->target_moved))
		vmballoon_state_set(b, BALLOON_MOVING, BALLOON_REASON_NONE);
	WRITE_ONCE(b->target_moved, false);
	if (change > 0)
		why = vmballoon_inflate(b);
	else
		vmballoon_free_held(b);
	if (change < 0)
		vmballoon_deflate(b, 0, true);
	why = vmballoon_note_state(b, why);
	delay = vmballoon_poll_delay(&b->poll, change > 0, why);
	up_read(&b->conf_sem);

	/* Freezable: no ballooning while the system suspends or resumes. */
	queue_delayed_work(system_freezable_wq, &b->dwork, delay);
}

/*
 * Shrinker: under memory pressure, give pages back to the guest (telling
 * the host) and hold off inflation for a while.
 */
static unsigned long vmballoon_shrinker_count(struct shrinker *s,
					      struct shrink_control *sc)
{
	struct vmballoon *b = shrinker_private(s);

	return atomic64_read(&b->size);
}

static unsigned long vmballoon_shrinker_scan(struct shrinker *s,
					     struct shrink_control *sc)
{
	struct vmballoon *b = shrinker_private(s);
	u64 freed;

	if (!down_read_trylock(&b->conf_sem))
		return SHRINK_STOP;

	freed = vmballoon_deflate(b, sc->nr_to_scan, true);
	atomic64_inc(&b->stats.gen[VMW_BALLOON_STAT_SHRINK]);
	atomic64_add(freed, &b->stats.gen[VMW_BALLOON_STAT_SHRINK_FREE]);
	WRITE_ONCE(b->shrink_timeout, jiffies + VMW_BALLOON_SHRINK_DELAY);

	up_read(&b->conf_sem);
	return freed;
}

static int vmballoon_shrinker_init(struct vmballoon *b)
{
	struct shrinker *s;

	if (!vmwballoon_shrinker_enable)
		return 0;
	s = shrinker_alloc(0, "vmw-balloon");
	if (!s)
		return -ENOMEM;
	s->count_objects = vmballoon_shrinker_count;
	s->scan_objects = vmballoon_shrinker_scan;
	shrinker_set_private(s, b);
	shrinker_register(s);
	b->shrinker = s;
	return 0;
}

#ifdef BALLOON_COMPAT_MIGRATION
/*
 * Lock or unlock a single 4 KiB page; true if the host did it.  Pages
 * under migration sit on the migration core's lists through page->lru, so
 * this must not touch it.
 */
static bool vmballoon_send_one(struct vmballoon *b, struct page *page,
			       bool inflate)
{
	unsigned long status, pfn = page_to_pfn(page);

	spin_lock(&b->comm_lock);
	if (b->batching) {
		b->batch_page[0] = (u64)pfn << PAGE_SHIFT;
		status = vmballoon_cmd(b, vmballoon_batch_cmd(VMW_BALLOON_4K_PAGE,
							      inflate),
				       PHYS_PFN(virt_to_phys(b->batch_page)), 1,
				       NULL);
		if (status == VMW_BALLOON_SUCCESS)
			status = b->batch_page[0] & VMW_BALLOON_ENTRY_STATUS;
	} else if (pfn > U32_MAX) {
		status = VMW_BALLOON_ERROR_PPN_INVALID;
	} else {
		status = vmballoon_cmd(b, inflate ? VMW_BALLOON_CMD_LOCK :
					   VMW_BALLOON_CMD_UNLOCK, pfn, 1, NULL);
	}
	spin_unlock(&b->comm_lock);

	return vmballoon_page_done(b, page, VMW_BALLOON_4K_PAGE, inflate,
				   status);
}

/*
 * Compaction moves a 4 KiB balloon page: the host unlocks the old page
 * and locks the new one.  The balloon lists are someone else's business
 * (compat/balloon.h or the core).  When the host unlocked the old page but
 * refuses the new one, the balloon simply became one page smaller.
 */
static int vmballoon_migratepage(struct balloon_dev_info *info,
				 struct page *newpage, struct page *page,
				 enum migrate_mode mode)
{
	struct vmballoon *b = container_of(info, struct vmballoon, b_dev_info);
	int ret = 0;

	/* A reset or the unload is under way: the page will be popped. */
	if (!down_read_trylock(&b->conf_sem)) {
		atomic_inc(&b->migrations_held);
		return -EAGAIN;
	}

	if (!vmballoon_send_one(b, page, false)) {
		ret = -EBUSY;
	} else if (!vmballoon_send_one(b, newpage, true)) {
		atomic64_dec(&b->size);
		vmballoon_page_stat_add(b, VMW_BALLOON_PAGE_STAT_FREE,
					VMW_BALLOON_4K_PAGE, 1);
		ret = -ENOENT;
	}

	up_read(&b->conf_sem);
	return ret;
}

#define vmballoon_migrate vmballoon_migratepage
#else
#define vmballoon_migrate NULL
#endif

static int __init vmballoon_init(void)
{
	struct vmballoon *b = &balloon;
	int err;

	/* Anywhere but on VMware the backdoor port means nothing. */
	if (!hypervisor_is_type(X86_HYPER_VMWARE))
		return -ENODEV;

	INIT_LIST_HEAD(&b->huge_pages);
	INIT_LIST_HEAD(&b->held);
	spin_lock_init(&b->huge_pages_lock);
	spin_lock_init(&b->comm_lock);
	init_rwsem(&b->conf_sem);
	INIT_DELAYED_WORK(&b->dwork, vmballoon_work);
	vmw_doorbell_init(&b->doorbell);
	b->reset_required = true;
	vmballoon_poll_init(&b->poll);
	b->shrink_timeout = jiffies;

	err = balloon_compat_init(&b->b_dev_info, vmballoon_migrate, false);
	if (err)
		return err;

	err = vmballoon_shrinker_init(b);
	if (err) {
		balloon_compat_exit(&b->b_dev_info);
		return err;
	}

	vmballoon_status_init(b);

	queue_delayed_work(system_freezable_wq, &b->dwork, 0);
	return 0;
}
module_init(vmballoon_init);

/*
 * Unload: stop all activity, tell the host we are leaving (START with no
 * capabilities makes it forget our pages), and free every page.
 *
 * The doorbell can queue the work at any time until it is destroyed, and
 * the work, if a reset is due, creates a doorbell.  So "stopping" is set
 * under conf_sem held for writing, in the same section that destroys the
 * doorbell: a work that runs later sees it and neither resets (no new
 * doorbell) nor requeues itself; one that ran before has finished, since
 * it holds conf_sem, and any doorbell it made is the one destroyed here.
 * vmw_doorbell_destroy() returns once no callback of it is running or
 * queued, so after it nothing can queue the work, and the cancel below
 * is the last one needed.
 */
static void __exit vmballoon_exit(void)
{
	struct vmballoon *b = &balloon;

	shrinker_free(b->shrinker);

	down_write(&b->conf_sem);
	b->stopping = true;
	vmballoon_vmci_cleanup(b);
	up_write(&b->conf_sem);

	cancel_delayed_work_sync(&b->dwork);
	vmballoon_status_exit(b);

	down_write(&b->conf_sem);
	vmballoon_send_start(b, 0);
	vmballoon_pop(b);
	vmballoon_free_held(b);
	up_write(&b->conf_sem);
	pr_debug("unloaded: %d migrations turned away during resets and the unload, %lu waits for pages under migration\n",
		 atomic_read(&b->migrations_held), b->pop_waits);

	balloon_compat_exit(&b->b_dev_info);
	free_page((unsigned long)b->batch_page);
	b->batch_page = NULL;
}
module_exit(vmballoon_exit);
