// SPDX-License-Identifier: GPL-2.0

//! Schedulers of the layer-7 switch: which server of a rule's target takes a new request.
//!
//! They work over the caller's view of a service's servers (`&[ServerView]`, index = server
//! index of the rule targets, at most 64) and a target mask (bit `i` = server `i`). A server is
//! *eligible* for a new request when it is in the mask, `Up` and has a weight above zero
//! (weight 0 is quiescent, as in IPVS): `Drain` and `Down` servers never get new requests.
//! Every scheduler returns `None` when nobody is eligible.
//!
//! - [`RoundRobin`] (`rr`), [`SmoothWrr`] (`wrr`, nginx's smooth weighted round robin);
//! - [`least_conn`] (`lc`), [`weighted_least_conn`] (`wlc`), on the active connection counts;
//! - [`source_hash`] (`sh`): IPv4 and IPv6 source addresses; a client keeps its server while it
//!   is eligible; when it is not, the next eligible server in the target takes the client;
//! - [`maglev_build`] + [`maglev_lookup`] (`uri-hash`): Maglev consistent hashing through a
//!   lookup table the caller owns;
//! - cookie persistence: [`cookie_encode`], [`cookie_decode`] (keyed with SipHash-2-4, so that
//!   clients cannot forge a server choice), [`set_cookie_header`], [`find_cookie`],
//!   [`cookie_pick`];
//! - passive health ([`PassiveHealth`]): a server that fails `max_fails` times within
//!   `fail_timeout` is left out of new choices for `fail_timeout` (nginx's `max_fails`).
//!
//! Counts, weights and times come from configfs and from the traffic: all arithmetic is
//! checked or saturating (an overflow in the kernel module is an oops); hashes wrap.

#![deny(clippy::arithmetic_side_effects)]

use super::http1::Header;
use core::net::IpAddr;

/// Administrative and health state of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// Takes new requests.
    Up,
    /// Takes nothing.
    Down,
    /// Finishes what it has (and persistent sessions), takes no new requests.
    Drain,
}

/// What a scheduler needs to know about a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerView {
    /// Stable identifier (survives reordering; hashed by Maglev and put in cookies).
    pub id: u32,
    /// Weight, 0 = quiescent.
    pub weight: u16,
    /// State.
    pub state: ServerState,
    /// Active connections (or requests) now.
    pub active: u32,
}

impl ServerView {
    /// Whether the server takes new requests (Up with a weight above zero).
    pub fn takes_new(&self) -> bool {
        self.state == ServerState::Up && self.weight > 0
    }
}

/// Most servers per service (bits of a target mask).
pub const MAX_SERVERS: usize = 64;

/// Indices of the servers of `servers` named by `mask`.
fn in_mask(servers: &[ServerView], mask: u64) -> impl Iterator<Item = usize> + Clone + '_ {
    (0..servers.len().min(MAX_SERVERS)).filter(move |&i| mask & (1 << i) != 0)
}

/// Indices of the eligible servers.
fn eligible(servers: &[ServerView], mask: u64) -> impl Iterator<Item = usize> + '_ {
    in_mask(servers, mask).filter(move |&i| servers[i].takes_new())
}

/// Names of the schedulers (the configfs `scheduler` attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedKind {
    /// `rr`.
    Rr,
    /// `wrr`.
    Wrr,
    /// `lc`.
    Lc,
    /// `wlc`.
    Wlc,
    /// `sh`.
    Sh,
    /// `uri-hash`.
    UriHash,
}

impl SchedKind {
    /// Every scheduler.
    pub const ALL: [SchedKind; 6] = [
        SchedKind::Rr,
        SchedKind::Wrr,
        SchedKind::Lc,
        SchedKind::Wlc,
        SchedKind::Sh,
        SchedKind::UriHash,
    ];

