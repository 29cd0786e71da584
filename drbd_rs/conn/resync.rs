// SPDX-License-Identifier: GPL-2.0

//! The resync (C DRBD's `drbd_worker.c` and the resync parts of `drbd_receiver.c`): starting
//! it after the sync UUID, the worker that requests blocks (target) or waits for the end
//! (source), serving requests, applying replies, their acks, and finishing.

use super::{
    now_ms, packet_name, recv_data_header, volume0, write_payload, Connection, End, Receiving,
    MAX_BIO_SIZE, RS_REQUEST_MAX, RS_SERVED_MAX, RX_CHUNK,
};
use crate::device::Device;
use crate::drbd_genl::{DiskState, Role};
use crate::drbd_resync::{self as rs, RsBlock, ID_SYNCER};
use crate::drbd_state::{self as ws, Conn};
use crate::drbd_wire::{self as w, Packet};
use crate::events::{self, Event};
use crate::net::{self, KThread, Socket};
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::Arc;

/// `P_SYNC_UUID` (`receive_sync_uuid()`): the sync target takes the source's new UUID, becomes
/// Inconsistent and starts requesting.
pub(super) fn receive_sync_uuid(
    c: &Arc<Connection>,
    p: &[u8],
    dev: &Device,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    if c.view().cstate != Conn::WFSyncUUID {
        pr_err!(
            "resource {}: SyncUUID in state {}\n",
            c.name(),
            c.view().cstate.name()
        );
        return Err(End::Retry);
    }
    let su = w::SyncUuid::decode(p).map_err(|_| End::Retry)?;
    // The merged bitmap is on disk before the sync UUID (see `send_sync_uuid`).
    dev.flush_bitmap_sliced().map_err(|_| End::Retry)?;
    {
        let mut st = dev.lock();
        let primary = st.role == Role::Primary;
        let b = st.backing.as_mut().ok_or(End::Retry)?;
        rs::receive_sync_uuid(b.md.uuids_mut(), su.uuid, primary);
        b.md.set_disk_state(DiskState::Inconsistent);
        b.md.store(&b.lower).map_err(|_| End::Retry)?;
        st.disk_state = DiskState::Inconsistent;
    }
    begin_resync(c, dev, Conn::SyncTarget, rx)
}

/// `drbd_start_resync()`: the figures, the state, and the worker that requests (target) or
/// waits for the end (source).
pub(super) fn begin_resync(
    c: &Arc<Connection>,
    dev: &Device,
    side: Conn,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let bits = dev.out_of_sync_kib() / 4;
    c.rs.total_bits.store(bits, Ordering::SeqCst);
    c.rs.start_ms.store(now_ms(), Ordering::SeqCst);
    c.rs.failed_bits.store(0, Ordering::SeqCst);
    c.rs.peer_done.store(false, Ordering::SeqCst);
    if side == Conn::SyncSource {
        c.info.lock().view.disk = ws::Disk::Inconsistent;
    }
    c.set_cstate(side);
    pr_info!(
        "resource {}: began resync as {} (will sync {} KiB [{} bits set])\n",
        c.name(),
        side.name(),
        bits.saturating_mul(4),
        bits
    );
    events::publish(&Event::Device(dev));
    // A previous worker has ended (it stops when the state leaves its sync state).
    drop(rx.worker.take());
    c.requested.lock().clear();
    match KThread::spawn(c"drbd_rs_resync", c.clone(), resync_worker) {
        Ok(t) => {
            rx.worker = Some(t);
            Ok(())
        }
        Err(_) => Err(End::Retry),
    }
}

