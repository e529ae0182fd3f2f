/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Pressure policy of the virtio balloon: give memory back when the guest
 * needs it, before the OOM killer and before its page cache is gone.
 *
 * Only with VIRTIO_BALLOON_F_DEFLATE_ON_OOM: a host that does not offer
 * it expects the balloon to hold its pages whatever the guest goes
 * through, and the virtio specification allows deflating on memory
 * pressure only then.
 *
 * The signal is the balloon's shrinker, asked by direct reclaim: some
 * allocation had to wait for memory.  kswapd's background trimming does
 * not count (the shrinker reports nothing to it), so a guest that merely
 * reads files does not drain the balloon.
 *
 * The amount follows the pressure: the first request after a quiet
 * period gets one 2 MiB block; each request within VB_PRESSURE_BURST of
 * the previous give-back doubles the step, up to VB_PRESSURE_STEP_MAX
 * (64 MiB; much more overshoots).  Nothing more is given back while most
 * of the last give-back is still free: the reclaim loop calls a shrinker
 * several times in a row, and the freed memory needs a moment to reach
 * whoever waits for it.  The OOM notifier, the last resort, takes the
 * same path.
 *
 * Afterwards the balloon holds off inflating until no memory was given
 * back for a while, then follows the host's target again (within the
 * guest's floor).  The hold starts at
 * VB_PRESSURE_HOLD_MIN_MS, doubles each time pressure returns within one
 * hold of the balloon inflating again, up to VB_PRESSURE_HOLD_MAX_MS, and
 * starts over after a quiet period: the balloon and the guest's workload
 * do not take the same memory from each other in a loop.
 */
#ifndef BALLOON_PRESSURE_POLICY_H
#define BALLOON_PRESSURE_POLICY_H

#include <linux/jiffies.h>
#include <linux/minmax.h>

#include "alloc_policy.h"

#define VB_PRESSURE_STEP_MIN	VB_BLOCK_FRAMES
#define VB_PRESSURE_STEP_MAX	(SZ_64M >> VIRTIO_BALLOON_PFN_SHIFT)
#define VB_PRESSURE_BURST	(2 * HZ)
#define VB_PRESSURE_HOLD_MIN_MS	4000
#define VB_PRESSURE_HOLD_MAX_MS	64000

struct vb_pressure {
	/* jiffies of the last give-back and of the end of the hold */
	unsigned long last;
	unsigned long hold_until;
	/* jiffies when inflation resumed after a hold */
	unsigned long resumed;
	/* free pages above this: the last give-back is not used up yet */
	unsigned long free_mark;
	unsigned int step;
	unsigned int hold_ms;
	bool resumed_since;
	/* what the balloon gave back so far, for debugfs */
	unsigned long events;
	unsigned long frames;
};

/* The previous give-back is mostly still free: let it be used first. */
static inline bool vb_pressure_too_soon(const struct vb_pressure *p,
					unsigned long free_pages)
{
	return p->events && free_pages > p->free_mark;
}

/* Frames to give back now, for a request of @want frames. */
static inline unsigned long vb_pressure_amount(struct vb_pressure *p,
					       unsigned long want)
{
	if (p->events && time_before(jiffies, p->last + VB_PRESSURE_BURST))
		p->step = min_t(unsigned int, p->step * 2, VB_PRESSURE_STEP_MAX);
	else
		p->step = VB_PRESSURE_STEP_MIN;
	want = round_up(want, VB_BLOCK_FRAMES);
	return clamp_t(unsigned long, want, p->step, VB_PRESSURE_STEP_MAX);
}

/*
 * @frames (@pages) were given back and the guest now has @free_pages
 * free: start or extend the hold.
 */
static inline void vb_pressure_given(struct vb_pressure *p, unsigned long frames,
				     unsigned long pages, unsigned long free_pages)
{
	unsigned long now = jiffies;

	p->free_mark = free_pages - min(free_pages, pages / 2);

	if (!p->hold_ms) {
		p->hold_ms = VB_PRESSURE_HOLD_MIN_MS;
	} else if (p->resumed_since) {
		if (time_before(now, p->resumed + msecs_to_jiffies(p->hold_ms)))
			p->hold_ms = min_t(unsigned int, p->hold_ms * 2,
					   VB_PRESSURE_HOLD_MAX_MS);
		else
			p->hold_ms = VB_PRESSURE_HOLD_MIN_MS;
	}
	p->resumed_since = false;
	p->hold_until = now + msecs_to_jiffies(p->hold_ms);
	p->last = now;
	p->events++;
	p->frames += frames;
}

/*
 * How long inflation must still wait (jiffies, 0 = go ahead).  Going
 * ahead after a hold is remembered, so that pressure coming straight
 * back lengthens the next hold.
 */
static inline unsigned long vb_pressure_hold(struct vb_pressure *p)
{
	unsigned long now = jiffies;

	if (!p->hold_ms)
		return 0;
	if (time_before(now, p->hold_until))
		return p->hold_until - now;
	if (!p->resumed_since) {
		p->resumed_since = true;
		p->resumed = now;
	}
	return 0;
}

/* Jiffies left of the hold, for the status view (no side effects). */
static inline unsigned long vb_pressure_left(const struct vb_pressure *p)
{
	unsigned long until = READ_ONCE(p->hold_until);

	if (!READ_ONCE(p->hold_ms) || time_after_eq(jiffies, until))
		return 0;
	return until - jiffies;
}

#endif /* BALLOON_PRESSURE_POLICY_H */
