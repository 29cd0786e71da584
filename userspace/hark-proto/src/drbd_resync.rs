// SPDX-License-Identifier: GPL-2.0

//! Resync bookkeeping as pure logic: DRBD 8.4's generation-UUID updates (`drbd_uuid_*()` of
//! `drbd_main.c`) at promotion, loss of the peer, resync start and resync end; the sync
//! target's choice of the next block range to request; bit clearing; progress figures.
//!
//! The UUID array is the metadata's: `[current, bitmap, history start, history end]`. Bit 0 of
//! the current UUID says "Primary" (`UUID_PRIMARY`) and follows the role.
//!
//! Sector numbers and counts come from the peer, rates and times from the configuration and
//! the clock: all arithmetic is checked or saturating (an overflow in the kernel module is an
//! oops).

#![deny(clippy::arithmetic_side_effects)]

use super::drbd_md::{BM_SECT_PER_BIT, UI_BITMAP, UI_CURRENT, UI_HISTORY_END, UI_HISTORY_START};
use super::drbd_sync::{UUID_JUST_CREATED, UUID_NEW_BM_OFFSET};
use core::ops::DerefMut;

/// The generation UUIDs of the metadata.
pub type GenUuids = [u64; 4];

/// `DRBD_MAGIC`-free block id of resync requests and their acks (`ID_SYNCER`).
pub const ID_SYNCER: u64 = u64::MAX;

/// `drbd_uuid_move_history()`: the start of the history moves to its end.
fn move_history(u: &mut GenUuids) {
    u[UI_HISTORY_END] = u[UI_HISTORY_START];
}

/// `__drbd_uuid_set()`: stores `val`; the current UUID gets the role in bit 0.
pub fn uuid_set_raw(u: &mut GenUuids, idx: usize, val: u64, primary: bool) {
    u[idx] = if idx == UI_CURRENT {
        if primary {
            val | 1
        } else {
            val & !1
        }
    } else {
        val
    };
}

/// `drbd_uuid_set()`: like [`uuid_set_raw`], but a non-zero old value moves into the history.
pub fn uuid_set(u: &mut GenUuids, idx: usize, val: u64, primary: bool) {
    if u[idx] != 0 {
        move_history(u);
        u[UI_HISTORY_START] = u[idx];
    }
    uuid_set_raw(u, idx, val, primary);
}

/// `drbd_uuid_new_current()`: the current UUID becomes the bitmap UUID (the bitmap records
/// from here on what the peer misses), `random` the new current UUID.
pub fn new_current(u: &mut GenUuids, random: u64, primary: bool) {
    u[UI_BITMAP] = u[UI_CURRENT];
    uuid_set_raw(u, UI_CURRENT, random, primary);
}

/// `drbd_uuid_set_bm(device, 0)`: the bitmap UUID (if any) moves into the history.
pub fn clear_bitmap_uuid(u: &mut GenUuids) {
    if u[UI_BITMAP] == 0 {
        return;
    }
    move_history(u);
    u[UI_HISTORY_START] = u[UI_BITMAP];
    u[UI_BITMAP] = 0;
}

/// `drbd_gen_and_send_sync_uuid()`: the sync source's new bitmap UUID at resync start (the old
/// one plus `UUID_NEW_BM_OFFSET`, or `random` if there was none); returns it for `P_SYNC_UUID`.
pub fn gen_sync_uuid(u: &mut GenUuids, random: u64, primary: bool) -> u64 {
    let bm = u[UI_BITMAP];
    let uuid = if bm != 0 && bm != UUID_JUST_CREATED {
        bm.wrapping_add(UUID_NEW_BM_OFFSET)
    } else {
        random
    };
    uuid_set(u, UI_BITMAP, uuid, primary);
    uuid
}

/// `receive_sync_uuid()`: the sync target takes the source's sync UUID as its current UUID
/// (not rotated into the history) and has no bitmap UUID.
pub fn receive_sync_uuid(u: &mut GenUuids, uuid: u64, primary: bool) {
    uuid_set_raw(u, UI_CURRENT, uuid, primary);
    u[UI_BITMAP] = 0;
}

