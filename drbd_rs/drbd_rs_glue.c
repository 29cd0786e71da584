// SPDX-License-Identifier: GPL-2.0
/*
 * C part of drbd_rs: module metadata that Rust's module! macro cannot express, and the
 * block-layer and netlink plumbing that kernel::bindings does not carry (see drbd_rs_glue.h).
 * Linked into the same drbd_rs.ko.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/crc32.h>
#include <linux/blkdev.h>
#include <linux/blk-mq.h>
#include <linux/bio.h>
#include <linux/fs.h>
#include <linux/workqueue.h>
#include <linux/slab.h>
#include <net/genetlink.h>

#include "drbd_rs_glue.h"

u32 drbd_rs_crc32c(u32 crc, const void *p, size_t len)
{
	return crc32c(crc, p, len);
}

/* ---------------------------------------------------------------- the block device */

struct drbd_rs_disk {
	struct blk_mq_tag_set tag_set;
	struct gendisk *disk;
	struct bio_set bio_set;
	void *owner;
};

/* Per-request state, blk-mq's PDU. */
struct drbd_rs_cmd {
	atomic_t pending;	/* clones in flight + 1 while submitting */
	atomic_t lower_pending;	/* the same, without the extra references */
	blk_status_t status;	/* first error seen */
	void *owner;
	struct work_struct done_work;	/* ends the request, see drbd_rs_cmd_put() */
};

static void drbd_rs_complete(struct request *rq)
{
	struct drbd_rs_cmd *cmd = blk_mq_rq_to_pdu(rq);
	blk_status_t status = READ_ONCE(cmd->status);

	drbd_rs_rust_rq_done(cmd->owner, req_op(rq), blk_rq_pos(rq), blk_rq_bytes(rq),
			     blk_status_to_errno(status));
	blk_mq_end_request(rq, status);
}

static void drbd_rs_done_work(struct work_struct *work)
{
	struct drbd_rs_cmd *cmd = container_of(work, struct drbd_rs_cmd, done_work);

	drbd_rs_complete(blk_mq_rq_from_pdu(cmd));
}

/*
 * The last clone completed. The request is not ended right here: this runs inside the lower
 * device's completion, possibly under the lower queue's flush-queue lock, and ending a request
 * of ours can take our own flush-queue lock (same lock class: lockdep reports recursion).
 * blk_mq_complete_request() does not help: with one software queue on the completing CPU it
 * completes inline. A BH work item runs after the lower completion returns, still in softirq
 * context, so latency stays low and the two locks never nest.
 */
static void drbd_rs_cmd_put(struct request *rq)
{
	struct drbd_rs_cmd *cmd = blk_mq_rq_to_pdu(rq);

	if (atomic_dec_and_test(&cmd->pending))
		queue_work(system_bh_wq, &cmd->done_work);
}

/*
 * The lower device is done with one clone (or submitting is done). A write's last one tells
 * Rust that the lower device has it (the resync source waits for that before reading). Runs
 * before the matching drbd_rs_cmd_put(), so the request is still ours.
 */
static void drbd_rs_lower_put(struct request *rq)
{
	struct drbd_rs_cmd *cmd = blk_mq_rq_to_pdu(rq);

	if (atomic_dec_and_test(&cmd->lower_pending) && op_is_write(req_op(rq)))
		drbd_rs_rust_lower_write(cmd->owner, true);
}

static void drbd_rs_clone_end_io(struct bio *clone)
{
	struct request *rq = clone->bi_private;
	struct drbd_rs_cmd *cmd = blk_mq_rq_to_pdu(rq);

	if (clone->bi_status)
		cmpxchg(&cmd->status, BLK_STS_OK, clone->bi_status);
	bio_put(clone);
	drbd_rs_lower_put(rq);
	drbd_rs_cmd_put(rq);
}

void drbd_rs_rq_submit_lower(struct request *rq, struct file *lower, int extra)
{
	struct drbd_rs_cmd *cmd = blk_mq_rq_to_pdu(rq);
	struct drbd_rs_disk *d = rq->q->queuedata;
	struct block_device *bdev = file_bdev(lower);
	struct bio *src, *clone;

	atomic_set(&cmd->pending, 1 + extra);
	atomic_set(&cmd->lower_pending, 1);
	cmd->status = BLK_STS_OK;
	if (op_is_write(req_op(rq)))
		drbd_rs_rust_lower_write(cmd->owner, false);
	if (req_op(rq) == REQ_OP_FLUSH) {
		/* A flush request carries no bio: send an empty preflush to the lower device. */
		clone = bio_alloc_bioset(bdev, 0, REQ_OP_WRITE | REQ_PREFLUSH, GFP_NOIO,
					 &d->bio_set);
		clone->bi_end_io = drbd_rs_clone_end_io;
		clone->bi_private = rq;
		atomic_inc(&cmd->pending);
		atomic_inc(&cmd->lower_pending);
		submit_bio(clone);
	} else {
		__rq_for_each_bio(src, rq) {
			clone = bio_alloc_clone(bdev, src, GFP_NOIO, &d->bio_set);
			if (!clone) {
				cmpxchg(&cmd->status, BLK_STS_OK, BLK_STS_RESOURCE);
				break;
			}
			clone->bi_end_io = drbd_rs_clone_end_io;
			clone->bi_private = rq;
			atomic_inc(&cmd->pending);
			atomic_inc(&cmd->lower_pending);
			submit_bio(clone);
		}
	}
	drbd_rs_lower_put(rq);
	drbd_rs_cmd_put(rq);
}

