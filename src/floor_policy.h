/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Floor policy of both balloon drivers: how much memory the guest keeps
 * available whatever the host asks, so that a host asking for too much
 * gets a smaller balloon instead of an OOM-killed guest.
 *
 * The floor is the floor_mb module parameter of each driver:
 *  -1  (the default) a 32nd of RAM, at least 16 MiB and at most 1 GiB;
 *   0  no floor: inflate until allocations fail, as the kernel's drivers do;
 *   N  N MiB.
 * Anything else is refused with one kernel log line naming the parameter,
 * and the old value stays.
 *
 * A driver defines the parameter with BALLOON_FLOOR_PARAM() after
 * its pr_fmt (the refusal is logged with it) and reads the floor in pages
 * with balloon_floor_pages(&floor_mb, default), the default being
 * balloon_floor_default() taken when it suits the driver (at probe time,
 * or each time).
 */
#ifndef BALLOON_FLOOR_POLICY_H
#define BALLOON_FLOOR_POLICY_H

#include <linux/compiler.h>
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/printk.h>
#include <linux/sizes.h>
#include <linux/string.h>

#define BALLOON_FLOOR_SHIFT	5			/* a 32nd of RAM */
#define BALLOON_FLOOR_MIN	(SZ_16M >> PAGE_SHIFT)
#define BALLOON_FLOOR_MAX	(SZ_1G >> PAGE_SHIFT)
#define BALLOON_FLOOR_MB_DEFAULT	(-1)

#define BALLOON_FLOOR_MB_DESC							\
	"memory in MiB the guest keeps whatever the host asks: -1 = a 32nd of RAM (16 MiB to 1 GiB), 0 = none"

/* The default floor in pages: a 32nd of RAM now, within its bounds. */
static inline unsigned long balloon_floor_default(void)
{
	return clamp_t(unsigned long, totalram_pages() >> BALLOON_FLOOR_SHIFT,
		       BALLOON_FLOOR_MIN, BALLOON_FLOOR_MAX);
}

/*
 * The floor in pages that the parameter @floor_mb asks for now,
 * @default_pages when it asks for the default; 0 is no floor.
 */
static inline unsigned long balloon_floor_pages(const int *floor_mb,
						unsigned long default_pages)
{
	int mb = READ_ONCE(*floor_mb);

	if (mb < 0)
		return default_pages;
	return (unsigned long)mb << (20 - PAGE_SHIFT);
}

/* Setter of a floor_mb parameter: -1, 0 or a size in MiB, nothing else. */
static inline int balloon_floor_mb_set(const char *val,
				       const struct kernel_param *kp)
{
	int mb;

	if (kstrtoint(val, 0, &mb) || mb < -1) {
		pr_err("%s must be -1 (a 32nd of RAM), 0 (no floor) or a size in MiB, not '%.*s'\n",
		       kp->name, (int)strcspn(val, "\n"), val);
		return -EINVAL;
	}
	WRITE_ONCE(*(int *)kp->arg, mb);
	return 0;
}

/* The module parameter floor_mb (writable at run time), -1 at load. */
#define BALLOON_FLOOR_PARAM()							\
	static int floor_mb = BALLOON_FLOOR_MB_DEFAULT;				\
	static const struct kernel_param_ops floor_mb_ops = {			\
		.set = balloon_floor_mb_set,					\
		.get = param_get_int,						\
	};									\
	module_param_cb(floor_mb, &floor_mb_ops, &floor_mb, 0644);		\
	MODULE_PARM_DESC(floor_mb, BALLOON_FLOOR_MB_DESC)

#endif /* BALLOON_FLOOR_POLICY_H */
