// SPDX-License-Identifier: GPL-2.0

//! A worker thread's connections: a slab whose slot numbers are the tokens of the
//! connections' event sources (so a fired source finds its connection in O(1)), with a timer
//! wheel (`hark-proto` `timer_wheel`) over the slots for their deadlines (so a worker finds
//! the connections whose deadline passed without looking at the others).

use crate::timer_wheel::{Link, Wheel, NIL};
use kernel::prelude::*;

/// Buckets of the wheel (at [`TICK_MS`]: 25.6 s around).
const BUCKETS: usize = 512;
/// Granularity of the deadlines (ms): a timeout fires at most this much late.
pub(crate) const TICK_MS: u64 = 50;

enum Slot<T> {
    Used(KBox<T>),
    /// Free; the next free slot ([`NIL`]: none).
    Free(u32),
}

/// The connections of one worker.
///
/// # Invariants
///
/// `slots` and `links` have the same length, below `u32::MAX`; `free` starts a list of the
/// `Free` slots; only `Used` slots are armed in `wheel`.
pub(crate) struct Table<T> {
    slots: KVec<Slot<T>>,
    links: KVec<Link>,
    free: u32,
    wheel: Wheel<BUCKETS>,
}

impl<T> Table<T> {
    /// An empty table (boxed: the wheel is 2 KiB, too much for a kernel stack).
    pub(crate) fn new(now_ms: u64) -> Result<KBox<Self>> {
        Ok(KBox::new(
            Table {
                slots: KVec::new(),
                links: KVec::new(),
                free: NIL,
                wheel: Wheel::new(TICK_MS, now_ms),
            },
            GFP_KERNEL,
        )?)
    }

    /// A free slot number (a new slot if none is free).
    fn take_free(&mut self) -> Option<u32> {
        if let Some(Slot::Free(next)) = self.slots.get(self.free as usize) {
            let i = self.free;
            self.free = *next;
            return Some(i);
        }
        let i = u32::try_from(self.slots.len()).ok().filter(|&i| i != NIL)?;
        self.slots.reserve(1, GFP_KERNEL).ok()?;
        self.links.reserve(1, GFP_KERNEL).ok()?;
        // Reserved just above: neither push allocates or fails.
        self.slots.push(Slot::Free(NIL), GFP_KERNEL).ok()?;
        self.links.push(Link::IDLE, GFP_KERNEL).ok()?;
        Some(i)
    }

    /// Inserts what `make` builds for the slot number it is given (`None`: nothing, the slot
    /// stays free). Returns the slot.
    pub(crate) fn insert(&mut self, make: impl FnOnce(u32) -> Option<KBox<T>>) -> Option<u32> {
        let i = self.take_free()?;
        match make(i) {
            Some(t) => {
                self.slots[i as usize] = Slot::Used(t);
                Some(i)
            }
            None => {
                self.slots[i as usize] = Slot::Free(self.free);
                self.free = i;
                None
            }
        }
    }

    pub(crate) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        match self.slots.get_mut(i as usize) {
            Some(Slot::Used(t)) => Some(t),
            _ => None,
        }
    }

    /// Takes the entry of slot `i` out (disarmed); the slot becomes free.
    pub(crate) fn remove(&mut self, i: u32) -> Option<KBox<T>> {
        if !matches!(self.slots.get(i as usize), Some(Slot::Used(_))) {
            return None;
        }
        self.wheel.disarm(&mut self.links, i);
        let old = core::mem::replace(&mut self.slots[i as usize], Slot::Free(self.free));
        self.free = i;
        match old {
            Slot::Used(t) => Some(t),
            Slot::Free(_) => None,
        }
    }

    /// Sets the deadline of slot `i` (ms).
    pub(crate) fn arm(&mut self, i: u32, at_ms: u64) {
        if matches!(self.slots.get(i as usize), Some(Slot::Used(_))) {
            self.wheel.arm(&mut self.links, i, at_ms);
        }
    }

    /// A slot whose deadline passed (disarmed), if any.
    pub(crate) fn pop_expired(&mut self, now_ms: u64) -> Option<u32> {
        self.wheel.pop_expired(&mut self.links, now_ms)
    }

    /// Milliseconds until a deadline may be due.
    pub(crate) fn ms_to_next_tick(&self, now_ms: u64) -> u64 {
        self.wheel.ms_to_next_tick(now_ms)
    }

    /// Bytes of bookkeeping per slot.
    pub(crate) const SLOT_BYTES: usize = size_of::<Slot<T>>() + size_of::<Link>();
}