    /// The scheduler's name.
    pub const fn name(self) -> &'static str {
        match self {
            SchedKind::Rr => "rr",
            SchedKind::Wrr => "wrr",
            SchedKind::Lc => "lc",
            SchedKind::Wlc => "wlc",
            SchedKind::Sh => "sh",
            SchedKind::UriHash => "uri-hash",
        }
    }

    /// The scheduler called `name`.
    pub fn from_name(name: &[u8]) -> Option<SchedKind> {
        Self::ALL.into_iter().find(|k| k.name().as_bytes() == name)
    }
}

/// Round robin over the eligible servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    /// Starts at server 0.
    pub const fn new() -> Self {
        RoundRobin { next: 0 }
    }

    /// The first eligible server at or after the one after the last pick, cyclically.
    pub fn pick(&mut self, servers: &[ServerView], mask: u64) -> Option<usize> {
        let n = servers.len().min(MAX_SERVERS);
        let start = if self.next < n { self.next } else { 0 };
        let chosen = (start..n)
            .chain(0..start)
            .find(|&i| mask & (1 << i) != 0 && servers[i].takes_new())?;
        // Below MAX_SERVERS.
        self.next = chosen.saturating_add(1);
        Some(chosen)
    }
}

/// Smooth weighted round robin (nginx `ngx_http_upstream_get_peer`): over any window of
/// `sum(weights)` picks with a constant eligible set, server `i` is chosen exactly `weight_i`
/// times, interleaved rather than in bursts.
///
/// Invariant: `current[i]` is server `i`'s running score; the scores of the eligible servers
/// sum to 0 after each pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmoothWrr {
    current: [i64; MAX_SERVERS],
}

impl Default for SmoothWrr {
    fn default() -> Self {
        Self::new()
    }
}

impl SmoothWrr {
    /// All scores zero.
    pub const fn new() -> Self {
        SmoothWrr {
            current: [0; MAX_SERVERS],
        }
    }

    /// Forgets the scores (call when weights or the server set change).
    pub fn reset(&mut self) {
        self.current = [0; MAX_SERVERS];
    }

    /// Adds every eligible server's weight to its score, picks the highest score (lowest index
    /// on ties) and takes the total weight from it.
    ///
    /// The scores stay within +-64 x 65535 (the sum of the weights), far from saturating.
    pub fn pick(&mut self, servers: &[ServerView], mask: u64) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in eligible(servers, mask) {
            let w = i64::from(servers[i].weight);
            self.current[i] = self.current[i].saturating_add(w);
            total = total.saturating_add(w);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] = self.current[b].saturating_sub(total);
        Some(b)
    }
}

/// Least connections: the eligible server with the fewest active connections (lowest index on
/// ties).
pub fn least_conn(servers: &[ServerView], mask: u64) -> Option<usize> {
    eligible(servers, mask).min_by_key(|&i| servers[i].active)
}

/// Weighted least connections: the eligible server with the lowest `active / weight` (lowest
/// index on ties), compared exactly by cross-multiplication.
pub fn weighted_least_conn(servers: &[ServerView], mask: u64) -> Option<usize> {
    eligible(servers, mask).reduce(|b, i| {
        let (s, t) = (&servers[i], &servers[b]);
        // u32 x u16: no product saturates.
        let cross = |a: &ServerView, b: &ServerView| {
            u64::from(a.active).saturating_mul(u64::from(b.weight))
        };
        if cross(s, t) < cross(t, s) {
            i
        } else {
            b
        }
    })
}

/// Source hashing: the servers of `mask` (whatever their state) are numbered in index order,
/// the address's hash chooses one; if it is not eligible the following ones (cyclically) are
/// tried. A client therefore keeps its server as long as it is eligible, and the clients of a
/// server that goes down or drains move while the others stay.
pub fn source_hash(servers: &[ServerView], mask: u64, addr: &IpAddr) -> Option<usize> {
    let n = in_mask(servers, mask).count();
    if n == 0 {
        return None;
    }
    let h = match addr {
        IpAddr::V4(a) => hash_bytes(&a.octets(), 0x5348_3456),
        IpAddr::V6(a) => hash_bytes(&a.octets(), 0x5348_3658),
    };
    let k = h.checked_rem(n as u64)? as usize;
    in_mask(servers, mask)
        .cycle()
        .skip(k)
        .take(n)
        .find(|&i| servers[i].takes_new())
}

