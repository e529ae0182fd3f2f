/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Poll policy of vmw_balloon: when the next work tick asks the host for
 * its target.
 *
 * Unless the host rings the VMCI doorbell, GET_TARGET is the only way to
 * learn a new target, and the kernel's driver sends it once a second.  A
 * host that has just taken pages is reclaiming, and hosts raise their
 * target in steps while they reclaim: after a round in which the host
 * took more pages than it refused, and which ended with nothing holding
 * it back (no floor, no allocation failure, no refusals, no failed
 * command), the next tick
 * comes after VMW_BALLOON_FAST_POLL.  That tick finds either a new target
 * (and goes on fast while the host keeps taking) or nothing to do, and
 * the one after it is a second away again.  So a host that is idle, or
 * refuses more than it takes, sees no more GET_TARGETs a second than
 * from the kernel's driver, and one that is moving at most one more
 * every VMW_BALLOON_FAST_POLL.
 *
 * Credits for commands sent in vain (vmw_refused_policy.h) are refilled
 * by the second of the clock, not by the tick, whatever the poll rate.
 */
#ifndef VMW_POLL_POLICY_H
#define VMW_POLL_POLICY_H

#include <linux/jiffies.h>
#include <linux/minmax.h>
#include <linux/timer.h>
#include <linux/types.h>

#include "balloon_state.h"

#define VMW_BALLOON_FAST_POLL	(HZ / 10)

/* What the host did with the frames of one inflation round. */
struct vmballoon_poll {
	u64 took;		/* frames the host took this round */
	u64 refused;		/* frames it refused */
	bool failed;		/* a command of the round failed whole */
	unsigned long refill_at;	/* jiffies of the next credit refill */
};

static inline void vmballoon_poll_round_start(struct vmballoon_poll *p)
{
	p->took = 0;
	p->refused = 0;
	p->failed = false;
}

static inline void vmballoon_poll_account(struct vmballoon_poll *p,
					  unsigned int frames,
					  unsigned int took,
					  unsigned int refused)
{
	p->took += (u64)took * frames;
	p->refused += (u64)refused * frames;
}

/*
 * Jiffies until the next tick, after a tick whose inflation round (if
 * any: @inflated) ended for @why.
 */
static inline unsigned long vmballoon_poll_delay(const struct vmballoon_poll *p,
						 bool inflated,
						 enum balloon_reason why)
{
	if (inflated && why == BALLOON_REASON_NONE && !p->failed &&
	    p->took > p->refused)
		return VMW_BALLOON_FAST_POLL;
	return round_jiffies_relative(HZ);
}

/* Seconds of the clock since the last refill, at least one when due. */
static inline unsigned int vmballoon_poll_refills(struct vmballoon_poll *p)
{
	unsigned long now = jiffies, secs;

	if (time_before(now, p->refill_at))
		return 0;
	secs = (now - p->refill_at) / HZ + 1;
	p->refill_at += secs * HZ;
	return min_t(unsigned long, secs, UINT_MAX);
}

static inline void vmballoon_poll_init(struct vmballoon_poll *p)
{
	vmballoon_poll_round_start(p);
	p->refill_at = jiffies;
}

#endif /* VMW_POLL_POLICY_H */
