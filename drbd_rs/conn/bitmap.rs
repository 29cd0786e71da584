// SPDX-License-Identifier: GPL-2.0

//! The bitmap exchange after a sync handshake (C DRBD's `drbd_send_bitmap()` and
//! `receive_bitmap()`): RLE+VLI or plain packets each way, merged into ours in slices.

use super::resync::begin_resync;
use super::{bad, now_ns, Connection, End, Receiving};
use crate::activity;
use crate::device::Device;
use crate::drbd_genl::Role;
use crate::drbd_resync as rs;
use crate::drbd_state::Conn;
use crate::drbd_wire::{self as w, Packet, WireError};
use kernel::prelude::*;
use kernel::sync::Arc;

/// Enters WFBitMapS (`source`) or WFBitMapT after a handshake that asks for a resync; a full
/// sync marks the whole bitmap first. The sync source sends its bitmap at once; the target
/// waits for it (`receive_bitmap`).
pub(super) fn start_bitmap_exchange(
    c: &Connection,
    agreed: u32,
    dev: &Device,
    source: bool,
    full: bool,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let peer_sectors = c.info.lock().peer_sectors;
    {
        let mut st = dev.lock();
        let Some(b) = st.backing.as_mut() else {
            return Err(End::Retry);
        };
        let ours = b.md.capacity_sectors();
        if peer_sectors != ours {
            pr_err!(
                "resource {}: cannot resync: the peer's disk has {} sectors, ours {}\n",
                c.name(),
                peer_sectors,
                ours
            );
            return Err(End::StandAlone);
        }
        if full {
            pr_info!(
                "resource {}: writing the whole bitmap, full sync required\n",
                c.name()
            );
            let bits = b.md.geometry().bm_bits();
            if let Some(a) = (*dev.activity().lock()).as_mut() {
                a.set_all(bits);
            }
        }
    }
    if full {
        dev.flush_bitmap_sliced().map_err(|_| End::Retry)?;
    }
    rx.bm_bit = 0;
    rx.bm_word = 0;
    rx.bm_packets = 0;
    c.set_cstate(if source {
        Conn::WFBitMapS
    } else {
        Conn::WFBitMapT
    });
    c.send_state(dev);
    if source {
        send_bitmap(c, agreed, dev).map_err(|_| End::Retry)?;
    }
    Ok(())
}

/// Sends our bitmap (`drbd_send_bitmap()`): RLE+VLI packets while they are smaller than the
/// plain bits, plain words otherwise; a plain transfer ends with an empty `P_BITMAP`.
fn send_bitmap(c: &Connection, agreed: u32, dev: &Device) -> Result {
    let bm_bits = dev
        .lock()
        .backing
        .as_ref()
        .map(|b| b.md.geometry().bm_bits())
        .ok_or(EIO)?;
    let words = bm_bits.div_ceil(64);
    let mut pkt = KVec::with_capacity(w::SOCKET_BUFFER_SIZE, GFP_KERNEL)?;
    pkt.resize(w::SOCKET_BUFFER_SIZE, 0u8, GFP_KERNEL)?;
    let code_max = w::compressed_bitmap_code_max(agreed);
    let (mut bit, mut word) = (0u64, 0u64);
    let (mut plain, mut compressed) = (0u32, 0u32);
    loop {
        // One packet is built under the bitmap lock and sent without it.
        let (cmd, len, done) = {
            let g = dev.activity().lock();
            let bm = (*g).as_ref().ok_or(EIO)?.bitmap();
            let mut off = bit;
            // Positions in our own bitmap (of `words` words): nothing saturates.
            match w::rle_encode(bm, bm_bits, &mut off, &mut pkt[1..][..code_max]) {
                Some((enc, n)) => {
                    pkt[0] = enc;
                    bit = off;
                    word = bit / 64;
                    (
                        Packet::CompressedBitmap,
                        n.saturating_add(1),
                        bit >= bm_bits,
                    )
                }
                None => {
                    let n = w::bitmap_plain_words(agreed, words.saturating_sub(word));
                    let len = n.saturating_mul(8);
                    let b0 = usize::try_from(word.saturating_mul(8))?;
                    let src = bm.get(b0..).and_then(|b| b.get(..len)).ok_or(EIO)?;
                    for (d, s) in pkt.iter_mut().zip(src) {
                        *d = *s;
                    }
                    word = word.saturating_add(n as u64);
                    bit = word.saturating_mul(64).min(bm_bits);
                    (Packet::Bitmap, len, n == 0)
                }
            }
        };
        if cmd == Packet::Bitmap {
            plain = plain.saturating_add(1);
        } else {
            compressed = compressed.saturating_add(1);
        }
        c.send(false, cmd, &pkt[..len])?;
        if done {
            break;
        }
    }
    pr_info!(
        "resource {}: sent bitmap: {} plain and {} compressed packets\n",
        c.name(),
        plain,
        compressed
    );
    Ok(())
}

