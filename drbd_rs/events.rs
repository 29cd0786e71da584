// SPDX-License-Identifier: GPL-2.0

//! State-change events: the one interface through which the connection layer reports changes.
//!
//! The connection code (`conn.rs`) publishes an [`Event`] when a connection or a device
//! changes state; the netlink family (`genl.rs`) subscribes once at module load and turns each
//! event into a multicast message. Publishers do not know the subscriber, so the connection
//! layer does not depend on netlink.

use crate::device::Device;
use crate::drbd_state::{self as ws, Conn};
use kernel::sync::SetOnce;

/// What the receiver knows about the peer while a session lasts.
#[derive(Clone, Copy)]
pub(crate) struct PeerView {
    /// Connection state.
    pub(crate) cstate: Conn,
    /// Peer role (`Unknown` when not connected).
    pub(crate) role: ws::Role,
    /// Peer disk state (`DUnknown` when not connected).
    pub(crate) disk: ws::Disk,
    /// Agreed protocol version (0 when not connected).
    pub(crate) agreed: u32,
}

/// A state change.
pub(crate) enum Event<'a> {
    /// A device's role, disk state or resync changed.
    Device(&'a Device),
    /// A connection's state (or the peer's role or disk) changed.
    Connection {
        /// The resource's name.
        resource: &'a [u8],
        /// The connection as it is now.
        view: PeerView,
        /// The configured replication protocol (1..=3).
        protocol: u32,
    },
}

/// The subscriber, set once.
static SUBSCRIBER: SetOnce<fn(&Event<'_>)> = SetOnce::new();

/// Makes `f` the subscriber; false if there is one already.
pub(crate) fn subscribe(f: fn(&Event<'_>)) -> bool {
    SUBSCRIBER.populate(f)
}

/// Hands `e` to the subscriber (none yet: dropped). Runs in the publisher's context, which may
/// sleep; the publisher holds no spinlock.
pub(crate) fn publish(e: &Event<'_>) {
    if let Some(f) = SUBSCRIBER.as_ref() {
        f(e);
    }
}
