/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Refused-page policy of vmw_balloon: what the pages a host refuses may
 * cost an inflation round, and the guest, per second.
 *
 * Refused pages are held until the round ends, so that the allocator does
 * not hand them to us again in the same round, and then freed.  The
 * allocator tends to hand out the pages freed last, which a host may be
 * refusing as a set (pinned for I/O), interleaved with pages it takes:
 * 4 KiB inflation goes on while the host keeps taking some pages, and
 * gives up after as many refusals in a row as the round asked for (at
 * least VMW_BALLOON_MAX_REFUSED), so such a set is passed in one round
 * instead of being freed and met again in every round.
 *
 * What a round holds and sends in vain is bounded all the same, page by
 * page: the next command carries no more pages than the bounds leave
 * room for were the host to refuse them all.
 *  - Refused 4 KiB pages and spare pieces held: VMW_BALLOON_MAX_HELD
 *    with batching (12 batches, 24 MiB), VMW_BALLOON_MAX_HELD_SINGLE
 *    single-page commands without, never more than a sixteenth of RAM.
 *  - Refusals in a row: what the round asked for, within that bound.
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

/*
 * Refused 2 MiB pages held before falling back to 4 KiB pages (as the
 * in-tree driver); also the least number of refused 4 KiB pages in a row
 * before giving up until the next round.
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
	unsigned int run_max;	/* refused 4 KiB pages in a row */
	unsigned int run_from;	/* refused count when the host last took one */
	unsigned int wasted;	/* batches mostly refused */
	bool batching;
	bool took;		/* the host took a page of the last command */
};

/* The most the credit of commands taken in vain saves up. */
static inline unsigned int vmballoon_credit_max(bool batching)
{
	return batching ? VMW_BALLOON_MAX_WASTED : VMW_BALLOON_MAX_HELD_SINGLE;
}

/* Once a second: refill the credit by what the kernel's driver spends. */
static inline void vmballoon_credit_tick(unsigned int *credit, bool batching)
{
	*credit = min(*credit + 1, vmballoon_credit_max(batching));
}

static inline void vmballoon_round_init(struct vmballoon_round *r, s64 change,
					bool batching)
{
	unsigned long held = batching ? VMW_BALLOON_MAX_HELD :
					VMW_BALLOON_MAX_HELD_SINGLE;

	r->held_max = clamp_t(unsigned long,
			      totalram_pages() >> VMW_BALLOON_HELD_RAM_SHIFT,
			      VMW_BALLOON_MAX_REFUSED, held);
	r->run_max = clamp_t(s64, change, VMW_BALLOON_MAX_REFUSED, r->held_max);
	r->run_from = 0;
	r->wasted = 0;
	r->batching = batching;
	r->took = false;
}

/* The 4 KiB pass starts: the run of refusals starts again. */
static inline void vmballoon_round_4k(struct vmballoon_round *r)
{
	r->run_from = 0;
}

/*
 * Pages the next command may carry: @refused are the pages of this pass
 * refused so far, @spare the 4 KiB pieces held.
 */
static inline unsigned int vmballoon_round_room(const struct vmballoon_round *r,
						bool huge, unsigned int refused,
						unsigned int spare)
{
	unsigned int held = refused + spare, run = refused - r->run_from;

	if (huge)
		return refused ? VMW_BALLOON_MAX_REFUSED -
				 min_t(unsigned int, refused, VMW_BALLOON_MAX_REFUSED) :
				 UINT_MAX;
	return min(r->held_max - min(held, r->held_max),
		   r->run_max - min(run, r->run_max));
}

/*
 * A command is done: the host took @took pages and refused @refused;
 * @total is the pass's refused count now.
 */
static inline void vmballoon_round_account(struct vmballoon_round *r,
					   unsigned int *credit, bool huge,
					   unsigned int took, unsigned int refused,
					   unsigned int total)
{
	r->took = took;
	if (took)
		r->run_from = total;
	if (huge)
		return;
	if (r->batching && refused > took)
		r->wasted++;
	if (!took && refused && *credit)
		(*credit)--;
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
