// SPDX-License-Identifier: GPL-2.0

//! The activity log and the quick-sync bitmap of an attached device, in memory, and their
//! on-disk I/O.
//!
//! Rules (DRBD 8.4's, see `drbd_actlog.c`):
//! - A write to a 4 MiB extent that is not in the activity log first commits an AL
//!   transaction naming it (FUA), then the write is submitted.
//! - An application write that the peer does not receive (no connection, or only announced
//!   with `P_OUT_OF_SYNC` while our bitmap is sent) marks its 4 KiB blocks out of sync in the
//!   in-memory bitmap; a replicated write is marked only if the peer does not acknowledge it
//!   (`conn.rs`). The resync clears the bits.
//! - An extent leaving the log gets its bitmap block written first; so the on-disk bitmap is
//!   exact for every extent outside the log, and after a crash marking every extent of the
//!   log out of sync covers every write that may have been lost in memory.
//! - Attach replays the log if the superblock says it is not clean (a crash), writes the
//!   bitmap, then rewrites the whole ring with the empty log. Detach writes the dirty bitmap
//!   blocks; the caller then marks the superblock clean.

use crate::drbd_al::{extent_range, max_slots_for_ring, ActivityLog, AlBusy, AlSlot, Hot};
use crate::drbd_md::{
    self as fmt, al_active_extents, al_replay, bm_count, bm_mark_al_extent, bm_set_sectors,
    InternalGeometry, MdError, MD_4KB_SECT, MD_BLOCK_SIZE,
};
use crate::drbd_resync;
use crate::drbd_wire::{self as w, RleDecoder, WireError};
use crate::glue::LowerDev;
use kernel::alloc::KVVec;
use kernel::prelude::*;
use kernel::sync::{CondVar, SpinLockIrq};
use kernel::{new_condvar, new_spinlock_irq};

/// Bitmap bytes per AL extent (1024 bits of 4 KiB).
const BM_BYTES_PER_EXTENT: u64 = fmt::BM_BITS_PER_AL_EXTENT / 8;
/// Largest bitmap read or write: 16 blocks, an order-4 kmalloc buffer.
pub(crate) const BM_IO_BYTES: usize = 16 * MD_BLOCK_SIZE;

/// [`MD_BLOCK_SIZE`] as a `u64` divisor.
const BLOCK_BYTES: u64 = MD_BLOCK_SIZE as u64;

/// A device's activity log and bitmap while attached, and where writers wait for a slot.
///
/// The lock is interrupt-safe: completions (softirq context) take it. It nests inside the
/// device's state mutex.
#[pin_data]
pub(crate) struct Tracked {
    /// The activity log and bitmap; `None` while detached.
    #[pin]
    pub(crate) lock: SpinLockIrq<Option<Activity>>,
    /// Writers waiting for an activity-log slot to become idle.
    #[pin]
    pub(crate) wait: CondVar,
}

impl Tracked {
    /// Nothing attached yet.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Tracked {
            lock <- new_spinlock_irq!(None),
            wait <- new_condvar!(),
        })
    }
}

/// What attach found in the activity log.
pub(crate) struct Replay {
    /// Extents the log named (each marked wholly out of sync).
    pub(crate) extents: u32,
    /// Bits newly set by marking them.
    pub(crate) new_bits: u64,
    /// The log was unreadable: the whole device was marked out of sync instead.
    pub(crate) whole_device: bool,
}

/// The in-memory activity log and bitmap.
///
/// # Invariants
///
/// `bm.len() == dirty.len() * MD_BLOCK_SIZE` (the on-disk bitmap area in whole blocks, bits
/// past the device end are 0) and `oos` is the number of set bits of `bm`.
pub(crate) struct Activity {
    al: ActivityLog<KVVec<AlSlot>>,
    bm: KVVec<u8>,
    dirty: KVVec<bool>,
    oos: u64,
}

fn md_err(what: &str, e: MdError) -> Error {
    pr_err!("{}: {}\n", what, e.as_str());
    EIO
}