/// The resync worker. Sync target: requests the out-of-sync blocks in runs of at most
/// `RS_REQUEST_MAX` bytes, `RS_INFLIGHT_MAX` at a time, paced at the configured rate; when
/// nothing is left, finishes. Sync source: finishes when the target's acks have cleared every
/// bit.
fn resync_worker(c: &Arc<Connection>) {
    let Some(dev) = volume0(c) else {
        return;
    };
    let side = c.view().cstate;
    let Some((bm_bits, cap)) = dev
        .lock()
        .backing
        .as_ref()
        .map(|b| (b.md.geometry().bm_bits(), b.md.capacity_sectors()))
    else {
        return;
    };
    let peer_max = c.info.lock().peer_max_bio;
    let max_bytes = RS_REQUEST_MAX.min(if peer_max >= 4096 { peer_max } else { 4096 }) & !4095;
    let max_bits = u64::from(max_bytes / 4096);
    let mut pacer = rs::Pacer::new(c.conf.rs_rate_kib(), now_ms());
    let mut cursor = 0u64;
    loop {
        if c.stopping() || c.down.load(Ordering::SeqCst) || c.view().cstate != side {
            return;
        }
        let left = dev.out_of_sync_kib() / 4;
        let failed = c.rs.failed_bits.load(Ordering::SeqCst);
        if side == Conn::SyncSource {
            if left == 0 || (c.rs.peer_done.load(Ordering::SeqCst) && left <= failed) {
                finish_resync(c, &dev, side);
                return;
            }
            net::sleep_interruptible(50);
            continue;
        }
        if c.requested.lock().is_full() {
            net::sleep_interruptible(2);
            continue;
        }
        let next = (*dev.activity().lock())
            .as_ref()
            .and_then(|a| rs::next_request(a.bitmap(), bm_bits, cursor, max_bits));
        let Some((first, n)) = next else {
            if c.requested.lock().is_empty() {
                if left <= failed {
                    finish_resync(c, &dev, side);
                    return;
                }
                // Bits behind the cursor (failed blocks, or marked meanwhile): another pass.
                cursor = 0;
            }
            net::sleep_interruptible(10);
            continue;
        };
        // Bits of our bitmap (below 2^48) and `n` <= `max_bits`: nothing saturates, and the
        // size is at most `max_bytes` (a u32).
        let sector = first.saturating_mul(8);
        let bytes = n
            .saturating_mul(4096)
            .min(cap.saturating_sub(sector).saturating_mul(512)) as u32;
        let next = first.saturating_add(n);
        if bytes == 0 {
            cursor = next;
            continue;
        }
        if !pacer.take(u64::from(bytes), now_ms()) {
            net::sleep_interruptible(10);
            continue;
        }
        // Recorded before it is sent: the reply may come back at once. Not full (checked
        // above; only this thread adds).
        if !c.requested.lock().insert(RsBlock { sector, bytes }) {
            continue;
        }
        let req = w::BlockReq {
            sector,
            block_id: ID_SYNCER,
            blksize: bytes,
            pad: 0,
        };
        if c.send(false, Packet::RsDataRequest, &req.encode()).is_err() {
            return;
        }
        cursor = next;
    }
}

/// `drbd_resync_finished()`: UUIDs, disk states, bitmap on disk, back to Connected.
fn finish_resync(c: &Connection, dev: &Device, side: Conn) {
    let failed = c.rs.failed_bits.load(Ordering::SeqCst);
    let total = c.rs.total_bits.load(Ordering::SeqCst);
    let secs = (now_ms().saturating_sub(c.rs.start_ms.load(Ordering::SeqCst)) / 1000).max(1);
    let peer = c.info.lock().peer_uuids;
    {
        let mut st = dev.lock();
        let primary = st.role == Role::Primary;
        let Some(b) = st.backing.as_mut() else {
            return;
        };
        let mut up_to_date = false;
        if failed == 0 {
            let u = b.md.uuids_mut();
            if side == Conn::SyncTarget {
                match peer {
                    Some(p) => rs::finish_target(
                        u,
                        &[p.current, p.bitmap, p.history_start, p.history_end],
                        primary,
                    ),
                    None => rs::clear_bitmap_uuid(u),
                }
                b.md.set_disk_state(DiskState::UpToDate);
                up_to_date = true;
            } else {
                rs::finish_source(u);
            }
        }
        if b.md.store(&b.lower).is_err() {
            pr_err!(
                "resource {}: writing metadata after resync failed\n",
                c.name()
            );
        }
        if up_to_date {
            st.disk_state = DiskState::UpToDate;
        }
    }
    // The cleared bits after the UUIDs: a crash in between costs a longer resync.
    if dev.flush_bitmap_sliced().is_err() {
        pr_err!(
            "resource {}: writing the bitmap after resync failed\n",
            c.name()
        );
    }
    if side == Conn::SyncSource && failed == 0 {
        c.info.lock().view.disk = ws::Disk::UpToDate;
    }
    c.set_cstate(Conn::Connected);
    pr_info!(
        "resource {}: resync done as {} (total {} s; {} K/sec; {} KiB failed)\n",
        c.name(),
        side.name(),
        secs,
        total.saturating_mul(4).checked_div(secs).unwrap_or(0),
        failed.saturating_mul(4)
    );
    if let Some(d) = volume0(c) {
        events::publish(&Event::Device(&d));
    }
    if side == Conn::SyncTarget {
        // Tell the source explicitly (as DRBD's `after_state_ch()` does).
        c.send_state(dev);
    } else if failed == 0 {
        c.unfence_after_resync(dev);
    }
}

