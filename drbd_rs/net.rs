// SPDX-License-Identifier: GPL-2.0

//! Kernel TCP sockets and kernel threads, as small safe types over `drbd_rs_net.c`.
//!
//! - [`Addr`]: an IPv4/IPv6 address and port, as the netlink attributes carry it.
//! - [`Listener`] / [`Socket`]: TCP sockets in the initial network namespace with timeouts.
//!   A [`Socket`] may be shared (`Arc`): [`Socket::shutdown`] from any thread wakes a thread
//!   blocked in [`Socket::recv`] or [`Socket::send`] on it, which is how connections are torn
//!   down. The socket is released when the last reference goes.
//! - [`KThread`], [`thread_should_stop`]: kernel threads, from `kcommon/kthread.rs` (shared
//!   with the other module), re-exported here.

use core::ptr::NonNull;
use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::ffi::{c_char, c_int, c_long, c_void};
use kernel::prelude::*;

pub(crate) use crate::kthread::{thread_should_stop, KThread};

/// `struct drbd_rs_addr` of `drbd_rs_glue.h`; also the payload of the address attributes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Addr {
    /// `AF_INET` or `AF_INET6`.
    pub(crate) family: u16,
    /// Port, host order.
    pub(crate) port: u16,
    /// The address: 4 bytes for IPv4 (rest zero), 16 for IPv6, network order.
    pub(crate) addr: [u8; 16],
}

impl Addr {
    /// Decodes the netlink payload (`drbd_genl::decode_addr`: IPv4 or IPv6, non-zero port).
    pub(crate) fn from_attr(p: &[u8]) -> Option<Addr> {
        let (family, port, addr) = crate::drbd_genl::decode_addr(p)?;
        Some(Addr { family, port, addr })
    }

    /// Whether `other` is the same host (family and address; the port is not compared: the
    /// peer connects to us from a port of its choice).
    pub(crate) fn same_host(&self, other: &Addr) -> bool {
        self.family == other.family && self.addr == other.addr
    }
}

/// The address of an [`Addr`] without the port (`10.0.0.1`, `fd00:0:0:0:0:0:0:2`).
pub(crate) struct Ip<'a>(pub(crate) &'a Addr);

impl Ip<'_> {
    fn is_v4(&self) -> bool {
        u32::from(self.0.family) == bindings::AF_INET
    }

    /// DRBD's name of the family for the helpers' environment (`DRBD_PEER_AF`).
    pub(crate) fn af_name(&self) -> &'static str {
        if self.is_v4() {
            "ipv4"
        } else {
            "ipv6"
        }
    }
}

impl kernel::fmt::Display for Ip<'_> {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        let a = &self.0.addr;
        if self.is_v4() {
            return write!(f, "{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
        }
        for (i, w) in a.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{:x}", u16::from_be_bytes([w[0], w[1]]))?;
        }
        Ok(())
    }
}

impl kernel::fmt::Display for Addr {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        let ip = Ip(self);
        if ip.is_v4() {
            kernel::fmt::Display::fmt(&ip, f)?;
            write!(f, ":{}", self.port)
        } else {
            f.write_str("[")?;
            kernel::fmt::Display::fmt(&ip, f)?;
            write!(f, "]:{}", self.port)
        }
    }
}

#[allow(improper_ctypes)]
mod ffi {
    use super::*;

    extern "C" {
        pub(super) fn drbd_rs_sock_listen(local: *const Addr) -> *mut bindings::socket;
        pub(super) fn drbd_rs_sock_accept(
            listener: *mut bindings::socket,
            timeout_ms: c_long,
        ) -> *mut bindings::socket;
        pub(super) fn drbd_rs_sock_connect(
            local: *const Addr,
            peer: *const Addr,
            timeout_ms: c_long,
        ) -> *mut bindings::socket;
        pub(super) fn drbd_rs_sock_peer(s: *mut bindings::socket, peer: *mut Addr) -> c_int;
        pub(super) fn drbd_rs_sock_setup(s: *mut bindings::socket, rcv_ms: c_long, snd_ms: c_long);
        pub(super) fn drbd_rs_sock_send(
            s: *mut bindings::socket,
            buf: *const c_void,
            len: usize,
            more: bool,
        ) -> c_int;
        pub(super) fn drbd_rs_sock_recv(
            s: *mut bindings::socket,
            buf: *mut c_void,
            len: usize,
        ) -> c_int;
        pub(super) fn drbd_rs_sock_alive(s: *mut bindings::socket) -> bool;
        pub(super) fn drbd_rs_sock_shutdown(s: *mut bindings::socket);
        pub(super) fn drbd_rs_sock_release(s: *mut bindings::socket);
        pub(super) fn drbd_rs_hmac(
            alg: *const c_char,
            key: *const u8,
            keylen: u32,
            data: *const u8,
            len: u32,
            out: *mut u8,
            outlen: *mut u32,
        ) -> c_int;
    }
}

