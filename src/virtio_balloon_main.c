// SPDX-License-Identifier: GPL-2.0
/*
 * Virtio memory balloon driver (balloon-dkms).
 *
 * The host sets a target in the device configuration (num_pages, in 4 KiB
 * units).  We take pages away from the guest ("inflate") or give them back
 * ("deflate") until the balloon holds that many, telling the host the page
 * frame numbers over the inflate and deflate queues, and report progress in
 * the configuration field "actual".  Optional features: memory statistics,
 * deflation when the guest runs out of memory, free page hints for live
 * migration, free page reporting and page poisoning.
 *
 * Beyond the kernel's own driver: inflation takes 2 MiB blocks first and
 * talks to the host in batches (alloc_policy.h), the balloon gives memory
 * back under pressure when the host allows it (pressure_policy.h), and
 * the floor the guest keeps is a module parameter (floor_mb).
 *
 * The host is not trusted: a target larger than the guest can give is
 * pursued only as far as the floor allows, a device that breaks (surprise
 * removal) does not hang us, and every page comes back on removal.  A
 * live host that never hands a request back does stall the balloon, as
 * with the kernel's own driver: the request's frames are in use until it
 * does, so there is nothing safe to give up on.
 *
 * Kernel API differences (5.10 to 7.2) live in compat/.
 */
/* Our own messages (bad module parameters) say whose they are. */
#define pr_fmt(fmt) "balloon-dkms: " KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/memory.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/page_reporting.h>
#include <linux/pm_wakeup.h>
#include <linux/poison.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/swap.h>
#include <linux/virtio.h>
#include <linux/virtio_balloon.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/vmstat.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "compat/compat.h"
#include "compat/balloon.h"
#include "compat/reclaim.h"
#include "compat/shrinker.h"
#include "compat/slab.h"
#include "compat/virtio.h"
#include "alloc_policy.h"
#include "floor_policy.h"
#include "host_page_runs.h"
#include "pressure_policy.h"
#include "request_shape.h"
#include "zone_guard.h"
#include "virtio_balloon.h"

#define BALLOON_TRACE_VIRTIO
#define CREATE_TRACE_POINTS
#include "balloon_trace.h"

/* Retry delays when the target cannot be reached now. */
#define VB_RETRY_MIN_MS		200
#define VB_RETRY_MAX_MS		10000
/* Every page left is isolated for migration: look again next tick. */
#define VB_MIGRATION_WAIT	1

/* The floor the guest keeps (floor_policy.h): floor_mb. */
BALLOON_FLOOR_PARAM();

static unsigned int request_frames;

static int request_frames_set(const char *val, const struct kernel_param *kp)
{
	unsigned int n;

	if (kstrtouint(val, 0, &n) || (n && n != VB_REQ_SHORT && n != VB_REQ_LONG)) {
		pr_err("request_frames must be 0 (by transport), %u or %u, not '%s'\n",
		       VB_REQ_SHORT, VB_REQ_LONG, strim((char *)val));
		return -EINVAL;
	}
	WRITE_ONCE(request_frames, n);
	return 0;
}

static const struct kernel_param_ops request_frames_ops = {
	.set = request_frames_set,
	.get = param_get_uint,
};
module_param_cb(request_frames, &request_frames_ops, &request_frames, 0444);
MODULE_PARM_DESC(request_frames,
		 "frames per request: 0 = by transport (512 on PCI, a 2 MiB block whole; 256 elsewhere), 256 or 512");

static const struct virtio_device_id id_table[] = {
	{ VIRTIO_ID_BALLOON, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

/*
 * A host event (@why) is about to queue work: keep the system awake
 * until that work has handled it.  Called before queueing, under the
 * lock that orders events, so the work can never miss the event's
 * sequence number.
 */
static void vb_stay_awake(struct virtio_balloon *vb, unsigned int why)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->wakeup_lock, flags);
	if (!vb->wakeup_pending)
		__pm_stay_awake(vb->ws);
	vb->wakeup_pending |= BIT(why);
	vb->wakeup_seq[why]++;
	spin_unlock_irqrestore(&vb->wakeup_lock, flags);
}

/* What work has seen of the events for @why, read as it starts. */
static unsigned long vb_awake_seq(struct virtio_balloon *vb, unsigned int why)
{
	unsigned long flags, seq;

	spin_lock_irqsave(&vb->wakeup_lock, flags);
	seq = vb->wakeup_seq[why];
	spin_unlock_irqrestore(&vb->wakeup_lock, flags);
	return seq;
}

/*
 * Work for @why has handled every event up to @seq.  An event that came
 * after that has queued the work again, which holds the system awake in
 * its turn: only relax when no event came.
 */
static void vb_relax(struct virtio_balloon *vb, unsigned int why,
		     unsigned long seq)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->wakeup_lock, flags);
	if ((vb->wakeup_pending & BIT(why)) && vb->wakeup_seq[why] == seq) {
		vb->wakeup_pending &= ~BIT(why);
		if (!vb->wakeup_pending)
			__pm_relax(vb->ws);
	}
	spin_unlock_irqrestore(&vb->wakeup_lock, flags);
}

/* No work will run any more: nothing keeps the system awake. */
static void vb_relax_all(struct virtio_balloon *vb)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->wakeup_lock, flags);
	if (vb->wakeup_pending)
		__pm_relax(vb->ws);
	vb->wakeup_pending = 0;
	spin_unlock_irqrestore(&vb->wakeup_lock, flags);
}

static void balloon_ack(struct virtqueue *vq)
{
	struct virtio_balloon *vb = vq->vdev->priv;

	wake_up(&vb->acked);
}

/* Count the requests the host has handed back; true once none is left. */
static bool vb_reap(struct virtqueue *vq, unsigned int *left)
{
	unsigned int len;

	while (*left && virtqueue_get_buf(vq, &len))
		(*left)--;
	return !*left;
}

