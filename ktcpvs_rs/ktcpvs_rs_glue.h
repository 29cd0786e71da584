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
 * A worker's wake-up: a wait queue and an "events pending" flag. Allocated by
 * ktcpvs_rs_waker_new(), freed by ktcpvs_rs_waker_free() once no event source names it.
 */
struct ktcpvs_rs_waker;
struct ktcpvs_rs_waker *ktcpvs_rs_waker_new(void);
void ktcpvs_rs_waker_free(struct ktcpvs_rs_waker *w);
/*
 * Sleeps until an event was signalled, @timeout_ms passed or the kthread is asked to stop;
 * clears the flag. Returns whether an event was pending.
 */
bool ktcpvs_rs_waker_wait(struct ktcpvs_rs_waker *w, long timeout_ms);

/*
 * An event source: a "pending" flag and the wakers to wake when one of the sockets attached to
 * it becomes readable, writable, changes state or reports an error. Any context may fire it.
 */
struct ktcpvs_rs_ev;
struct ktcpvs_rs_ev *ktcpvs_rs_ev_new(struct ktcpvs_rs_waker *const *w, unsigned int n);
/* Frees @ev. Every socket attached to it must have been detached (or released). */
void ktcpvs_rs_ev_free(struct ktcpvs_rs_ev *ev);
/* Sets the pending flag and wakes the wakers. */
void ktcpvs_rs_ev_fire(struct ktcpvs_rs_ev *ev);
/* Returns and clears the pending flag. */
bool ktcpvs_rs_ev_take(struct ktcpvs_rs_ev *ev);

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

/* Monotonic milliseconds (jiffies based). */
u64 ktcpvs_rs_now_ms(void);

#endif