/// HMAC with the kernel's `hmac(alg)` of `data` keyed with `key`, into `out`; returns the
/// digest size (`ENOSPC` if `out` is too small, `ENOENT` for an unknown digest).
pub(crate) fn hmac(alg: &[u8], key: &[u8], data: &[u8], out: &mut [u8]) -> Result<usize> {
    let mut name = [0u8; 64];
    if alg.is_empty() || alg.len() >= name.len() || alg.contains(&0) {
        return Err(EINVAL);
    }
    name[..alg.len()].copy_from_slice(alg);
    let keylen = u32::try_from(key.len())?;
    let len = u32::try_from(data.len())?;
    let mut outlen = u32::try_from(out.len())?;
    // SAFETY: `name` is NUL-terminated; `key` and `data` are readable and `out` writable for
    // the lengths passed; `outlen` is a valid pointer; the C side uses them only during the
    // call.
    kernel::error::to_result(unsafe {
        ffi::drbd_rs_hmac(
            name.as_ptr().cast(),
            key.as_ptr(),
            keylen,
            data.as_ptr(),
            len,
            out.as_mut_ptr(),
            &mut outlen,
        )
    })?;
    Ok(outlen as usize)
}

fn ms(v: u32) -> c_long {
    // Timeouts are configured in seconds or tenths of them: far below `c_long::MAX`.
    v as c_long
}

/// A listening TCP socket.
///
/// # Invariants
///
/// `sock` is a socket returned by `drbd_rs_sock_listen()`, owned by this object.
pub(crate) struct Listener {
    sock: NonNull<bindings::socket>,
}

// SAFETY: Kernel sockets may be used and released from any thread.
unsafe impl Send for Listener {}

impl Listener {
    /// Listens on `local` (`SO_REUSEADDR`, backlog 5).
    pub(crate) fn bind(local: &Addr) -> Result<Listener> {
        // SAFETY: `local` is a valid address for the duration of the call.
        let s = from_err_ptr(unsafe { ffi::drbd_rs_sock_listen(local) })?;
        // INVARIANT: A non-error return is a socket we own.
        Ok(Listener {
            sock: NonNull::new(s).ok_or(ENOMEM)?,
        })
    }

    /// Accepts one connection, waiting at most `timeout_ms` (`EAGAIN` on timeout).
    pub(crate) fn accept(&self, timeout_ms: u32) -> Result<Socket> {
        // SAFETY: By the type invariant `sock` is a live listening socket; only this thread
        // uses it (`&self` of a `Send` but not `Sync` type).
        let s =
            from_err_ptr(unsafe { ffi::drbd_rs_sock_accept(self.sock.as_ptr(), ms(timeout_ms)) })?;
        // SAFETY: A non-error return is a connected socket that nobody else owns.
        unsafe { Socket::from_raw(s) }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the socket is ours; it is not used after this.
        unsafe { ffi::drbd_rs_sock_release(self.sock.as_ptr()) };
    }
}

/// A connected TCP socket.
///
/// # Invariants
///
/// `sock` is a connected socket owned by this object, released only by `Drop`.
pub(crate) struct Socket {
    sock: NonNull<bindings::socket>,
}

// SAFETY: Kernel sockets may be used and released from any thread.
unsafe impl Send for Socket {}
// SAFETY: Concurrent `send`, `recv` and `shutdown` on one socket are what the socket layer
// supports (it locks internally); DRBD serialises senders per socket itself, and so do we
// (see `conn.rs`: one sending thread per socket or a mutex).
unsafe impl Sync for Socket {}