/*
 * Hand the host the first @nr frames of vb->pfns, in requests of at most
 * vb->req_frames (blocks come first, so each lands whole in one request
 * when a request holds a block), with one notification, and wait until it has taken
 * them all.  All or nothing: the requests are queued only when the ring
 * has room for every one of them (each is one descriptor: indirect ones
 * are off), so only a device that breaks on the way can take part of
 * them.  Returns 0 when the host took them all; -EIO when the device
 * broke (surprise removal: nobody is left to tell, so a deflation
 * carries on as if told, and nobody takes the pages of an inflation);
 * -ENOSPC when the ring had no room and the host was not told.
 */
static int tell_host(struct virtio_balloon *vb, struct virtqueue *vq,
		     unsigned int nr)
{
	unsigned int off, len, queued = 0;
	struct scatterlist sg;
	int err = 0;

	if (vq->num_free < DIV_ROUND_UP(nr, vb->req_frames)) {
		err = virtqueue_is_broken(vq) ? -EIO : -ENOSPC;
		dev_err_ratelimited(&vb->vdev->dev, "no room to queue %u frames: %d\n",
				    nr, err);
		WRITE_ONCE(vb->last_error, err);
		return err;
	}
	for (off = 0; off < nr; off += len) {
		len = min_t(unsigned int, nr - off, vb->req_frames);
		sg_init_one(&sg, vb->pfns + off, sizeof(vb->pfns[0]) * len);
		err = virtqueue_add_outbuf(vq, &sg, 1, vb->pfns + off, GFP_KERNEL);
		if (err)
			break;
		queued++;
		vb->request_max = max(vb->request_max, len);
	}
	if (err) {
		/* Only a broken ring refuses a request it has room for. */
		dev_err_ratelimited(&vb->vdev->dev, "cannot queue %u frames: %d\n",
				    nr - off, err);
		WRITE_ONCE(vb->last_error, -EIO);
		if (!queued)
			return -EIO;
	}

	vb->requests += queued;
	vb->kicks++;
	virtqueue_kick(vq);
	while (!wait_event_timeout(vb->acked, vb_reap(vq, &queued), HZ)) {
		if (virtqueue_is_broken(vq)) {
			dev_warn_once(&vb->vdev->dev, "device stopped answering\n");
			WRITE_ONCE(vb->last_error, -EIO);
			return -EIO;
		}
	}
	return err ? -EIO : 0;
}

static void set_page_pfns(struct virtio_balloon *vb, __virtio32 pfns[],
			  struct page *page, unsigned int frames)
{
	unsigned long frame = page_to_pfn(page) * VB_FRAMES_PER_PAGE;
	unsigned int i;

	for (i = 0; i < frames; i++)
		pfns[i] = cpu_to_virtio32(vb->vdev, frame + i);
}

/* Write the frames of every page on @pages into vb->pfns from @at on. */
static unsigned int list_pfns(struct virtio_balloon *vb, struct list_head *pages,
			      unsigned int frames, unsigned int at)
{
	struct page *page;

	list_for_each_entry(page, pages, lru) {
		set_page_pfns(vb, vb->pfns + at, page, frames);
		at += frames;
	}
	return at;
}

/*
 * The @n frames of single pages at vb->pfns + @at: whole 2 MiB runs
 * first, where a request holds one (host_page_runs.h).
 */
static void pfns_runs_first(struct virtio_balloon *vb, unsigned int at,
			    unsigned int n)
{
	u32 *raw = (u32 __force *)(vb->pfns + at);
	unsigned int i;

	if (vb->req_frames < VB_BLOCK_FRAMES || n < VB_BLOCK_FRAMES)
		return;
	for (i = 0; i < n; i++)
		raw[i] = virtio32_to_cpu(vb->vdev, vb->pfns[at + i]);
	vb_host_page_runs_first(raw, n);
	for (i = 0; i < n; i++)
		vb->pfns[at + i] = cpu_to_virtio32(vb->vdev, raw[i]);
}

static void free_page_list(struct list_head *pages, bool blocks)
{
	struct page *page, *next;

	list_for_each_entry_safe(page, next, pages, lru) {
		list_del(&page->lru);
		if (blocks)
			vb_block_free(page);
		else
			put_page(page);
	}
}

/* Free blocks allocated (and marked) for an inflation that did not happen. */
void free_new_blocks(struct list_head *blocks)
{
	struct page *page;

	list_for_each_entry(page, blocks, lru)
		balloon_compat_block_unmark(page, VB_BLOCK_ORDER);
	free_page_list(blocks, true);
}

/* The floor in pages: the parameter if set, else the probe-time default. */
unsigned long vb_floor(struct virtio_balloon *vb)
{
	return balloon_floor_pages(&floor_mb, vb->reserve);
}

/*
 * Pages we may still take without going below the floor.  MemAvailable
 * counts what reclaim can free as well, so the balloon may push out
 * caches but never the guest's working memory.  No floor: as much as
 * the allocator will give.
 */
static unsigned long inflate_headroom(struct virtio_balloon *vb)
{
	unsigned long floor = vb_floor(vb);
	long avail;

	if (!floor)
		return ULONG_MAX;
	avail = si_mem_available();
	return avail > floor ? avail - floor : 0;
}

/*
 * Pages for up to @num frames onto @list: whole blocks (@blocks) while the
 * allocator has them free and the zone guard lets us keep them, else
 * movable single pages.  Returns the frames got.
 */
static unsigned int alloc_pages_for(struct list_head *list, size_t num, bool blocks)
{
	unsigned int got = 0, step = blocks ? VB_BLOCK_FRAMES : VB_FRAMES_PER_PAGE;
	struct page *page;

	while (num - got >= step) {
		page = blocks ? vb_block_alloc() : balloon_page_alloc();
		if (!page)
			break;
		if (blocks && !balloon_zone_may_keep(page)) {
			vb_block_free(page);
			break;
		}
		if (blocks)
			balloon_compat_block_mark(page, VB_BLOCK_ORDER);
		list_add_tail(&page->lru, list);
		got += step;
	}
	return got;
}