void drbd_rs_rq_put(struct request *rq)
{
	drbd_rs_cmd_put(rq);
}

void *drbd_rs_rq_copy_data(struct request *rq)
{
	u32 len = blk_rq_bytes(rq);
	struct req_iterator iter;
	struct bio_vec bv;
	u32 done = 0;
	void *buf = kvmalloc(len, GFP_NOIO);

	if (!buf)
		return NULL;
	rq_for_each_segment(bv, rq, iter) {
		if (done + bv.bv_len > len)
			break;
		memcpy_from_bvec(buf + done, &bv);
		done += bv.bv_len;
	}
	return buf;
}

void drbd_rs_buf_free(void *buf)
{
	kvfree(buf);
}

void drbd_rs_rq_end(struct request *rq, int error)
{
	blk_mq_end_request(rq, errno_to_blk_status(error));
}

static blk_status_t drbd_rs_queue_rq(struct blk_mq_hw_ctx *hctx,
				     const struct blk_mq_queue_data *bd)
{
	struct request *rq = bd->rq;
	struct drbd_rs_disk *d = hctx->queue->queuedata;
	struct drbd_rs_cmd *cmd = blk_mq_rq_to_pdu(rq);
	int err;

	cmd->owner = d->owner;
	INIT_WORK(&cmd->done_work, drbd_rs_done_work);
	blk_mq_start_request(rq);
	/*
	 * blk-mq may call us from the submitter's own submit_bio() (a plug flushed when the next
	 * request is added, or a direct issue), with current->bio_list set: any bio submitted
	 * from here, such as a synchronous activity-log write, is only queued on that list until
	 * we return, so waiting for it would never end. Rust then takes only the paths that do
	 * not wait and answers -EAGAIN otherwise: BLK_STS_RESOURCE requeues the request, and
	 * blk-mq dispatches it again from kblockd, outside any submit_bio().
	 */
	err = drbd_rs_rust_queue_rq(d->owner, rq, req_op(rq), blk_rq_pos(rq), blk_rq_bytes(rq),
				    rq->cmd_flags, current->bio_list != NULL);
	if (err == -EAGAIN)
		return BLK_STS_RESOURCE;
	return err ? errno_to_blk_status(err) : BLK_STS_OK;
}

static const struct blk_mq_ops drbd_rs_mq_ops = {
	.queue_rq = drbd_rs_queue_rq,
};

static int drbd_rs_open(struct gendisk *disk, blk_mode_t mode)
{
	struct drbd_rs_disk *d = disk->private_data;

	return drbd_rs_rust_open(d->owner, mode & BLK_OPEN_WRITE);
}

static void drbd_rs_release(struct gendisk *disk)
{
	struct drbd_rs_disk *d = disk->private_data;

	drbd_rs_rust_release(d->owner);
}

static const struct block_device_operations drbd_rs_fops = {
	.owner = THIS_MODULE,
	.open = drbd_rs_open,
	.release = drbd_rs_release,
};

struct drbd_rs_disk *drbd_rs_disk_create(unsigned int minor, void *owner)
{
	struct queue_limits lim = {
		.logical_block_size = 512,
		.physical_block_size = 4096,
		.max_hw_sectors = 1024,	/* 512 KiB, well below any lower device's limit */
		.max_segments = 128,
	};
	struct drbd_rs_disk *d;
	struct gendisk *disk;
	int err;

	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		return ERR_PTR(-ENOMEM);
	d->owner = owner;
	err = bioset_init(&d->bio_set, 64, 0, BIOSET_NEED_BVECS);
	if (err)
		goto free_d;

	d->tag_set.ops = &drbd_rs_mq_ops;
	d->tag_set.nr_hw_queues = 1;
	d->tag_set.queue_depth = 128;
	d->tag_set.numa_node = NUMA_NO_NODE;
	d->tag_set.cmd_size = sizeof(struct drbd_rs_cmd);
	d->tag_set.flags = BLK_MQ_F_BLOCKING;
	err = blk_mq_alloc_tag_set(&d->tag_set);
	if (err)
		goto free_bioset;

