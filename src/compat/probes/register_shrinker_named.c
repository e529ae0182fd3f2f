// SPDX-License-Identifier: GPL-2.0
/* 6.0: register_shrinker() takes a printf-style name (removed again in 6.7) */
#include <linux/mm.h>
#include <linux/shrinker.h>

int balloon_probe_register_shrinker(struct shrinker *s);
int balloon_probe_register_shrinker(struct shrinker *s)
{
	return register_shrinker(s, "probe-%d", 1);
}
