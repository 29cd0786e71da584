// SPDX-License-Identifier: GPL-2.0
/*
 * C part of drbd_rs's networking: kernel TCP sockets with timeouts (kernel threads are in
 * kcommon/kthread.rs), and the HMAC of CRAM-HMAC peer authentication (crypto API). Socket
 * options are macros or inlines that kernel::bindings does not carry. Policy (what to send,
 * when to give up) lives in Rust (drbd_rs/net.rs, conn.rs).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <crypto/hash.h>
#include <linux/net.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/tcp.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <net/net_namespace.h>

#include "drbd_rs_glue.h"

static long drbd_rs_ms_to_jiffies(long ms)
{
	return ms > 0 ? msecs_to_jiffies(ms) : MAX_SCHEDULE_TIMEOUT;
}

static int drbd_rs_sockaddr(const struct drbd_rs_addr *a, struct sockaddr_storage *ss,
			    bool any_port)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = any_port ? 0 : htons(a->port);
		memcpy(&in->sin_addr, a->addr, 4);
		return sizeof(*in);
	}
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = any_port ? 0 : htons(a->port);
		memcpy(&in6->sin6_addr, a->addr, 16);
		return sizeof(*in6);
	}
	return -EAFNOSUPPORT;
}

struct socket *drbd_rs_sock_listen(const struct drbd_rs_addr *local)
{
	struct sockaddr_storage ss;
	struct socket *sock;
	int len, err;

	len = drbd_rs_sockaddr(local, &ss, false);
	if (len < 0)
		return ERR_PTR(len);
	err = sock_create_kern(&init_net, local->family, SOCK_STREAM, IPPROTO_TCP, &sock);
	if (err)
		return ERR_PTR(err);
	sock->sk->sk_reuse = SK_CAN_REUSE;
	err = kernel_bind(sock, (struct sockaddr_unsized *)&ss, len);
	if (!err)
		err = kernel_listen(sock, 5);
	if (err) {
		sock_release(sock);
		return ERR_PTR(err);
	}
	return sock;
}

struct socket *drbd_rs_sock_accept(struct socket *listener, long timeout_ms)
{
	struct socket *s = NULL;
	int err;

	listener->sk->sk_rcvtimeo = drbd_rs_ms_to_jiffies(timeout_ms);
	err = kernel_accept(listener, &s, 0);
	if (err)
		return ERR_PTR(err);
	return s;
}

struct socket *drbd_rs_sock_connect(const struct drbd_rs_addr *local,
				    const struct drbd_rs_addr *peer, long timeout_ms)
{
	struct sockaddr_storage src, dst;
	struct socket *sock;
	int slen, dlen, err;

	slen = drbd_rs_sockaddr(local, &src, true);
	dlen = drbd_rs_sockaddr(peer, &dst, false);
	if (slen < 0 || dlen < 0 || local->family != peer->family)
		return ERR_PTR(-EAFNOSUPPORT);
	err = sock_create_kern(&init_net, local->family, SOCK_STREAM, IPPROTO_TCP, &sock);
	if (err)
		return ERR_PTR(err);
	sock->sk->sk_rcvtimeo = sock->sk->sk_sndtimeo = drbd_rs_ms_to_jiffies(timeout_ms);
	/* Bound to the configured local address (port chosen by the stack), as DRBD does. */
	err = kernel_bind(sock, (struct sockaddr_unsized *)&src, slen);
	if (!err)
		err = kernel_connect(sock, (struct sockaddr_unsized *)&dst, dlen, 0);
	if (err) {
		sock_release(sock);
		return ERR_PTR(err);
	}
	return sock;
}

