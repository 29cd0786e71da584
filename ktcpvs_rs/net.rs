// SPDX-License-Identifier: GPL-2.0

//! Non-blocking kernel TCP sockets, event sources that wake worker threads, and kernel
//! threads, as small safe types over `ktcpvs_rs_net.c` (declarations: `ktcpvs_rs_glue.h`).
//!
//! - [`Waker`]: what a worker thread sleeps on ([`Waker::wait`]).
//! - [`Ev`]: an event source with a token: when it fires it is queued (once) on one of its
//!   wakers, whose worker pops its token ([`Waker::next`]). Sockets attached to it
//!   ([`Sock::attach`]) fire it from their callbacks (softirq or process context).
//! - [`Sock`]: a TCP socket in the initial network namespace; every I/O is non-blocking.
//!   Dropping it detaches its callbacks and releases it.
//! - [`KThread`], [`thread_should_stop`]: kernel threads, from `kcommon/kthread.rs` (shared
//!   with the other module), re-exported here.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::ptr::NonNull;
use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::ffi::{c_int, c_long, c_uint, c_void};
use kernel::prelude::*;

pub(crate) use crate::kthread::{thread_should_stop, KThread};

/// `struct ktcpvs_rs_addr` of `ktcpvs_rs_glue.h`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Addr {
    /// `AF_INET` or `AF_INET6`.
    family: u16,
    /// Port, host order.
    port: u16,
    /// 4 bytes for IPv4 (rest zero), 16 for IPv6, network order.
    addr: [u8; 16],
}

impl Addr {
    pub(crate) fn new(a: &SocketAddr) -> Addr {
        let mut addr = [0u8; 16];
        let family = match a.ip() {
            IpAddr::V4(v4) => {
                addr[..4].copy_from_slice(&v4.octets());
                bindings::AF_INET as u16
            }
            IpAddr::V6(v6) => {
                addr = v6.octets();
                bindings::AF_INET6 as u16
            }
        };
        Addr {
            family,
            port: a.port(),
            addr,
        }
    }

    pub(crate) fn ip(&self) -> IpAddr {
        if u32::from(self.family) == bindings::AF_INET {
            let a = &self.addr;
            IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        }
    }

    fn empty() -> Addr {
        Addr {
            family: 0,
            port: 0,
            addr: [0; 16],
        }
    }
}

/// Opaque C types.
#[repr(C)]
pub(crate) struct RawWaker {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct RawEv {
    _p: [u8; 0],
}

/// `KTCPVS_RS_MAX_WAKERS`.
pub(crate) const MAX_WAKERS: usize = 8;

#[allow(improper_ctypes)]
mod ffi {
    use super::*;

