// SPDX-License-Identifier: GPL-2.0

//! Idle server connections kept for later requests (keep-alive to the real servers, as
//! nginx's `upstream { keepalive N; }`; see `Documentation/ktcpvs-relay.md`).
//!
//! A connection whose response was complete and framed, whose request was sent completely and
//! whose server did not ask to close is put here ([`Pool::put`]) instead of being closed; a
//! later request the scheduler sends to the same server of the same service takes it
//! ([`Pool::take`]) instead of connecting. At most the service's `pool_idle` connections are
//! kept per server (the oldest goes first); each is closed after the service's
//! `idle_timeout_ms` ([`Pool::expire`], called by a worker every sweep), when its server is
//! removed, changes address or is set down or drain, when the service is disabled or removed,
//! or when `pool_idle` is changed ([`Pool::purge`]), and at `rmmod` ([`Pool::clear`]).
//!
//! A pooled socket is detached from the event source of the connection that used it (the
//! stack's own callbacks are back), so it points at nothing of the relay while it waits: its
//! user may be freed. Nothing watches it: a server closing it meanwhile is noticed by the next
//! user, which attaches it to its own event source and checks it before use.
//!
//! Locking: [`Pool::idle`] is a mutex taken alone (never while holding another lock of the
//! module, and no other lock of the module is taken under it); sockets are released under it,
//! which may sleep. Socket callbacks never take it.

use crate::net::Sock;
use core::net::SocketAddr;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

/// The server a pooled connection leads to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    /// `Service::id`.
    pub(crate) svc: u64,
    /// `ServerCfg::id` (unique within the service for its lifetime: a slot reused by a new
    /// server never matches).
    pub(crate) server: u64,
    /// The server's address when the connection was made.
    pub(crate) addr: SocketAddr,
}

/// An idle server connection.
///
/// # Invariants
///
/// `sock` is a connection to `key` that is detached (no event source: the stack's default
/// callbacks), whose last response was read completely with no request outstanding, and which
/// is counted in no `ActiveConns`.
struct Idle {
    key: Key,
    sock: Sock,
    /// When it is closed (ms, `net::now_ms`).
    expires: u64,
}

/// The idle server connections of every service.
///
/// # Invariants
///
/// Every entry of `idle` is an [`Idle`] (detached, not counted as active); `idle` is in the
/// order the entries were put (oldest first).
#[pin_data]
pub(crate) struct Pool {
    #[pin]
    idle: Mutex<KVec<Idle>>,
}

impl Pool {
    pub(crate) fn new() -> Result<Arc<Pool>> {
        Arc::pin_init(
            pin_init!(Pool {
                idle <- new_mutex!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }

    /// Keeps `sock` (a connection to `key` with nothing outstanding) until `expires`, at most
    /// `max` per key (the oldest of the key is closed to make room; `max == 0` closes `sock`).
    /// The socket is detached first, so its previous event source may be freed.
    pub(crate) fn put(&self, key: Key, sock: Sock, max: u32, expires: u64) {
        sock.detach();
        if max == 0 {
            return;
        }
        let mut g = self.idle.lock();
        let n = g.iter().filter(|i| i.key == key).count();
        if n >= max as usize {
            if let Some(i) = g.iter().position(|i| i.key == key) {
                let _ = g.remove(i);
            }
        }
        // INVARIANT: detached above; the caller has no request outstanding on it and took it
        // out of `ActiveConns`. On allocation failure it is closed.
        let _ = g.push(Idle { key, sock, expires }, GFP_KERNEL);
    }

    /// The most recently kept connection to `key`, if any (to be checked by the caller: the
    /// server may have closed it meanwhile).
    pub(crate) fn take(&self, key: &Key) -> Option<Sock> {
        let mut g = self.idle.lock();
        let i = g.iter().rposition(|i| i.key == *key)?;
        g.remove(i).ok().map(|i| i.sock)
    }

    /// Closes the connections kept longer than their idle timeout.
    pub(crate) fn expire(&self, now: u64) {
        self.idle.lock().retain(|i| i.expires > now);
    }

    /// Closes the connections of service `svc` (of its server `server` only, if given).
    pub(crate) fn purge(&self, svc: u64, server: Option<u64>) {
        self.idle
            .lock()
            .retain(|i| i.key.svc != svc || server.is_some_and(|s| s != i.key.server));
    }

    /// Closes every connection.
    pub(crate) fn clear(&self) {
        let all = core::mem::take(&mut *self.idle.lock());
        drop(all);
    }
}
