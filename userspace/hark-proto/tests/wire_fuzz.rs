// SPDX-License-Identifier: GPL-2.0

//! Randomised round trips of every DRBD packet payload we send or parse, and random,
//! truncated and oversized input to every decoder (which must answer, never panic). A seeded
//! xorshift generator keeps runs reproducible; the total number of cases is counted, printed
//! and must reach 1,000,000.

use hark_proto::drbd_state::{Conn, Disk, Role, State};
use hark_proto::drbd_sync;
use hark_proto::drbd_wire::*;

/// xorshift64 with a counter of the cases run.
struct Fuzz {
    s: u64,
    cases: u64,
}

impl Fuzz {
    fn next(&mut self) -> u64 {
        self.s ^= self.s << 13;
        self.s ^= self.s >> 7;
        self.s ^= self.s << 17;
        self.s
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    /// A buffer of random length up to `max` with random bytes, often around `around`
    /// (exact, one short, one long).
    fn garbage<'a>(&mut self, buf: &'a mut [u8], around: usize) -> &'a [u8] {
        let max = buf.len();
        let len = match self.below(4) {
            0 => around,
            1 => around.saturating_sub(1),
            2 => (around + 1).min(max),
            _ => self.below(max as u64 + 1) as usize,
        };
        self.bytes(&mut buf[..len]);
        &buf[..len]
    }

    fn agreed(&mut self) -> u32 {
        PRO_VERSION_MIN + self.below(u64::from(PRO_VERSION_MAX - PRO_VERSION_MIN) + 1) as u32
    }

    /// A NUL-padded algorithm name of 0..=63 non-NUL bytes.
    fn name(&mut self) -> [u8; SHARED_SECRET_MAX] {
        let mut b = [0u8; SHARED_SECRET_MAX];
        let n = self.below(SHARED_SECRET_MAX as u64) as usize;
        for c in &mut b[..n] {
            *c = 1 + self.below(255) as u8;
        }
        b
    }
}

const EMPTY: [u8; SHARED_SECRET_MAX] = [0; SHARED_SECRET_MAX];

fn headers(f: &mut Fuzz, rounds: u32) {
    let mut h = [0u8; 16];
    for _ in 0..rounds {
        let agreed = [80, f.agreed()][f.below(2) as usize];
        let cmd = f.next() as u16;
        let len = (f.next() as u32) >> f.below(32);
        let vol = if agreed >= 100 { f.next() as u16 } else { 0 };
        if let Ok(n) = encode_header(agreed, cmd, vol, len, &mut h) {
            assert_eq!(n, header_size(agreed));
            let want = Header {
                command: cmd,
                length: len,
                volume: vol,
            };
            assert_eq!(decode_header(agreed, &h[..n]), Ok(want));
        } else {
            assert!(agreed < 95 && len > MAX_SIZE_H80_PACKET || agreed >= 95 && vol != 0);
        }
        let mut g = [0u8; 17];
        let g = f.garbage(&mut g, header_size(agreed));
        let _ = decode_header(agreed, g);
        f.cases += 2;
    }
}

fn features(f: &mut Fuzz, rounds: u32) {
    for _ in 0..rounds {
        let x = Features {
            protocol_min: f.next() as u32,
            feature_flags: f.next() as u32,
            protocol_max: f.next() as u32,
        };
        assert_eq!(Features::decode(&x.encode()), Ok(x));
        let _ = Features::negotiate(&Features::OURS, &x);
        let mut g = [0u8; FEATURES_SIZE + 8];
        let g = f.garbage(&mut g, FEATURES_SIZE);
        if let Ok(d) = Features::decode(g) {
            assert_eq!(&d.encode()[..12], &g[..12]);
        }
        f.cases += 2;
    }
}

