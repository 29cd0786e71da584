// SPDX-License-Identifier: GPL-2.0

//! The in-memory activity log of DRBD 8.4: which 4 MiB extents are "hot", and the
//! transactions that make the set durable before a write to a cold extent may start.
//!
//! The set has `nr_slots` slots (DRBD's `al-extents`). A write touching extent `e` needs `e` in
//! a slot whose transaction is on disk ("committed"). If it is not, a slot is taken (a free
//! one, else the least recently used one without writes in flight), the change is queued as an
//! update, and the caller writes one transaction ([`ActivityLog::encode_transaction`]) before
//! submitting the write. After a crash, replaying the on-disk ring
//! ([`super::drbd_md::al_replay`]) yields every extent that may have had writes in flight.
//!
//! An extent leaving the set may have bitmap bits that only live in memory: the caller writes
//! the bitmap block of every evicted extent ([`Prepared::evicted`]) before the transaction,
//! as DRBD's `__al_write_transaction` does with `drbd_bm_write_hinted`.
//!
//! Storage is the caller's (anything that derefs to `[AlSlot]`: a slice, a kernel `KVVec`), so
//! the module needs no allocator. Lookups scan
//! the slots linearly; with DRBD's default 1237 slots that is a few hundred nanoseconds.
//!
//! The on-disk transaction is DRBD 8.4's: up to [`AL_UPDATES_PER_TRANSACTION`] updates plus a
//! window of [`AL_CONTEXT_PER_TRANSACTION`] slots of context that rotates over all slots, so
//! that the last `ceil(nr_slots / 919)` transactions describe the whole set.

#![deny(clippy::arithmetic_side_effects)]

use core::ops::DerefMut;

use super::drbd_md::{
    AlHeader, AlTransaction, AlUpdate, MdError, AL_CONTEXT_PER_TRANSACTION, AL_EXTENTS_MAX,
    AL_EXTENT_SHIFT, AL_TR_UPDATE, AL_UPDATES_PER_TRANSACTION, LC_FREE, MD_BLOCK_SIZE,
};

/// One slot of the activity log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlSlot {
    /// Extent held, [`LC_FREE`] if none.
    pub extent: u32,
    /// Writes in flight to this extent.
    pub refs: u32,
    /// The transaction that put `extent` here is on disk.
    pub committed: bool,
    /// Logical time of the last use (for least-recently-used eviction).
    pub last_use: u64,
}

impl AlSlot {
    /// An empty, committed slot.
    pub const FREE: AlSlot = AlSlot {
        extent: LC_FREE,
        refs: 0,
        committed: true,
        last_use: 0,
    };
}

/// First and last extent touched by `nr_sectors` 512-byte sectors from `sector`
/// (`nr_sectors > 0`), or `None` if the range overflows.
pub fn extent_range(sector: u64, nr_sectors: u64) -> Option<(u32, u32)> {
    let last = sector.checked_add(nr_sectors.checked_sub(1)?)?;
    let shift = AL_EXTENT_SHIFT - 9;
    let first = u32::try_from(sector >> shift).ok()?;
    let last = u32::try_from(last >> shift).ok()?;
    Some((first, last))
}

/// Largest slot count whose whole context fits a ring of `al_size_4k` transactions (so that a
/// replay of the ring sees every slot).
pub fn max_slots_for_ring(al_size_4k: u32) -> usize {
    (al_size_4k as usize)
        .saturating_mul(AL_CONTEXT_PER_TRANSACTION)
        .min(AL_EXTENTS_MAX)
}

/// Result of [`ActivityLog::try_hot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hot {
    /// Every extent is committed; a reference on each was taken.
    Yes,
    /// Some extent is missing or not committed yet; nothing was taken.
    No,
}