impl Socket {
    /// Takes ownership of `s`.
    ///
    /// # Safety
    ///
    /// `s` must be a connected kernel socket (or null) that nobody else owns or releases.
    unsafe fn from_raw(s: *mut bindings::socket) -> Result<Socket> {
        // INVARIANT: Guaranteed by the caller.
        Ok(Socket {
            sock: NonNull::new(s).ok_or(ENOMEM)?,
        })
    }

    /// Connects from `local`'s address (any port) to `peer`, waiting at most `timeout_ms`.
    pub(crate) fn connect(local: &Addr, peer: &Addr, timeout_ms: u32) -> Result<Socket> {
        // SAFETY: Both addresses are valid for the duration of the call.
        let s = from_err_ptr(unsafe { ffi::drbd_rs_sock_connect(local, peer, ms(timeout_ms)) })?;
        // SAFETY: A non-error return is a connected socket that nobody else owns.
        unsafe { Socket::from_raw(s) }
    }

    /// The address and port of the other end.
    pub(crate) fn peer_addr(&self) -> Result<Addr> {
        let mut a = Addr {
            family: 0,
            port: 0,
            addr: [0; 16],
        };
        // SAFETY: The socket is live; `a` is a valid, writable `struct drbd_rs_addr`.
        kernel::error::to_result(unsafe { ffi::drbd_rs_sock_peer(self.sock.as_ptr(), &mut a) })?;
        Ok(a)
    }

    /// Sets the receive and send timeouts (0: wait forever), `TCP_NODELAY`, and `GFP_NOIO`.
    pub(crate) fn setup(&self, rcv_ms: u32, snd_ms: u32) {
        // SAFETY: By the type invariant the socket is live; the C side only stores options.
        unsafe { ffi::drbd_rs_sock_setup(self.sock.as_ptr(), ms(rcv_ms), ms(snd_ms)) };
    }

    /// Sends all of `buf`; `more` hints that more data follows at once (`MSG_MORE`).
    ///
    /// `EAGAIN`: timed out before sending anything; `ETIMEDOUT`: part-way; `ECONNRESET`: closed.
    pub(crate) fn send(&self, buf: &[u8], more: bool) -> Result {
        // SAFETY: The socket is live; `buf` is readable for its length during the call.
        kernel::error::to_result(unsafe {
            ffi::drbd_rs_sock_send(self.sock.as_ptr(), buf.as_ptr().cast(), buf.len(), more)
        })
    }

    /// Fills all of `buf`. Errors as [`Self::send`]: `EAGAIN` means nothing arrived in time.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> Result {
        // SAFETY: The socket is live; `buf` is writable for its length during the call.
        kernel::error::to_result(unsafe {
            ffi::drbd_rs_sock_recv(self.sock.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        })
    }

    /// Whether the peer has not closed the connection (`drbd_socket_okay()`: a non-blocking
    /// peek).
    pub(crate) fn alive(&self) -> bool {
        // SAFETY: The socket is live; a peek does not consume data.
        unsafe { ffi::drbd_rs_sock_alive(self.sock.as_ptr()) }
    }

    /// Shuts both directions down, waking any thread blocked on the socket.
    pub(crate) fn shutdown(&self) {
        // SAFETY: The socket is live; shutting down twice is harmless.
        unsafe { ffi::drbd_rs_sock_shutdown(self.sock.as_ptr()) };
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the socket is ours and, this being the last reference,
        // unused by anyone else.
        unsafe { ffi::drbd_rs_sock_release(self.sock.as_ptr()) };
    }
}

/// Sleeps for up to `ms` milliseconds; a stop request ends the sleep early.
pub(crate) fn sleep_interruptible(ms: u32) {
    // SAFETY: `msleep_interruptible` may be called from any sleepable context; kthreads have
    // no signals pending, and `kthread_stop` wakes the sleeper.
    unsafe { bindings::msleep_interruptible(ms) };
}

/// Sleeps `ms` milliseconds, not woken by signals (for waits in a user's process that must
/// not spin when a signal is pending).
pub(crate) fn sleep(ms: u32) {
    // SAFETY: `msleep` may be called from any sleepable context.
    unsafe { bindings::msleep(ms) };
}