/// Fixed payloads: random bytes of the exact size decode to a value that encodes back to
/// them; other sizes are refused.
macro_rules! fixed {
    ($f:expr, $rounds:expr, $($t:ident),*) => {
        $(
            for _ in 0..$rounds {
                let mut b = [0u8; $t::SIZE + 8];
                let g = $f.garbage(&mut b, $t::SIZE);
                match $t::decode(g) {
                    Ok(v) => {
                        assert_eq!(g.len(), $t::SIZE);
                        assert_eq!(&v.encode()[..], g);
                        assert_eq!($t::decode(&v.encode()), Ok(v));
                    }
                    Err(e) => {
                        assert_ne!(g.len(), $t::SIZE);
                        assert_eq!(e, WireError::BadLength);
                    }
                }
                $f.cases += 1;
            }
        )*
    };
}

fn protocol(f: &mut Fuzz, rounds: u32) {
    let mut out = [0u8; 128];
    for _ in 0..rounds {
        let agreed = f.agreed();
        let mut p = Protocol {
            protocol: 1 + f.below(3) as u32,
            after_sb_0p: f.below(11) as u32,
            after_sb_1p: f.below(11) as u32,
            after_sb_2p: f.below(11) as u32,
            conn_flags: f.below(4) as u32,
            two_primaries: f.below(2) as u32,
            integrity_alg: f.name(),
        };
        match p.encode(agreed, &mut out) {
            Ok(n) => {
                if agreed < 87 {
                    p.integrity_alg = EMPTY;
                }
                assert_eq!(n, p.size(agreed));
                assert_eq!(Protocol::decode(agreed, &out[..n]), Ok(p));
            }
            Err(e) => {
                assert_eq!(e, WireError::Incompatible);
                assert!(agreed < 92 && p.conn_flags & CF_DRY_RUN != 0);
            }
        }
        let mut g = [0u8; PROTOCOL_FIXED_SIZE + SHARED_SECRET_MAX + 8];
        let around = PROTOCOL_FIXED_SIZE + f.below(SHARED_SECRET_MAX as u64 + 2) as usize;
        let g = f.garbage(&mut g, around);
        if let Ok(d) = Protocol::decode(agreed, g) {
            assert!((PROT_A..=PROT_C).contains(&d.protocol));
            assert!(d.integrity_alg_str().len() < SHARED_SECRET_MAX);
            let mut d2 = d;
            d2.conn_flags &= !CF_DRY_RUN;
            let n = d2.encode(agreed, &mut out).unwrap();
            assert_eq!(Protocol::decode(agreed, &out[..n]), Ok(d2));
        }
        f.cases += 2;
    }
}

fn sync_param(f: &mut Fuzz, rounds: u32) {
    let mut out = [0u8; 160];
    for _ in 0..rounds {
        let agreed = f.agreed();
        let mut s = SyncParam {
            resync_rate: f.next() as u32,
            verify_alg: f.name(),
            csums_alg: f.name(),
            c_plan_ahead: f.next() as u32,
            c_delay_target: f.next() as u32,
            c_fill_target: f.next() as u32,
            c_max_rate: f.next() as u32,
        };
        let n = s.encode(agreed, &mut out).unwrap();
        assert!(n <= SyncParam::max_size(agreed));
        // What the version does not carry arrives as zero.
        if agreed < 88 {
            s.verify_alg = EMPTY;
        }
        if agreed < 89 {
            s.csums_alg = EMPTY;
        }
        if agreed < 95 {
            (s.c_plan_ahead, s.c_delay_target) = (0, 0);
            (s.c_fill_target, s.c_max_rate) = (0, 0);
        }
        assert_eq!(SyncParam::decode(agreed, &out[..n]), Ok(s));
        let mut g = [0u8; 160];
        let g = f.garbage(&mut g, SyncParam::max_size(agreed));
        if let Ok(d) = SyncParam::decode(agreed, g) {
            let n = d.encode(agreed, &mut out).unwrap();
            assert_eq!(SyncParam::decode(agreed, &out[..n]), Ok(d));
        }
        f.cases += 2;
    }
}