/// `P_RS_DATA_REQUEST` (`receive_DataRequest()`, sync source): reads the range and sends it as
/// `P_RS_DATA_REPLY`, or `P_NEG_RS_DREPLY` if the read fails.
///
/// The device's state lock is held only while reading, never across network I/O: a slow peer
/// must not stall the application. Ordering against application writes: under the lock (no new
/// write is submitted) every write already submitted completes on the lower device, the block
/// is read into memory and marked as being served ([`Connection::serving`]). A write submitted
/// before is in the data we send; a write to the block submitted after waits in
/// [`Connection::send_data`] until the reply is on the socket, so its `P_DATA` follows it.
pub(super) fn serve_rs_request(
    c: &Connection,
    p: &[u8],
    dev: &Device,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let r = w::BlockReq::decode(p).map_err(|_| End::Retry)?;
    rx.reply_buf()?;
    wait_served_room(c)?;
    let b = RsBlock {
        sector: r.sector,
        bytes: r.blksize,
    };
    if let Err(e) = read_rs_block(c, dev, b, rx)? {
        pr_warn!(
            "resource {}: resync read at sector {} failed: {:?}\n",
            c.name(),
            r.sector,
            e
        );
        let a = w::BlockAck {
            sector: r.sector,
            block_id: r.block_id,
            blksize: r.blksize,
            seq_num: c.next_ack_seq(),
        };
        return c
            .send(true, Packet::NegRsDReply, &a.encode())
            .map_err(|_| End::Retry);
    }
    // Recorded before it is sent: the ack may come back at once. There is room (checked
    // above; only this thread adds).
    c.served.lock().insert(b);
    let d = w::DataHeader {
        sector: r.sector,
        block_id: r.block_id,
        seq_num: 0,
        dp_flags: 0,
    };
    let data = rx.reply.get(..r.blksize as usize).unwrap_or(&[]);
    let sent = c.send_parts(false, Packet::RsDataReply, &[&d.encode(), data]);
    // Writes to the block may go now (after the reply, or after the session if it failed).
    *c.serving.lock() = None;
    sent.map_err(|e| {
        pr_err!(
            "resource {}: sending resync data failed: {:?}\n",
            c.name(),
            e
        );
        End::Retry
    })
}

/// Waits (without locks) until the sync target has acknowledged enough replies that another
/// one can be tracked; gives up when the session ends or after 30 s.
fn wait_served_room(c: &Connection) -> core::result::Result<(), End> {
    let deadline = now_ms().saturating_add(30_000);
    while c.served.lock().is_full() {
        if c.stopping() || c.down.load(Ordering::SeqCst) || now_ms() > deadline {
            pr_err!(
                "resource {}: {} resync replies without the peer's ack\n",
                c.name(),
                RS_SERVED_MAX
            );
            return Err(End::Retry);
        }
        net::sleep_interruptible(1);
    }
    Ok(())
}

/// Checks a resync request and reads its block into `rx.reply` under the device's state lock,
/// after every write submitted before has completed on the lower device; then marks the block
/// as being served (cleared by the caller once the reply is sent). `Err(End)` for a request
/// that is refused (the session ends), `Ok(Err(_))` for a failed read.
fn read_rs_block(
    c: &Connection,
    dev: &Device,
    b: RsBlock,
    rx: &mut Receiving,
) -> core::result::Result<Result, End> {
    let cstate = c.view().cstate;
    let st = dev.lock();
    let cap = st.backing.as_ref().map_or(0, |b| b.md.capacity_sectors());
    let ok = matches!(cstate, Conn::SyncSource | Conn::PausedSyncS)
        && st.disk_state == DiskState::UpToDate
        && b.bytes > 0
        && b.bytes % 512 == 0
        && b.bytes <= MAX_BIO_SIZE
        && b.sector
            .checked_add(u64::from(b.bytes >> 9))
            .is_some_and(|e| e <= cap);
    if !ok {
        pr_err!(
            "resource {}: resync request of {} bytes at sector {} refused (capacity {}, {})\n",
            c.name(),
            b.bytes,
            b.sector,
            cap,
            cstate.name()
        );
        return Err(End::Retry);
    }
    let deadline = now_ms().saturating_add(30_000);
    let stop = || c.stopping() || c.down.load(Ordering::SeqCst) || now_ms() > deadline;
    if !dev.wait_lower_writes(|| !stop()) {
        return Err(End::Retry);
    }
    let lower = &st.backing.as_ref().ok_or(End::Retry)?.lower;
    let mut off = 0u32;
    while off < b.bytes {
        // `off` < `bytes` <= MAX_BIO_SIZE: the pieces stay within `rx.reply`.
        let k = b.bytes.saturating_sub(off).min(RX_CHUNK as u32) as usize;
        let at = b.sector.saturating_add(u64::from(off >> 9));
        // Read through the kmalloc'd chunk (the reply buffer may be vmalloc'd).
        if let Err(e) = lower.read_into(at, &mut rx.chunk[..k]) {
            return Ok(Err(e));
        }
        let dst = rx
            .reply
            .get_mut(off as usize..)
            .and_then(|d| d.get_mut(..k))
            .ok_or(End::Retry)?;
        dst.copy_from_slice(&rx.chunk[..k]);
        off = off.saturating_add(k as u32);
    }
    *c.serving.lock() = Some(b);
    drop(st);
    Ok(Ok(()))
}