impl Activity {
    /// Reads the bitmap; if `al_clean` is false, applies the activity log to it and writes it
    /// back; then writes an empty log over the whole ring. `io` is a 4 KiB kmalloc buffer.
    pub(crate) fn load(
        lower: &LowerDev,
        geo: &InternalGeometry,
        al_clean: bool,
        io: &mut KVec<u8>,
    ) -> Result<(Self, Option<Replay>)> {
        let blocks = usize::try_from(geo.bm_bytes().div_ceil(MD_BLOCK_SIZE as u64))?;
        let bytes = blocks.checked_mul(MD_BLOCK_SIZE).ok_or(EINVAL)?;
        let mut bm = KVVec::with_capacity(bytes, GFP_KERNEL)?;
        bm.resize(bytes, 0, GFP_KERNEL)?;
        let mut dirty = KVVec::with_capacity(blocks, GFP_KERNEL)?;
        dirty.resize(blocks, false, GFP_KERNEL)?;
        // Read in runs of `BM_IO_BYTES`: a 1 TiB device has 8,192 bitmap blocks.
        let mut buf = KVec::with_capacity(BM_IO_BYTES, GFP_KERNEL)?;
        buf.resize(BM_IO_BYTES, 0, GFP_KERNEL)?;
        let per_io = BM_IO_BYTES / MD_BLOCK_SIZE;
        for (i, chunk) in bm.chunks_mut(BM_IO_BYTES).enumerate() {
            // `chunk` is a whole number of 4 KiB blocks of the bitmap: `i * per_io` < `blocks`.
            let part = &mut buf[..chunk.len()];
            lower.read_into(bm_block_sector(geo, i.saturating_mul(per_io)), part)?;
            chunk.copy_from_slice(part);
        }
        // Bits past the end of the device are not ours to count (drbdmeta leaves them 0 too).
        let nr_bits = geo.bm_bits();
        clear_bits_from(&mut bm, nr_bits);

        let mut replay = None;
        let mut next_tr = 0u32;
        if !al_clean {
            let (r, next) = Self::replay(lower, geo, &mut bm, io)?;
            next_tr = next;
            replay = Some(r);
            // The marked bitmap must be on disk before the ring is overwritten below.
            dirty.fill(true);
        }
        let slots_max = max_slots_for_ring(geo.al_size_4k());
        let n = (fmt::AL_EXTENTS_DEF as usize).min(slots_max);
        let mut slots = KVVec::with_capacity(n, GFP_KERNEL)?;
        slots.resize(n, AlSlot::FREE, GFP_KERNEL)?;
        let al = ActivityLog::new(slots, next_tr).map_err(|e| md_err("activity log", e))?;
        let oos = bm_count(&bm);
        let mut act = Activity { al, bm, dirty, oos };
        act.write_dirty_bitmap(lower, geo, io)?;
        // Initialise the ring: as many empty transactions as it has blocks (DRBD's
        // drbd_al_initialize), so that a later replay sees only this attach's history.
        for _ in 0..geo.al_size_4k() {
            act.commit(lower, geo, io)?;
        }
        Ok((act, replay))
    }