    extern "C" {
        pub(super) fn ktcpvs_rs_net_init() -> c_int;
        pub(super) fn ktcpvs_rs_waker_new() -> *mut RawWaker;
        pub(super) fn ktcpvs_rs_waker_free(w: *mut RawWaker);
        pub(super) fn ktcpvs_rs_waker_wait(w: *mut RawWaker, timeout_ms: c_long);
        pub(super) fn ktcpvs_rs_waker_next(w: *mut RawWaker, token: *mut u64) -> bool;
        pub(super) fn ktcpvs_rs_ev_new(
            w: *const *mut RawWaker,
            n: c_uint,
            token: u64,
        ) -> *mut RawEv;
        pub(super) fn ktcpvs_rs_ev_free(ev: *mut RawEv);
        pub(super) fn ktcpvs_rs_ev_fire(ev: *mut RawEv);
        pub(super) fn ktcpvs_rs_ev_size() -> usize;
        pub(super) fn ktcpvs_rs_online_cpus() -> c_uint;
        pub(super) fn ktcpvs_rs_sock_listen(
            local: *const Addr,
            backlog: c_int,
        ) -> *mut bindings::socket;
        pub(super) fn ktcpvs_rs_sock_accept(
            l: *mut bindings::socket,
            out: *mut *mut bindings::socket,
        ) -> c_int;
        pub(super) fn ktcpvs_rs_sock_new(family: u16) -> *mut bindings::socket;
        pub(super) fn ktcpvs_rs_sock_connect(s: *mut bindings::socket, peer: *const Addr) -> c_int;
        pub(super) fn ktcpvs_rs_sock_connected(s: *mut bindings::socket) -> c_int;
        pub(super) fn ktcpvs_rs_sock_attach(s: *mut bindings::socket, ev: *mut RawEv);
        pub(super) fn ktcpvs_rs_sock_detach(s: *mut bindings::socket);
        pub(super) fn ktcpvs_rs_sock_recv(
            s: *mut bindings::socket,
            buf: *mut c_void,
            len: usize,
        ) -> c_int;
        pub(super) fn ktcpvs_rs_sock_send(
            s: *mut bindings::socket,
            buf: *const c_void,
            len: usize,
        ) -> c_int;
        pub(super) fn ktcpvs_rs_sock_shutdown(s: *mut bindings::socket, how: c_int);
        pub(super) fn ktcpvs_rs_sock_peer(s: *mut bindings::socket, out: *mut Addr) -> c_int;
        pub(super) fn ktcpvs_rs_sock_release(s: *mut bindings::socket);
        pub(super) fn ktcpvs_rs_now_ms() -> u64;
    }
}

/// Captures the stack's default TCP callbacks, restored when a socket is released. Call once
/// at module load, before any [`Sock`] exists.
pub(crate) fn init() -> Result {
    // SAFETY: Creates and releases a socket of its own; no other state is touched.
    kernel::error::to_result(unsafe { ffi::ktcpvs_rs_net_init() })
}

/// Online CPUs now.
pub(crate) fn online_cpus() -> usize {
    // SAFETY: Reads the online CPU mask's weight; no preconditions.
    unsafe { ffi::ktcpvs_rs_online_cpus() as usize }
}

/// Bytes of one event source (its C structure).
pub(crate) fn ev_size() -> usize {
    // SAFETY: No preconditions.
    unsafe { ffi::ktcpvs_rs_ev_size() }
}

/// Monotonic milliseconds.
pub(crate) fn now_ms() -> u64 {
    // SAFETY: Reads jiffies; callable from any context.
    unsafe { ffi::ktcpvs_rs_now_ms() }
}

/// What a worker thread sleeps on.
///
/// # Invariants
///
/// `w` was returned by `ktcpvs_rs_waker_new()` and is freed only by `Drop`.
pub(crate) struct Waker {
    w: NonNull<RawWaker>,
}

// SAFETY: The C waker is a wait queue and an atomic flag, usable from any thread.
unsafe impl Send for Waker {}
// SAFETY: See `Send`; every C operation on it is thread-safe.
unsafe impl Sync for Waker {}

impl Waker {
    pub(crate) fn new() -> Result<Waker> {
        // SAFETY: No preconditions.
        let w = unsafe { ffi::ktcpvs_rs_waker_new() };
        // INVARIANT: A non-null return is a fresh waker that we own.
        Ok(Waker {
            w: NonNull::new(w).ok_or(ENOMEM)?,
        })
    }

    /// Sleeps until an event source is queued on this waker, `timeout_ms` pass or the current
    /// kthread is asked to stop. Kthreads only.
    pub(crate) fn wait(&self, timeout_ms: u32) {
        // SAFETY: By the type invariant `w` is live; the caller is a kthread (may sleep).
        unsafe { ffi::ktcpvs_rs_waker_wait(self.w.as_ptr(), timeout_ms as c_long) }
    }