/*
 * Hand the host the @nblocks blocks on @blocks and the pages on @pages,
 * @got frames in all, and put them into the balloon; unless memory was
 * given back under pressure since @given was read (-EAGAIN) or the host
 * did not take them (0): then they go back to the allocator.
 */
static int inflate_lists(struct virtio_balloon *vb, struct list_head *blocks,
			 unsigned int nblocks, struct list_head *pages,
			 unsigned int got, unsigned long given, u64 t0)
{
	unsigned int at, gone;
	struct page *page;
	int err;

	mutex_lock(&vb->balloon_lock);
	if (vb->pressure.events != given) {
		/* The guest needed memory while we took it: let it have it. */
		mutex_unlock(&vb->balloon_lock);
		free_new_blocks(blocks);
		free_page_list(pages, false);
		return -EAGAIN;
	}
	/* Blocks whose memory is going offline now stay out of the balloon. */
	gone = blocks_going_offline(vb, blocks);
	nblocks -= gone;
	got -= gone * VB_BLOCK_FRAMES;
	if (!got) {
		mutex_unlock(&vb->balloon_lock);
		return 0;
	}
	at = list_pfns(vb, blocks, VB_BLOCK_FRAMES, 0);
	list_pfns(vb, pages, VB_FRAMES_PER_PAGE, at);
	pfns_runs_first(vb, at, got - at);
	err = tell_host(vb, vb->inflate_vq, got);
	if (err)
		vb->short_of = BALLOON_HOST_REFUSED;
	trace_virtio_balloon_batch(true, got - nblocks * VB_BLOCK_FRAMES,
				   nblocks * VB_BLOCK_FRAMES, ktime_get_ns() - t0, err);
	if (err) {
		/*
		 * The host did not take them, or the device broke and nobody
		 * will (what a broken device took before, it gets no more
		 * use of): they stay the guest's, and actual stays what the
		 * host has.
		 */
		mutex_unlock(&vb->balloon_lock);
		free_new_blocks(blocks);
		free_page_list(pages, false);
		return 0;
	}
	list_for_each_entry(page, blocks, lru)
		balloon_compat_block_insert(page, VB_BLOCK_ORDER);
	list_splice_tail(blocks, &vb->blocks);
	vb->num_blocks += nblocks;
	balloon_compat_list_enqueue(&vb->vb_dev_info, pages);
	vb->num_pages += got;
	mutex_unlock(&vb->balloon_lock);
	return got;
}

/*
 * Inflate by up to @num frames (at most one batch): movable single pages
 * while a movable zone has them to spare, then whole blocks while @num
 * has room for one and the zone guard allows (zone_guard.h), single
 * pages for the rest.  Returns how many frames went into the balloon, or
 * -EAGAIN when memory was given back under pressure meanwhile (the
 * pressure hold applies: nothing goes in).
 */
static int fill_balloon(struct virtio_balloon *vb, size_t num)
{
	unsigned long given = READ_ONCE(vb->pressure.events);
	u64 t0 = ktime_get_ns(), room;
	unsigned int got, nblocks;
	LIST_HEAD(blocks);
	LIST_HEAD(pages);

	num = min_t(size_t, num, vb->batch_max);
	room = inflate_headroom(vb) * (u64)VB_FRAMES_PER_PAGE;
	/* Why the batch may fall short: the floor, or no memory free. */
	vb->short_of = room < num ? BALLOON_FLOOR : BALLOON_NO_MEMORY;
	num = min_t(u64, num, room);

	WRITE_ONCE(vb->filler, current);
	got = alloc_pages_for(&pages, min_t(u64, num,
					    balloon_movable_spare() * (u64)VB_FRAMES_PER_PAGE),
			      false);
	nblocks = alloc_pages_for(&blocks, num - got, true) / VB_BLOCK_FRAMES;
	got += nblocks * VB_BLOCK_FRAMES;
	got += alloc_pages_for(&pages, num - got, false);
	WRITE_ONCE(vb->filler, NULL);
	if (!got)
		return 0;

	return inflate_lists(vb, &blocks, nblocks, &pages, got, given, t0);
}

/*
 * Tell the host that the @nblocks blocks on @blocks and the pages on
 * @pages, @frames frames in all, leave the balloon, and free them; the
 * caller holds balloon_lock.  When the host could not be told, they go
 * back into the balloon.  Returns the frames that left it.
 */
unsigned int release_lists(struct virtio_balloon *vb, struct list_head *blocks,
			   unsigned int nblocks, struct list_head *pages,
			   unsigned int frames)
{
	u64 t0 = ktime_get_ns();
	struct page *page;
	unsigned int at;
	int err;

	/*
	 * With VIRTIO_BALLOON_F_MUST_TELL_HOST the host must hear about the
	 * pages before the guest uses them again; we always do it that way.
	 */
	at = list_pfns(vb, blocks, VB_BLOCK_FRAMES, 0);
	list_pfns(vb, pages, VB_FRAMES_PER_PAGE, at);
	err = tell_host(vb, vb->deflate_vq, frames);
	trace_virtio_balloon_batch(false, frames - nblocks * VB_BLOCK_FRAMES,
				   nblocks * VB_BLOCK_FRAMES, ktime_get_ns() - t0, err);
	if (err && err != -EIO) {
		/* Not told: the pages stay in the balloon. */
		list_splice(blocks, &vb->blocks);
		balloon_compat_list_enqueue(&vb->vb_dev_info, pages);
		return 0;
	}
	vb->num_blocks -= nblocks;
	vb->num_pages -= frames;
	list_for_each_entry(page, blocks, lru)
		balloon_compat_block_remove(page, VB_BLOCK_ORDER);
	free_page_list(blocks, true);
	free_page_list(pages, false);
	return frames;
}