/// SipHash-2-4 of `data` under the 128-bit key `(k0, k1)` (Aumasson and Bernstein, 2012).
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        round(v);
        round(v);
        v[0] ^= m;
    };
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        compress(&mut v, u64::from_le_bytes(w));
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    last[7] = data.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// A 64-bit hash of `data` for scheduling (SipHash-2-4 under a fixed key derived from
/// `seed`); not secret, but well mixed.
pub fn hash_bytes(data: &[u8], seed: u64) -> u64 {
    siphash24(seed, 0x6861_726b_6c37_7363, data)
}

/// Suggested Maglev table sizes: primes, each about twice the previous. The Maglev paper
/// advises a size of at least 100 times the number of servers for balance within 1%.
pub const MAGLEV_SIZES: [usize; 9] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521];

/// Table entry that names no server (nobody was eligible).
pub const MAGLEV_EMPTY: u16 = u16::MAX;

/// Whether `n` is prime (trial division).
pub fn is_prime(n: usize) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n % 2 == 0 {
        return false;
    }
    let mut d = 3usize;
    while d.checked_mul(d).is_some_and(|sq| sq <= n) {
        if n.checked_rem(d) == Some(0) {
            return false;
        }
        // d <= sqrt(n): no saturation.
        d = d.saturating_add(2);
    }
    true
}

/// Why a Maglev table could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaglevError {
    /// The table length is not a prime number (every permutation must visit every slot).
    NotPrime,
    /// The table length exceeds `u32::MAX`.
    TooLarge,
}

/// Fills `table` (length: a prime, see [`MAGLEV_SIZES`]) with server indices by Maglev's
/// population algorithm (Eisenbud et al., NSDI 2016, §3.4) over the eligible servers: each
/// server walks its own permutation of the slots (offset and skip from hashes of its `id`) and
/// the servers take turns claiming their next free slot. Every eligible server gets
/// `len / n` or `len / n + 1` slots; when a server leaves, its slots go to the others and few
/// other slots change. Unweighted. Returns the number of servers in the table; with none every
/// entry is [`MAGLEV_EMPTY`]. Rebuild the table whenever eligibility changes.
pub fn maglev_build(
    servers: &[ServerView],
    mask: u64,
    table: &mut [u16],
) -> Result<usize, MaglevError> {
    let m = table.len();
    if !is_prime(m) {
        return Err(MaglevError::NotPrime);
    }
    if m > u32::MAX as usize {
        return Err(MaglevError::TooLarge);
    }
    table.fill(MAGLEV_EMPTY);
    // Per server: index, next slot of its permutation, step (u32: about 640 bytes of stack).
    let mut idx = [0u16; MAX_SERVERS];
    let mut pos = [0u32; MAX_SERVERS];
    let mut skip = [0u32; MAX_SERVERS];
    let mut n = 0;
    let m64 = m as u64;
    // `m` is a prime (>= 2) that fits u32: the divisors are not zero and remainders fit u32.
    let rem = |v: u64, d: u64| v.checked_rem(d).unwrap_or(0) as u32;
    for i in eligible(servers, mask) {
        let id = servers[i].id.to_le_bytes();
        idx[n] = i as u16;
        pos[n] = rem(hash_bytes(&id, 0x6d61_676c_6576_0001), m64);
        skip[n] = rem(
            hash_bytes(&id, 0x6d61_676c_6576_0002),
            m64.saturating_sub(1),
        )
        .saturating_add(1);
        // At most MAX_SERVERS eligible servers.
        n = n.saturating_add(1);
    }
    let mut filled = 0usize;
    while n > 0 && filled < m {
        for b in 0..n {
            while table[pos[b] as usize] != MAGLEV_EMPTY {
                pos[b] = rem(u64::from(pos[b]).saturating_add(u64::from(skip[b])), m64);
            }
            table[pos[b] as usize] = idx[b];
            filled = filled.saturating_add(1);
            if filled == m {
                break;
            }
        }
    }
    Ok(n)
}