    /// Pops the token of the next event source that fired (each queued once until popped).
    ///
    /// # Safety
    ///
    /// Only one thread, the worker owning this waker, may pop (the C side's batch is not
    /// locked).
    pub(crate) unsafe fn next(&self) -> Option<u64> {
        let mut token = 0u64;
        // SAFETY: By the type invariant `w` is live; the caller is its only consumer; `token`
        // is writable.
        unsafe { ffi::ktcpvs_rs_waker_next(self.w.as_ptr(), &mut token) }.then_some(token)
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `w` is ours. Every `Ev` naming it holds an `Arc` of
        // the structure owning this `Waker` (see `relay::Relay`), so none is left.
        unsafe { ffi::ktcpvs_rs_waker_free(self.w.as_ptr()) };
    }
}

/// An event source.
///
/// # Invariants
///
/// `ev` was returned by `ktcpvs_rs_ev_new()` and is freed only by `Drop`; the wakers it names
/// outlive it (the caller of [`Ev::new`] guarantees it).
pub(crate) struct Ev {
    ev: NonNull<RawEv>,
}

// SAFETY: The C event source is an atomic flag and pointers to thread-safe wakers.
unsafe impl Send for Ev {}

impl Ev {
    /// An event source queued, when it fires, on one of `wakers` (at most [`MAX_WAKERS`], in
    /// turn) with `token`; created idle.
    ///
    /// # Safety
    ///
    /// Every waker must outlive the returned `Ev`.
    pub(crate) unsafe fn new(wakers: &[&Waker], token: u64) -> Result<Ev> {
        let mut raw = [core::ptr::null_mut::<RawWaker>(); MAX_WAKERS];
        let n = wakers.len().min(MAX_WAKERS);
        for i in 0..n {
            raw[i] = wakers[i].w.as_ptr();
        }
        // SAFETY: `raw[..n]` are live wakers; the C side copies the pointers.
        let ev = unsafe { ffi::ktcpvs_rs_ev_new(raw.as_ptr(), n as c_uint, token) };
        // INVARIANT: A non-null return is ours; the caller guarantees the wakers outlive it.
        Ok(Ev {
            ev: NonNull::new(ev).ok_or(ENOMEM)?,
        })
    }

    /// Queues the source (unless it is queued) and wakes its worker: to come back to it soon.
    pub(crate) fn fire(&self) {
        // SAFETY: By the type invariant `ev` and its wakers are live.
        unsafe { ffi::ktcpvs_rs_ev_fire(self.ev.as_ptr()) };
    }
}

impl Drop for Ev {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `ev` is ours; every socket attached to it was released
        // before (the safety requirement of `Sock::attach`), so no callback uses it. If it is
        // still queued, the worker that pops it frees it (its wakers outlive it).
        unsafe { ffi::ktcpvs_rs_ev_free(self.ev.as_ptr()) };
    }
}

/// Outcome of a non-blocking operation.
pub(crate) enum Io {
    /// This many bytes moved (at least 1).
    Done(usize),
    /// End of stream (receive only).
    Eof,
    /// Nothing can move now; an event will fire when something can.
    Again,
}

fn io(rv: c_int) -> Result<Io> {
    if rv > 0 {
        Ok(Io::Done(rv as usize))
    } else if rv == 0 {
        Ok(Io::Eof)
    } else if rv == EAGAIN.to_errno() {
        Ok(Io::Again)
    } else {
        Err(Error::from_errno(rv))
    }
}

/// A kernel TCP socket.
///
/// # Invariants
///
/// `sock` is a socket owned by this object, released only by `Drop`.
pub(crate) struct Sock {
    sock: NonNull<bindings::socket>,
}

// SAFETY: Kernel sockets may be used and released from any thread.
unsafe impl Send for Sock {}

impl Sock {
    /// Takes ownership of `s`.
    ///
    /// # Safety
    ///
    /// `s` must be a kernel socket (or null) that nobody else owns or releases.
    unsafe fn from_raw(s: *mut bindings::socket) -> Result<Sock> {
        // INVARIANT: Guaranteed by the caller.
        Ok(Sock {
            sock: NonNull::new(s).ok_or(ENOMEM)?,
        })
    }

    /// A listening socket on `local` (`SO_REUSEADDR`).
    pub(crate) fn listen(local: &SocketAddr, backlog: u32) -> Result<Sock> {
        let a = Addr::new(local);
        let backlog = backlog.min(65535) as c_int;
        // SAFETY: `a` is valid for the duration of the call.
        let s = from_err_ptr(unsafe { ffi::ktcpvs_rs_sock_listen(&a, backlog) })?;
        // SAFETY: A non-error return is a socket nobody else owns.
        unsafe { Sock::from_raw(s) }
    }

    /// Accepts one connection without blocking (`EAGAIN`: none waiting).
    pub(crate) fn accept(&self) -> Result<Sock> {
        let mut out = core::ptr::null_mut();
        // SAFETY: By the type invariant `sock` is live (a listener: the caller's business,
        // other sockets fail with an error); `out` is writable.
        kernel::error::to_result(unsafe {
            ffi::ktcpvs_rs_sock_accept(self.sock.as_ptr(), &mut out)
        })?;
        // SAFETY: On success `out` is a connected socket that nobody else owns.
        unsafe { Sock::from_raw(out) }
    }