fn states(f: &mut Fuzz, rounds: u32) {
    for _ in 0..rounds {
        let pick = |f: &mut Fuzz, n: usize| f.below(n as u64) as usize;
        let s = State {
            role: Role::ALL[pick(f, Role::ALL.len())],
            peer: Role::ALL[pick(f, Role::ALL.len())],
            conn: Conn::ALL[pick(f, Conn::ALL.len())],
            disk: Disk::ALL[pick(f, Disk::ALL.len())],
            pdsk: Disk::ALL[pick(f, Disk::ALL.len())],
            susp: f.below(2) == 0,
            aftr_isp: f.below(2) == 0,
            peer_isp: f.below(2) == 0,
            user_isp: f.below(2) == 0,
            susp_nod: f.below(2) == 0,
            susp_fen: f.below(2) == 0,
        };
        let w = s.pack();
        assert_eq!(w >> 23, 0);
        assert_eq!(State::unpack(w), Ok(s));
        let sw = StateWord { state: w };
        assert_eq!(StateWord::decode(&sw.encode()), Ok(sw));
        let r = f.next() as u32;
        if let Ok(d) = State::unpack(r) {
            assert_eq!(d.pack(), r & 0x7f_ffff);
        }
        f.cases += 2;
    }
}

fn uuids(f: &mut Fuzz, rounds: u32) {
    for _ in 0..rounds {
        let mut b = [0u8; Uuids::SIZE];
        f.bytes(&mut b);
        let w = Uuids::decode(&b).unwrap();
        let u = drbd_sync::Uuids::from_wire(&w);
        assert_eq!(u.to_wire(), w);
        assert_eq!(u.to_wire().encode(), b);
        f.cases += 1;
    }
}

fn plain_bitmaps(f: &mut Fuzz, rounds: u32) {
    let mut words = [0u64; 512];
    let mut back = [0u64; 512];
    let mut out = [0u8; SOCKET_BUFFER_SIZE + 16];
    for _ in 0..rounds {
        let agreed = f.agreed();
        let left = f.below(1200);
        let n = bitmap_plain_words(agreed, left);
        for w in &mut words[..n] {
            *w = f.next() >> f.below(64);
        }
        let len = encode_bitmap_plain(agreed, &words[..n], &mut out).unwrap();
        assert_eq!(len, n * 8);
        assert!(len + header_size(agreed) <= SOCKET_BUFFER_SIZE);
        assert_eq!(
            decode_bitmap_plain(agreed, left, &out[..len], &mut back),
            Ok(n)
        );
        assert_eq!(&back[..n], &words[..n]);
        let g = f.garbage(&mut out, n * 8);
        if let Ok(m) = decode_bitmap_plain(agreed, left, g, &mut back) {
            assert_eq!(m * 8, g.len());
        }
        f.cases += 2;
    }
}

