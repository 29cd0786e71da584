// SPDX-License-Identifier: GPL-2.0

//! The bodies of hark's fuzz targets, shared by the coverage-guided fuzzer (`userspace/fuzz`,
//! `make fuzz`) and by the replay test (`tests/replay.rs`), which runs every saved corpus and
//! crash input through the same function under `cargo test`.
//!
//! Each target takes arbitrary bytes, drives one parser or decoder with them and asserts
//! invariants that hold for every input (round trips, consumed lengths within what was given,
//! answers independent of how the input is split), so a failed assertion is a bug just like a
//! panic or an arithmetic overflow (the fuzz build and the tests keep overflow checks on).
//! Leading input bytes choose parameters (limits, protocol version, which decoder); the
//! [`Input`] reader gives zeros once the input is used up, so every input is valid.

mod conf;
mod drbd;
mod http;
mod ktcpvs;
mod md;
mod netlink;

/// A fuzz target: a name (the directory of its corpus) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name. `userspace/fuzz/fuzz_targets/<name>.rs` calls the same function.
pub const TARGETS: &[Target] = &[
    ("http_request", http_request),
    ("http_response", http_response),
    ("body_relay", body_relay),
    ("drbd_wire", drbd_wire),
    ("drbd_bitmap", drbd_bitmap),
    ("drbd_md", drbd_md),
    ("netlink", netlink),
    ("ktcpvs_cfs", ktcpvs_cfs),
    ("l7_rules", l7_rules),
    ("drbd_conf", drbd_conf),
    ("rtcpvs_conf", rtcpvs_conf),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|t| t.0 == name).map(|t| t.1)
}

pub use conf::{drbd_conf, rtcpvs_conf};
pub use drbd::{drbd_bitmap, drbd_wire};
pub use http::{body_relay, http_request, http_response, l7_rules};
pub use ktcpvs::ktcpvs_cfs;
pub use md::drbd_md;
pub use netlink::netlink;

/// Reads parameters from the front of a fuzz input; past its end every read gives 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next `n` bytes as a little-endian number (`n` at most 8).
    pub fn le(&mut self, n: usize) -> u64 {
        (0..n).fold(0u64, |v, i| v | (u64::from(self.byte()) << (8 * i)))
    }

    /// Up to `n` next bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.data)
    }
}

/// A small deterministic generator for split points, seeded from the input.
pub(crate) struct Splitter(u64);

impl Splitter {
    pub(crate) fn new(seed: u64) -> Self {
        Splitter(seed | 1)
    }

    /// A piece length: mostly short, sometimes empty, sometimes long.
    pub(crate) fn piece(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let r = self.0;
        match r % 8 {
            0 => 0,
            1 => (r >> 8) as usize % 512,
            _ => 1 + (r >> 8) as usize % 16,
        }
    }
}

/// `s` is a subslice of `of` (same memory), as parsed items that borrow their input must be.
pub(crate) fn within(s: &[u8], of: &[u8]) -> bool {
    let (a, b) = (s.as_ptr() as usize, of.as_ptr() as usize);
    s.is_empty() || (a >= b && a + s.len() <= b + of.len())
}