/*
 * The balloon holds only blocks and less than one is to go: turn one
 * into single balloon pages (the host keeps every frame of it), so that
 * the deflation gives back what was asked and no more.
 */
static void split_one_block(struct virtio_balloon *vb)
{
	struct page *page = list_first_entry(&vb->blocks, struct page, lru);
	unsigned int i;
	LIST_HEAD(pages);

	list_del(&page->lru);
	vb->num_blocks--;
	balloon_compat_block_remove(page, VB_BLOCK_ORDER);
	split_page(page, VB_BLOCK_ORDER);
	for (i = 0; i < BIT(VB_BLOCK_ORDER); i++)
		list_add_tail(&page[i].lru, &pages);
	balloon_compat_list_enqueue(&vb->vb_dev_info, &pages);
}

/*
 * Deflate by up to @num frames (at most one batch); the caller holds
 * balloon_lock.  Whole blocks go first, while @num has room for one;
 * then single pages.  Returns how many frames left the balloon.
 */
unsigned int __leak_balloon(struct virtio_balloon *vb, size_t num)
{
	unsigned int freed = 0, nblocks = 0, npages;
	struct page *page, *next;
	LIST_HEAD(blocks);
	LIST_HEAD(pages);

	num = min_t(size_t, num, vb->batch_max);
	num = min_t(size_t, num, vb->num_pages);

	list_for_each_entry_safe(page, next, &vb->blocks, lru) {
		if (num - freed < VB_BLOCK_FRAMES)
			break;
		list_move_tail(&page->lru, &blocks);
		freed += VB_BLOCK_FRAMES;
		nblocks++;
	}
	if (!freed && num >= VB_FRAMES_PER_PAGE && !list_empty(&vb->blocks) &&
	    vb->num_pages - vb->num_blocks * VB_BLOCK_FRAMES < num)
		split_one_block(vb);
	/* Pages isolated for migration come back later; take the others. */
	npages = balloon_compat_list_dequeue(&vb->vb_dev_info, &pages,
					     (num - freed) / VB_FRAMES_PER_PAGE);
	freed += npages * VB_FRAMES_PER_PAGE;
	if (!freed)
		return 0;
	return release_lists(vb, &blocks, nblocks, &pages, freed);
}

static unsigned int leak_balloon(struct virtio_balloon *vb, size_t num)
{
	unsigned int freed;

	mutex_lock(&vb->balloon_lock);
	freed = __leak_balloon(vb, num);
	mutex_unlock(&vb->balloon_lock);
	return freed;
}

void update_balloon_size(struct virtio_balloon *vb)
{
	u32 actual = READ_ONCE(vb->num_pages);

	/* The balloon's config space is little-endian even for legacy devices. */
	virtio_cwrite_le(vb->vdev, struct virtio_balloon_config, actual, &actual);
}

/*
 * Read the host's target, noting a change, and return the frames to add
 * (positive) or remove (negative) to meet it.
 */
static s64 update_target(struct virtio_balloon *vb)
{
	u32 target;

	virtio_cread_le(vb->vdev, struct virtio_balloon_config, num_pages, &target);
	if (target != vb->target) {
		trace_virtio_balloon_target(vb->target, target, BALLOON_SOURCE_HOST);
		vb->target = target;
	}
	/* Whole pages only, or we would inflate and deflate the rest forever. */
	return (s64)ALIGN((u64)target, VB_FRAMES_PER_PAGE) - vb->num_pages;
}

/* The target is out of reach for now: say so once and back off. */
static unsigned long back_off(struct virtio_balloon *vb, s64 missing)
{
	if (!vb->out_of_puff) {
		dev_info_ratelimited(&vb->vdev->dev,
				     "Out of puff! Balloon holds %u frames, %lld short of the target; the guest keeps the rest, retrying\n",
				     vb->num_pages, missing);
		vb->out_of_puff = true;
	}
	vb->retry_ms = clamp_t(unsigned int, vb->retry_ms * 2, VB_RETRY_MIN_MS,
			       VB_RETRY_MAX_MS);
	trace_virtio_balloon_backoff(vb->num_pages, missing, vb->retry_ms);
	return msecs_to_jiffies(vb->retry_ms);
}

/*
 * One step towards the target: a batch in or out.  Returns the frames
 * still missing afterwards (positive: to inflate); sets *delay to when
 * the next step may run.
 */
static s64 size_step(struct virtio_balloon *vb, s64 diff, unsigned long *delay)
{
	unsigned int want;
	int done;

	if (diff < 0) {
		done = leak_balloon(vb, -diff);
		if (!done)
			*delay = VB_MIGRATION_WAIT;
		return diff + done;
	}
	*delay = pressure_hold(vb);
	if (*delay) {
		trace_virtio_balloon_backoff(vb->num_pages, diff, jiffies_to_msecs(*delay));
		return diff;
	}
	want = min_t(s64, diff, vb->batch);
	done = fill_balloon(vb, want);
	if (done == -EAGAIN) {
		/* Given back meanwhile: the hold starts now. */
		*delay = pressure_hold(vb) ?: VB_MIGRATION_WAIT;
		return diff;
	}
	if (done < want) {
		*delay = back_off(vb, diff - done);
	} else {
		vb->retry_ms = 0;
		vb->batch = vb_batch_next(vb->batch, vb->batch_max);
	}
	return diff - done;
}

/* The balloon's state after a step that left @diff frames to go. */
static void note_state(struct virtio_balloon *vb, s64 diff, unsigned long delay)
{
	enum balloon_state state = BALLOON_MOVING;
	enum balloon_reason why = vb->short_of;

	if (!diff)
		state = BALLOON_REACHED;
	else if (diff > 0 && vb_pressure_left(&vb->pressure))
		why = BALLOON_PRESSURE_HOLD, state = BALLOON_STUCK;
	else if (delay > VB_MIGRATION_WAIT)
		state = BALLOON_STUCK;
	balloon_state_set(&vb->vdev->dev, "balloon", &vb->status, state, why);
}

