// SPDX-License-Identifier: GPL-2.0

//! Cluster-wide state changes (C DRBD's `drbd_req_state()`, `receive_req_state()` and
//! `got_RqSReply()`): our promotion while connected asks the peer first with
//! `P_STATE_CHG_REQ` on the data socket and waits for its `P_STATE_CHG_REPLY` on the meta
//! socket; the peer's requests are judged by the same rules (`drbd_state_chg`) and answered.
//! drbd_rs has no dual-primary: a second Primary is refused with `SS_TWO_PRIMARIES`.
//!
//! Locking: none is held while a request waits for the peer. One request at a time owns
//! [`Connection::st_chg_pending`] (netlink handlers are serialised anyway; a second one is
//! refused with `SS_CONCURRENT_ST_CHG`); the device's state mutex and the connection's `info`
//! spinlock are taken only briefly to read the states.

use super::state::{wire_disk, wire_role};
use super::{now_ms, reached, Connection, End};
use crate::device::Device;
use crate::drbd_genl::Role;
use crate::drbd_state::{self as ws, Conn, StateRv};
use crate::drbd_state_chg as chg;
use crate::drbd_wire::{self as w, Packet};
use crate::net;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::prelude::*;

/// How long our request waits for the peer's reply at most (ms). The session's pings end it
/// sooner if the peer is gone.
const ST_CHG_REPLY_WAIT_MS: u64 = 30_000;

/// Ownership of [`Connection::st_chg_pending`]: set while it lives.
///
/// # Invariants
///
/// The flag was false when this claim set it, and only this claim clears it (on drop).
struct Claim<'a>(&'a AtomicBool);