    /// A socket for connecting to `peer`'s address family.
    pub(crate) fn new_for(peer: &SocketAddr) -> Result<Sock> {
        let a = Addr::new(peer);
        // SAFETY: No preconditions.
        let s = from_err_ptr(unsafe { ffi::ktcpvs_rs_sock_new(a.family) })?;
        // SAFETY: A non-error return is a socket nobody else owns.
        unsafe { Sock::from_raw(s) }
    }

    /// Starts connecting to `peer`: `Ok(true)` connected, `Ok(false)` in progress (the
    /// attached event source fires when it completes or fails).
    pub(crate) fn connect(&self, peer: &SocketAddr) -> Result<bool> {
        let a = Addr::new(peer);
        // SAFETY: The socket is live; `a` is valid for the duration of the call.
        let rv = unsafe { ffi::ktcpvs_rs_sock_connect(self.sock.as_ptr(), &a) };
        if rv == 0 {
            Ok(true)
        } else if rv == EINPROGRESS.to_errno() {
            Ok(false)
        } else {
            Err(Error::from_errno(rv))
        }
    }

    /// Whether a connect finished: `Ok(true)` established, `Ok(false)` still in progress.
    pub(crate) fn connected(&self) -> Result<bool> {
        // SAFETY: The socket is live; the C side reads its state.
        let rv = unsafe { ffi::ktcpvs_rs_sock_connected(self.sock.as_ptr()) };
        if rv < 0 {
            Err(Error::from_errno(rv))
        } else {
            Ok(rv == 1)
        }
    }

    /// Routes the socket's callbacks to `ev`.
    ///
    /// # Safety
    ///
    /// `ev` must outlive the attachment: the socket must be detached ([`Sock::detach`]) or
    /// released (which detaches it) before `ev` is freed.
    pub(crate) unsafe fn attach(&self, ev: &Ev) {
        // SAFETY: Both are live; the caller guarantees that `ev` outlives the attachment.
        unsafe { ffi::ktcpvs_rs_sock_attach(self.sock.as_ptr(), ev.ev.as_ptr()) };
    }

    /// Routes the socket's callbacks back to the stack's own: after this no callback uses
    /// the event source it was attached to (which may then be freed while the socket lives
    /// on, e.g. idle in the server connection pool). Detaching twice is harmless.
    pub(crate) fn detach(&self) {
        // SAFETY: The socket is live; the C side restores the default callbacks under
        // `sk_callback_lock` (write), so no callback still running uses the old source after
        // it returns.
        unsafe { ffi::ktcpvs_rs_sock_detach(self.sock.as_ptr()) };
    }

    /// Receives into `buf` without blocking.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> Result<Io> {
        if buf.is_empty() {
            return Ok(Io::Again);
        }
        // SAFETY: The socket is live; `buf` is writable for its length during the call.
        io(unsafe {
            ffi::ktcpvs_rs_sock_recv(self.sock.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        })
    }

    /// Sends from `buf` without blocking (never [`Io::Eof`]).
    pub(crate) fn send(&self, buf: &[u8]) -> Result<Io> {
        if buf.is_empty() {
            return Ok(Io::Again);
        }
        // SAFETY: The socket is live; `buf` is readable for its length during the call.
        match io(unsafe {
            ffi::ktcpvs_rs_sock_send(self.sock.as_ptr(), buf.as_ptr().cast(), buf.len())
        })? {
            Io::Eof => Ok(Io::Again),
            r => Ok(r),
        }
    }

    /// Shuts the sending direction down (a FIN after the queued data).
    pub(crate) fn shutdown_write(&self) {
        // SAFETY: The socket is live; shutting down twice is harmless.
        unsafe { ffi::ktcpvs_rs_sock_shutdown(self.sock.as_ptr(), 1) };
    }

    /// The peer's address and port.
    pub(crate) fn peer(&self) -> Result<Addr> {
        let mut a = Addr::empty();
        // SAFETY: The socket is live; `a` is writable.
        kernel::error::to_result(unsafe { ffi::ktcpvs_rs_sock_peer(self.sock.as_ptr(), &mut a) })?;
        Ok(a)
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the socket is ours and unused by anyone else; the C
        // side detaches the callbacks before releasing it.
        unsafe { ffi::ktcpvs_rs_sock_release(self.sock.as_ptr()) };
    }
}
