// SPDX-License-Identifier: GPL-2.0

//! Resources: a name, its minors (in [`DEVICES`]) and its connection.
//!
//! This sits above both the devices and the connections (which do not know each other's
//! registries): the netlink handlers use it to find a resource's connection.
//!
//! Locking: [`RESOURCES`] is a global mutex taken by the netlink handlers; it is taken before
//! [`DEVICES`] if both are, and never held while a connection's threads are joined.

use crate::conn::{ConnHandle, Connection};
use crate::device::{Device, Replication, DEVICES};
use kernel::prelude::*;
use kernel::sync::Arc;

kernel::sync::global_lock! {
    // SAFETY: Initialised in the module initializer before any netlink handler can run.
    /// The existing resources (`new-resource`); taken before [`DEVICES`] if both are.
    pub(crate) unsafe(uninit) static RESOURCES: Mutex<KVec<Resource>> = KVec::new();
}

/// A resource: a name, its minors (in [`DEVICES`]) and its connection.
pub(crate) struct Resource {
    /// The name.
    pub(crate) name: KVec<u8>,
    /// The connection while configured (`connect` .. `disconnect`).
    pub(crate) conn: Option<ConnHandle>,
    /// After `disconnect`: the stopped connection (`StandAlone`), for status.
    pub(crate) stopped: Option<Arc<Connection>>,
}

/// The connection of the resource `name`, if it is configured.
pub(crate) fn connection_of(name: &[u8]) -> Option<Arc<Connection>> {
    RESOURCES
        .lock()
        .iter()
        .find(|r| r.name.as_slice() == name)
        .and_then(|r| {
            r.conn
                .as_ref()
                .map(|h| h.conn.clone())
                .or(r.stopped.clone())
        })
}

/// Tells the resource's peer (if connected) about a state change of `dev`.
pub(crate) fn state_changed(dev: &Device) {
    if let Some(conn) = connection_of(&dev.resource) {
        conn.send_state(dev);
    }
}

/// Points every device of resource `name` at its connection (or at none).
pub(crate) fn set_device_connections(name: &[u8], c: Option<&Arc<Connection>>) {
    for d in DEVICES.lock().iter() {
        if d.resource.as_slice() == name {
            d.set_connection(c.map(replication));
        }
    }
}

/// A connection as the I/O path sees it.
pub(crate) fn replication(c: &Arc<Connection>) -> Arc<dyn Replication> {
    c.clone()
}
