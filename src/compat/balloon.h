/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The balloon page API in its three eras.
 *
 *  - up to 5.19: migration of balloon pages goes through a pseudo-fs
 *    inode whose address_space ops are balloon_aops, which the driver
 *    mounts and hangs off balloon_dev_info->inode;
 *  - 6.x: balloon pages carry balloon_mops; the migratepage callback does
 *    the list, refcount, counter and managed-page bookkeeping itself;
 *  - 7.x: mm/balloon.c owns all bookkeeping (including managed-page
 *    counts when balloon_dev_info->adjust_managed_page_count is set) and
 *    the callback only talks to the host.
 *
 * Drivers are written against the 7.x contract:
 *
 *	balloon_compat_init(&b, host_migrate, adjust_managed);
 *	page = balloon_page_alloc();  ... tell host ...
 *	balloon_compat_enqueue(&b, page);
 *	page = balloon_compat_dequeue(&b);  ... tell host ... put_page(page);
 *	balloon_compat_exit(&b);
 *
 * host_migrate(b, newpage, page, mode) tells the host about newpage
 * (inflate) and page (deflate) and returns 0, -ENOENT (page deflated but
 * newpage not inflated), -EAGAIN or -EBUSY.  Everything else happens here
 * on older kernels and in the core on 7.x.
 *
 * Callers serialise enqueue/dequeue against host_migrate with their own
 * lock (host_migrate takes it with a trylock), as in-tree drivers do: on
 * older kernels the managed-page adjustment follows the enqueue and must
 * not race with a migration of the same page.
 *
 * The state kept here is per module: each module drives one kind of
 * balloon and all its devices share the same callback and policy.  A
 * machine has one balloon of a kind (QEMU refuses a second virtio-balloon
 * device, VMware has one backdoor), so the per-module managed-page policy
 * is the device's.
 */
#ifndef BALLOON_COMPAT_BALLOON_H
#define BALLOON_COMPAT_BALLOON_H

#include "compat/compat.h"

#ifdef HAVE_LINUX_BALLOON_H
#include <linux/balloon.h>
#else
#include <linux/balloon_compaction.h>
#endif
#include <linux/mm.h>
#include <linux/vmstat.h>

#if defined(HAVE_BALLOON_DEVINFO_MIGRATEPAGE) && \
	(IS_ENABLED(CONFIG_BALLOON_MIGRATION) || IS_ENABLED(CONFIG_BALLOON_COMPACTION))
#define BALLOON_COMPAT_MIGRATION 1
#endif

typedef int (*balloon_migrate_t)(struct balloon_dev_info *b,
				 struct page *newpage, struct page *page,
				 enum migrate_mode mode);

/* Whether inflating takes pages out of the managed count (MemTotal). */
static bool balloon_compat_adjust __maybe_unused;

#ifdef HAVE_BALLOON_ADJUST_MANAGED
/* 7.x: the core adjusts managed counts in enqueue, dequeue and migration. */
static inline void balloon_compat_managed(struct balloon_dev_info *b,
					  struct page *page, long delta)
{
}
#else
static inline void balloon_compat_managed(struct balloon_dev_info *b,
					  struct page *page, long delta)
{
	if (balloon_compat_adjust)
		adjust_managed_page_count(page, delta);
}
#endif

/* Undo balloon_page_insert() on a page that left the balloon list. */
static inline void balloon_compat_page_release(struct page *page)
{
#if defined(HAVE_BALLOON_PAGE_FINALIZE)
	balloon_page_finalize(page);
#elif defined(HAVE_BALLOON_PAGE_DELETE)
	balloon_page_delete(page);
#endif
}

/* The node's count of balloon pages, where the kernel keeps one. */
static inline void balloon_compat_block_stat(struct page *page, long nr)
{
#ifdef HAVE_NR_BALLOON_PAGES
	mod_node_page_state(page_pgdat(page), NR_BALLOON_PAGES, nr);
#endif
}

#if defined(BALLOON_COMPAT_MIGRATION) && !defined(HAVE_BALLOON_ADJUST_MANAGED)
#ifdef HAVE_MIGRATEPAGE_SUCCESS
#define BALLOON_COMPAT_MIGRATED MIGRATEPAGE_SUCCESS
#else
#define BALLOON_COMPAT_MIGRATED 0
#endif

static balloon_migrate_t balloon_compat_host_migrate __maybe_unused;

/*
 * Before 7.x the callback owns the bookkeeping: move the balloon reference
 * and list membership from page to newpage (or just drop page when the
 * host took it back without newpage), then release page.
 */