static void size_work_func(struct work_struct *work)
{
	struct virtio_balloon *vb = container_of(to_delayed_work(work),
						 struct virtio_balloon, size_work);
	unsigned long seq = vb_awake_seq(vb, VB_WAKE_SIZE);
	unsigned long delay = 0;
	s64 diff;

	diff = update_target(vb);
	if (diff > 0 && virtqueue_is_broken(vb->inflate_vq)) {
		/* Nobody takes memory from a broken device: nothing to do. */
		vb_relax(vb, VB_WAKE_SIZE, seq);
		return;
	}
	if (diff)
		diff = size_step(vb, diff, &delay);
	update_balloon_size(vb);
	note_state(vb, diff, delay);

	if (!diff) {
		vb->out_of_puff = false;
		vb->retry_ms = 0;
		vb->batch = VB_BATCH_FIRST;
		vb_relax(vb, VB_WAKE_SIZE, seq);
		return;
	}
	/* Waiting for memory is no reason to keep the system awake. */
	if (delay > VB_MIGRATION_WAIT)
		vb_relax(vb, VB_WAKE_SIZE, seq);
	/*
	 * Work that must go on now overrides a later run queued meanwhile
	 * (a pressure hold delays inflation only); a retry after a delay
	 * leaves an earlier run (a new target) as it is.
	 */
	if (delay <= VB_MIGRATION_WAIT)
		mod_delayed_work(system_freezable_wq, &vb->size_work, delay);
	else
		queue_delayed_work(system_freezable_wq, &vb->size_work, delay);
}

static void update_stat(struct virtio_balloon *vb, unsigned int *idx,
			u16 tag, u64 val)
{
	if (WARN_ON_ONCE(*idx >= ARRAY_SIZE(vb->stats)))
		return;
	vb->stats[*idx].tag = cpu_to_virtio16(vb->vdev, tag);
	vb->stats[*idx].val = cpu_to_virtio64(vb->vdev, val);
	(*idx)++;
}

#define pages_to_bytes(x) ((u64)(x) << PAGE_SHIFT)

#ifdef CONFIG_VM_EVENT_COUNTERS
static void update_event_stats(struct virtio_balloon *vb, unsigned int *idx)
{
	unsigned long *ev = vb->events;

	all_vm_events(ev);
	update_stat(vb, idx, VIRTIO_BALLOON_S_SWAP_IN, pages_to_bytes(ev[PSWPIN]));
	update_stat(vb, idx, VIRTIO_BALLOON_S_SWAP_OUT, pages_to_bytes(ev[PSWPOUT]));
	update_stat(vb, idx, VIRTIO_BALLOON_S_MAJFLT, ev[PGMAJFAULT]);
	update_stat(vb, idx, VIRTIO_BALLOON_S_MINFLT, ev[PGFAULT]);
#ifdef CONFIG_HUGETLB_PAGE
	update_stat(vb, idx, VIRTIO_BALLOON_S_HTLB_PGALLOC, ev[HTLB_BUDDY_PGALLOC]);
	update_stat(vb, idx, VIRTIO_BALLOON_S_HTLB_PGFAIL, ev[HTLB_BUDDY_PGALLOC_FAIL]);
#endif
	update_stat(vb, idx, VIRTIO_BALLOON_S_OOM_KILL, ev[OOM_KILL]);
	update_stat(vb, idx, VIRTIO_BALLOON_S_ALLOC_STALL, balloon_alloc_stalls(ev));
	update_stat(vb, idx, VIRTIO_BALLOON_S_ASYNC_SCAN,
		    pages_to_bytes(balloon_reclaim_stat(ev, PGSCAN_KSWAPD)));
	update_stat(vb, idx, VIRTIO_BALLOON_S_DIRECT_SCAN,
		    pages_to_bytes(balloon_reclaim_stat(ev, PGSCAN_DIRECT)));
	update_stat(vb, idx, VIRTIO_BALLOON_S_ASYNC_RECLAIM,
		    pages_to_bytes(balloon_reclaim_stat(ev, PGSTEAL_KSWAPD)));
	update_stat(vb, idx, VIRTIO_BALLOON_S_DIRECT_RECLAIM,
		    pages_to_bytes(balloon_reclaim_stat(ev, PGSTEAL_DIRECT)));
}
#else
static void update_event_stats(struct virtio_balloon *vb, unsigned int *idx)
{
}
#endif

/* Fill vb->stats; returns the number of entries. */
static unsigned int update_balloon_stats(struct virtio_balloon *vb)
{
	unsigned int idx = 0;
	struct sysinfo si;

	update_event_stats(vb, &idx);

	si_meminfo(&si);
	update_stat(vb, &idx, VIRTIO_BALLOON_S_MEMFREE, pages_to_bytes(si.freeram));
	update_stat(vb, &idx, VIRTIO_BALLOON_S_MEMTOT, pages_to_bytes(si.totalram));
	update_stat(vb, &idx, VIRTIO_BALLOON_S_AVAIL,
		    pages_to_bytes(max_t(long, si_mem_available(), 0)));
	update_stat(vb, &idx, VIRTIO_BALLOON_S_CACHES,
		    pages_to_bytes(global_node_page_state(NR_FILE_PAGES)));
	return idx;
}

static int send_stats(struct virtio_balloon *vb)
{
	struct scatterlist sg;
	unsigned int num;
	int err;

	num = update_balloon_stats(vb);
	WRITE_ONCE(vb->num_stats, num);
	trace_virtio_balloon_stats(num);
	sg_init_one(&sg, vb->stats, sizeof(vb->stats[0]) * num);
	err = virtqueue_add_outbuf(vb->stats_vq, &sg, 1, vb, GFP_KERNEL);
	if (!err)
		virtqueue_kick(vb->stats_vq);
	return err;
}

/*
 * The host asks for statistics by handing back the buffer we gave it;
 * answer with a fresh one.
 */
