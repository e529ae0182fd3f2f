/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shrinkers in their three forms, presented as the 6.7 API:
 *
 *	s = shrinker_alloc(0, "name-%d", n);
 *	s->count_objects = ...; s->scan_objects = ...;
 *	shrinker_set_private(s, priv);
 *	shrinker_register(s);
 *	... shrinker_private(s) in the callbacks ...
 *	shrinker_free(s);
 *
 *  - 6.7+: the core allocates shrinkers and they carry private_data;
 *  - 6.0 to 6.6: the caller embeds struct shrinker and names it when it
 *    registers it (the name only shows in debugfs);
 *  - before 6.0: embedded, registered without a name.
 *
 * On the older kernels the shrinker is embedded in a small wrapper that
 * also holds the private pointer and the name until registration.
 */
#ifndef BALLOON_COMPAT_SHRINKER_H
#define BALLOON_COMPAT_SHRINKER_H

#include "compat/compat.h"

#include <linux/shrinker.h>

#ifdef HAVE_SHRINKER_ALLOC
static inline void shrinker_set_private(struct shrinker *s, void *priv)
{
	s->private_data = priv;
}

static inline void *shrinker_private(struct shrinker *s)
{
	return s->private_data;
}
#else
#include "compat/slab.h"

struct compat_shrinker {
	struct shrinker shrinker;
	void *private_data;
	char *name;
	bool registered;
};

static inline struct compat_shrinker *to_compat_shrinker(struct shrinker *s)
{
	return container_of(s, struct compat_shrinker, shrinker);
}

static inline void shrinker_set_private(struct shrinker *s, void *priv)
{
	to_compat_shrinker(s)->private_data = priv;
}

static inline void *shrinker_private(struct shrinker *s)
{
	return to_compat_shrinker(s)->private_data;
}

static inline __printf(2, 3)
struct shrinker *shrinker_alloc(unsigned int flags, const char *fmt, ...)
{
	struct compat_shrinker *cs;
	va_list ap;

	/* No flag (memcg or NUMA awareness) is needed by the balloons. */
	if (WARN_ON_ONCE(flags))
		return NULL;
	cs = kzalloc_obj(*cs, GFP_KERNEL);
	if (!cs)
		return NULL;
	va_start(ap, fmt);
	cs->name = kvasprintf(GFP_KERNEL, fmt, ap);
	va_end(ap);
	if (!cs->name) {
		kfree(cs);
		return NULL;
	}
	cs->shrinker.seeks = DEFAULT_SEEKS;
	return &cs->shrinker;
}

/*
 * The 6.7 shrinker_register() cannot fail; the older registration can
 * (it allocates per-node state).  A balloon without its shrinker still
 * works, so a failure is reported once and otherwise ignored.
 */
static inline void shrinker_register(struct shrinker *s)
{
	struct compat_shrinker *cs = to_compat_shrinker(s);
	int err;

#ifdef HAVE_REGISTER_SHRINKER_NAMED
	err = register_shrinker(s, "%s", cs->name);
#else
	err = register_shrinker(s);
#endif
	if (err)
		pr_warn("%s: shrinker %s not registered (%d)\n", KBUILD_MODNAME,
			cs->name, err);
	cs->registered = !err;
}

static inline void shrinker_free(struct shrinker *s)
{
	struct compat_shrinker *cs;

	if (!s)
		return;
	cs = to_compat_shrinker(s);
	if (cs->registered)
		unregister_shrinker(s);
	kfree(cs->name);
	kfree(cs);
}
#endif /* HAVE_SHRINKER_ALLOC */

#endif /* BALLOON_COMPAT_SHRINKER_H */
