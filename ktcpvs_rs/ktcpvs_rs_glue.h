/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers linked into ktcpvs_rs.ko (ktcpvs_rs_net.c): non-blocking kernel TCP sockets, socket
 * callbacks that wake the worker threads. ktcpvs_rs/net.rs declares the same
 * signatures in its extern "C" block; keep the two in step.
 *
 * Policy lives in Rust (relay.rs): the C side never decides what to send or when to give up.
 */
#ifndef HARK_KTCPVS_RS_GLUE_H
#define HARK_KTCPVS_RS_GLUE_H

#include <linux/types.h>

struct socket;
struct task_struct;

/* An IPv4 (@family AF_INET, 4 bytes of @addr) or IPv6 (AF_INET6) address and port. */
struct ktcpvs_rs_addr {
	u16 family;
	u16 port;
	u8 addr[16];
};

/* Most wakers an event source wakes (one per worker thread). */
#define KTCPVS_RS_MAX_WAKERS 8

/*
 * A worker's wake-up and ready queue: the event sources that fired since it last looked, each
 * at most once, in firing order. Allocated by ktcpvs_rs_waker_new(), freed by
 * ktcpvs_rs_waker_free() once no live event source names it (it frees the dead ones queued).
 */
struct ktcpvs_rs_waker;
struct ktcpvs_rs_waker *ktcpvs_rs_waker_new(void);
void ktcpvs_rs_waker_free(struct ktcpvs_rs_waker *w);
/* Sleeps until the queue is not empty, @timeout_ms passed or the kthread is asked to stop. */
void ktcpvs_rs_waker_wait(struct ktcpvs_rs_waker *w, long timeout_ms);
/*
 * Pops the next fired source and stores its token (the owning worker only): false when the
 * queue is empty. Sources freed while queued are freed here and skipped.
 */
bool ktcpvs_rs_waker_next(struct ktcpvs_rs_waker *w, u64 *token);

/*
 * An event source with a @token: fired when one of the sockets attached to it becomes
 * readable, writable, changes state or reports an error (any context), it is queued once on
 * one of its @n wakers (in turn) until that worker pops it.
 */
struct ktcpvs_rs_ev;
struct ktcpvs_rs_ev *ktcpvs_rs_ev_new(struct ktcpvs_rs_waker *const *w, unsigned int n,
				      u64 token);
/*
 * Frees @ev (or leaves it to the worker whose queue holds it). Every socket attached to it
 * must have been detached (or released).
 */
void ktcpvs_rs_ev_free(struct ktcpvs_rs_ev *ev);
/* Queues @ev on one of its wakers (unless it is queued) and wakes that worker. */
void ktcpvs_rs_ev_fire(struct ktcpvs_rs_ev *ev);
/* sizeof(struct ktcpvs_rs_ev), for the memory accounting. */
size_t ktcpvs_rs_ev_size(void);

/*
 * Non-blocking TCP sockets in init_net. Functions returning a socket return an ERR_PTR on
 * failure. Every socket is released with ktcpvs_rs_sock_release(), which detaches it first.
 */
struct socket *ktcpvs_rs_sock_listen(const struct ktcpvs_rs_addr *local, int backlog);
/* Accepts one connection without blocking: 0 and *@out set, -EAGAIN, or another -errno. */
int ktcpvs_rs_sock_accept(struct socket *listener, struct socket **out);
/* A new unconnected socket of @family (for ktcpvs_rs_sock_connect()). */
struct socket *ktcpvs_rs_sock_new(u16 family);
/* Starts connecting: 0 (connected), -EINPROGRESS, or another -errno. */
int ktcpvs_rs_sock_connect(struct socket *s, const struct ktcpvs_rs_addr *peer);
/* 1: established; 0: still connecting; -errno: failed. */
int ktcpvs_rs_sock_connected(struct socket *s);
/* Routes the socket's callbacks to @ev (under sk_callback_lock). */
void ktcpvs_rs_sock_attach(struct socket *s, struct ktcpvs_rs_ev *ev);
/*
 * Restores the stack's default callbacks and clears sk_user_data (under sk_callback_lock):
 * after this no callback uses the event source the socket was attached to.
 */
void ktcpvs_rs_sock_detach(struct socket *s);
/* Non-blocking I/O: bytes moved (> 0), 0 = end of stream (recv only), -EAGAIN, -errno. */
int ktcpvs_rs_sock_recv(struct socket *s, void *buf, size_t len);
int ktcpvs_rs_sock_send(struct socket *s, const void *buf, size_t len);
/* shutdown(2): @how is SHUT_WR (1) or SHUT_RDWR (2). */
void ktcpvs_rs_sock_shutdown(struct socket *s, int how);
/* The peer's address; 0 or -errno. */
int ktcpvs_rs_sock_peer(struct socket *s, struct ktcpvs_rs_addr *out);
/* Detaches the callbacks (after this no callback uses the event source) and releases. */
void ktcpvs_rs_sock_release(struct socket *s);

/* Captures the stack's default TCP callbacks (call once before any attach). 0 or -errno. */
int ktcpvs_rs_net_init(void);

/* num_online_cpus() */
unsigned int ktcpvs_rs_online_cpus(void);

/* Monotonic milliseconds (jiffies based). */
u64 ktcpvs_rs_now_ms(void);

#endif
