// SPDX-License-Identifier: GPL-2.0

//! A timer wheel over entries numbered `0..n` (the slots of a caller's table), for the worker
//! threads of `ktcpvs_rs`: each connection has one deadline, moved on every step, and a worker
//! must find the connections whose deadline passed without looking at the others.
//!
//! The links live in the caller's slice (one [`Link`] per entry, no allocation here): every
//! bucket is a doubly linked list through them, so [`Wheel::arm`] and [`Wheel::disarm`] are
//! O(1). A bucket covers one tick (`tick_ms`); [`Wheel::pop_expired`] visits a tick's bucket
//! once the whole tick has passed, so an entry fires at most one tick (plus the caller's
//! latency) after its deadline, never before. Deadlines further away than the wheel's span
//! (`N` ticks) stay in their bucket and are passed over until their round comes: the work per
//! tick is the bucket's entries, not all of them.

#![deny(clippy::arithmetic_side_effects)]

/// "No entry".
pub const NIL: u32 = u32::MAX;

/// An entry's place in the wheel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    prev: u32,
    next: u32,
    /// The bucket it is in, [`NIL`] when not armed.
    bucket: u32,
    /// Its deadline (ms).
    at: u64,
}

impl Link {
    /// Not armed.
    pub const IDLE: Link = Link {
        prev: NIL,
        next: NIL,
        bucket: NIL,
        at: 0,
    };

    /// Whether the entry is armed.
    pub fn is_armed(&self) -> bool {
        self.bucket != NIL
    }
}

/// A wheel of `N` buckets of `tick_ms` each.
pub struct Wheel<const N: usize> {
    heads: [u32; N],
    tick_ms: u64,
    /// The first tick whose bucket was not visited completely.
    cur: u64,
    /// The next entry to look at in the bucket of `cur` ([`NIL`]: from its head).
    cursor: u32,
    /// `cursor` is valid (the bucket of `cur` is being visited).
    visiting: bool,
}

fn at_mut(links: &mut [Link], i: u32) -> Option<&mut Link> {
    links.get_mut(usize::try_from(i).ok()?)
}

fn at(links: &[Link], i: u32) -> Option<&Link> {
    links.get(usize::try_from(i).ok()?)
}

impl<const N: usize> Wheel<N> {
    /// An empty wheel whose first tick is the one of `now_ms`.
    pub const fn new(tick_ms: u64, now_ms: u64) -> Self {
        let tick_ms = if tick_ms == 0 { 1 } else { tick_ms };
        Wheel {
            heads: [NIL; N],
            tick_ms,
            cur: match now_ms.checked_div(tick_ms) {
                Some(t) => t,
                None => 0,
            },
            cursor: NIL,
            visiting: false,
        }
    }

    fn bucket_of(&self, tick: u64) -> usize {
        // The remainder is below N.
        tick.checked_rem(N as u64).unwrap_or(0) as usize
    }

    fn tick_of(&self, ms: u64) -> u64 {
        // `tick_ms` is at least 1.
        ms.checked_div(self.tick_ms).unwrap_or(0)
    }

    /// Arms entry `i` for `at_ms` (moving it if it was armed).
    pub fn arm(&mut self, links: &mut [Link], i: u32, at_ms: u64) {
        self.disarm(links, i);
        // Never into a tick already (being) visited: at most one tick late, never lost.
        let tick = self.tick_of(at_ms).max(self.cur.saturating_add(1));
        let b = self.bucket_of(tick);
        let head = self.heads[b];
        let Some(l) = at_mut(links, i) else { return };
        *l = Link {
            prev: NIL,
            next: head,
            bucket: b as u32,
            at: at_ms,
        };
        if let Some(h) = at_mut(links, head) {
            h.prev = i;
        }
        self.heads[b] = i;
    }

