// SPDX-License-Identifier: GPL-2.0
//! The Mersenne Twister MT19937 as Python's `random.Random(seed)` uses it, so that
//! `randbytes` here gives the same bytes as Python's (the test backend's 8 MiB blob, the hostile
//! clients' garbage).

const N: usize = 624;
const M: usize = 397;

pub struct Mt {
    mt: [u32; N],
    next: usize,
}

impl Mt {
    /// `random.Random(seed)` for a seed below 2**32 (Python seeds with `init_by_array([seed])`).
    pub fn python(seed: u32) -> Self {
        let mut mt = [0u32; N];
        mt[0] = 19_650_218;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        let mut i = 1;
        // One key word: the loop over max(N, key length) = N steps, j always 0.
        for _ in 0..N {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(seed);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        for _ in 0..N - 1 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        Self { mt, next: N }
    }

    fn twist(&mut self) {
        for k in 0..N {
            let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % N] & 0x7fff_ffff);
            let odd = if y & 1 != 0 { 0x9908_b0df } else { 0 };
            self.mt[k] = self.mt[(k + M) % N] ^ (y >> 1) ^ odd;
        }
        self.next = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.next >= N {
            self.twist();
        }
        let mut y = self.mt[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// Python's `randbytes(n)`: `getrandbits(8 * n)` as little-endian bytes (32-bit words in
    /// order, the last one shifted right to the bits still wanted).
    pub fn randbytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 3);
        while out.len() < n {
            let left = n - out.len();
            let w = self.next_u32();
            let w = if left < 4 { w >> (32 - 8 * left) } else { w };
            out.extend_from_slice(&w.to_le_bytes()[..left.min(4)]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Mt;

    #[test]
    fn matches_python() {
        // python3 -c 'import random; print(random.Random(7).randbytes(12).hex())' and so on.
        assert_eq!(
            hex(&Mt::python(7).randbytes(12)),
            "38b4e652e44da7f2370d9e26"
        );
        assert_eq!(hex(&Mt::python(0).randbytes(6)), "cd072cd89f62");
        assert_eq!(hex(&Mt::python(59).randbytes(3)), "386439");
        // random.Random(7).getrandbits(32) for the first two words.
        let mut m = Mt::python(7);
        assert_eq!((m.next_u32(), m.next_u32()), (0x52e6b438, 0xf2a74de4));
    }

    #[test]
    fn blob_matches_python() {
        // hashlib.sha256(random.Random(7).randbytes(8 << 20)).hexdigest()
        let mut h = crate::sha256::Sha256::default();
        h.update(&Mt::python(7).randbytes(8 << 20));
        assert_eq!(
            h.hex(),
            "459e894d06f096d3d076a70c1b5eb9d5124408395073e6fac1f7aa9564393707"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
