/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Balloon state: whether the balloon is on its way to the host's
 * target, has reached it, or is stuck short of it, and why; for
 * management tools that would otherwise poll with timeouts.
 *
 * Both drivers show it in their status view as two attributes, "state"
 * (moving, reached, stuck) and "reason" (none, no-memory, floor,
 * host-refused, pressure-hold).  Every change wakes poll() on "state"
 * (sysfs_notify) and sends a change uevent of the device carrying
 * BALLOON_STATE= and BALLOON_REASON=.
 */
#ifndef BALLOON_STATE_H
#define BALLOON_STATE_H

#include <linux/build_bug.h>
#include <linux/device.h>
#include <linux/kobject.h>
#include <linux/sysfs.h>

enum balloon_state {
	BALLOON_REACHED,
	BALLOON_MOVING,
	BALLOON_STUCK,
};

enum balloon_reason {
	BALLOON_REASON_NONE,
	BALLOON_NO_MEMORY,
	BALLOON_FLOOR,
	BALLOON_HOST_REFUSED,
	BALLOON_PRESSURE_HOLD,
};

/* The names user space reads, in the order of the enums above. */
static const char balloon_state_names[][8] = {
	"reached", "moving", "stuck",
};

static const char balloon_reason_names[][16] = {
	"none", "no-memory", "floor", "host-refused", "pressure-hold",
};

struct balloon_status {
	enum balloon_state state;
	enum balloon_reason reason;
};

/*
 * Set the state (and, when stuck, why) in @st; on a change, wake poll()
 * on the attribute "state" of @group under @notify (if there is one) and
 * send a change uevent of @uevent.  Called from one context at a time
 * (the driver's work).
 */
static inline void balloon_state_change(struct kobject *notify, const char *group,
					struct kobject *uevent,
					struct balloon_status *st,
					enum balloon_state state,
					enum balloon_reason reason)
{
	char state_env[32], reason_env[32];
	char *envp[3];

	BUILD_BUG_ON(ARRAY_SIZE(balloon_state_names) != BALLOON_STUCK + 1);
	BUILD_BUG_ON(ARRAY_SIZE(balloon_reason_names) != BALLOON_PRESSURE_HOLD + 1);
	if (state != BALLOON_STUCK)
		reason = BALLOON_REASON_NONE;
	if (st->state == state && st->reason == reason)
		return;
	WRITE_ONCE(st->state, state);
	WRITE_ONCE(st->reason, reason);
	snprintf(state_env, sizeof(state_env), "BALLOON_STATE=%.*s",
		 (int)sizeof(balloon_state_names[0]), balloon_state_names[state]);
	snprintf(reason_env, sizeof(reason_env), "BALLOON_REASON=%.*s",
		 (int)sizeof(balloon_reason_names[0]),
		 balloon_reason_names[reason]);
	envp[0] = state_env;
	envp[1] = reason_env;
	envp[2] = NULL;
	if (notify)
		sysfs_notify(notify, group, "state");
	kobject_uevent_env(uevent, KOBJ_CHANGE, envp);
}

/* The same for a device whose status view is its sysfs group @group. */
static inline void balloon_state_set(struct device *dev, const char *group,
				     struct balloon_status *st,
				     enum balloon_state state,
				     enum balloon_reason reason)
{
	balloon_state_change(&dev->kobj, group, &dev->kobj, st, state, reason);
}

#endif /* BALLOON_STATE_H */
