// SPDX-License-Identifier: GPL-2.0
/* 6.7: shrinkers are allocated by shrinker_alloc() and carry private_data */
#include <linux/mm.h>
#include <linux/shrinker.h>

struct shrinker *balloon_probe_shrinker(void *priv);
struct shrinker *balloon_probe_shrinker(void *priv)
{
	struct shrinker *s = shrinker_alloc(0, "probe-%d", 1);

	if (s)
		s->private_data = priv;
	return s;
}
