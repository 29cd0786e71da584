// SPDX-License-Identifier: GPL-2.0

//! Our state on the wire (C DRBD's `drbd_state.c` side of the protocol): the packed state word,
//! and our UUIDs.

use super::{reached, Connection};
use crate::device::Device;
use crate::drbd_genl::{DiskState, Role};
use crate::drbd_state::{self as ws, Conn};
use crate::drbd_sync as sync;
use crate::drbd_wire::{self as w, Packet};

impl Connection {
    /// Tells the peer our current state (after a local role or disk change). Best effort: a
    /// failure ends the session by itself.
    pub(crate) fn send_state(&self, dev: &Device) {
        if !reached(self.view().cstate, Conn::WFReportParams) {
            return;
        }
        // UUIDs first: a forced promotion gave us new ones, and the peer decides on both.
        let u = our_uuids(dev).1;
        let _ = self.send(false, Packet::Uuids, &u.encode());
        let word = self.state_word(dev);
        let _ = self.send(false, Packet::State, &word.to_be_bytes());
    }

    pub(super) fn state_word(&self, dev: &Device) -> u32 {
        let (role, disk) = {
            let st = dev.lock();
            (st.role, st.disk_state)
        };
        let v = self.view();
        ws::State::new(wire_role(role), v.role, v.cstate, wire_disk(disk), v.disk).pack()
    }
}

/// Our `P_UUIDS` payload and the bitmap size in bits (0 without a disk).
pub(super) fn our_uuids(dev: &Device) -> (u64, w::Uuids) {
    let st = dev.lock();
    match st.backing.as_ref() {
        Some(b) => {
            let u = b.md.uuids();
            (
                b.md.geometry().bm_bits(),
                w::Uuids {
                    current: u[0],
                    bitmap: u[1],
                    history_start: u[2],
                    history_end: u[3],
                    dirty_bits: dev.out_of_sync_kib() / 4,
                    flags: if st.disk_state == DiskState::Inconsistent {
                        sync::UUID_FLAG_INCONSISTENT
                    } else {
                        0
                    },
                },
            )
        }
        None => (0, w::Uuids::default()),
    }
}

/// Our role on the wire.
pub(super) fn wire_role(r: Role) -> ws::Role {
    match r {
        Role::Primary => ws::Role::Primary,
        Role::Secondary => ws::Role::Secondary,
    }
}

/// Our disk state on the wire (DRBD's numbering differs from the netlink one).
pub(super) fn wire_disk(d: DiskState) -> ws::Disk {
    match d {
        DiskState::Diskless => ws::Disk::Diskless,
        DiskState::Attaching => ws::Disk::Attaching,
        DiskState::Inconsistent => ws::Disk::Inconsistent,
        DiskState::Outdated => ws::Disk::Outdated,
        DiskState::Consistent => ws::Disk::Consistent,
        DiskState::UpToDate => ws::Disk::UpToDate,
    }
}