static int __maybe_unused
balloon_compat_migratepage(struct balloon_dev_info *b, struct page *newpage,
			   struct page *page, enum migrate_mode mode)
{
	unsigned long flags;
	int rc;

	rc = balloon_compat_host_migrate(b, newpage, page, mode);
	if (rc < 0 && rc != -ENOENT)
		return rc;

	spin_lock_irqsave(&b->pages_lock, flags);
	if (!rc) {
		get_page(newpage);
		balloon_page_insert(b, newpage);
		__count_vm_event(BALLOON_MIGRATE);
		/* The core counts pages per node at enqueue and dequeue only. */
		if (page_pgdat(page) != page_pgdat(newpage)) {
			balloon_compat_block_stat(page, -1);
			balloon_compat_block_stat(newpage, 1);
		}
		if (balloon_compat_adjust && page_zone(page) != page_zone(newpage)) {
			adjust_managed_page_count(page, 1);
			adjust_managed_page_count(newpage, -1);
		}
	} else {
		/* Deflated without a dequeue: the core's count goes down here. */
		__count_vm_event(BALLOON_DEFLATE);
		balloon_compat_block_stat(page, -1);
		if (balloon_compat_adjust)
			adjust_managed_page_count(page, 1);
	}
	b->isolated_pages--;
	spin_unlock_irqrestore(&b->pages_lock, flags);

	balloon_compat_page_release(page);
	put_page(page);
	return BALLOON_COMPAT_MIGRATED;
}
#endif

#if defined(BALLOON_COMPAT_MIGRATION) && defined(HAVE_BALLOON_DEVINFO_INODE)
/* <= 5.19: balloon pages are movable through a pseudo-fs mapping. */
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <linux/mutex.h>
#include <linux/pseudo_fs.h>

static struct vfsmount *balloon_compat_mnt;
static unsigned int balloon_compat_mnt_users;
static DEFINE_MUTEX(balloon_compat_mnt_lock);

static int balloon_compat_init_fs_context(struct fs_context *fc)
{
	return init_pseudo(fc, BALLOON_KVM_MAGIC) ? 0 : -ENOMEM;
}

static struct file_system_type balloon_compat_fs = {
	.name = "balloon-" KBUILD_MODNAME,
	.init_fs_context = balloon_compat_init_fs_context,
	.kill_sb = kill_anon_super,
};

static int balloon_compat_inode_get(struct balloon_dev_info *b)
{
	struct inode *inode;
	int err = 0;

	mutex_lock(&balloon_compat_mnt_lock);
	if (!balloon_compat_mnt_users) {
		balloon_compat_mnt = kern_mount(&balloon_compat_fs);
		if (IS_ERR(balloon_compat_mnt)) {
			err = PTR_ERR(balloon_compat_mnt);
			goto out;
		}
	}
	inode = alloc_anon_inode(balloon_compat_mnt->mnt_sb);
	if (IS_ERR(inode)) {
		err = PTR_ERR(inode);
		if (!balloon_compat_mnt_users)
			kern_unmount(balloon_compat_mnt);
		goto out;
	}
	inode->i_mapping->a_ops = &balloon_aops;
	b->inode = inode;
	balloon_compat_mnt_users++;
out:
	mutex_unlock(&balloon_compat_mnt_lock);
	return err;
}

static void balloon_compat_inode_put(struct balloon_dev_info *b)
{
	mutex_lock(&balloon_compat_mnt_lock);
	iput(b->inode);
	b->inode = NULL;
	if (!--balloon_compat_mnt_users)
		kern_unmount(balloon_compat_mnt);
	mutex_unlock(&balloon_compat_mnt_lock);
}
#else
static inline int balloon_compat_inode_get(struct balloon_dev_info *b)
{
	return 0;
}

static inline void balloon_compat_inode_put(struct balloon_dev_info *b)
{
}
#endif

/*
 * Initialise @b.  @migrate is the host-only migration callback and must be
 * given: before 7.x every enqueued page is movable when the kernel has
 * balloon compaction, and the core calls the device's callback without
 * checking it.  @adjust_managed says whether ballooned pages leave
 * MemTotal.
 */
static inline int balloon_compat_init(struct balloon_dev_info *b,
				      balloon_migrate_t migrate,
				      bool adjust_managed)
{
	int err __maybe_unused;

	balloon_devinfo_init(b);
	balloon_compat_adjust = adjust_managed;
#ifdef HAVE_BALLOON_ADJUST_MANAGED
	b->adjust_managed_page_count = adjust_managed;
#endif
#ifdef BALLOON_COMPAT_MIGRATION
	err = balloon_compat_inode_get(b);
	if (err)
		return err;
#ifdef HAVE_BALLOON_ADJUST_MANAGED
	b->migratepage = migrate;
#else
	balloon_compat_host_migrate = migrate;
	b->migratepage = balloon_compat_migratepage;
#endif
#endif
	return 0;
}

