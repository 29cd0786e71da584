// SPDX-License-Identifier: GPL-2.0

//! Our state on the wire (C DRBD's `drbd_state.c` side of the protocol): the packed state word,
//! our UUIDs, and the peer's cluster-wide state-change requests.

use super::{reached, Connection, End};
use crate::device::Device;
use crate::drbd_genl::{DiskState, Role};
use crate::drbd_state::{self as ws, Conn};
use crate::drbd_sync as sync;
use crate::drbd_wire::{self as w, Packet};
use kernel::prelude::*;

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

/// `P_STATE_CHG_REQ`: the peer asks to change the cluster-wide state (e.g. become Primary).
pub(super) fn receive_state_chg_req(
    c: &Connection,
    p: &[u8],
    dev: &Device,
) -> core::result::Result<(), End> {
    let req = w::ReqState::decode(p).map_err(|_| End::Retry)?;
    // The request is phrased from the peer's side: its `role` field is the peer's role.
    let (role_mask, _) = ws::ns(&[ws::Field::Role(ws::Role::Unknown)]);
    let wants_primary = req.mask & role_mask != 0
        && ws::State::unpack(req.val).is_ok_and(|s| s.role == ws::Role::Primary);
    let rv = if wants_primary && dev.lock().role == Role::Primary && !c.conf.two_primaries {
        ws::StateRv::TwoPrimaries
    } else {
        ws::StateRv::Success
    };
    pr_info!(
        "resource {}: peer requests a state change (mask 0x{:08x}, val 0x{:08x}): {}\n",
        c.name(),
        req.mask,
        req.val,
        rv.name()
    );
    let reply = w::ReqStateReply {
        retcode: rv.to_wire(),
    };
    c.send(true, Packet::StateChgReply, &reply.encode())
        .map_err(|_| End::Retry)
}

/// `P_CONN_ST_CHG_REQ`: the peer asks for a connection-wide change. The C driver sends it for
/// a graceful `disconnect` (conn = Disconnecting); we agree and end the session (the peer
/// closes the sockets next), then wait for it again like after any lost connection.
pub(super) fn receive_conn_st_chg_req(c: &Connection, p: &[u8]) -> core::result::Result<(), End> {
    let req = w::ReqState::decode(p).map_err(|_| End::Retry)?;
    let (conn_mask, _) = ws::ns(&[ws::Field::Conn(Conn::StandAlone)]);
    let wants = ws::State::unpack(req.val).map(|s| s.conn).ok();
    let reply = w::ReqStateReply {
        retcode: ws::StateRv::Success.to_wire(),
    };
    c.send(true, Packet::ConnStChgReply, &reply.encode())
        .map_err(|_| End::Retry)?;
    if req.mask & conn_mask != 0 && wants.is_some_and(|s| !reached(s, Conn::WFReportParams)) {
        pr_info!(
            "resource {}: peer disconnects ({})\n",
            c.name(),
            wants.map_or("?", |s| s.name())
        );
        return Err(End::Retry);
    }
    Ok(())
}
