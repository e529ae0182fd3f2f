// SPDX-License-Identifier: GPL-2.0
/* sanity: a trivial object must compile, or the toolchain is broken */
#include <linux/module.h>

int balloon_probe_baseline(void);
int balloon_probe_baseline(void)
{
	return 0;
}