int drbd_rs_sock_peer(struct socket *sock, struct drbd_rs_addr *peer)
{
	struct sockaddr_storage ss;
	int len;

	len = kernel_getpeername(sock, (struct sockaddr *)&ss);
	if (len < 0)
		return len;
	memset(peer, 0, sizeof(*peer));
	if (ss.ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		peer->family = AF_INET;
		peer->port = ntohs(in->sin_port);
		memcpy(peer->addr, &in->sin_addr, 4);
		return 0;
	}
	if (ss.ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		peer->family = AF_INET6;
		peer->port = ntohs(in6->sin6_port);
		memcpy(peer->addr, &in6->sin6_addr, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

void drbd_rs_sock_setup(struct socket *sock, long rcv_timeout_ms, long snd_timeout_ms)
{
	sock->sk->sk_rcvtimeo = drbd_rs_ms_to_jiffies(rcv_timeout_ms);
	sock->sk->sk_sndtimeo = drbd_rs_ms_to_jiffies(snd_timeout_ms);
	sock->sk->sk_allocation = GFP_NOIO;
	sock->sk->sk_use_task_frag = false;
	tcp_sock_set_nodelay(sock->sk);
}

int drbd_rs_sock_send(struct socket *sock, const void *buf, size_t len, bool more)
{
	size_t done = 0;

	while (done < len) {
		struct kvec iov = { .iov_base = (void *)buf + done, .iov_len = len - done };
		struct msghdr msg = { .msg_flags = MSG_NOSIGNAL | (more ? MSG_MORE : 0) };
		int rv = kernel_sendmsg(sock, &msg, &iov, 1, iov.iov_len);

		if (rv < 0)
			return rv == -EAGAIN && done ? -ETIMEDOUT : rv;
		if (rv == 0)
			return -ECONNRESET;
		done += rv;
	}
	return 0;
}

int drbd_rs_sock_recv(struct socket *sock, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		struct kvec iov = { .iov_base = buf + done, .iov_len = len - done };
		struct msghdr msg = { .msg_flags = MSG_NOSIGNAL };
		int rv = kernel_recvmsg(sock, &msg, &iov, 1, iov.iov_len, MSG_WAITALL | MSG_NOSIGNAL);

		if (rv == 0)
			return -ECONNRESET;
		if (rv < 0) {
			if (rv == -EAGAIN && done)
				return -ETIMEDOUT;
			if (rv == -ERESTARTSYS || rv == -EINTR)
				return -EINTR;
			return rv;
		}
		done += rv;
	}
	return 0;
}

bool drbd_rs_sock_alive(struct socket *sock)
{
	struct kvec iov;
	struct msghdr msg = { .msg_flags = MSG_NOSIGNAL };
	char tb[4];
	int rv;

	iov.iov_base = tb;
	iov.iov_len = sizeof(tb);
	rv = kernel_recvmsg(sock, &msg, &iov, 1, sizeof(tb), MSG_DONTWAIT | MSG_PEEK);
	return rv > 0 || rv == -EAGAIN;
}

void drbd_rs_sock_shutdown(struct socket *sock)
{
	kernel_sock_shutdown(sock, SHUT_RDWR);
}

void drbd_rs_sock_release(struct socket *sock)
{
	sock_release(sock);
}

int drbd_rs_hmac(const char *alg, const u8 *key, unsigned int keylen, const u8 *data,
		 unsigned int len, u8 *out, unsigned int *outlen)
{
	char name[CRYPTO_MAX_ALG_NAME];
	struct crypto_shash *tfm;
	int err;

	if (snprintf(name, sizeof(name), "hmac(%s)", alg) >= sizeof(name))
		return -EINVAL;
	tfm = crypto_alloc_shash(name, 0, 0);
	if (IS_ERR(tfm))
		return PTR_ERR(tfm);
	if (crypto_shash_digestsize(tfm) > *outlen) {
		err = -ENOSPC;
		goto out;
	}
	err = crypto_shash_setkey(tfm, key, keylen);
	if (!err)
		err = crypto_shash_tfm_digest(tfm, data, len, out);
	if (!err)
		*outlen = crypto_shash_digestsize(tfm);
out:
	crypto_free_shash(tfm);
	return err;
}
