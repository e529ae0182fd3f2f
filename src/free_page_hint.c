// SPDX-License-Identifier: GPL-2.0
/*
 * Free page hinting (VIRTIO_BALLOON_F_FREE_PAGE_HINT) of the virtio
 * balloon: while the host migrates the guest, it asks for free memory by
 * a command id; we hand it free blocks of the largest buddy order, which
 * it need not copy, and keep them until it says it is done (or the
 * guest needs them back: the hint shrinker).
 */
#include <linux/gfp.h>
#include <linux/scatterlist.h>
#include <linux/shrinker.h>

#include "compat/shrinker.h"
#include "virtio_balloon.h"

/* Give back up to @nr hint blocks to the page allocator. */
unsigned long hint_release(struct virtio_balloon *vb, unsigned long nr)
{
	unsigned long done = 0;
	struct page *page;

	spin_lock_irq(&vb->hint_lock);
	while (done < nr) {
		page = list_first_entry_or_null(&vb->hint_blocks, struct page, lru);
		if (!page)
			break;
		list_del(&page->lru);
		__free_pages(page, VB_HINT_ORDER);
		done++;
	}
	vb->hint_nr_blocks -= done;
	spin_unlock_irq(&vb->hint_lock);

	return done;
}

static u32 hint_host_id(struct virtio_balloon *vb)
{
	if (test_and_clear_bit(0, &vb->hint_id_stale))
		virtio_cread_le(vb->vdev, struct virtio_balloon_config,
				free_page_hint_cmd_id, &vb->hint_id_host);
	return vb->hint_id_host;
}

static int hint_send_id(struct virtio_balloon *vb, __virtio32 *id)
{
	struct virtqueue *vq = vb->free_page_vq;
	struct scatterlist sg;
	unsigned int len;
	int err;

	/* The host has seen the blocks it used: drop them from the ring. */
	while (virtqueue_get_buf(vq, &len))
		;
	sg_init_one(&sg, id, sizeof(*id));
	err = virtqueue_add_outbuf(vq, &sg, 1, id, GFP_KERNEL);
	if (!err)
		virtqueue_kick(vq);
	return err;
}

/*
 * Hand the host one free block as a hint; -ENOMEM once no free block is
 * left.  The block stays ours (on hint_blocks) until the host is done or
 * the shrinker wants it back.
 */
static int hint_send_block(struct virtio_balloon *vb)
{
	struct virtqueue *vq = vb->free_page_vq;
	struct scatterlist sg;
	struct page *page;
	unsigned int len;
	int err;

	while (virtqueue_get_buf(vq, &len))
		;
	page = alloc_pages(VB_HINT_GFP, VB_HINT_ORDER);
	if (!page)
		return -ENOMEM;

	/* One slot stays free for the stop id. */
	if (vq->num_free <= 1) {
		__free_pages(page, VB_HINT_ORDER);
		return 0;
	}
	sg_init_one(&sg, page_address(page), VB_HINT_BYTES);
	err = virtqueue_add_inbuf(vq, &sg, 1, page, GFP_KERNEL);
	if (err) {
		__free_pages(page, VB_HINT_ORDER);
		return err;
	}
	virtqueue_kick(vq);

	spin_lock_irq(&vb->hint_lock);
	list_add(&page->lru, &vb->hint_blocks);
	vb->hint_nr_blocks++;
	spin_unlock_irq(&vb->hint_lock);
	WRITE_ONCE(vb->hint_sent, vb->hint_sent + 1);
	return 0;
}

/* One hinting round: the id, free blocks until none or a new id, stop. */
static void hint_report(struct virtio_balloon *vb)
{
	struct device *dev = &vb->vdev->dev;
	int err;

	vb->hint_rounds++;
	vb->hint_id_active = cpu_to_virtio32(vb->vdev, hint_host_id(vb));
	err = hint_send_id(vb, &vb->hint_id_active);
	if (err)
		dev_err(dev, "free page hint: cannot send the command id: %d\n", err);

	/* Large guests hand over thousands of blocks: let others run. */
	while (!err && virtio32_to_cpu(vb->vdev, vb->hint_id_active) == hint_host_id(vb)) {
		err = hint_send_block(vb);
		cond_resched();
	}
	if (err && err != -ENOMEM)
		dev_err(dev, "free page hint: cannot send a block: %d\n", err);

	err = hint_send_id(vb, &vb->hint_id_stop);
	if (err)
		dev_err(dev, "free page hint: cannot send the stop id: %d\n", err);
}

static void hint_work_func(struct work_struct *work)
{
	struct virtio_balloon *vb = container_of(work, struct virtio_balloon,
						 hint_work);
	u32 id = hint_host_id(vb);

	if (id == VIRTIO_BALLOON_CMD_ID_DONE)
		hint_release(vb, ULONG_MAX);
	else if (id != VIRTIO_BALLOON_CMD_ID_STOP &&
		 id != virtio32_to_cpu(vb->vdev, vb->hint_id_active))
		hint_report(vb);
}

/* Hint blocks are free memory on loan to the host: any user may have them. */
static unsigned long hint_shrinker_count(struct shrinker *s,
					 struct shrink_control *sc)
{
	struct virtio_balloon *vb = shrinker_private(s);

	return READ_ONCE(vb->hint_nr_blocks) * VB_HINT_PAGES;
}

static unsigned long hint_shrinker_scan(struct shrinker *s,
					struct shrink_control *sc)
{
	struct virtio_balloon *vb = shrinker_private(s);
	unsigned long blocks = DIV_ROUND_UP(sc->nr_to_scan, VB_HINT_PAGES);

	return hint_release(vb, blocks) * VB_HINT_PAGES;
}

int hint_init(struct virtio_balloon *vb)
{
	/* The ring needs room for a block besides the stop id. */
	if (virtqueue_get_vring_size(vb->free_page_vq) < 2)
		return -ENOSPC;

	vb->hint_wq = alloc_workqueue("virtio-balloon-hint",
				      WQ_FREEZABLE | WQ_CPU_INTENSIVE | WQ_PERCPU, 0);
	if (!vb->hint_wq)
		return -ENOMEM;
	INIT_WORK(&vb->hint_work, hint_work_func);
	spin_lock_init(&vb->hint_lock);
	INIT_LIST_HEAD(&vb->hint_blocks);
	vb->hint_id_host = VIRTIO_BALLOON_CMD_ID_STOP;
	vb->hint_id_active = cpu_to_virtio32(vb->vdev, VIRTIO_BALLOON_CMD_ID_STOP);
	vb->hint_id_stop = cpu_to_virtio32(vb->vdev, VIRTIO_BALLOON_CMD_ID_STOP);

	vb->hint_shrinker = shrinker_alloc(0, "virtio-balloon");
	if (!vb->hint_shrinker) {
		destroy_workqueue(vb->hint_wq);
		return -ENOMEM;
	}
	vb->hint_shrinker->count_objects = hint_shrinker_count;
	vb->hint_shrinker->scan_objects = hint_shrinker_scan;
	shrinker_set_private(vb->hint_shrinker, vb);
	shrinker_register(vb->hint_shrinker);
	return 0;
}

void hint_exit(struct virtio_balloon *vb)
{
	shrinker_free(vb->hint_shrinker);
	cancel_work_sync(&vb->hint_work);
	destroy_workqueue(vb->hint_wq);
}
