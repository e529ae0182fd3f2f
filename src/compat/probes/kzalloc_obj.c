// SPDX-License-Identifier: GPL-2.0
/* about 7.0 (6.12.107 has a backport): kzalloc_obj() sizes the allocation from its target */
#include <linux/slab.h>

struct balloon_probe_obj {
	int x;
};

struct balloon_probe_obj *balloon_probe_kzalloc_obj(void);
struct balloon_probe_obj *balloon_probe_kzalloc_obj(void)
{
	struct balloon_probe_obj *p = kzalloc_obj(*p, GFP_KERNEL);

	return p;
}