impl<'a> Claim<'a> {
    /// Claims the flag; `None` if another request owns it.
    fn new(flag: &'a AtomicBool) -> Option<Claim<'a>> {
        flag.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| Claim(flag))
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Connection {
    /// Our state as the state-change rules see it, and the limits that apply.
    fn rules_state(&self, dev: &Device) -> (ws::State, chg::Limits) {
        let (role, disk, open) = {
            let st = dev.lock();
            (st.role, st.disk_state, st.open_count > 0)
        };
        let v = self.view();
        let os = ws::State::new(wire_role(role), v.role, v.cstate, wire_disk(disk), v.disk);
        let lim = chg::Limits {
            two_primaries: self.conf.two_primaries,
            device_open: open,
        };
        (os, lim)
    }

    /// Becoming `role` (with `force`: our data made UpToDate): checks the change against the
    /// peer's state we know and, if it is cluster-wide (a promotion while connected), asks
    /// the peer. `Ok` means the local change may go ahead; `Err` carries DRBD's reason, ours
    /// or the peer's. If the session ends while we wait, the change is judged again (then
    /// without a peer, as DRBD does); after three sessions ended so, it fails.
    pub(crate) fn request_role(
        &self,
        dev: &Device,
        role: Role,
        force: bool,
    ) -> Result<(), StateRv> {
        let _claim = Claim::new(&self.st_chg_pending).ok_or(StateRv::ConcurrentStChg)?;
        // A session that ends while we ask is waited out and the change judged again; a few
        // times at most.
        for _ in 0..3 {
            let (os, lim) = self.rules_state(dev);
            let (ns, rv) = chg::local_role_change(&os, wire_role(role), force, &lim);
            if !rv.is_success() {
                return Err(rv);
            }
            if !chg::is_cluster_wide(&os, &ns) {
                return Ok(());
            }
            match self.ask_peer(role, force) {
                Some(rv) if rv.is_success() => return Ok(()),
                Some(rv) => return Err(rv),
                // The session ended (or is ending): judge again once it is gone.
                None => self.wait_session_gone(),
            }
        }
        Err(StateRv::CwFailedByPeer)
    }

    /// Waits (polling every 5 ms, at most [`ST_CHG_REPLY_WAIT_MS`]) until the connection is
    /// below `Connected`: a session whose sockets are gone may still show `Connected` for a
    /// moment.
    fn wait_session_gone(&self) {
        let deadline = now_ms().saturating_add(ST_CHG_REPLY_WAIT_MS);
        while self.is_connected() && !self.stop.load(Ordering::SeqCst) && now_ms() <= deadline {
            net::sleep(5);
        }
    }

    /// Sends our `P_STATE_CHG_REQ` and waits for the reply: `None` if the session ended
    /// first.
    fn ask_peer(&self, role: Role, force: bool) -> Option<StateRv> {
        let (mask, val) = chg::role_request(wire_role(role), force);
        *self.st_chg_reply.lock() = None;
        pr_info!(
            "resource {}: asking the peer: become {} (mask 0x{:08x}, val 0x{:08x})\n",
            self.name(),
            role.name(),
            mask,
            val
        );
        let sent = self.send(
            false,
            Packet::StateChgReq,
            &w::ReqState { mask, val }.encode(),
        );
        if sent.is_ok() {
            self.wait_st_chg_reply()
        } else {
            None
        }
    }

    /// Waits for the peer's reply (the asender stores it), polling every 5 ms in the caller's
    /// process; `None` if the session ends first.
    /// A peer that neither answers nor drops the session fails the change after
    /// [`ST_CHG_REPLY_WAIT_MS`].
    fn wait_st_chg_reply(&self) -> Option<StateRv> {
        let deadline = now_ms().saturating_add(ST_CHG_REPLY_WAIT_MS);
        loop {
            if let Some(rv) = self.st_chg_reply.lock().take() {
                return Some(rv);
            }
            // (Not `stopping()`: this runs in the caller's process, not in a kthread.)
            let stop = self.stop.load(Ordering::SeqCst);
            if stop || self.down.load(Ordering::SeqCst) || !self.is_connected() {
                return None;
            }
            if now_ms() > deadline {
                pr_err!(
                    "resource {}: no reply to our state change request\n",
                    self.name()
                );
                return Some(StateRv::CwFailedByPeer);
            }
            // Uninterruptible, as DRBD's `wait_event()`: bounded by the deadline.
            net::sleep(5);
        }
    }
}

/// `P_STATE_CHG_REPLY` (asender): the answer to our pending request. A reply nobody asked for
/// is a protocol error.
pub(super) fn got_state_chg_reply(c: &Connection, p: &[u8]) -> bool {
    let Ok(r) = w::ReqStateReply::decode(p) else {
        return false;
    };
    if !c.st_chg_pending.load(Ordering::SeqCst) {
        pr_err!(
            "resource {}: state change reply without a request\n",
            c.name()
        );
        return false;
    }
    // A code DRBD does not define is a refusal.
    let rv = StateRv::from_wire(r.retcode).unwrap_or(StateRv::UnknownError);
    if !rv.is_success() {
        pr_err!(
            "resource {}: requested state change failed by peer: {} ({})\n",
            c.name(),
            rv.name(),
            rv as i32
        );
    }
    *c.st_chg_reply.lock() = Some(rv);
    true
}

/// `P_STATE_CHG_REQ` (`receive_req_state()`): the peer asks to change the cluster-wide state
/// (to become Primary). Judged against our state; granted, the peer's role and disk are
/// recorded at once (so that our own promotion is refused from now on). With
/// `RESOLVE_CONFLICTS`, a request that crosses one of ours is refused (`SS_CONCURRENT_ST_CHG`).
pub(super) fn receive_state_chg_req(
    c: &Connection,
    p: &[u8],
    dev: &Device,
    resolve_conflicts: bool,
) -> core::result::Result<(), End> {
    let req = w::ReqState::decode(p).map_err(|_| End::Retry)?;
    let (os, lim) = c.rules_state(dev);
    let concurrent = resolve_conflicts && c.st_chg_pending.load(Ordering::SeqCst);
    let rv = match chg::peer_request(&os, req.mask, req.val, &lim, concurrent) {
        Ok(ns) => {
            {
                let mut i = c.info.lock();
                i.view.role = ns.peer;
                i.view.disk = ns.pdsk;
            }
            c.publish();
            StateRv::Success
        }
        Err(rv) => rv,
    };
    pr_info!(
        "resource {}: peer requests a state change (mask 0x{:08x}, val 0x{:08x}): {} ({})\n",
        c.name(),
        req.mask,
        req.val,
        rv.name(),
        chg::ss_name(rv)
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