/// The server for `key` (for `uri-hash`, the request path) in a table from [`maglev_build`].
/// If the table is stale and names a server that is no longer eligible, the following entries
/// are tried.
pub fn maglev_lookup(
    table: &[u16],
    servers: &[ServerView],
    mask: u64,
    key: &[u8],
) -> Option<usize> {
    if table.is_empty() {
        return None;
    }
    // Not empty: the remainder is below `table.len()`.
    let start = hash_bytes(key, 0x7572_6968_6173_6800)
        .checked_rem(table.len() as u64)
        .unwrap_or(0) as usize;
    // From `start` round to `start - 1`, without a modulo per entry: objtool (Linux 7.3) does
    // not know `panic_const_rem_by_zero` as noreturn, and a `%` the compiler cannot prove
    // nonzero makes it warn.
    let (head, tail) = table.split_at(start);
    tail.iter().chain(head).map(|&i| usize::from(i)).find(|&i| {
        i < servers.len().min(MAX_SERVERS) && mask & (1 << i) != 0 && servers[i].takes_new()
    })
}

/// Secret key of the persistence cookies (choose it at random when the service starts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieKey {
    /// First half.
    pub k0: u64,
    /// Second half.
    pub k1: u64,
}

/// Length of a cookie value: 8 hex digits of server id and 16 of MAC, lower case.
pub const COOKIE_VALUE_LEN: usize = 24;

fn hex(mut v: u64, out: &mut [u8]) {
    for o in out.iter_mut().rev() {
        *o = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// The cookie value naming server `id`: its id in hex and a SipHash MAC of it under `key`.
pub fn cookie_encode(key: &CookieKey, id: u32) -> [u8; COOKIE_VALUE_LEN] {
    let mut v = [0u8; COOKIE_VALUE_LEN];
    hex(u64::from(id), &mut v[..8]);
    hex(siphash24(key.k0, key.k1, &id.to_le_bytes()), &mut v[8..]);
    v
}

/// The server id in a cookie value from [`cookie_encode`] under the same key; `None` for
/// anything else (wrong length, not lower-case hex, MAC mismatch).
pub fn cookie_decode(key: &CookieKey, value: &[u8]) -> Option<u32> {
    if value.len() != COOKIE_VALUE_LEN
        || !value
            .iter()
            .all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let id = value[..8].iter().fold(0u32, |a, &b| {
        (a << 4) | (b as char).to_digit(16).unwrap_or(0)
    });
    let want = cookie_encode(key, id);
    // Compare without an early exit.
    let diff = want.iter().zip(value).fold(0u8, |d, (a, b)| d | (a ^ b));
    (diff == 0).then_some(id)
}

/// Writes `Set-Cookie: NAME=VALUE; Path=PATH[; Max-Age=N]; HttpOnly` and CRLF into `out` for
/// server `id`; returns the length, or `None` if `out` is too small, `name` is not a token or
/// `path` holds a control character, space or `;`.
pub fn set_cookie_header(
    out: &mut [u8],
    name: &[u8],
    key: &CookieKey,
    id: u32,
    path: &[u8],
    max_age: Option<u32>,
) -> Option<usize> {
    if !super::http1::is_token(name)
        || path
            .iter()
            .any(|&b| !(0x21..0x7f).contains(&b) || b == b';')
    {
        return None;
    }
    let value = cookie_encode(key, id);
    let mut digits = [0u8; 10];
    let mut age: &[u8] = &[];
    let mut age_attr: &[u8] = &[];
    if let Some(mut a) = max_age {
        let mut k = digits.len();
        loop {
            // Ten digits hold any u32.
            k = k.checked_sub(1)?;
            digits[k] = b'0' | (a % 10) as u8;
            a /= 10;
            if a == 0 {
                break;
            }
        }
        age = &digits[k..];
        age_attr = b"; Max-Age=";
    }
    let parts: [&[u8]; 9] = [
        b"Set-Cookie: ",
        name,
        b"=",
        &value,
        b"; Path=",
        path,
        age_attr,
        age,
        b"; HttpOnly\r\n",
    ];
    let mut n = 0usize;
    for p in parts {
        let end = n.checked_add(p.len())?;
        out.get_mut(n..end)?.copy_from_slice(p);
        n = end;
    }
    Some(n)
}

/// The value of the cookie `name` (case-sensitive) in the request's Cookie field lines
/// (`a=b; c=d`), the first one if several.
pub fn find_cookie<'a>(headers: &[Header<'a>], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"cookie"))
        .flat_map(|h| h.value.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (key, eq_value) = pair.split_at(eq);
            (key == name).then_some(&eq_value[1..])
        })
}

