// SPDX-License-Identifier: GPL-2.0
/* 5.11: page_poisoning_enabled_static() (static key) replaced the page_poisoning_enabled() call */
#include <linux/mm.h>

bool balloon_probe_poison(void);
bool balloon_probe_poison(void)
{
	return page_poisoning_enabled_static();
}
