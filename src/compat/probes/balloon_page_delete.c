// SPDX-License-Identifier: GPL-2.0
/* <= 6.x: balloon_page_delete() is the inline that undoes balloon_page_insert() */
#if __has_include("linux/balloon.h")
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif

void balloon_probe_delete(struct page *p);
void balloon_probe_delete(struct page *p)
{
	balloon_page_delete(p);
}