/// `P_BITMAP` / `P_COMPRESSED_BITMAP` (`receive_bitmap()`): ORs the peer's bits into ours. At
/// the end the sync target answers with its bitmap and waits for the sync UUID; the sync
/// source starts the resync.
pub(super) fn receive_bitmap(
    c: &Arc<Connection>,
    agreed: u32,
    h: w::Header,
    p: &[u8],
    dev: &Device,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let cstate = c.view().cstate;
    if cstate != Conn::WFBitMapS && cstate != Conn::WFBitMapT {
        pr_err!(
            "resource {}: bitmap packet in state {}\n",
            c.name(),
            cstate.name()
        );
        return Err(End::Retry);
    }
    let bm_bits = dev
        .lock()
        .backing
        .as_ref()
        .map(|b| b.md.geometry().bm_bits())
        .ok_or(End::Retry)?;
    if rx.bm_packets == 0 {
        rx.bm_started_ns = now_ns();
        rx.bm_slice_max_ns = 0;
    }
    rx.bm_packets = rx.bm_packets.saturating_add(1);
    let more = if h.command == Packet::CompressedBitmap as u16 {
        merge_compressed(agreed, p, dev, bm_bits, rx)
    } else {
        merge_plain(agreed, p, dev, bm_bits, rx)
    }
    .map_err(|e| bad(c, h, e))?;
    if more {
        return Ok(());
    }
    // Whole nanoseconds of a monotonic clock: no saturation.
    let took_ms = now_ns().saturating_sub(rx.bm_started_ns) / 1_000_000;
    pr_info!(
        "resource {}: received bitmap: {} KiB out of sync ({} packets in {} ms, longest slice under the bitmap lock {} us)\n",
        c.name(),
        dev.out_of_sync_kib(),
        rx.bm_packets,
        took_ms,
        rx.bm_slice_max_ns / 1000
    );
    rx.bm_packets = 0;
    if cstate == Conn::WFBitMapT {
        send_bitmap(c, agreed, dev).map_err(|_| End::Retry)?;
        c.set_cstate(Conn::WFSyncUUID);
        return Ok(());
    }
    // Sync source (`drbd_gen_and_send_sync_uuid()`, then `drbd_start_resync()`). The merged
    // bitmap is on disk before the new UUIDs: a crash in between costs a longer resync, never
    // a missed block.
    dev.flush_bitmap_sliced().map_err(|_| End::Retry)?;
    let uuid = {
        let mut st = dev.lock();
        let primary = st.role == Role::Primary;
        let b = st.backing.as_mut().ok_or(End::Retry)?;
        // SAFETY: `get_random_u64` has no preconditions.
        let random = unsafe { kernel::bindings::get_random_u64() };
        let uuid = rs::gen_sync_uuid(b.md.uuids_mut(), random, primary);
        b.md.store(&b.lower).map_err(|_| End::Retry)?;
        uuid
    };
    c.send(false, Packet::SyncUuid, &w::SyncUuid { uuid }.encode())
        .map_err(|_| End::Retry)?;
    begin_resync(c, dev, Conn::SyncSource, rx)
}

/// Bits of work per hold of the bitmap's interrupt-safe lock while merging a peer's bitmap: a
/// 1 TiB device's whole bitmap (2^28 bits) set by one packet takes 257 holds of at most 128 KiB.
const BM_SLICE_BITS: u64 = 1 << 20;

/// Merges one `P_COMPRESSED_BITMAP` in slices of [`BM_SLICE_BITS`], taking the lock per slice;
/// returns whether bits remain to be received.
fn merge_compressed(
    agreed: u32,
    p: &[u8],
    dev: &Device,
    bm_bits: u64,
    rx: &mut Receiving,
) -> core::result::Result<bool, WireError> {
    let (enc, code) = w::compressed_bitmap_parts(agreed, p)?;
    let mut d = w::RleDecoder::new(enc, code, bm_bits, rx.bm_bit)?;
    while !with_bitmap(dev, rx, |act| act.merge_rle(&mut d, BM_SLICE_BITS))? {}
    rx.bm_bit = d.offset();
    rx.bm_word = rx.bm_bit / 64;
    Ok(rx.bm_bit < bm_bits)
}

/// Merges one plain `P_BITMAP` (at most 511 words, one hold of the lock); returns whether
/// words remain to be received.
fn merge_plain(
    agreed: u32,
    p: &[u8],
    dev: &Device,
    bm_bits: u64,
    rx: &mut Receiving,
) -> core::result::Result<bool, WireError> {
    // `bm_word` is at most the bitmap's words (a compressed packet's clear runs may end past
    // the bitmap: nothing is left then).
    let words = bm_bits.div_ceil(64);
    let n = w::bitmap_plain_words(agreed, words.saturating_sub(rx.bm_word));
    if p.len() != n.saturating_mul(8) {
        return Err(WireError::BadLength);
    }
    let word = rx.bm_word;
    with_bitmap(dev, rx, |act| act.merge_plain(word, p, bm_bits))?;
    rx.bm_word = rx.bm_word.saturating_add(n as u64);
    rx.bm_bit = rx.bm_word.saturating_mul(64).min(bm_bits);
    Ok(n != 0)
}

/// Runs `f` on the bitmap under its interrupt-safe lock (no bitmap: `BadValue`), and records
/// the longest hold in `rx`.
fn with_bitmap<R>(
    dev: &Device,
    rx: &mut Receiving,
    f: impl FnOnce(&mut activity::Activity) -> core::result::Result<R, WireError>,
) -> core::result::Result<R, WireError> {
    let t0 = now_ns();
    let r = {
        let mut g = dev.activity().lock();
        (*g).as_mut().ok_or(WireError::BadValue).and_then(f)
    };
    rx.bm_slice_max_ns = rx.bm_slice_max_ns.max(now_ns().saturating_sub(t0));
    r
}
