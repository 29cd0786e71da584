/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers linked into drbd_rs.ko: the block-layer and netlink plumbing that Rust cannot
 * reach through kernel::bindings (static inlines, macros, BLK_MQ_F_BLOCKING queues, queue
 * limits; drbd_rs_glue.c), and kernel TCP sockets and the HMAC of peer authentication
 * (drbd_rs_net.c). drbd_rs/glue.rs and drbd_rs/net.rs declare the same signatures in their
 * extern "C" blocks; keep them in step.
 *
 * Policy lives in Rust: the C side never decides whether an I/O is allowed, it only moves it.
 */
#ifndef HARK_DRBD_RS_GLUE_H
#define HARK_DRBD_RS_GLUE_H

#include <linux/types.h>

struct drbd_rs_disk;
struct request;
struct file;
struct sk_buff;
struct genl_info;

/* The kernel's crc32c() (include/linux/crc32.h is not in bindings_helper.h). */
u32 drbd_rs_crc32c(u32 crc, const void *p, size_t len);

/*
 * /dev/rdrbd<minor>: a blk-mq disk with a BLK_MQ_F_BLOCKING queue, so that queue_rq may sleep
 * (activity-log writes happen there). @owner is handed back to the Rust callbacks below.
 * Returns an ERR_PTR on failure. The disk is live (visible) when this returns.
 */
struct drbd_rs_disk *drbd_rs_disk_create(unsigned int minor, void *owner);
/* Removes the disk (del_gendisk), waits for in-flight requests, frees everything. */
void drbd_rs_disk_destroy(struct drbd_rs_disk *d);
/*
 * Sets the exposed capacity (512-byte sectors) and copies the lower device's limits
 * (write cache, FUA, discard) to the disk. @lower may be NULL for a diskless device.
 */
int drbd_rs_disk_set_lower(struct drbd_rs_disk *d, struct file *lower, u64 capacity);

/*
 * Submits every bio of @rq, remapped 1:1 to @lower; ends @rq when all have completed and
 * @extra more references (each dropped by drbd_rs_rq_put(), e.g. on the peer's ack) are gone.
 */
void drbd_rs_rq_submit_lower(struct request *rq, struct file *lower, int extra);
/* Drops one of the @extra references of drbd_rs_rq_submit_lower() (any context). */
void drbd_rs_rq_put(struct request *rq);
/* A kvmalloc'd (GFP_NOIO) copy of a write request's blk_rq_bytes() of data, or NULL. */
void *drbd_rs_rq_copy_data(struct request *rq);
/* Frees a buffer of drbd_rs_rq_copy_data(). */
void drbd_rs_buf_free(void *buf);
/* Ends @rq now with a negative errno (or 0). */
void drbd_rs_rq_end(struct request *rq, int error);

/* Opens @path read-write and exclusively for @holder. ERR_PTR on failure. */
struct file *drbd_rs_lower_open(const char *path, void *holder);
void drbd_rs_lower_close(struct file *lower);
u64 drbd_rs_lower_sectors(struct file *lower);
/*
 * Synchronous I/O of @len bytes at @sector; @buf must be in the kernel's direct mapping
 * (kmalloc), @len a multiple of 512. @fua adds REQ_FUA to writes. Returns 0 or -errno.
 */
int drbd_rs_lower_rw(struct file *lower, u64 sector, void *buf, u32 len, bool write, bool fua);

/* Pin / unpin this module (one reference per existing minor, so rmmod is refused). */
void drbd_rs_module_get(void);
void drbd_rs_module_put(void);

/* genlmsg_reply(). Consumes @skb. */
int drbd_rs_genl_reply(struct sk_buff *skb, struct genl_info *info);
/* Copies @msg (NUL-terminated) into the request's extended ack as its error message. */
void drbd_rs_genl_set_err(struct genl_info *info, const char *msg);
/* GENL_MCAST_CAP_NET_ADMIN (a BIT() macro, which bindgen does not carry). */
u8 drbd_rs_genl_mcast_cap_net_admin(void);

/* ---------------------------------------------------------------- networking (drbd_rs_net.c) */

struct socket;
struct task_struct;

/* An IPv4 (@family AF_INET, 4 bytes of @addr) or IPv6 (AF_INET6) address and port. */
struct drbd_rs_addr {
	u16 family;
	u16 port;
	u8 addr[16];
};

/*
 * TCP sockets in init_net. Timeouts are in milliseconds, 0 = none. Every function returning
 * a socket returns an ERR_PTR on failure; accept returns ERR_PTR(-EAGAIN) on timeout.
 */
struct socket *drbd_rs_sock_listen(const struct drbd_rs_addr *local);
struct socket *drbd_rs_sock_accept(struct socket *listener, long timeout_ms);
/* Binds to @local's address (any port) and connects to @peer within @timeout_ms. */
struct socket *drbd_rs_sock_connect(const struct drbd_rs_addr *local,
				    const struct drbd_rs_addr *peer, long timeout_ms);
/* The address and port of the other end of a connected socket. 0 or -errno. */
int drbd_rs_sock_peer(struct socket *sock, struct drbd_rs_addr *peer);
/* Sets the receive/send timeouts, TCP_NODELAY and GFP_NOIO allocations. */
void drbd_rs_sock_setup(struct socket *sock, long rcv_timeout_ms, long snd_timeout_ms);
/*
 * Sends/receives exactly @len bytes. 0 on success; -EAGAIN: timed out before any byte moved;
 * -ETIMEDOUT: timed out part-way; -ECONNRESET: the peer closed; other -errno.
 */
int drbd_rs_sock_send(struct socket *sock, const void *buf, size_t len, bool more);
int drbd_rs_sock_recv(struct socket *sock, void *buf, size_t len);
/* drbd_socket_okay(): not closed by the peer (data may be waiting). */
bool drbd_rs_sock_alive(struct socket *sock);
/* Shuts both directions down: wakes every thread blocked on the socket. */
void drbd_rs_sock_shutdown(struct socket *sock);
void drbd_rs_sock_release(struct socket *sock);

/* HMAC(alg) of data keyed with key (CRAM-HMAC); *outlen: room in, digest size out. */
int drbd_rs_hmac(const char *alg, const u8 *key, unsigned int keylen, const u8 *data,
		 unsigned int len, u8 *out, unsigned int *outlen);

/* Implemented in Rust (drbd_rs/device.rs): the device's policy. */
int drbd_rs_rust_open(void *owner, bool write);
void drbd_rs_rust_release(void *owner);
/*
 * A request arrived (process context, may sleep). Return 0 after taking the request over
 * (it must then be ended through drbd_rs_rq_submit_lower() or drbd_rs_rq_end()), -EAGAIN to
 * have it dispatched again later (nothing taken), or another negative errno to fail it at once.
 * @nested: called inside the submitter's submit_bio() (current->bio_list is set), where a bio
 * we submit waits on that list until we return: no waiting for I/O or for the state lock then.
 */
int drbd_rs_rust_queue_rq(void *owner, struct request *rq, u32 op, u64 sector, u32 bytes,
			  u32 flags, bool nested);
/*
 * A write request of drbd_rs_rq_submit_lower() goes to the lower device (@done false, process
 * context) or the lower device completed all of it (@done true, any context, must not sleep).
 */
void drbd_rs_rust_lower_write(void *owner, bool done);
/* A request taken over by Rust completed (any context, must not sleep). */
void drbd_rs_rust_rq_done(void *owner, u32 op, u64 sector, u32 bytes, int error);

#endif