static void stats_work_func(struct work_struct *work)
{
	struct virtio_balloon *vb = container_of(work, struct virtio_balloon,
						 stats_work);
	unsigned long seq = vb_awake_seq(vb, VB_WAKE_STATS);
	unsigned int len;

	if (virtqueue_get_buf(vb->stats_vq, &len))
		send_stats(vb);
	vb_relax(vb, VB_WAKE_STATS, seq);
}

static void stats_request(struct virtqueue *vq)
{
	struct virtio_balloon *vb = vq->vdev->priv;

	spin_lock(&vb->stop_update_lock);
	if (!vb->stop_update) {
		vb_stay_awake(vb, VB_WAKE_STATS);
		queue_work(system_freezable_wq, &vb->stats_work);
	}
	spin_unlock(&vb->stop_update_lock);
}

/* Move towards the target now, ahead of any retry delay. */
void vb_follow_target(struct virtio_balloon *vb)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->stop_update_lock, flags);
	if (!vb->stop_update) {
		vb_stay_awake(vb, VB_WAKE_SIZE);
		mod_delayed_work(system_freezable_wq, &vb->size_work, 0);
	}
	spin_unlock_irqrestore(&vb->stop_update_lock, flags);
}

static void virtballoon_changed(struct virtio_device *vdev)
{
	struct virtio_balloon *vb = vdev->priv;
	unsigned long flags;

	vb_follow_target(vb);
	spin_lock_irqsave(&vb->stop_update_lock, flags);
	if (!vb->stop_update) {
		if (vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT)) {
			set_bit(0, &vb->hint_id_stale);
			queue_work(vb->hint_wq, &vb->hint_work);
		}
	}
	spin_unlock_irqrestore(&vb->stop_update_lock, flags);
}

static int virtballoon_free_page_report(struct page_reporting_dev_info *pr,
					struct scatterlist *sg, unsigned int nents)
{
	struct virtio_balloon *vb = container_of(pr, struct virtio_balloon,
						 pr_dev_info);
	struct virtqueue *vq = vb->reporting_vq;
	unsigned int len;
	int err;

	/*
	 * The core sends one report at a time, sized to fit the ring: only
	 * a broken device (surprise removal) refuses it.
	 */
	err = virtqueue_add_inbuf(vq, sg, nents, vb, GFP_NOWAIT | __GFP_NOWARN);
	if (err) {
		WARN_ON_ONCE(!virtqueue_is_broken(vq));
		return err;
	}
	virtqueue_kick(vq);

	while (!wait_event_timeout(vb->acked, virtqueue_get_buf(vq, &len), HZ)) {
		if (virtqueue_is_broken(vq))
			return -EIO;
	}
	WRITE_ONCE(vb->reports, vb->reports + 1);
	return 0;
}

static void reporting_start(struct virtio_balloon *vb)
{
	struct device *dev = &vb->vdev->dev;
	int order = -1;
	int err;

	if (!vb_has(vb, VIRTIO_BALLOON_F_REPORTING))
		return;
	/*
	 * With 64 KiB pages a pageblock is 512 MiB, rarely free as a
	 * whole; report 2 MiB blocks instead, what a 4 KiB host can use.
	 */
	if (IS_ENABLED(CONFIG_ARM64) && PAGE_SIZE == SZ_64K)
		order = 5;

	vb->pr_dev_info.report = virtballoon_free_page_report;
	err = compat_page_reporting_limits(&vb->pr_dev_info,
					   virtqueue_get_vring_size(vb->reporting_vq),
					   order);
	if (!err)
		err = page_reporting_register(&vb->pr_dev_info);
	/* Reporting is an optimisation: the balloon works without it. */
	if (err) {
		dev_warn(dev, "free page reporting unavailable: %d\n", err);
		return;
	}
	vb->reporting = true;
}

static void reporting_stop(struct virtio_balloon *vb)
{
	if (vb->reporting)
		page_reporting_unregister(&vb->pr_dev_info);
	vb->reporting = false;
}

/* Frames vb->pfns holds. */
static unsigned int pfns_capacity(struct virtio_balloon *vb)
{
	return (PAGE_SIZE << vb->pfns_order) / sizeof(vb->pfns[0]);
}

/*
 * The frame array of a full batch, 16 KiB, or less where memory is
 * fragmented at probe time: the batches are then smaller.  One block's
 * frames always fit (a page holds 1024 of them).
 */
static int alloc_pfns(struct virtio_balloon *vb)
{
	unsigned int order = get_order(VB_BATCH_MAX * sizeof(vb->pfns[0]));
	gfp_t gfp = GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN;

	for (;; order--) {
		vb->pfns = (__virtio32 *)__get_free_pages(order ? gfp : GFP_KERNEL, order);
		if (vb->pfns || !order)
			break;
	}
	vb->pfns_order = order;
	BUILD_BUG_ON(PAGE_SIZE / sizeof(vb->pfns[0]) < VB_BLOCK_FRAMES);
	return vb->pfns ? 0 : -ENOMEM;
}

