// SPDX-License-Identifier: GPL-2.0
/*
 * C part of ktcpvs_rs's data path: non-blocking kernel TCP sockets whose callbacks wake the
 * worker threads (the threads themselves: kcommon/kthread.rs). Socket callbacks and
 * sk_callback_lock are macros, inlines or struct fields that kernel::bindings does not carry. Policy (what to read,
 * send, when to give up) lives in Rust (ktcpvs_rs/net.rs, relay.rs).
 *
 * Callbacks run in softirq or process context with socket locks held: they only set a flag and
 * wake a wait queue. A socket is attached to an event source by storing it in sk_user_data
 * (tagged SK_USER_DATA_NOCOPY, so that children of a listener never inherit it) and replacing
 * four callbacks; detaching restores the stack's default callbacks (captured from a fresh
 * socket by ktcpvs_rs_net_init()), so that no socket keeps a pointer into this module once it
 * is released, even one that lingers in FIN_WAIT.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jiffies.h>
#include <linux/cpumask.h>
#include <linux/kthread.h>
#include <linux/llist.h>
#include <linux/net.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/tcp.h>
#include <linux/wait.h>
#include <net/inet_connection_sock.h>
#include <net/inet_sock.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <net/net_namespace.h>

#include "ktcpvs_rs_glue.h"

/*
 * A worker's ready queue. Event sources are pushed on @ready (lock-free, any context); only
 * the worker pops them, through @batch (the part of @ready it took, in firing order).
 */
struct ktcpvs_rs_waker {
	wait_queue_head_t wq;
	struct llist_head ready;
	struct llist_node *batch;
};

/* ktcpvs_rs_ev.state */
enum {
	EV_IDLE,	/* in no queue */
	EV_QUEUED,	/* in a worker's queue */
	EV_DEAD,	/* in a worker's queue, freed by its owner: the worker frees it */
	EV_FREED,
};

struct ktcpvs_rs_ev {
	atomic_t state;
	struct llist_node node;
	u64 token;
	atomic_t rr;
	unsigned int n;
	struct ktcpvs_rs_waker *w[KTCPVS_RS_MAX_WAKERS];
};

/* The stack's own callbacks of a TCP socket, restored on detach. */
static struct {
	void (*data_ready)(struct sock *sk);
	void (*state_change)(struct sock *sk);
	void (*write_space)(struct sock *sk);
	void (*error_report)(struct sock *sk);
} ktcpvs_rs_def_cb;

int ktcpvs_rs_net_init(void)
{
	struct socket *s;
	int err = sock_create_kern(&init_net, AF_INET, SOCK_STREAM, IPPROTO_TCP, &s);

	if (err)
		return err;
	ktcpvs_rs_def_cb.data_ready = s->sk->sk_data_ready;
	ktcpvs_rs_def_cb.state_change = s->sk->sk_state_change;
	ktcpvs_rs_def_cb.write_space = s->sk->sk_write_space;
	ktcpvs_rs_def_cb.error_report = s->sk->sk_error_report;
	sock_release(s);
	return 0;
}

struct ktcpvs_rs_waker *ktcpvs_rs_waker_new(void)
{
	struct ktcpvs_rs_waker *w = kzalloc(sizeof(*w), GFP_KERNEL);

	if (!w)
		return NULL;
	init_waitqueue_head(&w->wq);
	init_llist_head(&w->ready);
	w->batch = NULL;
	return w;
}

static bool ktcpvs_rs_waker_has_ready(struct ktcpvs_rs_waker *w)
{
	return w->batch || !llist_empty(&w->ready);
}

bool ktcpvs_rs_waker_next(struct ktcpvs_rs_waker *w, u64 *token)
{
	struct ktcpvs_rs_ev *ev;
	struct llist_node *node;

	for (;;) {
		if (!w->batch)
			w->batch = llist_reverse_order(llist_del_all(&w->ready));
		node = w->batch;
		if (!node)
			return false;
		w->batch = node->next;
		ev = container_of(node, struct ktcpvs_rs_ev, node);
		*token = ev->token;
		/* Out of the queue: a fire from now on queues it again. */
		if (atomic_xchg(&ev->state, EV_IDLE) == EV_DEAD) {
			kfree(ev);
			continue;
		}
		return true;
	}
}

void ktcpvs_rs_waker_free(struct ktcpvs_rs_waker *w)
{
	u64 token;

	/* Frees the dead sources still queued; live ones are their owners' (none should be). */
	while (ktcpvs_rs_waker_next(w, &token))
		;
	kfree(w);
}

