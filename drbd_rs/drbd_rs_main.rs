// SPDX-License-Identifier: GPL-2.0

//! drbd_rs: hark's DRBD-style replicated block device.
//!
//! The module registers the `drbd_rs` generic netlink family; its commands create
//! `/dev/rdrbdN` devices on lower block devices with DRBD 8.4 internal metadata, switch their
//! roles, and connect a resource to its peer (another drbd_rs node or the C DRBD 8.4 driver),
//! which replicates writes and resyncs after a disconnect. Files:
//! - `genl.rs`: the netlink family and command handlers;
//! - `device.rs`: devices, roles, disk states, the I/O policy;
//! - `md.rs`: reading and writing the on-disk metadata;
//! - `activity.rs`: the activity log and the quick-sync bitmap;
//! - `resource.rs`: resources and their connections;
//! - `events.rs`: state-change events (published by `conn`, subscribed by `genl`);
//! - `conn.rs` and `conn/`: the connection to the peer, by concern (see `conn.rs`);
//! - `net.rs` + `drbd_rs_net.c`: kernel TCP sockets (threads: `kcommon/kthread.rs`);
//! - `glue.rs` + `drbd_rs_glue.c`: the block-layer, netlink and crypto plumbing in C.

// Overflow checks are on in the kernel (`CONFIG_RUST_OVERFLOW_CHECKS`): an overflow is an
// oops, so `make clippy` refuses unchecked arithmetic here and in the shared files.
#![deny(clippy::arithmetic_side_effects)]

use kernel::prelude::*;

#[path = "../userspace/hark-proto/src/crc32c.rs"]
pub mod crc32c;
#[path = "../userspace/hark-proto/src/drbd_al.rs"]
pub mod drbd_al;
#[path = "../userspace/hark-proto/src/drbd_fence.rs"]
pub mod drbd_fence;
#[path = "../userspace/hark-proto/src/drbd_genl.rs"]
pub mod drbd_genl;
#[path = "../userspace/hark-proto/src/drbd_md.rs"]
pub mod drbd_md;
#[path = "../userspace/hark-proto/src/drbd_resync.rs"]
pub mod drbd_resync;
#[path = "../userspace/hark-proto/src/drbd_state.rs"]
pub mod drbd_state;
#[path = "../userspace/hark-proto/src/drbd_state_chg.rs"]
pub mod drbd_state_chg;
#[path = "../userspace/hark-proto/src/drbd_sync.rs"]
pub mod drbd_sync;
#[path = "../userspace/hark-proto/src/drbd_wire.rs"]
pub mod drbd_wire;

mod activity;
mod conn;
mod device;
mod events;
mod genl;
mod glue;
mod helper;
#[path = "../kcommon/kthread.rs"]
mod kthread;
mod md;
mod net;
mod resource;

module! {
    type: DrbdRs,
    name: "drbd_rs",
    authors: ["The hark authors"],
    description: "hark: DRBD-style replicated block device",
    license: "GPL",
    params: {
        minor_count: u32 {
            default: 32,
            description: "Maximum number of /dev/rdrbdN devices (1..255)",
        },
    },
}

struct DrbdRs {
    minors: u32,
    /// Unregistered first in `drop`, so that no handler runs while the registry is freed.
    genl: Option<genl::Registration>,
}

/// The number of minors the module parameter allows.
pub(crate) fn minor_limit() -> u32 {
    module_parameters::minor_count.value()
}

impl kernel::Module for DrbdRs {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let minors = module_parameters::minor_count.value();
        if !(1..=255).contains(&minors) {
            pr_err!("minor_count={} is out of range 1..255\n", minors);
            return Err(EINVAL);
        }
        // SAFETY: Called exactly once, before the family (the only user) is registered.
        unsafe { device::DEVICES.init() };
        // SAFETY: As above.
        unsafe { resource::RESOURCES.init() };
        let genl = genl::register(module)?;
        pr_info!(
            "loaded: minor_count={}, genl family {} v{} ({} commands)\n",
            minors,
            drbd_genl::FAMILY_NAME,
            drbd_genl::FAMILY_VERSION,
            drbd_genl::Cmd::ALL.len()
        );
        Ok(DrbdRs {
            minors,
            genl: Some(genl),
        })
    }
}

impl Drop for DrbdRs {
    fn drop(&mut self) {
        drop(self.genl.take());
        // Statics are never dropped: free the registry's buffer (empty by now: every minor
        // holds a module reference, so unloading means none is left).
        drop(core::mem::take(&mut *device::DEVICES.lock()));
        drop(core::mem::take(&mut *resource::RESOURCES.lock()));
        pr_info!("unloaded (minor_count was {})\n", self.minors);
    }
}

#[kunit_tests(drbd_rs_shared)]
mod tests {
    use super::crc32c;
    use super::drbd_genl::Cmd;
    use super::glue;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c::checksum(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn crc32c_matches_kernel() {
        let data: [u8; 61] = core::array::from_fn(|i| (i as u8).wrapping_mul(37));
        assert_eq!(crc32c::update(!0, &data), glue::kernel_crc32c(!0, &data));
    }

    #[test]
    fn genl_commands_round_trip() {
        for c in Cmd::ALL {
            assert_eq!(Cmd::from_u8(c as u8), Some(c));
        }
        assert_eq!(Cmd::from_u8(0), None);
    }
}
