// SPDX-License-Identifier: GPL-2.0

//! The write path to the peer (C DRBD's `drbd_req.c`): `P_DATA` in epochs closed by
//! `P_BARRIER`, the transfer log that keeps each write until its epoch's `P_BARRIER_ACK`, the
//! protocol's acks releasing the requests, and `P_OUT_OF_SYNC` while our bitmap is on its way.

use super::{
    packet_name, reached, reached_disk, send_packet, volume0, Connection, TlEntry, MAX_EPOCH_WRITES,
};
use crate::device::{Device, Replication};
use crate::drbd_state::{self as ws, Conn};
use crate::drbd_wire::{self as w, Packet};
use crate::glue::RqRef;
use crate::net;
use core::sync::atomic::Ordering;
use kernel::prelude::*;

impl Replication for Connection {
    /// Whether application writes go to the peer now (`drbd_should_do_remote`: `Connected`,
    /// and from `WFBitMapT` through the sync states).
    fn replicates(&self) -> bool {
        let c = self.view().cstate;
        c == Conn::Connected || (reached(c, Conn::WFBitMapT) && !reached(c, Conn::Ahead))
    }

    /// Whether application writes are only announced as out of sync (`P_OUT_OF_SYNC`): our
    /// bitmap is on its way to the peer (`WFBitMapS`).
    fn sends_out_of_sync(&self) -> bool {
        self.view().cstate == Conn::WFBitMapS
    }

    /// Whether a peer shares our data now (a new current UUID is not needed to promote).
    fn peer_has_data(&self) -> bool {
        let v = self.view();
        reached(v.cstate, Conn::Connected) && reached_disk(v.disk, ws::Disk::Inconsistent)
    }

    /// Tells the peer that a write of `bytes` at `sector` stays local for now
    /// (`P_OUT_OF_SYNC`); the write is marked in our bitmap already. Best effort.
    fn send_out_of_sync(&self, sector: u64, bytes: u64) {
        let d = w::BlockDesc {
            sector,
            blksize: bytes as u32,
            pad: 0,
        };
        let _ = self.send(false, Packet::OutOfSync, &d.encode());
    }

    /// Sends a write to the peer (`P_DATA`): `held` keeps the request from completing until
    /// the protocol's acknowledgement arrives (A: sent, B: received, C: written). The write
    /// joins the current epoch, which a `P_BARRIER` closes when no other writer is about to
    /// send, after a FUA write, or after [`MAX_EPOCH_WRITES`]; the write leaves the transfer
    /// log with its epoch's `P_BARRIER_ACK`. On a send failure, or with the transfer log full,
    /// the request completes with the local copy only and its blocks are marked out of sync.
    fn send_data(&self, dev: &Device, held: RqRef, data: &[u8], sector: u64, fua: bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sectors = data.len() as u64 >> 9;
        let ack_flag = match self.conf.protocol {
            w::PROT_B => w::DP_SEND_RECEIVE_ACK,
            w::PROT_C => w::DP_SEND_WRITE_ACK,
            _ => 0,
        };
        let d = w::DataHeader {
            sector,
            block_id: id,
            seq_num: id as u32,
            dp_flags: ack_flag | if fua { w::DP_FUA } else { 0 },
        };
        self.wait_not_serving(sector, sectors);
        let (sock, agreed) = self.session_socket(false);
        let Some(sock) = sock else {
            dev.mark_out_of_sync(sector, sectors);
            return;
        };
        self.writers.fetch_add(1, Ordering::SeqCst);
        let mut ep = self.data_tx.lock();
        let (tl_held, held) = if ack_flag != 0 {
            (Some(held), None)
        } else {
            (None, Some(held))
        };
        let e = TlEntry {
            id,
            sector,
            sectors,
            epoch: ep.number,
            held: tl_held,
        };
        // (Bound first: the log's lock must not be held while sending.)
        let pushed = self.tl.lock().push_within_capacity(e);
        let sent = match pushed {
            Ok(()) => {
                let sent = send_packet(&sock, agreed, Packet::Data, &[&d.encode(), data]).is_ok();
                if !sent {
                    // The session ends: the peer needs the write later.
                    dev.mark_out_of_sync(sector, sectors);
                    let mut tl = self.tl.lock();
                    if let Some(i) = tl.iter().position(|e| e.id == id) {
                        let _ = tl.remove(i);
                    }
                }
                sent
            }
            Err(e) => {
                pr_err!(
                    "resource {}: transfer log full (barrier acks missing)\n",
                    self.name()
                );
                // Marked before the request completes (dropping `e` completes it).
                dev.mark_out_of_sync(sector, sectors);
                drop(e);
                false
            }
        };
        let last = self.writers.fetch_sub(1, Ordering::SeqCst) == 1;
        if sent {
            // At most MAX_EPOCH_WRITES: the epoch is closed then.
            ep.writes = ep.writes.saturating_add(1);
            if fua || last || ep.writes >= MAX_EPOCH_WRITES {
                let b = w::Barrier {
                    barrier: ep.number,
                    pad: 0,
                };
                // A failure ends the session, which marks the whole log out of sync.
                if send_packet(&sock, agreed, Packet::Barrier, &[&b.encode()]).is_ok() {
                    ep.number = ep.number.wrapping_add(1);
                    ep.writes = 0;
                }
            }
        }
        drop(ep);
        // Protocol A: the request completes now that the write is on its way.
        drop(held);
    }
}

