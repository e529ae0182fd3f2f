/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Refused-page policy of vmw_balloon: what the pages a host refuses may
 * cost an inflation round, and the guest, per second.
 *
 * Refused pages are held until the round ends, so that the allocator does
 * not hand them to us again in the same round.  The allocator tends to
 * hand out the pages freed last, which a host may be refusing as a set
 * (pinned for I/O), interleaved with pages it takes: 4 KiB inflation goes
 * on through refusals for as long as it may hold them, and a round that
 * ends short of its target for refusals keeps its refused 4 KiB pages for
 * the next round (a second later), so such a set is passed across rounds
 * at the pace of the bounds below instead of being freed and met again,
 * first thing, in every round.  No bound here is set by the request: a
 * request smaller than the set would then never get past it.  The kept
 * pages are freed when the balloon reaches its target, when the guest's
 * floor leaves no room for more (they count against it: they are not
 * available), in the first tick that does not inflate, at a reset or
 * unload, and when the hold is full (the next round starts again).  So a
 * host that refuses everything while asking for more has the guest hold
 * up to the held bound, as a round does, never below its floor.
 *
 * What a round holds and sends in vain is bounded all the same, page by
 * page: the next command carries no more pages than the bounds leave
 * room for were the host to refuse them all.
 *  - Refused 4 KiB pages and spare pieces held: VMW_BALLOON_MAX_HELD
 *    with batching (12 batches, 24 MiB), VMW_BALLOON_MAX_HELD_SINGLE
 *    single-page commands without, never more than a sixteenth of RAM.
 *  - Batches in which the host refused more than it took: at most
 *    VMW_BALLOON_MAX_WASTED a round (a host that takes one page in twenty
 *    would otherwise have the guest hold nineteen refused pages for each
 *    one ballooned, down to its reserve, with a hundred commands a second).
 *  - Commands in which the host took nothing: a credit, refilled every
 *    second by what the kernel's own driver sends a host that refuses
 *    everything (one command: a batch of refused pages, or without
 *    batching the first LOCK refused ends its round), and saved up to
 *    VMW_BALLOON_MAX_WASTED batches or VMW_BALLOON_MAX_HELD_SINGLE
 *    single-page commands.  A host that refuses everything
 *    gets no more commands a second than from the kernel's driver once the
 *    saving is spent; a set of refused pages met now and then is still
 *    passed in one round.
 * Past any bound the round ends; the next one, a second later, goes on
 * where it stopped, so a host that takes some pages still gets them all,
 * at a bounded pace.
 *
 * The 2 MiB pass before the 4 KiB one holds up to VMW_BALLOON_MAX_REFUSED
 * refused large pages (32 MiB), as the in-tree driver; the 4 KiB pass
 * keeps 4 KiB pieces of them, up to half the held bound (spares).
 */
#ifndef VMW_REFUSED_POLICY_H
#define VMW_REFUSED_POLICY_H

#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/types.h>

#include "balloon_state.h"

/*
 * Refused 2 MiB pages held before falling back to 4 KiB pages (as the
 * in-tree driver); also the least number of refused 4 KiB pages a round
 * may hold, however small the guest.
 */
#define VMW_BALLOON_MAX_REFUSED		16

#define VMW_BALLOON_MAX_WASTED		12
#define VMW_BALLOON_MAX_HELD		(VMW_BALLOON_MAX_WASTED *		\
					 (PAGE_SIZE / sizeof(u64)))
#define VMW_BALLOON_MAX_HELD_SINGLE	256
#define VMW_BALLOON_HELD_RAM_SHIFT	4

/* One inflation round's account of refusals. */
struct vmballoon_round {
	unsigned int held_max;	/* refused 4 KiB pages + spares held */
	unsigned int wasted;	/* batches mostly refused */
	bool batching;
	bool took;		/* the host took a page of the last command */
};

/* The most the credit of commands taken in vain saves up. */
static inline unsigned int vmballoon_credit_max(bool batching)
{
	return batching ? VMW_BALLOON_MAX_WASTED : VMW_BALLOON_MAX_HELD_SINGLE;
}

/*
 * Each second: refill the credit by what the kernel's driver spends
 * (@secs seconds went by; vmw_poll_policy.h counts them).
 */
static inline void vmballoon_credit_refill(unsigned int *credit,
					   unsigned int secs, bool batching)
{
	unsigned int max = vmballoon_credit_max(batching);

	*credit = min(*credit + min(secs, max), max);
}

static inline void vmballoon_round_init(struct vmballoon_round *r,
					bool batching)
{
	unsigned long held = batching ? VMW_BALLOON_MAX_HELD :
					VMW_BALLOON_MAX_HELD_SINGLE;

	r->held_max = clamp_t(unsigned long,
			      totalram_pages() >> VMW_BALLOON_HELD_RAM_SHIFT,
			      VMW_BALLOON_MAX_REFUSED, held);
	r->wasted = 0;
	r->batching = batching;
	r->took = false;
}

/*
 * Pages the next command may carry: @refused are the pages of this pass
 * refused so far, @spare the 4 KiB pieces held.
 */
static inline unsigned int vmballoon_round_room(const struct vmballoon_round *r,
						bool huge, unsigned int refused,
						unsigned int spare)
{
	unsigned int held = refused + spare;

	if (huge)
		return refused ? VMW_BALLOON_MAX_REFUSED -
				 min_t(unsigned int, refused, VMW_BALLOON_MAX_REFUSED) :
				 UINT_MAX;
	return r->held_max - min(held, r->held_max);
}

/* A command is done: the host took @took pages and refused @refused. */
static inline void vmballoon_round_account(struct vmballoon_round *r,
					   unsigned int *credit, bool huge,
					   unsigned int took, unsigned int refused)
{
	r->took = took;
	if (huge)
		return;
	if (r->batching && refused > took)
		r->wasted++;
	if (!took && refused && *credit)
		(*credit)--;
}

/*
 * The round ended for @why holding @refused 4 KiB pages: may it keep them
 * for the next one?  Only short of the target for refusals with room left.
 */
static inline bool vmballoon_round_keeps(const struct vmballoon_round *r,
					 enum balloon_reason why,
					 unsigned int refused)
{
	return why == BALLOON_HOST_REFUSED && refused < r->held_max;
}

/* Must the 4 KiB pass end here? */
static inline bool vmballoon_round_over(const struct vmballoon_round *r,
					unsigned int credit,
					unsigned int refused, unsigned int spare)
{
	return !vmballoon_round_room(r, false, refused, spare) ||
	       r->wasted >= VMW_BALLOON_MAX_WASTED ||
	       (!credit && !r->took);
}

#endif /* VMW_REFUSED_POLICY_H */
