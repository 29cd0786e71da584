// SPDX-License-Identifier: GPL-2.0

//! CRC-32C (Castagnoli), as DRBD uses it for activity-log transactions and data digests.
//!
//! Table-driven, `const`-evaluated, allocation-free. The kernel's `crc32c()` and this function
//! agree: DRBD seeds with `0xffffffff` and stores the complement of the final value.

#![deny(clippy::arithmetic_side_effects)]

/// Reflected Castagnoli polynomial.
const POLY: u32 = 0x82f6_3b78;

const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0u32;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit = bit.saturating_add(1);
        }
        table[i] = crc;
        i = i.saturating_add(1);
    }
    table
}

static TABLE: [u32; 256] = make_table();

/// Continues a raw CRC-32C over `data`, like the kernel's `crc32c(crc, data, len)`.
///
/// No pre- or post-inversion is done here: pass `!0` to start and complement the result to get
/// the standard check value.
pub fn update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// The standard CRC-32C of `data` (seed `!0`, final complement).
pub fn checksum(data: &[u8]) -> u32 {
    !update(!0, data)
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        // The catalogue check value of CRC-32/ISCSI.
        assert_eq!(checksum(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn empty_and_zeroes() {
        assert_eq!(checksum(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeroes.
        assert_eq!(checksum(&[0u8; 32]), 0x8a91_36aa);
        // RFC 3720 B.4: 32 bytes of 0xff.
        assert_eq!(checksum(&[0xffu8; 32]), 0x62a8_ab43);
    }

    #[test]
    fn incremental_equals_whole() {
        let data: [u8; 64] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        for split in 0..data.len() {
            let (a, b) = data.split_at(split);
            assert_eq!(!update(update(!0, a), b), checksum(&data));
        }
    }
}