    /// Disarms entry `i` (nothing if it is not armed).
    pub fn disarm(&mut self, links: &mut [Link], i: u32) {
        let Some(&l) = at(links, i) else { return };
        let Some(b) = usize::try_from(l.bucket).ok().filter(|&b| b < N) else {
            return;
        };
        if self.visiting && self.cursor == i {
            self.cursor = l.next;
        }
        match at_mut(links, l.prev) {
            Some(p) => p.next = l.next,
            None => self.heads[b] = l.next,
        }
        if let Some(n) = at_mut(links, l.next) {
            n.prev = l.prev;
        }
        if let Some(e) = at_mut(links, i) {
            *e = Link::IDLE;
        }
    }

    /// Disarms and returns an entry whose deadline is at or before `now_ms`, visiting the
    /// buckets of the ticks that passed completely; `None` when there is none left.
    pub fn pop_expired(&mut self, links: &mut [Link], now_ms: u64) -> Option<u32> {
        let done = self.tick_of(now_ms);
        // After a long sleep every bucket is visited once, not once per tick.
        let span = N as u64;
        if done.saturating_sub(self.cur) > span {
            self.cur = done.saturating_sub(span);
            self.visiting = false;
        }
        while self.cur < done {
            if !self.visiting {
                self.cursor = self.heads[self.bucket_of(self.cur)];
                self.visiting = true;
            }
            while let Some(&l) = at(links, self.cursor) {
                let i = self.cursor;
                self.cursor = l.next;
                if l.at <= now_ms {
                    self.disarm(links, i);
                    return Some(i);
                }
            }
            self.visiting = false;
            self.cur = self.cur.saturating_add(1);
        }
        None
    }