/// `P_RS_DATA_REPLY` (sync target): writes the block, marks it in sync and acknowledges it with
/// `P_RS_WRITE_ACK`.
pub(super) fn receive_rs_data(
    c: &Connection,
    sock: &Socket,
    h: &w::Header,
    dev: &Device,
    rx: &mut Receiving,
) -> Result {
    let d = recv_data_header(c, sock, h)?;
    let len = {
        let st = dev.lock();
        let cap = st.backing.as_ref().map_or(0, |b| b.md.capacity_sectors());
        let cstate = c.view().cstate;
        match w::check_data(h.length, d.sector, cap, MAX_BIO_SIZE) {
            // Only the answer to one of our requests, once.
            Ok(len)
                if d.block_id == ID_SYNCER
                    && matches!(cstate, Conn::SyncTarget | Conn::PausedSyncT)
                    && c.requested.lock().take(RsBlock {
                        sector: d.sector,
                        bytes: len,
                    }) =>
            {
                len
            }
            r => {
                pr_err!(
                    "resource {}: RSDataReply of {} bytes at sector {} refused ({:?}, capacity {}, {})\n",
                    c.name(),
                    h.length,
                    d.sector,
                    r,
                    cap,
                    cstate.name()
                );
                return Err(EPROTO);
            }
        }
    };
    write_payload(c, sock, dev, rx, d.sector, len)?;
    dev.mark_in_sync(d.sector, u64::from(len >> 9));
    let a = w::BlockAck {
        sector: d.sector,
        block_id: d.block_id,
        blksize: len,
        seq_num: c.next_ack_seq(),
    };
    c.send(true, Packet::RsWriteAck, &a.encode())
}

/// An answer about a resync block (`ID_SYNCER`). Sync source: `P_RS_WRITE_ACK` of a reply we
/// sent marks it in sync; `P_NEG_ACK` (the target could not write it) leaves it out of sync and
/// counts a failed block. Sync target: `P_NEG_RS_DREPLY` to one of our requests counts a failed
/// block. Each must name an outstanding block exactly and counts once; anything else (another
/// packet, a block never asked for or answered already) is a protocol error, and no bit or
/// counter moves.
pub(super) fn got_resync_ack(
    c: &Connection,
    dev: Option<&Device>,
    h: &w::Header,
    a: &w::BlockAck,
) -> bool {
    let b = RsBlock {
        sector: a.sector,
        bytes: a.blksize,
    };
    let cmd = Packet::from_u16(h.command);
    let ok = match cmd {
        Some(Packet::RsWriteAck | Packet::NegAck) => c.served.lock().take(b),
        Some(Packet::NegRsDReply) => c.requested.lock().take(b),
        _ => false,
    };
    if !ok {
        pr_err!(
            "resource {}: {} for {} bytes at sector {} that was not requested (state {})\n",
            c.name(),
            packet_name(h.command),
            a.blksize,
            a.sector,
            c.view().cstate.name()
        );
        return false;
    }
    if cmd == Some(Packet::RsWriteAck) {
        if let Some(d) = dev {
            d.mark_in_sync(a.sector, u64::from(a.blksize >> 9));
        }
    } else {
        let what = if cmd == Some(Packet::NegAck) {
            "write"
        } else {
            "read"
        };
        pr_warn!(
            "resource {}: peer could not {} {} bytes at sector {} for the resync\n",
            c.name(),
            what,
            a.blksize,
            a.sector
        );
        // At most 128 blocks of one request (`MAX_BIO_SIZE`): no saturation.
        c.rs.failed_bits
            .fetch_add(u64::from(a.blksize).div_ceil(4096), Ordering::SeqCst);
    }
    true
}