/// `drbd_resync_finished()` of a sync target without failed blocks: it takes the peer's UUIDs
/// (`peer` as last received), its own current UUID becomes a history UUID, and the bitmap UUID
/// is cleared.
pub fn finish_target(u: &mut GenUuids, peer: &GenUuids, primary: bool) {
    // Element-wise: `copy_from_slice` leaves a panic path objtool flags in the kernel module.
    u[UI_BITMAP] = peer[UI_BITMAP];
    u[UI_HISTORY_START] = peer[UI_HISTORY_START];
    u[UI_HISTORY_END] = peer[UI_HISTORY_END];
    let own = u[UI_CURRENT];
    uuid_set(u, UI_BITMAP, own, primary);
    uuid_set_raw(u, UI_CURRENT, peer[UI_CURRENT], primary);
    clear_bitmap_uuid(u);
}

/// `drbd_resync_finished()` of a sync source without failed blocks.
pub fn finish_source(u: &mut GenUuids) {
    clear_bitmap_uuid(u);
}

/// The next range a sync target requests: the first set bit at or after `from` (below
/// `bm_bits`) and the run of set bits after it, at most `max_bits` long. Returns
/// `(first_bit, nr_bits)`.
pub fn next_request(bm: &[u8], bm_bits: u64, from: u64, max_bits: u64) -> Option<(u64, u64)> {
    // Bits of a slice: below 2^64; the positions below stay at most `end` + 7.
    let end = bm_bits.min((bm.len() as u64).saturating_mul(8));
    let bit = |i: u64| bm[(i / 8) as usize] & (1 << (i % 8)) != 0;
    let mut i = from;
    while i < end {
        if i % 8 == 0 && bm[(i / 8) as usize] == 0 {
            i = i.saturating_add(8);
            continue;
        }
        if bit(i) {
            break;
        }
        i = i.saturating_add(1);
    }
    if i >= end || max_bits == 0 {
        return None;
    }
    let first = i;
    let mut last = first;
    while last < end && last.saturating_sub(first) < max_bits && bit(last) {
        last = last.saturating_add(1);
    }
    Some((first, last.saturating_sub(first)))
}

/// Clears the bits of the 4 KiB blocks that lie wholly within `nr_sectors` from `sector`
/// (`drbd_set_in_sync()`: a partial block stays out of sync). Returns how many were set;
/// `None` if the range leaves the bitmap.
pub fn clear_sectors(bm: &mut [u8], sector: u64, nr_sectors: u64) -> Option<u64> {
    let end = sector.checked_add(nr_sectors)?;
    let first = sector.div_ceil(BM_SECT_PER_BIT);
    let last = end / BM_SECT_PER_BIT; // exclusive
    if end.div_ceil(BM_SECT_PER_BIT) > (bm.len() as u64).saturating_mul(8) {
        return None;
    }
    let mut cleared = 0u64;
    for bit in first..last {
        let b = &mut bm[(bit / 8) as usize];
        let m = 1u8 << (bit % 8);
        if *b & m != 0 {
            *b &= !m;
            // At most the bits of `bm`.
            cleared = cleared.saturating_add(1);
        }
    }
    Some(cleared)
}

/// Sets every bit below `bm_bits` (a full sync); returns the number of bits set afterwards.
pub fn set_all(bm: &mut [u8], bm_bits: u64) -> u64 {
    let bits = bm_bits.min((bm.len() as u64).saturating_mul(8));
    let full = (bits / 8) as usize;
    bm[..full].fill(0xff);
    if bits % 8 != 0 {
        // The low `bits % 8` bits.
        bm[full] |= !(0xffu8 << (bits % 8));
    }
    bits
}

/// Resync progress as the status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Per mille done (0..=1000).
    pub permille: u32,
    /// Average rate since the start, KiB/s.
    pub rate_kib: u64,
    /// Estimated seconds left (`None` before anything moved).
    pub eta_s: Option<u64>,
}

/// Progress from the total and the remaining amount (KiB) and the elapsed milliseconds.
pub fn progress(total_kib: u64, left_kib: u64, elapsed_ms: u64) -> Progress {
    let left = left_kib.min(total_kib);
    let done = total_kib.saturating_sub(left);
    let permille = done
        .saturating_mul(1000)
        .checked_div(total_kib)
        .map_or(1000, |v| v as u32);
    let rate_kib = done
        .saturating_mul(1000)
        .checked_div(elapsed_ms.max(1))
        .unwrap_or(0);
    let eta_s = (rate_kib > 0).then(|| left.div_ceil(rate_kib));
    Progress {
        permille,
        rate_kib,
        eta_s,
    }
}