impl Connection {
    /// A write of `sectors` from `sector` that overlaps the resync block being served (read
    /// before the write was submitted) waits until that reply is on the socket, so that its
    /// `P_DATA` follows the older data (see [`serve_rs_request`]). Other writes do not wait.
    fn wait_not_serving(&self, sector: u64, sectors: u64) {
        let end = sector.saturating_add(sectors);
        let overlaps = || {
            (*self.serving.lock()).is_some_and(|b| {
                let b_end = b.sector.saturating_add(u64::from(b.bytes >> 9));
                b.sector < end && sector < b_end
            })
        };
        while overlaps() && !self.stopping() && !self.down.load(Ordering::SeqCst) {
            net::sleep_interruptible(1);
        }
    }
}

/// An acknowledgement of one of our writes (not `ID_SYNCER`): releases the request
/// (`P_RS_WRITE_ACK` also marks it in sync, as the peer did; `P_NEG_ACK` marks it out of
/// sync). An ack for a write we did not send is a protocol error.
pub(super) fn got_ack(
    c: &Connection,
    dev: Option<&Device>,
    h: &w::Header,
    a: &w::BlockAck,
) -> bool {
    let cmd = Packet::from_u16(h.command);
    // The entry stays in the log until its epoch's barrier ack; the request completes now
    // (outside the lock: completing it may sleep).
    let found = {
        let mut tl = c.tl.lock();
        tl.iter_mut()
            .find(|e| e.id == a.block_id)
            .and_then(|e| e.held.take().map(|held| (e.sector, e.sectors, held)))
    };
    match found {
        Some((sector, sectors, held)) => {
            match cmd {
                Some(Packet::NegAck) => {
                    pr_warn!(
                        "resource {}: peer failed to write sector {}\n",
                        c.name(),
                        a.sector
                    );
                    if let Some(dev) = dev {
                        dev.mark_out_of_sync(sector, sectors);
                    }
                }
                Some(Packet::RsWriteAck) => {
                    if let Some(d) = dev {
                        d.mark_in_sync(sector, sectors);
                    }
                }
                _ => {}
            }
            drop(held);
            true
        }
        None => {
            pr_err!(
                "resource {}: {} for unknown request {}\n",
                c.name(),
                packet_name(h.command),
                a.block_id
            );
            false
        }
    }
}

/// `P_BARRIER_ACK`: every write of epoch `barrier` is on the peer's disk. They leave the
/// transfer log (a request still waiting for its protocol ack completes too). The peer's count
/// must be ours, as DRBD checks it.
pub(super) fn got_barrier_ack(c: &Connection, p: &[u8]) -> bool {
    let Ok(a) = w::BarrierAck::decode(p) else {
        return false;
    };
    let (expected, ok) = {
        let mut tl = c.tl.lock();
        let n = tl.iter().filter(|e| e.epoch == a.barrier).count();
        let ok = n > 0 && n == a.set_size as usize;
        if ok {
            // An entry still holding its request (the protocol ack always comes first, so
            // only a peer out of step) completes it here, under the mutex, as at session end.
            tl.retain(|e| e.epoch != a.barrier);
        }
        (n, ok)
    };
    if !ok {
        pr_err!(
            "resource {}: BarrierAck #{} for {} writes, expected {}\n",
            c.name(),
            a.barrier,
            a.set_size,
            expected
        );
        return false;
    }
    true
}

/// At the end of a session: writes whose epoch the peer never acknowledged complete now (if
/// they still wait), with the local copy only, and are marked out of sync: the peer may not
/// have them. (Dropped under the mutex, which keeps the reserved capacity: releasing is
/// atomic.) The next session starts a fresh epoch (the peer forgot the open one).
pub(super) fn fail_transfer_log(c: &Connection) {
    let dev = volume0(c);
    let mut tl = c.tl.lock();
    if !tl.is_empty() {
        pr_warn!(
            "resource {}: {} writes without the peer's barrier ack: marked out of sync\n",
            c.name(),
            tl.len()
        );
    }
    if let Some(dev) = dev {
        for e in tl.iter() {
            dev.mark_out_of_sync(e.sector, e.sectors);
        }
    }
    tl.clear();
    drop(tl);
    c.data_tx.lock().writes = 0;
}