/// Extents evicted by [`ActivityLog::prepare`]: their bitmap must reach the disk before the
/// transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// Evicted extents (the first `n_evicted` entries).
    pub evicted: [u32; AL_UPDATES_PER_TRANSACTION],
    /// Number of valid entries in `evicted`.
    pub n_evicted: usize,
    /// A transaction must be written (some extent was cold).
    pub needs_commit: bool,
}

/// Why [`ActivityLog::prepare`] could not take the extents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlBusy {
    /// Every slot has writes in flight: wait for a completion ([`ActivityLog::put`]) and retry.
    NoFreeSlot,
    /// The request touches more extents than one transaction can add or the log can hold.
    TooManyExtents,
}

/// The activity log of one device.
///
/// # Invariants
///
/// `pending[..n_pending]` are the slots changed since the last committed transaction; every
/// other slot has `committed == true`. `tr_cycle < slots.len()`.
pub struct ActivityLog<S: DerefMut<Target = [AlSlot]>> {
    slots: S,
    tick: u64,
    tr_number: u32,
    tr_cycle: u32,
    pending: [u16; AL_UPDATES_PER_TRANSACTION],
    n_pending: usize,
}

impl<S: DerefMut<Target = [AlSlot]>> ActivityLog<S> {
    /// An empty activity log over `slots` (1..=[`AL_EXTENTS_MAX`] of them; all are reset).
    /// The next transaction written gets number `next_tr_number`.
    pub fn new(mut slots: S, next_tr_number: u32) -> Result<Self, MdError> {
        if slots.is_empty() || slots.len() > AL_EXTENTS_MAX {
            return Err(MdError::BadCount);
        }
        slots.fill(AlSlot::FREE);
        Ok(ActivityLog {
            slots,
            tick: 0,
            tr_number: next_tr_number,
            tr_cycle: 0,
            pending: [0; AL_UPDATES_PER_TRANSACTION],
            n_pending: 0,
        })
    }

    /// Number of slots.
    pub fn nr_slots(&self) -> usize {
        self.slots.len()
    }

    /// Number of the next transaction.
    pub fn tr_number(&self) -> u32 {
        self.tr_number
    }

