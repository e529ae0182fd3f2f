// SPDX-License-Identifier: GPL-2.0
/* 6.x: balloon_page_finalize() replaced balloon_page_delete() (inline; static in mm/ from 7.0) */
#if __has_include("linux/balloon.h")
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

void balloon_probe_finalize(struct page *p);
void balloon_probe_finalize(struct page *p)
{
	balloon_page_finalize(p);
}