/// Bytes of 100 ms at `rate_kib` KiB/s (a u32 rate: no saturation).
fn burst(rate_kib: u64) -> i64 {
    (rate_kib.saturating_mul(1024) / 10).min(i64::MAX as u64) as i64
}

/// A token bucket pacing resync requests at `rate_kib` KiB/s with bursts of 100 ms. A request
/// may overdraw the bucket; the next waits until the debt is paid, so the long-term rate holds
/// for requests of any size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacer {
    rate_kib: u64,
    /// Bytes that may be requested now (negative: debt).
    tokens: i64,
    last_ms: u64,
}

impl Pacer {
    /// A pacer at `rate_kib` KiB/s (at least 1), starting with a full burst at `now_ms`.
    pub fn new(rate_kib: u32, now_ms: u64) -> Pacer {
        let rate_kib = u64::from(rate_kib.max(1));
        Pacer {
            rate_kib,
            tokens: burst(rate_kib),
            last_ms: now_ms,
        }
    }

    /// Whether `bytes` may be requested at `now_ms`; takes them if so.
    pub fn take(&mut self, bytes: u64, now_ms: u64) -> bool {
        let burst = burst(self.rate_kib).max(1);
        let dt = now_ms.saturating_sub(self.last_ms);
        self.last_ms = now_ms.max(self.last_ms);
        // A long pause (or a clock jump) refills at most a burst: saturate, never overflow.
        let refill =
            (dt.saturating_mul(self.rate_kib).saturating_mul(1024) / 1000).min(i64::MAX as u64 / 2);
        self.tokens = self.tokens.saturating_add(refill as i64).min(burst);
        if self.tokens > 0 {
            self.tokens = self
                .tokens
                .saturating_sub(bytes.min(i64::MAX as u64 / 2) as i64);
            true
        } else {
            false
        }
    }
}

/// A resync block as requests, replies and acks name it: first sector and size in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RsBlock {
    /// First sector.
    pub sector: u64,
    /// Size in bytes.
    pub bytes: u32,
}

/// The resync blocks one side has outstanding with the peer: the sync target's requests
/// awaiting `P_RS_DATA_REPLY`/`P_NEG_RS_DREPLY`, or the sync source's replies awaiting
/// `P_RS_WRITE_ACK`. An answer counts only if it names an outstanding block exactly, and only
/// once: an unsolicited or duplicated answer from a broken or hostile peer is refused instead
/// of clearing bitmap bits or moving counters. At most `slots.len()` blocks (the storage is the
/// caller's, so that the kernel can allocate it once).
pub struct Outstanding<S: DerefMut<Target = [RsBlock]>> {
    slots: S,
    len: usize,
}

impl<S: DerefMut<Target = [RsBlock]>> Outstanding<S> {
    /// An empty table over `slots`.
    pub fn new(slots: S) -> Self {
        Outstanding { slots, len: 0 }
    }

    /// Blocks outstanding.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no further block fits.
    pub fn is_full(&self) -> bool {
        self.len >= self.slots.len()
    }

    /// Records `b` as outstanding; false (nothing recorded) when full.
    pub fn insert(&mut self, b: RsBlock) -> bool {
        let Some(slot) = self.slots.get_mut(self.len) else {
            return false;
        };
        *slot = b;
        // `len` < `slots.len()`.
        self.len = self.len.saturating_add(1);
        true
    }

    /// Takes the outstanding block equal to `b`; false if there is none (unsolicited, or
    /// answered already).
    pub fn take(&mut self, b: RsBlock) -> bool {
        let n = self.len.min(self.slots.len());
        let used = &mut self.slots[..n];
        let Some(i) = used.iter().position(|x| *x == b) else {
            return false;
        };
        // The last used slot moves into the hole: order does not matter.
        let last = used.len().saturating_sub(1);
        used.swap(i, last);
        self.len = last;
        true
    }