    fn find(&self, extent: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.extent == extent)
    }

    /// Takes a reference on extents `first..=last` if all are committed (the fast path, no
    /// I/O). Either every reference is taken or none.
    pub fn try_hot(&mut self, first: u32, last: u32) -> Hot {
        for e in first..=last {
            match self.find(e) {
                Some(i) if self.slots[i].committed => {}
                _ => return Hot::No,
            }
        }
        self.reference_present(first, last);
        Hot::Yes
    }

    /// Takes a reference on (and touches) each of `first..=last` that holds a slot; returns
    /// whether one of them is not committed yet.
    fn reference_present(&mut self, first: u32, last: u32) -> bool {
        // One tick a write: u64 does not saturate; references are writes in flight (bounded by
        // the device's queue depth), far from u32::MAX.
        self.tick = self.tick.saturating_add(1);
        let mut uncommitted = false;
        for e in first..=last {
            if let Some(i) = self.find(e) {
                let s = &mut self.slots[i];
                s.refs = s.refs.saturating_add(1);
                s.last_use = self.tick;
                uncommitted |= !s.committed;
            }
        }
        uncommitted
    }

    /// Takes a reference on extents `first..=last`, giving cold ones a slot. If the result says
    /// `needs_commit`, the caller writes the bitmap of the evicted extents, then the transaction
    /// ([`Self::encode_transaction`]), then calls [`Self::committed`], and only then submits the
    /// write. Calls of `prepare` and the commit that follows must be serialised by the caller
    /// (DRBD writes one transaction at a time); [`Self::try_hot`] and [`Self::put`] may run in
    /// between. Either every reference is taken or none.
    pub fn prepare(&mut self, first: u32, last: u32) -> Result<Prepared, AlBusy> {
        let mut out = Prepared {
            evicted: [LC_FREE; AL_UPDATES_PER_TRANSACTION],
            n_evicted: 0,
            needs_commit: false,
        };
        // A u32 difference plus 1, plus at most 64 pending: no saturation in u64.
        let n = u64::from(last.wrapping_sub(first)).saturating_add(1);
        if last < first
            || n.saturating_add(self.n_pending as u64) > AL_UPDATES_PER_TRANSACTION as u64
            || n > self.slots.len() as u64
        {
            return Err(AlBusy::TooManyExtents);
        }
        // First check that every cold extent can get a slot, so that failure takes nothing.
        let cold = (first..=last).filter(|&e| self.find(e).is_none()).count();
        let victims = self
            .slots
            .iter()
            .filter(|s| s.refs == 0 && s.committed)
            .count();
        // A victim must not be one of our own (hot, unreferenced) extents that we are about to
        // take: count those out.
        let own_idle = (first..=last)
            .filter_map(|e| self.find(e))
            .filter(|&i| self.slots[i].refs == 0 && self.slots[i].committed)
            .count();
        // Both count slots.
        if victims < cold.saturating_add(own_idle) {
            return Err(AlBusy::NoFreeSlot);
        }
        // Reference the extents already present first, so that eviction cannot pick them.
        out.needs_commit = self.reference_present(first, last);
        for e in first..=last {
            if self.find(e).is_some() {
                continue;
            }
            let victim = self.pick_victim().ok_or(AlBusy::NoFreeSlot)?;
            let s = &mut self.slots[victim];
            if s.extent != LC_FREE {
                out.evicted[out.n_evicted] = s.extent;
                // Below AL_UPDATES_PER_TRANSACTION (n checked above).
                out.n_evicted = out.n_evicted.saturating_add(1);
            }
            *s = AlSlot {
                extent: e,
                refs: 1,
                committed: false,
                last_use: self.tick,
            };
            // `victim < slots.len() <= AL_EXTENTS_MAX < u16::MAX`.
            self.pending[self.n_pending] = victim as u16;
            self.n_pending = self.n_pending.saturating_add(1);
            out.needs_commit = true;
        }
        Ok(out)
    }

    /// A free slot, else the least recently used committed slot without writes in flight.
    fn pick_victim(&self) -> Option<usize> {
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.extent == LC_FREE && s.refs == 0)
        {
            return Some(i);
        }
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.refs == 0 && s.committed)
            .min_by_key(|(_, s)| s.last_use)
            .map(|(i, _)| i)
    }

    /// Drops the references [`Self::try_hot`] or [`Self::prepare`] took on `first..=last`
    /// (the write completed). Returns true if some slot became idle (a waiter may retry).
    pub fn put(&mut self, first: u32, last: u32) -> bool {
        let mut idle = false;
        for e in first..=last {
            if let Some(i) = self.find(e) {
                let s = &mut self.slots[i];
                s.refs = s.refs.saturating_sub(1);
                idle |= s.refs == 0;
            }
        }
        idle
    }

    /// Encodes the next transaction (pending updates plus the next window of context) into
    /// `block` and returns its number; the caller writes it at the ring position of that number
    /// ([`super::drbd_md::InternalGeometry::al_tr_sector`]). With nothing pending this is an
    /// "empty" transaction that only refreshes context (DRBD's `drbd_al_initialize`).
    pub fn encode_transaction(&mut self, block: &mut [u8; MD_BLOCK_SIZE]) -> u32 {
        let mut updates = [AlUpdate {
            slot: 0,
            extent: LC_FREE,
        }; AL_UPDATES_PER_TRANSACTION];
        for (u, &slot) in updates.iter_mut().zip(&self.pending[..self.n_pending]) {
            *u = AlUpdate {
                slot,
                extent: self.slots[usize::from(slot)].extent,
            };
        }
        let start = self.tr_cycle as usize;
        let end = start
            .saturating_add(AL_CONTEXT_PER_TRANSACTION)
            .min(self.slots.len());
        let mut context = [LC_FREE; AL_CONTEXT_PER_TRANSACTION];
        for (c, s) in context.iter_mut().zip(&self.slots[start..end]) {
            *c = s.extent;
        }
        let header = AlHeader {
            tr_number: self.tr_number,
            transaction_type: AL_TR_UPDATE,
            // The constructor bounds the slot count by AL_EXTENTS_MAX < u16::MAX.
            context_size: self.slots.len() as u16,
            context_start_slot_nr: start as u16,
        };
        // Cannot fail: both slices have at most the per-transaction maximum.
        let _ = AlTransaction::encode(
            &header,
            &updates[..self.n_pending],
            &context[..end.saturating_sub(start)],
            block,
        );
        let n = self.tr_number;
        self.tr_number = self.tr_number.wrapping_add(1);
        self.tr_cycle = if end >= self.slots.len() {
            0
        } else {
            end as u32
        };
        n
    }

    /// The transaction last encoded is on disk: its slots are committed.
    pub fn committed(&mut self) {
        for &slot in &self.pending[..self.n_pending] {
            self.slots[usize::from(slot)].committed = true;
        }
        self.n_pending = 0;
    }

    /// The transaction last encoded could not be written: the references that `prepare` took on
    /// `first..=last` are dropped and the slots it filled are emptied again (no write to them
    /// was submitted, and the on-disk log never named them).
    pub fn abort(&mut self, first: u32, last: u32) {
        self.put(first, last);
        let mut kept = 0;
        for k in 0..self.n_pending {
            let slot = self.pending[k];
            let s = &mut self.slots[usize::from(slot)];
            if s.refs == 0 {
                *s = AlSlot::FREE;
            } else {
                // Still referenced (cannot happen while prepare/commit are serialised): keep it
                // pending so that the next transaction carries it.
                self.pending[kept] = slot;
                // At most n_pending.
                kept = kept.saturating_add(1);
            }
        }
        self.n_pending = kept;
    }

    /// Extents currently in the log (committed or not).
    pub fn active_extents(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .filter(|s| s.extent != LC_FREE)
            .map(|s| s.extent)
    }

    /// Writes in flight over all slots.
    pub fn refs(&self) -> u64 {
        self.slots.iter().map(|s| u64::from(s.refs)).sum()
    }
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::super::drbd_md::{al_replay, al_tr_block};
    use super::*;

    const STRIPES: u32 = 1;
    const STRIPE_4K: u32 = 8;

    /// The on-disk ring, written the way the kernel module writes it.
    struct Ring {
        blocks: [[u8; MD_BLOCK_SIZE]; STRIPE_4K as usize],
    }

    impl Ring {
        fn new() -> Self {
            Ring {
                blocks: [[0; MD_BLOCK_SIZE]; STRIPE_4K as usize],
            }
        }
        fn commit(&mut self, al: &mut ActivityLog<&mut [AlSlot]>) {
            let mut blk = [0u8; MD_BLOCK_SIZE];
            let n = al.encode_transaction(&mut blk);
            let b = al_tr_block(n, STRIPES, STRIPE_4K).unwrap() as usize;
            self.blocks[b] = blk;
            al.committed();
        }
        /// Initialises the whole ring (as attach does).
        fn initialize(&mut self, al: &mut ActivityLog<&mut [AlSlot]>) {
            for _ in 0..STRIPE_4K {
                self.commit(al);
            }
        }
        fn replay(&self, n: usize) -> std::vec::Vec<u32> {
            // Exactly `n` entries: a slot number at or past `n` in the log is an error.
            let mut slots = std::vec![0u32; n];
            al_replay(&self.blocks, STRIPES, STRIPE_4K, &mut slots).unwrap();
            slots
        }
    }

    extern crate std;

    fn extents(al: &ActivityLog<&mut [AlSlot]>) -> std::vec::Vec<u32> {
        al.slots.iter().map(|s| s.extent).collect()
    }

    #[test]
    fn extent_range_bounds() {
        assert_eq!(extent_range(0, 8), Some((0, 0)));
        assert_eq!(extent_range(8191, 1), Some((0, 0)));
        assert_eq!(extent_range(8191, 2), Some((0, 1)));
        assert_eq!(extent_range(8192 * 5, 8192 * 2), Some((5, 6)));
        assert_eq!(extent_range(0, 0), None);
        assert_eq!(extent_range(u64::MAX, 2), None);
    }

    #[test]
    fn cold_extent_needs_a_transaction_then_is_hot() {
        let mut slots = [AlSlot::FREE; 4];
        let mut al = ActivityLog::new(&mut slots[..], 10).unwrap();
        assert_eq!(al.try_hot(3, 3), Hot::No);
        let p = al.prepare(3, 3).unwrap();
        assert!(p.needs_commit);
        assert_eq!(p.n_evicted, 0);
        // Not committed yet: another writer must not take the fast path.
        assert_eq!(al.try_hot(3, 3), Hot::No);
        let mut blk = [0u8; MD_BLOCK_SIZE];
        assert_eq!(al.encode_transaction(&mut blk), 10);
        al.committed();
        let t = AlTransaction::decode(&blk).unwrap();
        assert_eq!(t.n_updates(), 1);
        assert_eq!(t.update(0).unwrap(), AlUpdate { slot: 0, extent: 3 });
        assert_eq!(al.try_hot(3, 3), Hot::Yes);
        assert_eq!(al.refs(), 2);
        // A second prepare of a hot extent needs no transaction.
        let p = al.prepare(3, 3).unwrap();
        assert!(!p.needs_commit);
        al.put(3, 3);
        al.put(3, 3);
        assert!(al.put(3, 3));
        assert_eq!(al.refs(), 0);
        assert_eq!(al.tr_number(), 11);
    }

    #[test]
    fn eviction_is_lru_and_never_takes_busy_slots() {
        let mut slots = [AlSlot::FREE; 3];
        let mut al = ActivityLog::new(&mut slots[..], 0).unwrap();
        let mut blk = [0u8; MD_BLOCK_SIZE];
        for e in [1, 2, 3] {
            al.prepare(e, e).unwrap();
            al.encode_transaction(&mut blk);
            al.committed();
        }
        // 1 and 3 idle, 2 busy; 1 is the least recently used idle one.
        al.put(1, 1);
        al.put(3, 3);
        let p = al.prepare(4, 4).unwrap();
        assert_eq!(&p.evicted[..p.n_evicted], &[1]);
        al.encode_transaction(&mut blk);
        al.committed();
        // Now 2 and 4 busy, 3 idle: a two-extent request has one cold extent (5) and one hot
        // one (3) and no victim for 5 other than 3 itself.
        assert_eq!(al.prepare(5, 6), Err(AlBusy::NoFreeSlot));
        assert_eq!(
            al.prepare(3, 4),
            Ok(Prepared {
                evicted: [LC_FREE; AL_UPDATES_PER_TRANSACTION],
                n_evicted: 0,
                needs_commit: false
            })
        );
        // All busy: nothing can come in, and nothing was taken by the failed attempts.
        assert_eq!(al.prepare(7, 7), Err(AlBusy::NoFreeSlot));
        assert_eq!(al.refs(), 4);
        assert_eq!(extents(&al), [4, 2, 3]);
        al.put(2, 2);
        let p = al.prepare(7, 7).unwrap();
        assert_eq!(&p.evicted[..p.n_evicted], &[2]);
    }

    #[test]
    fn too_many_extents_and_bad_sizes() {
        let mut slots = [AlSlot::FREE; 200];
        let mut al = ActivityLog::new(&mut slots[..], 0).unwrap();
        assert_eq!(al.prepare(0, 64), Err(AlBusy::TooManyExtents));
        assert_eq!(al.prepare(5, 4), Err(AlBusy::TooManyExtents));
        assert!(al.prepare(0, 63).unwrap().needs_commit);
        // 64 pending updates fill the transaction.
        assert_eq!(al.prepare(64, 64), Err(AlBusy::TooManyExtents));
        let mut empty: [AlSlot; 0] = [];
        assert!(ActivityLog::new(&mut empty[..], 0).is_err());
        assert_eq!(max_slots_for_ring(8), 8 * AL_CONTEXT_PER_TRANSACTION);
        assert_eq!(max_slots_for_ring(1 << 20), AL_EXTENTS_MAX);
    }

    #[test]
    fn abort_empties_the_slots_it_filled() {
        let mut slots = [AlSlot::FREE; 4];
        let mut al = ActivityLog::new(&mut slots[..], 0).unwrap();
        al.prepare(1, 2).unwrap();
        let mut blk = [0u8; MD_BLOCK_SIZE];
        al.encode_transaction(&mut blk);
        al.abort(1, 2);
        assert_eq!(al.refs(), 0);
        assert_eq!(al.active_extents().count(), 0);
        assert_eq!(al.try_hot(1, 1), Hot::No);
        assert!(al.prepare(1, 1).unwrap().needs_commit);
    }

    /// After every commit, replaying the ring (as `drbdmeta apply-al` and our attach do) yields
    /// exactly the committed set, over many random workloads and slot counts, including ring
    /// wrap-around and context windows larger than one transaction.
    #[test]
    fn replay_of_the_ring_reconstructs_the_set() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % u64::from(n)) as u32
        };
        for &n in &[1usize, 7, 67, 919, 1237, 2000] {
            let mut slots = std::vec![AlSlot::FREE; n];
            let mut al = ActivityLog::new(&mut slots[..], 0xffff_fff0).unwrap();
            let mut ring = Ring::new();
            ring.initialize(&mut al);
            assert!(ring.replay(n).iter().all(|&e| e == LC_FREE));
            let mut inflight: std::vec::Vec<(u32, u32)> = std::vec::Vec::new();
            for _ in 0..3000 {
                if !inflight.is_empty() && rnd(3) == 0 {
                    let (a, b) = inflight.swap_remove(rnd(inflight.len() as u32) as usize);
                    al.put(a, b);
                    continue;
                }
                let a = rnd(3 * n as u32 + 5);
                let b = a + rnd(2);
                if al.try_hot(a, b) == Hot::Yes {
                    inflight.push((a, b));
                    continue;
                }
                match al.prepare(a, b) {
                    Ok(p) => {
                        for e in &p.evicted[..p.n_evicted] {
                            assert!(!inflight.iter().any(|&(x, y)| (x..=y).contains(e)));
                        }
                        if p.needs_commit {
                            ring.commit(&mut al);
                            // Context windows rotate: a few empty transactions make the whole
                            // set visible even when it spans more than one window.
                            let mut got = ring.replay(n);
                            let want = extents(&al);
                            let needed = n.div_ceil(AL_CONTEXT_PER_TRANSACTION);
                            if needed > 1 {
                                // Every extent in flight must be visible right away; the
                                // rest of the set may lag by up to `needed` transactions.
                                for &(x, y) in &inflight {
                                    for e in x..=y {
                                        assert!(got.contains(&e), "n={n} e={e} missing");
                                    }
                                }
                                for _ in 0..needed {
                                    ring.commit(&mut al);
                                }
                                got = ring.replay(n);
                            }
                            assert_eq!(got, want, "n={n}");
                        }
                        inflight.push((a, b));
                    }
                    Err(AlBusy::NoFreeSlot) => {
                        assert!(al.refs() > 0);
                    }
                    Err(AlBusy::TooManyExtents) => assert!(b - a + 1 > n as u32),
                }
            }
        }
    }
}