/// The server a persistence cookie names, if it is in `mask` and Up or Drain (a draining
/// server keeps its sessions), whatever its weight.
pub fn cookie_pick(servers: &[ServerView], mask: u64, id: u32) -> Option<usize> {
    in_mask(servers, mask).find(|&i| servers[i].id == id && servers[i].state != ServerState::Down)
}

/// Passive health of one server, from the outcome of the requests sent to it (nginx's
/// `max_fails` / `fail_timeout`): after `max_fails` failures (refused or timed-out connects, no
/// valid response) within `fail_timeout` ms of the first, the server is *failed* for
/// `fail_timeout` ms: schedulers leave it out of new choices ([`PassiveHealth::available`]).
/// Then it gets requests again; a success clears the count. `max_fails == 0` turns it off.
///
/// Times are milliseconds of any monotonic clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassiveHealth {
    /// Failures counted since `first`.
    fails: u32,
    /// When the first of them happened.
    first: u64,
    /// Failed until then (exclusive).
    until: u64,
}

impl PassiveHealth {
    /// A server with no failure.
    pub const fn new() -> Self {
        PassiveHealth {
            fails: 0,
            first: 0,
            until: 0,
        }
    }

    /// Whether the server may get new requests at `now`.
    pub fn available(&self, now: u64) -> bool {
        now >= self.until
    }

    /// Counts a failure at `now`; returns `true` when it makes the server failed (it was
    /// available before).
    pub fn failed(&mut self, now: u64, max_fails: u32, fail_timeout: u64) -> bool {
        if max_fails == 0 || !self.available(now) {
            return false;
        }
        if self.fails == 0 || now.saturating_sub(self.first) >= fail_timeout {
            self.fails = 0;
            self.first = now;
        }
        self.fails = self.fails.saturating_add(1);
        if self.fails < max_fails {
            return false;
        }
        self.fails = 0;
        self.until = now.saturating_add(fail_timeout);
        true
    }

    /// Counts a success: the failures so far are forgotten.
    pub fn succeeded(&mut self) {
        self.fails = 0;
    }

    /// Milliseconds the server stays failed after `now` (0 when available).
    pub fn failed_for(&self, now: u64) -> u64 {
        self.until.saturating_sub(now)
    }
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn sv(id: u32, weight: u16, state: ServerState, active: u32) -> ServerView {
        ServerView {
            id,
            weight,
            state,
            active,
        }
    }

    fn fleet<const N: usize>(first_id: u32, s: [(u16, ServerState, u32); N]) -> [ServerView; N] {
        core::array::from_fn(|i| sv(first_id + i as u32, s[i].0, s[i].1, s[i].2))
    }

    fn up(n: usize) -> [ServerView; 8] {
        core::array::from_fn(|i| {
            sv(
                100 + i as u32,
                1,
                if i < n {
                    ServerState::Up
                } else {
                    ServerState::Down
                },
                0,
            )
        })
    }