/// Whole random bitmaps through P_COMPRESSED_BITMAP where RLE compresses and plain P_BITMAP
/// words elsewhere, as DRBD sends them; every packet is a case.
fn compressed_bitmaps(f: &mut Fuzz, rounds: u32) {
    let mut pkt = [0u8; SOCKET_BUFFER_SIZE];
    for _ in 0..rounds {
        let agreed = f.agreed();
        let words = 1 + f.below(2048) as usize;
        let bm_bits = words as u64 * 64 - f.below(64);
        let mut bm = vec![0u8; words * 8];
        let mut i = 0;
        let mut set = f.below(2) == 0;
        let scale = [4, 64, 4096, 1 << 16][f.below(4) as usize];
        while i < bm_bits {
            let run = 1 + f.below(scale);
            if set {
                for k in i..(i + run).min(bm_bits) {
                    bm[(k / 8) as usize] |= 1 << (k % 8);
                }
            }
            i += run;
            set = !set;
        }
        let mut got = vec![0u8; bm.len()];
        let (mut tx, mut rx) = (0u64, 0u64);
        let max = compressed_bitmap_code_max(agreed);
        while tx < bm_bits {
            match rle_encode(&bm, bm_bits, &mut tx, &mut pkt[1..1 + max]) {
                Some((enc, len)) => {
                    pkt[0] = enc;
                    let more = decode_compressed_bitmap(
                        agreed,
                        &pkt[..1 + len],
                        &mut got,
                        bm_bits,
                        &mut rx,
                    )
                    .unwrap();
                    assert_eq!((rx, more), (tx, tx < bm_bits));
                }
                None => {
                    // DRBD rewinds to a word boundary and sends plain words from there.
                    let w = (tx / 64) as usize;
                    let n = bitmap_plain_words(agreed, (words - w) as u64);
                    let plain: Vec<u64> = bm[w * 8..(w + n) * 8]
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    let len = encode_bitmap_plain(agreed, &plain, &mut pkt).unwrap();
                    let mut back = vec![0u64; n];
                    decode_bitmap_plain(agreed, (words - w) as u64, &pkt[..len], &mut back)
                        .unwrap();
                    for (k, v) in back.iter().enumerate() {
                        for (j, byte) in v.to_le_bytes().iter().enumerate() {
                            got[(w + k) * 8 + j] |= byte;
                        }
                    }
                    tx = (((w + n) * 64) as u64).min(bm_bits);
                    rx = tx;
                }
            }
            f.cases += 1;
        }
        assert_eq!(got, bm);
        // Garbage, truncated and oversized payloads: an answer, never a write past the end.
        for _ in 0..8 {
            let mut g = [0u8; SOCKET_BUFFER_SIZE + 1];
            let around = 1 + f.below(64) as usize;
            let g = f.garbage(&mut g, around);
            let mut off = f.below(bm_bits);
            let _ = decode_compressed_bitmap(agreed, g, &mut got, bm_bits, &mut off);
            f.cases += 1;
        }
    }
}

fn vli(f: &mut Fuzz, rounds: u32) {
    for _ in 0..rounds {
        let v = (f.next() >> f.below(64)).max(1);
        match vli_encode(v) {
            Some((code, bits)) => {
                let noise = if bits < 64 { f.next() << bits } else { 0 };
                assert_eq!(vli_decode(code | noise), (v, bits));
            }
            None => assert!(v > 0x0100_0004_0020_2130),
        }
        let _ = vli_decode(f.next());
        f.cases += 2;
    }
}

fn other_decoders(f: &mut Fuzz, rounds: u32) {
    for _ in 0..rounds {
        let v = f.next();
        let _ = Packet::from_u16(v as u16);
        let _ = AfterSb::from_u32(v as u32 % 16);
        let _ = hark_proto::drbd_state::StateRv::from_wire(v as u32);
        let w = v as u32;
        let c = hark_proto::drbd_state::convert_peer(w);
        // Converting twice swaps the roles and disks back.
        assert_eq!(
            hark_proto::drbd_state::convert_peer(c) & 0x1_fe0f,
            w & 0x1_fe0f
        );
        f.cases += 1;
    }
}

#[test]
fn wire_fuzz_a_million_cases() {
    let start = std::time::Instant::now();
    let mut f = Fuzz {
        s: 0x853c_49e6_748f_ea9b,
        cases: 0,
    };
    headers(&mut f, 150_000);
    features(&mut f, 30_000);
    fixed!(
        f,
        30_000,
        DataHeader,
        BlockAck,
        BlockReq,
        Barrier,
        BarrierAck,
        Uuids,
        Sizes,
        StateWord,
        SyncUuid,
        BlockDesc,
        ReqState,
        ReqStateReply
    );
    protocol(&mut f, 60_000);
    sync_param(&mut f, 60_000);
    states(&mut f, 60_000);
    uuids(&mut f, 30_000);
    plain_bitmaps(&mut f, 20_000);
    compressed_bitmaps(&mut f, 400);
    vli(&mut f, 40_000);
    other_decoders(&mut f, 50_000);
    eprintln!("wire_fuzz: {} cases in {:.1?}", f.cases, start.elapsed());
    assert!(f.cases >= 1_000_000, "only {} cases", f.cases);
}