    /// Replays the on-disk log into `bm`; returns what it found and the next transaction
    /// number.
    fn replay(
        lower: &LowerDev,
        geo: &InternalGeometry,
        bm: &mut [u8],
        io: &mut KVec<u8>,
    ) -> Result<(Replay, u32)> {
        let ring_len = usize::try_from(geo.al_size_4k())?;
        let mut ring: KVVec<[u8; MD_BLOCK_SIZE]> = KVVec::with_capacity(ring_len, GFP_KERNEL)?;
        for i in 0..geo.al_size_4k() {
            let block = u64::from(i).saturating_mul(u64::from(MD_4KB_SECT));
            lower.read(geo.al_sector().checked_add(block).ok_or(EINVAL)?, io)?;
            let blk: [u8; MD_BLOCK_SIZE] = io.as_slice().try_into().map_err(|_| EINVAL)?;
            ring.push(blk, GFP_KERNEL)?;
        }
        let mut slots: KVVec<u32> = KVVec::with_capacity(fmt::AL_EXTENTS_MAX, GFP_KERNEL)?;
        slots.resize(fmt::AL_EXTENTS_MAX, fmt::LC_FREE, GFP_KERNEL)?;
        match al_replay(&ring, geo.al_stripes, geo.al_stripe_size_4k, &mut slots) {
            Ok(r) => {
                let mut out = Replay {
                    extents: 0,
                    new_bits: 0,
                    whole_device: false,
                };
                // At most AL_EXTENTS_MAX extents, and bits of `bm`: nothing saturates.
                for e in al_active_extents(&slots) {
                    out.extents = out.extents.saturating_add(1);
                    // Extents past the device (a corrupt or foreign log) mark nothing.
                    let n = bm_mark_al_extent(bm, e).unwrap_or(0);
                    out.new_bits = out.new_bits.saturating_add(n);
                }
                clear_bits_from(bm, geo.bm_bits());
                let next = r.newest.map_or(0, |p| p.tr_number.wrapping_add(1));
                Ok((out, next))
            }
            Err(e) => {
                // Unclean and no usable log: which extents were hot is unknown, so all are.
                pr_warn!(
                    "activity log unusable ({}): marking the whole device out of sync\n",
                    e.as_str()
                );
                let before = bm_count(bm);
                bm.fill(0xff);
                clear_bits_from(bm, geo.bm_bits());
                let out = Replay {
                    extents: 0,
                    new_bits: bm_count(bm).saturating_sub(before),
                    whole_device: true,
                };
                Ok((out, 0))
            }
        }
    }

    /// Encodes the next transaction into `io` and writes it (FUA) at its ring position.
    /// Marks the pending slots committed on success.
    fn commit(&mut self, lower: &LowerDev, geo: &InternalGeometry, io: &mut KVec<u8>) -> Result {
        let n = self.encode(io)?;
        lower.write_fua(transaction_sector(geo, n)?, io)?;
        self.al.committed();
        Ok(())
    }

    fn encode(&mut self, io: &mut KVec<u8>) -> Result<u32> {
        let blk: &mut [u8; MD_BLOCK_SIZE] = io.as_mut_slice().try_into().map_err(|_| EINVAL)?;
        Ok(self.al.encode_transaction(blk))
    }