    #[test]
    fn siphash_reference_vectors() {
        // Key 00..0f; messages 00.. of length 0 and 15 (the paper's appendix, vectors.h).
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(siphash24(k0, k1, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(k0, k1, &msg), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(k0, k1, &msg[..8]), 0x93f5_f579_9a93_2462);
    }

    #[test]
    fn names() {
        for k in SchedKind::ALL {
            assert_eq!(SchedKind::from_name(k.name().as_bytes()), Some(k));
        }
        assert_eq!(SchedKind::from_name(b"uri-hash"), Some(SchedKind::UriHash));
        assert_eq!(SchedKind::from_name(b"RR"), None);
    }

    #[test]
    fn round_robin_skips_ineligible() {
        use ServerState::*;
        let s = fleet(
            1,
            [
                (1, Up, 0),
                (1, Down, 0),
                (1, Up, 0),
                (1, Drain, 0),
                (0, Up, 0),
            ],
        );
        let mut rr = RoundRobin::new();
        let picks: [_; 4] = core::array::from_fn(|_| rr.pick(&s, u64::MAX));
        assert_eq!(picks, [Some(0), Some(2), Some(0), Some(2)]);
        assert_eq!(rr.pick(&s, 0b1), Some(0));
        assert_eq!(rr.pick(&s, 0b1), Some(0));
        assert_eq!(rr.pick(&s, 0b11010), None);
        assert_eq!(rr.pick(&[], u64::MAX), None);
    }

    #[test]
    fn smooth_wrr_matches_nginx() {
        use ServerState::*;
        // nginx's example: weights 5, 1, 1 give a a b a c a a.
        let s = fleet(
            1,
            [
                (5, Up, 0),
                (1, Up, 0),
                (1, Up, 0),
                (9, Drain, 0),
                (0, Up, 0),
            ],
        );
        let mut w = SmoothWrr::new();
        let picks: [_; 14] = core::array::from_fn(|_| w.pick(&s, u64::MAX).unwrap());
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(w.pick(&s, 0b11000), None);
        w.reset();
        assert_eq!(w.pick(&s, 0b110), Some(1));
        assert_eq!(w.pick(&s, 0b110), Some(2));
    }

    #[test]
    fn least_connections() {
        use ServerState::*;
        let s = fleet(
            1,
            [
                (1, Up, 5),
                (1, Up, 3),
                (1, Up, 3),
                (1, Down, 1),
                (1, Drain, 0),
            ],
        );
        assert_eq!(least_conn(&s, u64::MAX), Some(1));
        assert_eq!(least_conn(&s, 0b11101), Some(2));
        assert_eq!(least_conn(&s, 0b11000), None);
        let w = fleet(1, [(1, Up, 10), (3, Up, 10), (1, Up, 4), (0, Up, 0)]);
        assert_eq!(weighted_least_conn(&w, u64::MAX), Some(1));
        assert_eq!(weighted_least_conn(&w, 0b1101), Some(2));
        // 6/2 == 3/1: the lower index wins ties.
        let t = fleet(1, [(2, Up, 6), (1, Up, 3)]);
        assert_eq!(weighted_least_conn(&t, u64::MAX), Some(0));
        assert_eq!(weighted_least_conn(&t, 0), None);
    }

    #[test]
    fn source_hash_is_sticky_and_falls_over() {
        let mut s = up(5);
        let addr = |k: u32| -> IpAddr {
            if k % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k))
            } else {
                IpAddr::V6(Ipv6Addr::from(
                    0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + u128::from(k),
                ))
            }
        };
        let mut before = [0usize; 2000];
        let mut hits = [0u32; 5];
        for (k, b) in before.iter_mut().enumerate() {
            *b = source_hash(&s, 0b11111, &addr(k as u32)).unwrap();
            assert_eq!(source_hash(&s, 0b11111, &addr(k as u32)), Some(*b));
            hits[*b] += 1;
        }
        assert!(hits.iter().all(|&h| h > 300), "{hits:?}");
        s[2].state = ServerState::Down;
        for (k, &b) in before.iter().enumerate() {
            let now = source_hash(&s, 0b11111, &addr(k as u32)).unwrap();
            assert_eq!(now, if b == 2 { 3 } else { b });
        }
        s[3].state = ServerState::Drain;
        s[4].weight = 0;
        for (k, &b) in before.iter().enumerate() {
            let now = source_hash(&s, 0b11111, &addr(k as u32)).unwrap();
            assert_eq!(now, if b >= 2 { 0 } else { b });
        }
        assert_eq!(source_hash(&s, 0b11100, &addr(1)), None);
        assert_eq!(source_hash(&s, 0, &addr(1)), None);
    }

    #[test]
    fn maglev_balance_and_disruption() {
        assert!(MAGLEV_SIZES.iter().all(|&m| is_prime(m)));
        assert!(!is_prime(1) && is_prime(2) && is_prime(3) && !is_prime(9) && !is_prime(65535));
        let mut t = [0u16; 4093];
        assert_eq!(
            maglev_build(&up(8), u64::MAX, &mut t[..4092]),
            Err(MaglevError::NotPrime)
        );
        let mut s = up(8);
        assert_eq!(maglev_build(&s, u64::MAX, &mut t), Ok(8));
        let mut count = [0usize; 8];
        for &e in t.iter() {
            count[usize::from(e)] += 1;
        }
        // Servers take turns: 4093 = 8 * 511 + 5.
        assert!(count.iter().all(|&c| c == 511 || c == 512), "{count:?}");
        assert_eq!(count.iter().sum::<usize>(), 4093);
        let old = t;
        s[5].state = ServerState::Down;
        assert_eq!(maglev_build(&s, u64::MAX, &mut t), Ok(7));
        let mut moved = 0;
        for (o, n) in old.iter().zip(t.iter()) {
            assert_ne!(*n, 5);
            if *o != 5 && o != n {
                moved += 1;
            }
        }
        // Entries of servers that stayed mostly keep their server (the paper's Figure 12 shows
        // a few percent for a tiny fraction of servers removed).
        assert!(moved * 100 < 4093 * 5, "{moved} of 4093 moved");
        // Lookups: the same key, the same server; a stale table skips the ineligible.
        let k = maglev_lookup(&t, &s, u64::MAX, b"/index.html").unwrap();
        assert_eq!(maglev_lookup(&t, &s, u64::MAX, b"/index.html"), Some(k));
        s[k].state = ServerState::Drain;
        let k2 = maglev_lookup(&t, &s, u64::MAX, b"/index.html").unwrap();
        assert_ne!(k2, k);
        // Nobody eligible.
        assert_eq!(maglev_build(&s, 0, &mut t), Ok(0));
        assert!(t.iter().all(|&e| e == MAGLEV_EMPTY));
        assert_eq!(maglev_lookup(&t, &s, u64::MAX, b"/"), None);
        assert_eq!(maglev_lookup(&[], &s, u64::MAX, b"/"), None);
    }

    #[test]
    fn cookies() {
        let key = CookieKey {
            k0: 0x0123_4567_89ab_cdef,
            k1: 0xfeed_f00d_dead_beef,
        };
        for id in [0, 1, 0xdead_beef, u32::MAX] {
            let v = cookie_encode(&key, id);
            assert_eq!(cookie_decode(&key, &v), Some(id));
            let mut hex_id = [0u8; 8];
            hex(u64::from(id), &mut hex_id);
            assert_eq!(&v[..8], &hex_id);
            // Another id with the same MAC, a flipped MAC digit, upper case, the wrong key.
            let mut f = v;
            f[7] = if f[7] == b'0' { b'1' } else { b'0' };
            assert_eq!(cookie_decode(&key, &f), None);
            let mut f = v;
            f[23] = if f[23] == b'a' { b'b' } else { b'a' };
            assert_eq!(cookie_decode(&key, &f), None);
            assert_eq!(cookie_decode(&CookieKey { k0: 1, ..key }, &v), None);
            assert_eq!(cookie_decode(&key, &v[..23]), None);
        }
        assert_eq!(cookie_decode(&key, b"0000000G0000000000000000"), None);
        let v = cookie_encode(&key, 0xab);
        let mut up = v;
        up.make_ascii_uppercase();
        assert!(up != v && cookie_decode(&key, &up).is_none());
        let mut out = [0u8; 96];
        let n = set_cookie_header(&mut out, b"KTCPVS_SID", &key, 0xab, b"/", Some(600)).unwrap();
        let mut want = [0u8; 96];
        let parts: [&[u8]; 3] = [
            b"Set-Cookie: KTCPVS_SID=",
            &v,
            b"; Path=/; Max-Age=600; HttpOnly\r\n",
        ];
        let mut w = 0;
        for p in parts {
            want[w..w + p.len()].copy_from_slice(p);
            w += p.len();
        }
        assert_eq!(&out[..n], &want[..w]);
        let n = set_cookie_header(&mut out, b"S", &key, 0xab, b"/app", None).unwrap();
        assert!(out[..n].ends_with(b"; Path=/app; HttpOnly\r\n"));
        let n0 = set_cookie_header(&mut out, b"S", &key, 1, b"/", Some(0)).unwrap();
        assert!(out[..n0].ends_with(b"; Max-Age=0; HttpOnly\r\n"));
        assert_eq!(
            set_cookie_header(&mut out[..n - 1], b"S", &key, 0xab, b"/app", None),
            None
        );
        assert_eq!(
            set_cookie_header(&mut out, b"S D", &key, 1, b"/", None),
            None
        );
        assert_eq!(
            set_cookie_header(&mut out, b"S", &key, 1, b"/;x", None),
            None
        );
        let h = [
            Header {
                name: b"Host",
                value: b"a",
            },
            Header {
                name: b"cookie",
                value: b"a=1; SRV=xyz;b=2",
            },
            Header {
                name: b"Cookie",
                value: b"SRV=later",
            },
        ];
        assert_eq!(find_cookie(&h, b"SRV"), Some(&b"xyz"[..]));
        assert_eq!(find_cookie(&h, b"b"), Some(&b"2"[..]));
        assert_eq!(find_cookie(&h, b"srv"), None);
        assert_eq!(find_cookie(&h[..1], b"a"), None);
        use ServerState::*;
        let s = fleet(7, [(1, Up, 0), (0, Drain, 0), (1, Down, 0)]);
        assert_eq!(cookie_pick(&s, u64::MAX, 8), Some(1));
        assert_eq!(cookie_pick(&s, u64::MAX, 9), None);
        assert_eq!(cookie_pick(&s, 0b110, 7), None);
        assert_eq!(cookie_pick(&s, u64::MAX, 42), None);
    }

    #[test]
    fn passive_health() {
        let mut h = PassiveHealth::new();
        assert!(h.available(0));
        // max_fails 0: never failed.
        assert!(!h.failed(5, 0, 1000));
        assert!(h.available(5));
        // Three failures within the window mark it; a success in between resets the count.
        assert!(!h.failed(10, 3, 1000));
        assert!(!h.failed(20, 3, 1000));
        h.succeeded();
        assert!(!h.failed(30, 3, 1000));
        assert!(!h.failed(40, 3, 1000));
        assert!(h.failed(50, 3, 1000));
        assert!(!h.available(50));
        assert!(!h.available(1049));
        assert_eq!(h.failed_for(1000), 50);
        // Failures while failed do not extend it.
        assert!(!h.failed(500, 3, 1000));
        assert!(h.available(1050));
        assert_eq!(h.failed_for(1050), 0);
        // Failures further apart than the window never add up.
        for t in [2000, 3100, 4200, 5300] {
            assert!(!h.failed(t, 2, 1000));
        }
        assert!(h.failed(5400, 2, 1000));
        // max_fails 1: the first failure marks it.
        let mut h = PassiveHealth::new();
        assert!(h.failed(7, 1, 10));
        assert!(!h.available(16));
        assert!(h.available(17));
        // No overflow at the end of time.
        assert!(h.failed(u64::MAX - 1, 1, u64::MAX));
        assert!(!h.available(u64::MAX - 1));
    }
}