static inline void balloon_compat_exit(struct balloon_dev_info *b)
{
#ifdef BALLOON_COMPAT_MIGRATION
	if (b->migratepage)
		balloon_compat_inode_put(b);
	b->migratepage = NULL;
#endif
}

/* Whether pages of this balloon can be migrated at all. */
static inline bool balloon_compat_can_migrate(void)
{
#ifdef BALLOON_COMPAT_MIGRATION
	return true;
#else
	return false;
#endif
}

/* Put a page the host now owns into the balloon. */
static inline void balloon_compat_enqueue(struct balloon_dev_info *b,
					  struct page *page)
{
	balloon_page_enqueue(b, page);
	balloon_compat_managed(b, page, -1);
}

/* Take a page out of the balloon; NULL when none is available now. */
static inline struct page *balloon_compat_dequeue(struct balloon_dev_info *b)
{
	struct page *page = balloon_page_dequeue(b);

	if (page)
		balloon_compat_managed(b, page, 1);
	return page;
}

/*
 * Put every page on @pages (which ends up empty) into the balloon; for
 * drivers that hand the host pages in batches.
 */
static inline void balloon_compat_list_enqueue(struct balloon_dev_info *b,
					       struct list_head *pages)
{
	struct page *page;

	list_for_each_entry(page, pages, lru)
		balloon_compat_managed(b, page, -1);
	balloon_page_list_enqueue(b, pages);
}

/*
 * Move up to @n pages out of the balloon onto @pages, which must be empty;
 * returns how many.  Fewer (even none) are returned while pages are
 * isolated for migration; unlike balloon_compat_dequeue() an empty balloon
 * is no error.
 */
static inline size_t balloon_compat_list_dequeue(struct balloon_dev_info *b,
						 struct list_head *pages,
						 size_t n)
{
	size_t got = balloon_page_list_dequeue(b, pages, n);
	struct page *page;

	list_for_each_entry(page, pages, lru)
		balloon_compat_managed(b, page, 1);
	return got;
}

/*
 * Blocks: pages from one higher-order allocation that a driver keeps on
 * a list of its own, whole, never migrated.  The core does not know them,
 * so these do for a block what enqueue and dequeue do for a single page:
 * count balloon_inflate/balloon_deflate, keep the node's balloon counter
 * where the kernel has one (on 7.x the core counts only its own pages),
 * and move the pages out of MemTotal and back when the balloon adjusts
 * managed pages.  The caller serialises them with its own lock.
 *
 * Every page of a block is marked offline from its allocation on, before
 * the host has it (kdump and hibernation skip such pages, and memory
 * offlining lets them through its isolation, so that the driver can give
 * them up when the memory goes offline), and unmarked before it is freed.
 */
static inline void balloon_compat_block_mark(struct page *page,
					     unsigned int order)
{
	unsigned long i;

	for (i = 0; i < 1UL << order; i++)
		__SetPageOffline(page + i);
}

static inline void balloon_compat_block_unmark(struct page *page,
					       unsigned int order)
{
	unsigned long i;

	for (i = 0; i < 1UL << order; i++)
		__ClearPageOffline(page + i);
}

/* A marked block goes into the balloon. */
static inline void balloon_compat_block_insert(struct page *page,
					       unsigned int order)
{
	unsigned long nr = 1UL << order;

	/*
	 * nr is a constant here; arm64's per-cpu add has a case for every
	 * operand size, and sparse warns about the 8-bit one truncating it.
	 */
	OPTIMIZER_HIDE_VAR(nr);
	count_vm_events(BALLOON_INFLATE, nr);
	balloon_compat_block_stat(page, nr);
	if (balloon_compat_adjust)
		adjust_managed_page_count(page, -(long)nr);
}

/* Undo balloon_compat_block_insert() and the mark: the block is freed next. */
static inline void balloon_compat_block_remove(struct page *page,
					       unsigned int order)
{
	unsigned long nr = 1UL << order;

	if (balloon_compat_adjust)
		adjust_managed_page_count(page, nr);
	balloon_compat_block_stat(page, -(long)nr);
	OPTIMIZER_HIDE_VAR(nr);		/* see balloon_compat_block_insert() */
	count_vm_events(BALLOON_DEFLATE, nr);
	balloon_compat_block_unmark(page, order);
}

#endif /* BALLOON_COMPAT_BALLOON_H */