void ktcpvs_rs_waker_wait(struct ktcpvs_rs_waker *w, long timeout_ms)
{
	wait_event_interruptible_timeout(w->wq,
					 ktcpvs_rs_waker_has_ready(w) || kthread_should_stop(),
					 msecs_to_jiffies(timeout_ms));
}

struct ktcpvs_rs_ev *ktcpvs_rs_ev_new(struct ktcpvs_rs_waker *const *w, unsigned int n,
				      u64 token)
{
	struct ktcpvs_rs_ev *ev;
	unsigned int i;

	if (n == 0 || n > KTCPVS_RS_MAX_WAKERS)
		return NULL;
	ev = kzalloc(sizeof(*ev), GFP_KERNEL);
	if (!ev)
		return NULL;
	atomic_set(&ev->state, EV_IDLE);
	ev->token = token;
	ev->n = n;
	for (i = 0; i < n; i++)
		ev->w[i] = w[i];
	return ev;
}

void ktcpvs_rs_ev_free(struct ktcpvs_rs_ev *ev)
{
	int s = atomic_read(&ev->state);

	for (;;) {
		if (s == EV_IDLE && atomic_try_cmpxchg(&ev->state, &s, EV_FREED)) {
			kfree(ev);
			return;
		}
		/* Queued: the worker that pops it frees it. */
		if (s == EV_QUEUED && atomic_try_cmpxchg(&ev->state, &s, EV_DEAD))
			return;
		if (WARN_ON_ONCE(s != EV_IDLE && s != EV_QUEUED))
			return;
	}
}

size_t ktcpvs_rs_ev_size(void)
{
	return sizeof(struct ktcpvs_rs_ev);
}

void ktcpvs_rs_ev_fire(struct ktcpvs_rs_ev *ev)
{
	struct ktcpvs_rs_waker *w;

	/* Already queued (or freed: cannot happen, its sockets are detached first). */
	if (atomic_cmpxchg(&ev->state, EV_IDLE, EV_QUEUED) != EV_IDLE)
		return;
	/* One worker: the next one in turn when the source names several (a listener). */
	w = ev->w[ev->n == 1 ? 0 : (unsigned int)atomic_inc_return(&ev->rr) % ev->n];
	if (llist_add(&ev->node, &w->ready))
		wake_up_interruptible(&w->wq);
}

static void ktcpvs_rs_cb(struct sock *sk)
{
	struct ktcpvs_rs_ev *ev;

	read_lock_bh(&sk->sk_callback_lock);
	ev = __locked_read_sk_user_data_with_flags(sk, SK_USER_DATA_NOCOPY);
	if (ev)
		ktcpvs_rs_ev_fire(ev);
	read_unlock_bh(&sk->sk_callback_lock);
}

static void ktcpvs_rs_write_space(struct sock *sk)
{
	/* As sk_stream_write_space(): stop further calls until the next short write. */
	if (sk_stream_is_writeable(sk) && sk->sk_socket)
		clear_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
	ktcpvs_rs_cb(sk);
}

void ktcpvs_rs_sock_attach(struct socket *s, struct ktcpvs_rs_ev *ev)
{
	struct sock *sk = s->sk;

	write_lock_bh(&sk->sk_callback_lock);
	__rcu_assign_sk_user_data_with_flags(sk, ev, SK_USER_DATA_NOCOPY);
	sk->sk_data_ready = ktcpvs_rs_cb;
	sk->sk_state_change = ktcpvs_rs_cb;
	sk->sk_write_space = ktcpvs_rs_write_space;
	sk->sk_error_report = ktcpvs_rs_cb;
	write_unlock_bh(&sk->sk_callback_lock);
}

void ktcpvs_rs_sock_detach(struct socket *s)
{
	struct sock *sk = s->sk;

	write_lock_bh(&sk->sk_callback_lock);
	rcu_assign_sk_user_data(sk, NULL);
	sk->sk_data_ready = ktcpvs_rs_def_cb.data_ready;
	sk->sk_state_change = ktcpvs_rs_def_cb.state_change;
	sk->sk_write_space = ktcpvs_rs_def_cb.write_space;
	sk->sk_error_report = ktcpvs_rs_def_cb.error_report;
	write_unlock_bh(&sk->sk_callback_lock);
}

static int ktcpvs_rs_sockaddr(const struct ktcpvs_rs_addr *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->addr, 4);
		return sizeof(*in);
	}
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		memcpy(&in6->sin6_addr, a->addr, 16);
		return sizeof(*in6);
	}
	return -EAFNOSUPPORT;
}