    /// Writes every dirty bitmap block (no concurrent writers: attach and detach).
    pub(crate) fn write_dirty_bitmap(
        &mut self,
        lower: &LowerDev,
        geo: &InternalGeometry,
        io: &mut KVec<u8>,
    ) -> Result {
        for i in 0..self.dirty.len() {
            if self.take_dirty_block(i, io) {
                if let Err(e) = lower.write_fua(bm_block_sector(geo, i), io) {
                    self.dirty[i] = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// If bitmap block `i` is dirty, copies it to `io`, marks it clean and returns true.
    fn take_dirty_block(&mut self, i: usize, io: &mut KVec<u8>) -> bool {
        if !self.dirty.get(i).copied().unwrap_or(false) {
            return false;
        }
        // `i` < `dirty.len()` and `bm.len() == dirty.len() * MD_BLOCK_SIZE`.
        let Some(block) = self.bm.chunks(MD_BLOCK_SIZE).nth(i) else {
            return false;
        };
        self.dirty[i] = false;
        io.copy_from_slice(block);
        true
    }

    /// Copies the run of consecutive dirty bitmap blocks that starts at block `i` (at most
    /// `max`, and at most what fits in `buf`) to `buf`, marks them clean and returns how many.
    fn take_dirty_run(&mut self, i: usize, max: usize, buf: &mut [u8]) -> usize {
        let mut n = 0usize;
        let blocks = self.bm.chunks(MD_BLOCK_SIZE).skip(i);
        let flags = self.dirty.iter_mut().skip(i);
        let dst = buf.chunks_exact_mut(MD_BLOCK_SIZE).take(max);
        for ((dst, src), dirty) in dst.zip(blocks).zip(flags) {
            if !*dirty {
                break;
            }
            dst.copy_from_slice(src);
            *dirty = false;
            n = n.saturating_add(1);
        }
        n
    }

    /// Marks `nr_sectors` from `sector` out of sync.
    /// A range past the bitmap (or past sector `u64::MAX`) marks nothing.
    pub(crate) fn mark(&mut self, sector: u64, nr_sectors: u64) {
        let Ok(n) = bm_set_sectors(&mut self.bm, sector, nr_sectors) else {
            return;
        };
        // `oos` counts set bits of `bm` and `n` newly set ones: never saturates.
        self.oos = self.oos.saturating_add(n);
        self.set_dirty(sector, nr_sectors);
    }

    /// Marks the bitmap blocks of `nr_sectors` from `sector` dirty (those within the bitmap).
    fn set_dirty(&mut self, sector: u64, nr_sectors: u64) {
        let Some(blocks) = fmt::bm_blocks(sector, nr_sectors) else {
            return;
        };
        let len = self.dirty.len();
        let end = usize::try_from(*blocks.end()).map_or(len, |e| e.saturating_add(1).min(len));
        let start = usize::try_from(*blocks.start()).map_or(end, |s| s.min(end));
        self.dirty[start..end].fill(true);
    }

    /// Out-of-sync bits.
    pub(crate) fn oos_bits(&self) -> u64 {
        self.oos
    }

    /// Marks every block of the device out of sync (a full sync); `bm_bits` is the
    /// geometry's.
    pub(crate) fn set_all(&mut self, bm_bits: u64) {
        self.oos = drbd_resync::set_all(&mut self.bm, bm_bits);
        self.dirty.fill(true);
    }

    /// Marks the whole 4 KiB blocks within `nr_sectors` from `sector` in sync; returns how
    /// many bits were set.
    pub(crate) fn clear(&mut self, sector: u64, nr_sectors: u64) -> u64 {
        let n = drbd_resync::clear_sectors(&mut self.bm, sector, nr_sectors).unwrap_or(0);
        if n > 0 {
            // `n` bits were set, and `oos` counts them: never saturates.
            self.oos = self.oos.saturating_sub(n);
            self.set_dirty(sector, nr_sectors);
        }
        n
    }

    /// The bitmap's bytes (DRBD's little-endian words as a byte stream).
    pub(crate) fn bitmap(&self) -> &[u8] {
        &self.bm
    }

    /// ORs the next slice of a peer's `P_COMPRESSED_BITMAP` into the bitmap: about `budget`
    /// bits of work (see [`RleDecoder::apply`]), so that the caller's interrupt-safe lock is
    /// held briefly however long the runs are. Keeps the count and marks only the touched
    /// blocks dirty. Returns whether the payload is fully applied.
    pub(crate) fn merge_rle(
        &mut self,
        d: &mut RleDecoder<'_>,
        budget: u64,
    ) -> core::result::Result<bool, WireError> {
        let p = d.apply(&mut self.bm, budget)?;
        self.count_merged(p.newly_set, p.first, p.end);
        Ok(p.done)
    }

    /// ORs a peer's plain `P_BITMAP` words (`p`, at word `word`) into the bitmap; bits from
    /// `bm_bits` on stay clear. Keeps the count and marks only the touched blocks dirty.
    pub(crate) fn merge_plain(
        &mut self,
        word: u64,
        p: &[u8],
        bm_bits: u64,
    ) -> core::result::Result<(), WireError> {
        let n = w::merge_bitmap_plain(&mut self.bm, word, p, bm_bits)?;
        // Words of our bitmap: the bit numbers stay below 2^64.
        let first = word.saturating_mul(64);
        self.count_merged(
            n,
            first,
            first.saturating_add((p.len() as u64).saturating_mul(8)),
        );
        Ok(())
    }

    /// `newly` bits within bits `first..end` were set by a merge.
    fn count_merged(&mut self, newly: u64, first: u64, end: u64) {
        if newly == 0 {
            return;
        }
        // `oos` counts set bits of `bm` and `newly` newly set ones: never saturates.
        self.oos = self.oos.saturating_add(newly);
        let sector = first.saturating_mul(fmt::BM_SECT_PER_BIT);
        let sectors = end
            .saturating_sub(first)
            .saturating_mul(fmt::BM_SECT_PER_BIT);
        self.set_dirty(sector, sectors);
    }

    /// Number of activity-log slots ("al-extents").
    pub(crate) fn nr_slots(&self) -> usize {
        self.al.nr_slots()
    }
}

/// Writes the dirty bitmap blocks from block `start` on, at most `max` of them (clean ones count
/// too), while the device is in use: blocks are copied to `buf` under the bitmap's lock and
/// written without it. `buf` is a whole number of 4 KiB blocks: a run of consecutive dirty blocks that fits
/// goes out as one FUA write. Returns the next block to look at, or `None` at the end.
pub(crate) fn flush_bitmap_range(
    t: &Tracked,
    lower: &LowerDev,
    geo: &InternalGeometry,
    buf: &mut KVec<u8>,
    start: usize,
    max: usize,
) -> Result<Option<usize>> {
    let blocks = t.lock.lock().as_ref().map_or(0, |a| a.dirty.len());
    let end = start.saturating_add(max).min(blocks);
    let per_write = (buf.len() / MD_BLOCK_SIZE).max(1);
    let mut i = start;
    while i < end {
        let n = (*t.lock.lock()).as_mut().map_or(0, |a| {
            a.take_dirty_run(i, per_write.min(end.saturating_sub(i)), buf)
        });
        if n == 0 {
            i = i.saturating_add(1);
            continue;
        }
        // `n` blocks of `MD_BLOCK_SIZE` were copied to `buf`: the product fits.
        let part = buf
            .get_mut(..n.saturating_mul(MD_BLOCK_SIZE))
            .ok_or(EINVAL)?;
        if let Err(e) = lower.write(bm_block_sector(geo, i), part, true) {
            if let Some(a) = (*t.lock.lock()).as_mut() {
                for d in a.dirty.iter_mut().skip(i).take(n) {
                    *d = true;
                }
            }
            return Err(e);
        }
        i = i.saturating_add(n);
    }
    Ok((end < blocks).then_some(end))
}

/// Sector of bitmap block `i`.
fn bm_block_sector(geo: &InternalGeometry, i: usize) -> u64 {
    // Block `i` of a validated geometry's bitmap area: no saturation.
    geo.bm_sector()
        .saturating_add((i as u64).saturating_mul(u64::from(MD_4KB_SECT)))
}

/// Sector of transaction number `n`.
fn transaction_sector(geo: &InternalGeometry, n: u32) -> Result<u64> {
    geo.al_tr_sector(n).ok_or(EINVAL)
}

/// Clears every bit from `bit` on.
fn clear_bits_from(bm: &mut [u8], bit: u64) {
    let Ok(byte) = usize::try_from(bit / 8) else {
        return;
    };
    if byte >= bm.len() {
        return;
    }
    bm[byte] &= (1u8 << (bit % 8)).wrapping_sub(1);
    bm[byte..][1..].fill(0);
}

/// The activity-log step of a write request (process context, may sleep): takes references on
/// the extents of `sector..sector + nr_sectors`, committing a transaction first if one of them
/// is cold, and marks the range out of sync if `mark` (no peer will receive the write; a
/// replicated write is marked later only if the peer does not acknowledge it). On error
/// nothing is held.
///
/// Callers serialise calls (the device's state mutex), so one transaction is written at a
/// time, as `ActivityLog::prepare` requires.
pub(crate) fn begin_write(
    t: &Tracked,
    lower: &LowerDev,
    geo: &InternalGeometry,
    io: &mut KVec<u8>,
    sector: u64,
    nr_sectors: u64,
    mark: bool,
) -> Result {
    let (first, last) = extent_range(sector, nr_sectors).ok_or(EINVAL)?;
    let mut g = t.lock.lock();
    let evicted = loop {
        let act = (*g).as_mut().ok_or(EIO)?;
        if act.al.try_hot(first, last) == Hot::Yes {
            if mark {
                act.mark(sector, nr_sectors);
            }
            return Ok(());
        }
        match act.al.prepare(first, last) {
            Ok(p) if !p.needs_commit => {
                if mark {
                    act.mark(sector, nr_sectors);
                }
                return Ok(());
            }
            Ok(p) => break p,
            Err(AlBusy::NoFreeSlot) => t.wait.wait(&mut g),
            Err(AlBusy::TooManyExtents) => {
                pr_err!(
                    "write of {} sectors at {} spans too many extents\n",
                    nr_sectors,
                    sector
                );
                return Err(EIO);
            }
        }
    };
    // Bitmap blocks of evicted extents first (their bits may live only in memory), then the
    // transaction. The lock is dropped around each write; completions may run meanwhile.
    let mut res = Ok(());
    for &e in &evicted.evicted[..evicted.n_evicted] {
        // A u32 extent times 128 bytes: no saturation.
        let byte = u64::from(e).saturating_mul(BM_BYTES_PER_EXTENT);
        let Ok(i) = usize::try_from(byte / BLOCK_BYTES) else {
            continue;
        };
        let Some(act) = (*g).as_mut() else {
            res = Err(EIO);
            break;
        };
        if !act.take_dirty_block(i, io) {
            continue;
        }
        drop(g);
        res = lower.write_fua(bm_block_sector(geo, i), io);
        g = t.lock.lock();
        if res.is_err() {
            if let Some(act) = (*g).as_mut() {
                act.dirty[i] = true;
            }
            break;
        }
    }
    let n = match (res, (*g).as_mut()) {
        (Ok(()), Some(act)) => act.encode(io),
        (Err(e), _) => Err(e),
        (Ok(()), None) => Err(EIO),
    };
    drop(g);
    let res = n.and_then(|n| lower.write_fua(transaction_sector(geo, n)?, io));
    let mut g = t.lock.lock();
    let act = (*g).as_mut().ok_or(EIO)?;
    match res {
        Ok(()) => {
            act.al.committed();
            if mark {
                act.mark(sector, nr_sectors);
            }
            Ok(())
        }
        Err(e) => {
            pr_err!("activity log transaction failed: {:?}\n", e);
            act.al.abort(first, last);
            drop(g);
            t.wait.notify_all();
            Err(e)
        }
    }
}

/// The fast path of [`begin_write`], without I/O or waiting (for `queue_rq` inside the
/// submitter's `submit_bio()`): if every extent of the range is in the log and committed,
/// takes a reference on each, marks the range out of sync if `mark`, and returns true; else
/// takes nothing and returns false.
pub(crate) fn begin_write_hot(
    t: &Tracked,
    sector: u64,
    nr_sectors: u64,
    mark: bool,
) -> Result<bool> {
    let (first, last) = extent_range(sector, nr_sectors).ok_or(EINVAL)?;
    let mut g = t.lock.lock();
    let act = (*g).as_mut().ok_or(EIO)?;
    if act.al.try_hot(first, last) != Hot::Yes {
        return Ok(false);
    }
    if mark {
        act.mark(sector, nr_sectors);
    }
    Ok(true)
}

/// Completion of a write that [`begin_write`] let through (any context).
pub(crate) fn end_write(t: &Tracked, sector: u64, nr_sectors: u64) {
    let Some((first, last)) = extent_range(sector, nr_sectors) else {
        return;
    };
    let idle = {
        let mut g = t.lock.lock();
        (*g).as_mut().is_some_and(|act| act.al.put(first, last))
    };
    if idle {
        t.wait.notify_all();
    }
}