    /// Milliseconds from `now_ms` until [`Wheel::pop_expired`] may have something again (the
    /// end of the current tick), at least 1.
    pub fn ms_to_next_tick(&self, now_ms: u64) -> u64 {
        let next = self.cur.saturating_add(1).saturating_mul(self.tick_ms);
        next.saturating_sub(now_ms).clamp(1, self.tick_ms)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn drain(w: &mut Wheel<8>, links: &mut [Link], now: u64) -> Vec<u32> {
        let mut v = Vec::new();
        while let Some(i) = w.pop_expired(links, now) {
            v.push(i);
        }
        v.sort();
        v
    }

    #[test]
    fn fires_after_deadline_within_a_tick() {
        let mut links = vec![Link::IDLE; 4];
        let mut w: Wheel<8> = Wheel::new(10, 1000);
        w.arm(&mut links, 0, 1005);
        w.arm(&mut links, 1, 1031);
        w.arm(&mut links, 2, 1500); // beyond the span of 80 ms: passed over until its round
        assert!(drain(&mut w, &mut links, 1009).is_empty());
        assert_eq!(drain(&mut w, &mut links, 1020), vec![0]);
        assert!(drain(&mut w, &mut links, 1031).is_empty());
        assert_eq!(drain(&mut w, &mut links, 1040), vec![1]);
        assert!(drain(&mut w, &mut links, 1499).is_empty());
        assert!(links[2].is_armed());
        assert_eq!(drain(&mut w, &mut links, 1510), vec![2]);
        assert!(!links[2].is_armed());
    }

    #[test]
    fn rearm_disarm_and_past_deadlines() {
        let mut links = vec![Link::IDLE; 3];
        let mut w: Wheel<8> = Wheel::new(10, 0);
        w.arm(&mut links, 0, 50);
        w.arm(&mut links, 1, 50);
        w.arm(&mut links, 0, 200); // moved later
        w.disarm(&mut links, 1);
        w.disarm(&mut links, 1); // twice: harmless
        assert!(drain(&mut w, &mut links, 100).is_empty());
        w.arm(&mut links, 2, 5); // already past: next tick
        assert_eq!(drain(&mut w, &mut links, 120), vec![2]);
        assert_eq!(drain(&mut w, &mut links, 210), vec![0]);
        // After a sleep much longer than the span, everything due fires at once.
        for i in 0..3 {
            w.arm(&mut links, i, 300 + 7 * u64::from(i));
        }
        assert_eq!(drain(&mut w, &mut links, 100_000), vec![0, 1, 2]);
    }

    #[test]
    fn rearm_while_visiting_a_bucket() {
        // Entries popped and re-armed into the bucket being visited are neither lost nor
        // popped twice in the same call sequence.
        let mut links = vec![Link::IDLE; 16];
        let mut w: Wheel<4> = Wheel::new(10, 0);
        for i in 0..16 {
            w.arm(&mut links, i, 15);
        }
        let mut seen = Vec::new();
        while let Some(i) = w.pop_expired(&mut links, 25) {
            seen.push(i);
            w.arm(&mut links, i, 55); // tick 5: the same bucket, one round later
        }
        seen.sort();
        assert_eq!(seen, (0..16).collect::<Vec<_>>());
        assert!(w.pop_expired(&mut links, 59).is_none());
        let mut again = Vec::new();
        while let Some(i) = w.pop_expired(&mut links, 60) {
            again.push(i);
        }
        assert_eq!(again.len(), 16);
    }

    #[test]
    fn work_per_tick_is_the_bucket() {
        // 10,000 entries spread over 10 s, ticks of 50 ms: popping one tick's due entries
        // visits about 1/512 of them per tick, not all.
        let n = 10_000u32;
        let mut links = vec![Link::IDLE; n as usize];
        let mut w: Wheel<512> = Wheel::new(50, 0);
        for i in 0..n {
            w.arm(&mut links, i, 100 + u64::from(i));
        }
        let mut fired = 0;
        let mut now = 0;
        while now <= 10_200 {
            now += 50;
            while let Some(i) = w.pop_expired(&mut links, now) {
                assert!(links[i as usize] == Link::IDLE);
                assert!(100 + u64::from(i) <= now && now < 100 + u64::from(i) + 100);
                fired += 1;
            }
        }
        assert_eq!(fired, n);
        assert_eq!(w.ms_to_next_tick(now), 50);
    }
    #[test]
    fn random_operations_against_a_model() {
        // Arms, re-arms, disarms and pops in random order with time jumps (some longer than
        // the span), checked against a plain list of deadlines: nothing pops before its
        // deadline, nothing disarmed pops, and after each drain nothing is left whose tick
        // (or, armed in the past, the tick after its arming) has passed.
        const N: usize = 64;
        let mut links = vec![Link::IDLE; N];
        let mut w: Wheel<8> = Wheel::new(10, 1000);
        // Per entry: (deadline, the tick it may fire after at the latest) when armed.
        let mut model: Vec<Option<(u64, u64)>> = vec![None; N];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let mut now = 1000u64;
        for _ in 0..20_000 {
            let i = rnd(N as u64) as u32;
            match rnd(8) {
                0..=3 => {
                    let at = (now + rnd(300)).saturating_sub(50);
                    w.arm(&mut links, i, at);
                    model[i as usize] = Some((at, (at / 10).max(now / 10 + 1)));
                }
                4 => {
                    w.disarm(&mut links, i);
                    model[i as usize] = None;
                }
                _ => {
                    now += if rnd(50) == 0 {
                        200 + rnd(400)
                    } else {
                        rnd(25)
                    };
                    while let Some(j) = w.pop_expired(&mut links, now) {
                        let (at, _) = model[j as usize].take().expect("popped unarmed");
                        assert!(at <= now, "entry {j} at {at} popped at {now}");
                        assert!(!links[j as usize].is_armed());
                    }
                    for (j, m) in model.iter().enumerate() {
                        if let Some((at, tick)) = m {
                            assert!(*tick >= now / 10, "entry {j} at {at} late at {now}");
                            assert!(links[j].is_armed());
                        }
                    }
                }
            }
        }
    }
}