	disk = blk_mq_alloc_disk(&d->tag_set, &lim, d);
	if (IS_ERR(disk)) {
		err = PTR_ERR(disk);
		goto free_tags;
	}
	d->disk = disk;
	disk->fops = &drbd_rs_fops;
	disk->private_data = d;
	disk->flags |= GENHD_FL_NO_PART;
	snprintf(disk->disk_name, DISK_NAME_LEN, "rdrbd%u", minor);
	set_capacity(disk, 0);
	err = add_disk(disk);
	if (err)
		goto put_disk;
	return d;

put_disk:
	put_disk(disk);
free_tags:
	blk_mq_free_tag_set(&d->tag_set);
free_bioset:
	bioset_exit(&d->bio_set);
free_d:
	kfree(d);
	return ERR_PTR(err);
}

void drbd_rs_disk_destroy(struct drbd_rs_disk *d)
{
	del_gendisk(d->disk);
	put_disk(d->disk);
	blk_mq_free_tag_set(&d->tag_set);
	bioset_exit(&d->bio_set);
	kfree(d);
}

int drbd_rs_disk_set_lower(struct drbd_rs_disk *d, struct file *lower, u64 capacity)
{
	struct request_queue *q = d->disk->queue;
	struct queue_limits lim;
	unsigned int memflags;
	int err;

	lim = queue_limits_start_update(q);
	lim.features &= ~(BLK_FEAT_WRITE_CACHE | BLK_FEAT_FUA);
	lim.max_hw_discard_sectors = 0;
	lim.discard_granularity = 0;
	/*
	 * No REQ_OP_WRITE_ZEROES (P_ZEROES is not implemented): zero-outs reach us as writes of
	 * zero pages, which are replicated, so both nodes stay identical.
	 */
	lim.max_write_zeroes_sectors = 0;
	lim.max_hw_wzeroes_unmap_sectors = 0;
	if (lower) {
		struct block_device *bdev = file_bdev(lower);

		if (bdev_write_cache(bdev))
			lim.features |= BLK_FEAT_WRITE_CACHE;
		if (bdev_fua(bdev))
			lim.features |= BLK_FEAT_FUA;
		/* At most 4 MiB: a discard then spans at most two activity-log extents. */
		lim.max_hw_discard_sectors = min(bdev_max_discard_sectors(bdev), 8192U);
		lim.discard_granularity = bdev_discard_granularity(bdev);
		lim.logical_block_size = max(lim.logical_block_size,
					     bdev_logical_block_size(bdev));
	}
	memflags = blk_mq_freeze_queue(q);
	err = queue_limits_commit_update(q, &lim);
	blk_mq_unfreeze_queue(q, memflags);
	if (err)
		return err;
	set_capacity_and_notify(d->disk, capacity);
	return 0;
}

/* ---------------------------------------------------------------- the lower device */

struct file *drbd_rs_lower_open(const char *path, void *holder)
{
	return bdev_file_open_by_path(path, BLK_OPEN_READ | BLK_OPEN_WRITE, holder, NULL);
}

void drbd_rs_lower_close(struct file *lower)
{
	bdev_fput(lower);
}

u64 drbd_rs_lower_sectors(struct file *lower)
{
	return bdev_nr_sectors(file_bdev(lower));
}

int drbd_rs_lower_rw(struct file *lower, u64 sector, void *buf, u32 len, bool write, bool fua)
{
	blk_opf_t opf = write ? REQ_OP_WRITE | REQ_SYNC : REQ_OP_READ;
	struct bio *bio;
	int err;

	if (!len || len % SECTOR_SIZE || is_vmalloc_addr(buf))
		return -EINVAL;
	if (write && fua)
		opf |= REQ_FUA;
	bio = bio_alloc(file_bdev(lower), 1, opf, GFP_NOIO);
	bio->bi_iter.bi_sector = sector;
	bio_add_virt_nofail(bio, buf, len);
	err = submit_bio_wait(bio);
	bio_put(bio);
	return err;
}

void drbd_rs_module_get(void)
{
	__module_get(THIS_MODULE);
}

void drbd_rs_module_put(void)
{
	module_put(THIS_MODULE);
}

/* ---------------------------------------------------------------- generic netlink */

int drbd_rs_genl_reply(struct sk_buff *skb, struct genl_info *info)
{
	return genlmsg_reply(skb, info);
}

void drbd_rs_genl_set_err(struct genl_info *info, const char *msg)
{
	NL_SET_ERR_MSG_FMT(info->extack, "%s", msg);
}

u8 drbd_rs_genl_mcast_cap_net_admin(void)
{
	return GENL_MCAST_CAP_NET_ADMIN;
}

MODULE_VERSION("0.1.0");
