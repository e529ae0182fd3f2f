// SPDX-License-Identifier: GPL-2.0
/*
 * The virtio balloon's side of the pressure policy (pressure_policy.h):
 * the shrinker that hears direct reclaim, the OOM notifier that is the
 * last resort, the give-back itself and the hold that follows, which
 * delays inflation only.
 */
#include <linux/mm.h>
#include <linux/oom.h>
#include <linux/shrinker.h>
#include <linux/swap.h>
#include <linux/vmstat.h>

#include "compat/reclaim.h"
#include "compat/shrinker.h"
#include "virtio_balloon.h"
#include "zone_guard.h"

#define BALLOON_TRACE_VIRTIO
#include "balloon_trace.h"

/* Jiffies inflation must still wait after giving memory back. */
unsigned long pressure_hold(struct virtio_balloon *vb)
{
	unsigned long hold;

	mutex_lock(&vb->balloon_lock);
	hold = vb_pressure_hold(&vb->pressure);
	mutex_unlock(&vb->balloon_lock);
	return hold;
}

/*
 * Give memory back under pressure (pressure_policy.h); the caller holds
 * balloon_lock.  Returns the frames given back.
 */
static unsigned long pressure_give_back(struct virtio_balloon *vb,
					unsigned long want, int source)
{
	unsigned long goal = vb_pressure_amount(&vb->pressure, want);
	unsigned long freed = 0, before = vb->num_pages;
	unsigned int done;

	while (freed < goal) {
		done = __leak_balloon(vb, goal - freed);
		if (!done)
			break;
		freed += done;
	}
	if (!freed)
		return 0;
	vb_pressure_given(&vb->pressure, freed, freed / VB_FRAMES_PER_PAGE,
			  global_zone_page_state(NR_FREE_PAGES));
	update_balloon_size(vb);
	trace_virtio_balloon_give_back(source, want, freed, vb->pressure.hold_ms);
	trace_virtio_balloon_target(before, vb->num_pages, source);
	return freed;
}

/*
 * Follow the host's target again once the hold has passed.  Only when no
 * run is queued: a queued run may be a deflation the host asked for,
 * which the hold must not delay (size_work_func() applies the hold to
 * inflation itself).
 */
static void pressure_resume_later(struct virtio_balloon *vb)
{
	unsigned long flags;

	spin_lock_irqsave(&vb->stop_update_lock, flags);
	if (!vb->stop_update)
		queue_delayed_work(system_freezable_wq, &vb->size_work,
				   msecs_to_jiffies(vb->pressure.hold_ms));
	spin_unlock_irqrestore(&vb->stop_update_lock, flags);
}

/*
 * Pressure is reclaim for a page allocation that found the guest short:
 * not kswapd's trimming, not our own allocations, and not reclaim asked
 * for with memory to spare (drop_caches, memory.reclaim).
 */
static unsigned long pressure_count(struct shrinker *s, struct shrink_control *sc)
{
	struct virtio_balloon *vb = shrinker_private(s);

	if (current_is_kswapd() || READ_ONCE(vb->filler) == current ||
	    !balloon_zones_short(sc->gfp_mask))
		return 0;
	return READ_ONCE(vb->num_pages) / VB_FRAMES_PER_PAGE;
}

static unsigned long pressure_scan(struct shrinker *s, struct shrink_control *sc)
{
	struct virtio_balloon *vb = shrinker_private(s);
	unsigned long freed = 0;

	if (READ_ONCE(vb->filler) == current || !balloon_zones_short(sc->gfp_mask))
		return SHRINK_STOP;
	/* Never wait in reclaim: the balloon may be busy talking to the host. */
	if (!mutex_trylock(&vb->balloon_lock))
		return SHRINK_STOP;
	if (!vb_pressure_too_soon(&vb->pressure, global_zone_page_state(NR_FREE_PAGES)))
		freed = pressure_give_back(vb, sc->nr_to_scan * VB_FRAMES_PER_PAGE,
					   BALLOON_SOURCE_PRESSURE);
	mutex_unlock(&vb->balloon_lock);
	if (!freed)
		return SHRINK_STOP;
	pressure_resume_later(vb);
	/* Reclaim has what it came for: no need to empty the page cache too. */
	mm_account_reclaimed_pages(freed / VB_FRAMES_PER_PAGE);
	return freed / VB_FRAMES_PER_PAGE;
}

/* The last resort before a process is killed: the same policy. */
static int virtio_balloon_oom_notify(struct notifier_block *nb,
				     unsigned long dummy, void *parm)
{
	struct virtio_balloon *vb = container_of(nb, struct virtio_balloon, oom_nb);
	unsigned long *freed = parm;
	unsigned long frames;

	mutex_lock(&vb->balloon_lock);
	frames = pressure_give_back(vb, VB_OOM_FRAMES, BALLOON_SOURCE_OOM);
	WRITE_ONCE(vb->oom_frames, vb->oom_frames + frames);
	mutex_unlock(&vb->balloon_lock);
	if (frames)
		pressure_resume_later(vb);
	*freed += frames / VB_FRAMES_PER_PAGE;
	return NOTIFY_OK;
}

/* The shrinker and the OOM notifier; only with DEFLATE_ON_OOM. */
int pressure_init(struct virtio_balloon *vb)
{
	int err;

	vb->pressure_shrinker = shrinker_alloc(0, "virtio-balloon-pressure");
	if (!vb->pressure_shrinker)
		return -ENOMEM;
	vb->pressure_shrinker->count_objects = pressure_count;
	vb->pressure_shrinker->scan_objects = pressure_scan;
	shrinker_set_private(vb->pressure_shrinker, vb);
	shrinker_register(vb->pressure_shrinker);

	vb->oom_nb.notifier_call = virtio_balloon_oom_notify;
	vb->oom_nb.priority = VB_OOM_PRIORITY;
	err = register_oom_notifier(&vb->oom_nb);
	if (err)
		shrinker_free(vb->pressure_shrinker);
	return err;
}

void pressure_exit(struct virtio_balloon *vb)
{
	unregister_oom_notifier(&vb->oom_nb);
	shrinker_free(vb->pressure_shrinker);
}
