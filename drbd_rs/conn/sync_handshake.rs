// SPDX-License-Identifier: GPL-2.0

//! `P_STATE` from the peer and the sync handshake (C DRBD's `receive_state()` and
//! `drbd_sync_handshake()`): whether to resync, in which direction, or to refuse.

use super::bitmap::start_bitmap_exchange;
use super::state::{wire_disk, wire_role};
use super::{is_sync, reached, Connection, End, Receiving};
use crate::device::Device;
use crate::drbd_genl::DiskState;
use crate::drbd_state::{self as ws, Conn};
use crate::drbd_sync as sync;
use crate::drbd_wire::{self as w};
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::Arc;

pub(super) fn receive_state(
    c: &Arc<Connection>,
    agreed: u32,
    p: &[u8],
    dev: &Device,
    resolve_conflicts: bool,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let word = w::StateWord::decode(p).map_err(|_| End::Retry)?.state;
    let peer = ws::State::unpack(word).map_err(|_| {
        pr_err!(
            "resource {}: invalid peer state word 0x{:08x}\n",
            c.name(),
            word
        );
        End::Retry
    })?;
    let cstate = {
        let mut i = c.info.lock();
        i.view.role = peer.role;
        i.view.disk = peer.disk;
        i.view.cstate
    };
    let first = cstate == Conn::WFReportParams;
    let our_disk = dev.lock().disk_state;
    // `receive_state()`'s "consider resync": a new connection; the peer started a sync
    // handshake (it reports StartingSync* or WFBitMap*); or we are Inconsistent and the peer
    // has UpToDate data (it was forced Primary: DRBD's CONSIDER_RESYNC).
    let consider = first
        || (cstate == Conn::Connected
            && ((reached(peer.conn, Conn::StartingSyncS)
                && !reached(peer.conn, Conn::WFSyncUUID))
                || (our_disk == DiskState::Inconsistent && peer.disk == ws::Disk::UpToDate)));
    if is_sync(cstate) && peer.conn == Conn::Connected {
        // The sync target says it is done; the worker finishes once the acks are in.
        c.rs.peer_done.store(true, Ordering::SeqCst);
    }
    if !consider {
        c.publish();
        return Ok(());
    }
    let Some(pu) = c.info.lock().peer_uuids else {
        pr_err!("resource {}: State before UUIDs\n", c.name());
        return Err(End::Retry);
    };
    let outcome = handshake(c, dev, &pu, &peer, resolve_conflicts)?;
    let (source, full) = match outcome {
        sync::Outcome::SyncSourceBitmap => (true, false),
        sync::Outcome::FullSyncSource => (true, true),
        sync::Outcome::SyncTargetBitmap => (false, false),
        sync::Outcome::FullSyncTarget => (false, true),
        _ => {
            if first {
                c.set_cstate(Conn::Connected);
                // The peer learns that we are Connected too.
                c.send_state(dev);
            }
            return Ok(());
        }
    };
    start_bitmap_exchange(c, agreed, dev, source, full, rx)
}

/// The sync handshake (`drbd_sync_handshake()`): returns a sync outcome or no-sync, or ends
/// the session (split brain, unrelated data, refusals).
fn handshake(
    c: &Connection,
    dev: &Device,
    pu: &w::Uuids,
    peer: &ws::State,
    resolve_conflicts: bool,
) -> core::result::Result<sync::Outcome, End> {
    let me = {
        let st = dev.lock();
        let Some(b) = st.backing.as_ref() else {
            // Diskless: nothing to synchronise here.
            return Ok(sync::Outcome::NoSync);
        };
        let u = b.md.uuids();
        sync::Side {
            uuids: sync::Uuids {
                current: u[0],
                bitmap: u[1],
                history: [u[2], u[3]],
                dirty_bits: dev.out_of_sync_kib() / 4,
                flags: 0,
            },
            role: wire_role(st.role),
            disk: wire_disk(st.disk_state),
        }
    };
    let them = sync::Side {
        uuids: sync::Uuids::from_wire(pu),
        role: peer.role,
        disk: peer.disk,
    };
    let after_sb = c
        .conf
        .after_sb
        .map(|p| w::AfterSb::from_u32(p).unwrap_or(w::AfterSb::Disconnect));
    let link = sync::Link {
        agreed: c.view().agreed,
        features: 0,
        resolve_conflicts,
        negotiating: false,
    };
    let policy = sync::Policy {
        after_sb,
        always_asbp: false,
        rr_conflict: w::AfterSb::Disconnect,
    };
    let d = sync::sync_handshake(&me, &them, &link, &policy);
    pr_info!(
        "resource {}: sync handshake: uuid_compare()={} by rule {}: {:?}\n",
        c.name(),
        d.compared.hg,
        d.compared.rule,
        d.outcome
    );
    if let Some(fix) = d.compared.fix {
        // A missed resync-finished or sync-UUID event: DRBD corrects its UUIDs on the way.
        let (mut mine, mut theirs) = (me.uuids, them.uuids);
        fix.apply(&mut mine, &mut theirs);
        let mut st = dev.lock();
        if let Some(b) = st.backing.as_mut() {
            let u = b.md.uuids_mut();
            u[0] = mine.current;
            u[1] = mine.bitmap;
            u[2] = mine.history[0];
            u[3] = mine.history[1];
            if b.md.store(&b.lower).is_err() {
                return Err(End::Retry);
            }
        }
        c.info.lock().peer_uuids = Some(theirs.to_wire());
        pr_info!("resource {}: corrected UUIDs ({:?})\n", c.name(), fix);
    }
    match d.outcome {
        sync::Outcome::NoSync
        | sync::Outcome::SyncSourceBitmap
        | sync::Outcome::SyncTargetBitmap
        | sync::Outcome::FullSyncSource
        | sync::Outcome::FullSyncTarget => Ok(d.outcome),
        sync::Outcome::SplitBrain => {
            pr_err!(
                "resource {}: Split-Brain detected, dropping connection!\n",
                c.name()
            );
            Err(End::StandAlone)
        }
        sync::Outcome::Unrelated => {
            pr_err!("resource {}: Unrelated data, aborting!\n", c.name());
            Err(End::StandAlone)
        }
        _ => {
            pr_err!(
                "resource {}: sync handshake refused ({:?})\n",
                c.name(),
                d.outcome
            );
            Err(End::StandAlone)
        }
    }
}