    /// Forgets every block (a new session).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const A: u64 = 0xAAAA_0000_0000_0000;
    const B: u64 = 0xBBBB_0000_0000_0000;

    #[test]
    fn promotion_and_loss_make_a_new_current_uuid() {
        let mut u = [A, 0, 0, 0];
        new_current(&mut u, B, true);
        assert_eq!(u, [B | 1, A, 0, 0]);
        let mut s = [A | 1, 0, 0, 0];
        new_current(&mut s, B | 1, false);
        assert_eq!(s, [B, A | 1, 0, 0]);
    }

    #[test]
    fn sync_source_and_target_agree_after_a_bitmap_resync() {
        // The Primary lost its peer: new current B, bitmap A. The peer still has A.
        let mut src = [A, 0, 0, 0];
        new_current(&mut src, B, true);
        let mut tgt = [A, 0, 0, 0];
        let sync = gen_sync_uuid(&mut src, 0x1234, true);
        assert_eq!(sync, A + UUID_NEW_BM_OFFSET);
        assert_eq!(src, [B | 1, A + UUID_NEW_BM_OFFSET, A, 0]);
        receive_sync_uuid(&mut tgt, sync, false);
        assert_eq!(tgt, [A + UUID_NEW_BM_OFFSET, 0, 0, 0]);
        let peer = src;
        finish_target(&mut tgt, &peer, false);
        finish_source(&mut src);
        assert_eq!(src[UI_CURRENT] & !1, tgt[UI_CURRENT]);
        assert_eq!(src[UI_BITMAP], 0);
        assert_eq!(tgt[UI_BITMAP], 0);
        assert_eq!(src, [B | 1, 0, A + UUID_NEW_BM_OFFSET, A]);
        assert_eq!(tgt[UI_HISTORY_START], A + UUID_NEW_BM_OFFSET);
    }

    #[test]
    fn initial_full_sync_uses_a_random_sync_uuid() {
        let mut src = [UUID_JUST_CREATED, 0, 0, 0];
        new_current(&mut src, A, true);
        assert_eq!(src, [A | 1, UUID_JUST_CREATED, 0, 0]);
        let sync = gen_sync_uuid(&mut src, B, true);
        assert_eq!(sync, B);
        assert_eq!(src, [A | 1, B, UUID_JUST_CREATED, 0]);
        let mut tgt = [UUID_JUST_CREATED, 0, 0, 0];
        receive_sync_uuid(&mut tgt, sync, false);
        finish_target(&mut tgt, &src, false);
        finish_source(&mut src);
        assert_eq!(tgt[UI_CURRENT], A);
        assert_eq!(src[UI_CURRENT], A | 1);
        assert_eq!((src[UI_BITMAP], tgt[UI_BITMAP]), (0, 0));
    }

    #[test]
    fn clear_bitmap_uuid_is_idempotent() {
        let mut u = [A, 0, B, 0];
        clear_bitmap_uuid(&mut u);
        assert_eq!(u, [A, 0, B, 0]);
        let mut u = [A, B, 7, 0];
        clear_bitmap_uuid(&mut u);
        assert_eq!(u, [A, 0, B, 7]);
    }

    #[test]
    fn requests_follow_runs_of_set_bits() {
        let mut bm = [0u8; 8];
        assert_eq!(next_request(&bm, 64, 0, 32), None);
        bm[1] = 0b0111_0000; // bits 12..15
        bm[3] = 0xff; // bits 24..32
        bm[4] = 0x01; // bit 32
        assert_eq!(next_request(&bm, 64, 0, 32), Some((12, 3)));
        assert_eq!(next_request(&bm, 64, 15, 32), Some((24, 9)));
        assert_eq!(next_request(&bm, 64, 15, 4), Some((24, 4)));
        assert_eq!(next_request(&bm, 64, 33, 4), None);
        // Bits past bm_bits do not count.
        assert_eq!(next_request(&bm, 30, 20, 32), Some((24, 6)));
        assert_eq!(next_request(&bm, 64, 0, 0), None);
    }