static int init_vqs(struct virtio_balloon *vb)
{
	struct virtqueue_info info[VB_VQ_MAX] = {};
	struct virtqueue *vqs[VB_VQ_MAX];
	int err;

	/* A queue without a name is not created and takes no index. */
	info[VB_VQ_INFLATE].name = "inflate";
	info[VB_VQ_INFLATE].callback = balloon_ack;
	info[VB_VQ_DEFLATE].name = "deflate";
	info[VB_VQ_DEFLATE].callback = balloon_ack;
	if (vb_has(vb, VIRTIO_BALLOON_F_STATS_VQ)) {
		info[VB_VQ_STATS].name = "stats";
		info[VB_VQ_STATS].callback = stats_request;
	}
	/* Hint blocks are polled for, so that queue needs no callback. */
	if (vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
		info[VB_VQ_FREE_PAGE].name = "free_page_vq";
	if (vb_has(vb, VIRTIO_BALLOON_F_REPORTING)) {
		info[VB_VQ_REPORTING].name = "reporting_vq";
		info[VB_VQ_REPORTING].callback = balloon_ack;
	}

	err = compat_find_vqs(vb->vdev, VB_VQ_MAX, vqs, info);
	if (err)
		return err;

	vb->inflate_vq = vqs[VB_VQ_INFLATE];
	vb->deflate_vq = vqs[VB_VQ_DEFLATE];
	vb->stats_vq = vqs[VB_VQ_STATS];
	vb->free_page_vq = vqs[VB_VQ_FREE_PAGE];
	vb->reporting_vq = vqs[VB_VQ_REPORTING];

	/* A batch never needs more requests than a ring holds. */
	vb->req_frames = vb_request_frames(vb->vdev, READ_ONCE(request_frames));
	vb->batch_max = vb->req_frames *
		min3((unsigned int)VB_BATCH_REQS,
		     virtqueue_get_vring_size(vb->inflate_vq),
		     virtqueue_get_vring_size(vb->deflate_vq));
	vb->batch_max = min(vb->batch_max, pfns_capacity(vb));
	vb->batch = VB_BATCH_FIRST;

	/* The host asks for statistics by returning a buffer: give it one. */
	if (vb->stats_vq) {
		err = send_stats(vb);
		if (err) {
			vb->vdev->config->del_vqs(vb->vdev);
			return err;
		}
	}
	return 0;
}

/*
 * Host side of a balloon page migration.  The core (or compat/balloon.h)
 * moves the page between lists; we only tell the host that newpage is
 * now ballooned and page is not.
 */
static int virtballoon_migratepage(struct balloon_dev_info *b,
				   struct page *newpage, struct page *page,
				   enum migrate_mode mode)
{
	struct virtio_balloon *vb = container_of(b, struct virtio_balloon,
						 vb_dev_info);

	int err;

	/* Never wait: inflation may itself be compacting; retry later. */
	if (!mutex_trylock(&vb->balloon_lock))
		return -EAGAIN;

	set_page_pfns(vb, vb->pfns, newpage, VB_FRAMES_PER_PAGE);
	err = tell_host(vb, vb->inflate_vq, VB_FRAMES_PER_PAGE);
	if (err && err != -EIO) {
		mutex_unlock(&vb->balloon_lock);
		return -EAGAIN;
	}
	/*
	 * Both queues are empty here and need no memory for a request, so
	 * only a broken device (nobody left to tell) fails this one.
	 */
	set_page_pfns(vb, vb->pfns, page, VB_FRAMES_PER_PAGE);
	tell_host(vb, vb->deflate_vq, VB_FRAMES_PER_PAGE);

	mutex_unlock(&vb->balloon_lock);
	return 0;
}

static int virtballoon_validate(struct virtio_device *vdev)
{
	/*
	 * The host must know what free pages contain if the guest checks
	 * poison on them; if we cannot tell it, reported pages could come
	 * back with other contents, so no reporting either.
	 */
	if (!want_init_on_free() && !page_poisoning_enabled_static())
		__virtio_clear_bit(vdev, VIRTIO_BALLOON_F_PAGE_POISON);
	else if (!virtio_has_feature(vdev, VIRTIO_BALLOON_F_PAGE_POISON))
		__virtio_clear_bit(vdev, VIRTIO_BALLOON_F_REPORTING);

	/* Frame numbers are guest physical addresses, never IOVAs. */
	__virtio_clear_bit(vdev, VIRTIO_F_ACCESS_PLATFORM);
	/*
	 * Every request is a single buffer except page reports, which the
	 * ring holds directly; indirect tables would only add an atomic
	 * allocation to the reporting path.
	 */
	__virtio_clear_bit(vdev, VIRTIO_RING_F_INDIRECT_DESC);
	return 0;
}

static void write_poison_val(struct virtio_balloon *vb)
{
	u32 poison_val = 0;

	if (!vb_has(vb, VIRTIO_BALLOON_F_PAGE_POISON))
		return;
	/* Zero stands for init_on_free; PAGE_POISON is one byte, repeated. */
	if (!want_init_on_free())
		memset(&poison_val, PAGE_POISON, sizeof(poison_val));
	vb->poison_val = poison_val;
	virtio_cwrite_le(vb->vdev, struct virtio_balloon_config, poison_val,
			 &poison_val);
}

/* A new device's state, before anything talks to the host. */
static struct virtio_balloon *vb_alloc(struct virtio_device *vdev)
{
	struct virtio_balloon *vb = kzalloc_obj(*vb, GFP_KERNEL);

	if (!vb)
		return NULL;
	vb->vdev = vdev;
	INIT_DELAYED_WORK(&vb->size_work, size_work_func);
	INIT_WORK(&vb->stats_work, stats_work_func);
	spin_lock_init(&vb->stop_update_lock);
	spin_lock_init(&vb->wakeup_lock);
	mutex_init(&vb->balloon_lock);
	INIT_LIST_HEAD(&vb->blocks);
	init_waitqueue_head(&vb->acked);
	/* The default floor, as RAM was at probe time. */
	vb->reserve = balloon_floor_default();
	if (alloc_pfns(vb)) {
		kfree(vb);
		return NULL;
	}
	return vb;
}

static void vb_free(struct virtio_balloon *vb)
{
	free_pages((unsigned long)vb->pfns, vb->pfns_order);
	kfree(vb);
}

/* The optional features that need set-up of their own. */
static int features_init(struct virtio_balloon *vb)
{
	int err;

	if (vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT)) {
		err = hint_init(vb);
		if (err)
			return err;
	}
	if (vb_has(vb, VIRTIO_BALLOON_F_DEFLATE_ON_OOM)) {
		err = pressure_init(vb);
		if (err) {
			if (vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
				hint_exit(vb);
			return err;
		}
	}
	return 0;
}

static int virtballoon_probe(struct virtio_device *vdev)
{
	struct virtio_balloon *vb;
	int err;

	if (!vdev->config->get) {
		dev_err(&vdev->dev, "config space is not readable\n");
		return -EINVAL;
	}

	vb = vb_alloc(vdev);
	if (!vb)
		return -ENOMEM;
	vdev->priv = vb;

	/* Without DEFLATE_ON_OOM, ballooned memory leaves MemTotal. */
	err = balloon_compat_init(&vb->vb_dev_info, virtballoon_migratepage,
				  !vb_has(vb, VIRTIO_BALLOON_F_DEFLATE_ON_OOM));
	if (err)
		goto out_free;
	err = init_vqs(vb);
	if (err)
		goto out_balloon;
	err = features_init(vb);
	if (err)
		goto out_del_vqs;
	write_poison_val(vb);

	/* The balloon cannot wake the system, but it keeps it awake to work. */
	vb->ws = wakeup_source_register(&vdev->dev, "virtio-balloon");
	vb_debugfs_init(vb);

	virtio_device_ready(vdev);
	/* Reports may start at once: only once the device is live. */
	reporting_start(vb);

	vb->memory_nb.notifier_call = virtio_balloon_memory_notify;
	register_memory_notifier(&vb->memory_nb);

	if (update_target(vb))
		virtballoon_changed(vdev);
	return 0;

out_del_vqs:
	virtio_reset_device(vdev);
	vdev->config->del_vqs(vdev);
out_balloon:
	balloon_compat_exit(&vb->vb_dev_info);
out_free:
	vb_free(vb);
	return err;
}

/* Return every page, reset the device and drop its queues. */
static void remove_common(struct virtio_balloon *vb)
{
	while (vb->num_pages) {
		/* Pages under migration come back to the list shortly. */
		if (!leak_balloon(vb, vb->num_pages))
			cond_resched();
	}
	update_balloon_size(vb);

	if (vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
		hint_release(vb, ULONG_MAX);

	virtio_reset_device(vb->vdev);
	vb->vdev->config->del_vqs(vb->vdev);
}

/* No host event may queue work after this; none is running after it. */
static void stop_updates(struct virtio_balloon *vb)
{
	spin_lock_irq(&vb->stop_update_lock);
	vb->stop_update = true;
	spin_unlock_irq(&vb->stop_update_lock);

	cancel_delayed_work_sync(&vb->size_work);
	cancel_work_sync(&vb->stats_work);
	if (vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
		cancel_work_sync(&vb->hint_work);
	vb_relax_all(vb);
}

static void virtballoon_remove(struct virtio_device *vdev)
{
	struct virtio_balloon *vb = vdev->priv;

	unregister_memory_notifier(&vb->memory_nb);
	reporting_stop(vb);
	if (vb_has(vb, VIRTIO_BALLOON_F_DEFLATE_ON_OOM))
		pressure_exit(vb);
	stop_updates(vb);
	if (vb_has(vb, VIRTIO_BALLOON_F_FREE_PAGE_HINT))
		hint_exit(vb);

	debugfs_remove(vb->debugfs);
	remove_common(vb);
	balloon_compat_exit(&vb->vb_dev_info);
	wakeup_source_unregister(vb->ws);
	vb_free(vb);
}

#ifdef CONFIG_PM_SLEEP
static int virtballoon_freeze(struct virtio_device *vdev)
{
	struct virtio_balloon *vb = vdev->priv;

	/*
	 * Our work runs on freezable workqueues, which the PM core has
	 * frozen already.  Page reporting does not: stop it before its
	 * queue goes away.
	 */
	reporting_stop(vb);
	remove_common(vb);
	return 0;
}

static int virtballoon_restore(struct virtio_device *vdev)
{
	struct virtio_balloon *vb = vdev->priv;
	int err;

	err = init_vqs(vb);
	if (err)
		return err;

	write_poison_val(vb);
	virtio_device_ready(vdev);
	reporting_start(vb);

	if (update_target(vb))
		virtballoon_changed(vdev);
	update_balloon_size(vb);
	return 0;
}
#endif

/*
 * The core's shutdown breaks and resets the device; let a request that
 * is under way finish first so no work waits on a dead queue.
 */
static void __maybe_unused virtballoon_shutdown(struct virtio_device *vdev)
{
	struct virtio_balloon *vb = vdev->priv;

	reporting_stop(vb);
	stop_updates(vb);
	virtio_device_shutdown(vdev);
}

static const unsigned int features[] = {
	VIRTIO_BALLOON_F_MUST_TELL_HOST,
	VIRTIO_BALLOON_F_STATS_VQ,
	VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
	VIRTIO_BALLOON_F_FREE_PAGE_HINT,
	VIRTIO_BALLOON_F_PAGE_POISON,
	VIRTIO_BALLOON_F_REPORTING,
};

static struct virtio_driver virtio_balloon_driver = {
	.feature_table		= features,
	.feature_table_size	= ARRAY_SIZE(features),
	.driver.name		= KBUILD_MODNAME,
	.driver.owner		= THIS_MODULE,
	/* The status view (virtio_balloon_status.c) while a device is bound. */
	.driver.dev_groups	= vb_status_groups,
	.id_table		= id_table,
	.validate		= virtballoon_validate,
	.probe			= virtballoon_probe,
	.remove			= virtballoon_remove,
	.config_changed		= virtballoon_changed,
#ifdef CONFIG_PM_SLEEP
	.freeze			= virtballoon_freeze,
	.restore		= virtballoon_restore,
#endif
	VIRTIO_DRIVER_SHUTDOWN(virtballoon_shutdown)
};

module_virtio_driver(virtio_balloon_driver);
MODULE_DEVICE_TABLE(virtio, id_table);
MODULE_DESCRIPTION("Virtio balloon driver");
MODULE_LICENSE("GPL");
MODULE_VERSION(BALLOON_VERSION);