struct socket *ktcpvs_rs_sock_listen(const struct ktcpvs_rs_addr *local, int backlog)
{
	struct sockaddr_storage ss;
	struct socket *sock;
	int len, err;

	len = ktcpvs_rs_sockaddr(local, &ss);
	if (len < 0)
		return ERR_PTR(len);
	err = sock_create_kern(&init_net, local->family, SOCK_STREAM, IPPROTO_TCP, &sock);
	if (err)
		return ERR_PTR(err);
	sock->sk->sk_reuse = SK_CAN_REUSE;
	/*
	 * IP_FREEBIND: a service may listen on a virtual address this node does not hold yet
	 * (VRRP/keepalived moves it here on failover), as with net.ipv4.ip_nonlocal_bind.
	 */
	inet_set_bit(FREEBIND, sock->sk);
	err = kernel_bind(sock, (struct sockaddr_unsized *)&ss, len);
	if (!err)
		err = kernel_listen(sock, backlog);
	if (err) {
		sock_release(sock);
		return ERR_PTR(err);
	}
	return sock;
}

int ktcpvs_rs_sock_accept(struct socket *listener, struct socket **out)
{
	struct socket *s = NULL;
	int err;

	/* kernel_accept() allocates a socket before it looks at the queue. */
	if (reqsk_queue_empty(&inet_csk(listener->sk)->icsk_accept_queue))
		return -EAGAIN;
	err = kernel_accept(listener, &s, O_NONBLOCK);
	if (err)
		return err;
	tcp_sock_set_nodelay(s->sk);
	*out = s;
	return 0;
}

struct socket *ktcpvs_rs_sock_new(u16 family)
{
	struct socket *sock;
	int err;

	if (family != AF_INET && family != AF_INET6)
		return ERR_PTR(-EAFNOSUPPORT);
	err = sock_create_kern(&init_net, family, SOCK_STREAM, IPPROTO_TCP, &sock);
	if (err)
		return ERR_PTR(err);
	tcp_sock_set_nodelay(sock->sk);
	return sock;
}

int ktcpvs_rs_sock_connect(struct socket *s, const struct ktcpvs_rs_addr *peer)
{
	struct sockaddr_storage ss;
	int len = ktcpvs_rs_sockaddr(peer, &ss);

	if (len < 0)
		return len;
	return kernel_connect(s, (struct sockaddr_unsized *)&ss, len, O_NONBLOCK);
}

int ktcpvs_rs_sock_connected(struct socket *s)
{
	struct sock *sk = s->sk;
	int err;

	switch (READ_ONCE(sk->sk_state)) {
	case TCP_ESTABLISHED:
	case TCP_CLOSE_WAIT:
		return 1;
	case TCP_SYN_SENT:
	case TCP_SYN_RECV:
		return 0;
	default:
		err = sock_error(sk);
		return err ? err : -ECONNREFUSED;
	}
}

int ktcpvs_rs_sock_recv(struct socket *s, void *buf, size_t len)
{
	struct kvec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };

	if (len > INT_MAX)
		len = INT_MAX;
	return kernel_recvmsg(s, &msg, &iov, 1, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

int ktcpvs_rs_sock_send(struct socket *s, const void *buf, size_t len)
{
	struct kvec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	int rv;

	if (len > INT_MAX)
		len = INT_MAX;
	iov.iov_len = len;
	rv = kernel_sendmsg(s, &msg, &iov, 1, len);
	return rv == 0 && len ? -EAGAIN : rv;
}

void ktcpvs_rs_sock_shutdown(struct socket *s, int how)
{
	kernel_sock_shutdown(s, how == 1 ? SHUT_WR : SHUT_RDWR);
}

int ktcpvs_rs_sock_peer(struct socket *s, struct ktcpvs_rs_addr *out)
{
	struct sockaddr_storage ss;
	int err;

	memset(out, 0, sizeof(*out));
	err = kernel_getpeername(s, (struct sockaddr *)&ss);
	if (err < 0)
		return err;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		out->family = AF_INET;
		out->port = ntohs(in->sin_port);
		memcpy(out->addr, &in->sin_addr, 4);
		return 0;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		out->family = AF_INET6;
		out->port = ntohs(in6->sin6_port);
		memcpy(out->addr, &in6->sin6_addr, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

void ktcpvs_rs_sock_release(struct socket *s)
{
	ktcpvs_rs_sock_detach(s);
	sock_release(s);
}

unsigned int ktcpvs_rs_online_cpus(void)
{
	return num_online_cpus();
}

u64 ktcpvs_rs_now_ms(void)
{
	return jiffies64_to_msecs(get_jiffies_64());
}