    #[test]
    fn clearing_keeps_partial_blocks() {
        let mut bm = [0xffu8; 2];
        // Sectors 4..20: block 0 partial (0..8), blocks 1 whole, block 2 partial (16..24).
        assert_eq!(clear_sectors(&mut bm, 4, 16), Some(1));
        assert_eq!(bm, [0xfd, 0xff]);
        assert_eq!(clear_sectors(&mut bm, 0, 128), Some(15));
        assert_eq!(bm, [0, 0]);
        assert_eq!(clear_sectors(&mut bm, 120, 16), None);
        assert_eq!(clear_sectors(&mut bm, u64::MAX, 16), None);
    }

    #[test]
    fn set_all_stops_at_the_last_bit() {
        let mut bm = [0u8; 4];
        assert_eq!(set_all(&mut bm, 13), 13);
        assert_eq!(bm, [0xff, 0x1f, 0, 0]);
        assert_eq!(set_all(&mut bm, 100), 32);
    }

    #[test]
    fn progress_figures() {
        assert_eq!(
            progress(1000, 250, 3000),
            Progress {
                permille: 750,
                rate_kib: 250,
                eta_s: Some(1)
            }
        );
        assert_eq!(progress(0, 0, 0).permille, 1000);
        assert_eq!(progress(100, 100, 10).eta_s, None);
        assert_eq!(progress(100, 500, 10).permille, 0);
    }

    #[test]
    fn pacer_limits_the_rate() {
        let mut p = Pacer::new(1000, 0); // 1000 KiB/s, 102400 bytes burst
        let mut sent = 0u64;
        for ms in 0..=10_000u64 {
            while p.take(65536, ms) {
                sent += 65536;
            }
        }
        let kib = sent / 1024;
        // 10 s at 1000 KiB/s plus at most one burst and one request.
        assert!((10_000..=10_000 + 100 + 64).contains(&kib), "{kib}");
        // A request bigger than the burst passes, and the debt delays the next one.
        let mut p = Pacer::new(100, 0);
        assert!(p.take(1 << 20, 0));
        assert!(!p.take(1 << 20, 5000));
        assert!(p.take(1 << 20, 10_300));
    }

    #[test]
    fn pacer_long_pause_does_not_overflow() {
        // The highest resync-rate (4 GiB/s) after a pause of 2^33 ms (99 days): the refill
        // was dt * rate * 1024 > 2^64.
        let mut p = Pacer::new(4_194_304, 0);
        assert!(p.take(1 << 40, 0));
        assert!(!p.take(1, 1));
        assert!(p.take(1 << 40, 1 << 33));
        // The bucket was refilled to one burst, not more: the debt holds the next request.
        assert!(!p.take(1, 1 << 33));
        let mut p = Pacer::new(u32::MAX, 0);
        assert!(p.take(4096, u64::MAX));
    }

    fn blk(sector: u64, bytes: u32) -> RsBlock {
        RsBlock { sector, bytes }
    }

    #[test]
    fn outstanding_answers_count_once_and_only_when_asked() {
        let mut slots = [RsBlock::default(); 3];
        let mut t = Outstanding::new(&mut slots[..]);
        // Nothing asked: an answer is refused (the old code cleared the bits anyway).
        assert!(!t.take(blk(0, 65536)));
        assert!(t.insert(blk(0, 4096)));
        assert!(t.insert(blk(8, 4096)));
        assert!(t.insert(blk(16, 8192)));
        assert!(t.is_full());
        assert!(!t.insert(blk(32, 4096)));
        // Same sector, other size; other sector, same size: not ours.
        assert!(!t.take(blk(0, 8192)));
        assert!(!t.take(blk(24, 4096)));
        assert!(t.take(blk(0, 4096)));
        // A duplicate is refused (the old code cleared the bits and counted twice).
        assert!(!t.take(blk(0, 4096)));
        assert_eq!(t.len(), 2);
        assert!(t.take(blk(16, 8192)));
        assert!(t.take(blk(8, 4096)));
        assert!(t.is_empty());
        assert!(!t.take(blk(8, 4096)));
        assert!(t.insert(blk(1, 512)));
        t.clear();
        assert!(!t.take(blk(1, 512)));
    }

    #[test]
    fn outstanding_without_slots_refuses_everything() {
        let mut t = Outstanding::new(&mut [][..]);
        assert!(t.is_full());
        assert!(!t.insert(blk(0, 4096)));
        assert!(!t.take(RsBlock::default()));
    }
}
