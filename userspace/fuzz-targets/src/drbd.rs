// SPDX-License-Identifier: GPL-2.0

//! DRBD wire targets: every packet decoder of `drbd_wire` (headers, the feature handshake,
//! fixed payloads, `P_PROTOCOL`, `P_SYNC_PARAM`, plain bitmaps, `P_DATA` checks, VLI codes),
//! directly or as a packet stream, the answer to a peer's `P_STATE_CHG_REQ`
//! (`drbd_state_chg`), and the RLE+VLI compressed bitmap.

use crate::Input;
use hark_proto::drbd_state::{Role, State, StateRv};
use hark_proto::drbd_state_chg::{check_change, local_role_change, peer_request, Limits};
use hark_proto::drbd_wire::{
    c_str, check_data, compressed_bitmap_code_max, decode_bitmap_plain, decode_compressed_bitmap,
    decode_header, encode_bitmap_plain, encode_header, header_size, name_buf, rle_decode,
    rle_encode, vli_decode, vli_encode, AfterSb, Barrier, BarrierAck, BlockAck, BlockDesc,
    BlockReq, DataHeader, Features, Packet, Protocol, ReqState, ReqStateReply, Sizes, StateWord,
    SyncParam, SyncUuid, Uuids, WireError, FEATURES_SIZE, PROTOCOL_FIXED_SIZE, PRO_VERSION_INITIAL,
    PRO_VERSION_MAX, PRO_VERSION_MIN, SOCKET_BUFFER_SIZE,
};

/// The agreed version from a byte: 80 (before the handshake) or 86..=101.
fn agreed(b: u8) -> u32 {
    match b % 17 {
        0 => PRO_VERSION_INITIAL,
        v => PRO_VERSION_MIN - 1 + u32::from(v),
    }
}

/// Decodes a fixed-size payload and checks that it encodes back to the same bytes.
macro_rules! fixed {
    ($t:ty, $p:expr) => {{
        let p: &[u8] = $p;
        match <$t>::decode(p) {
            Ok(v) => {
                assert_eq!(p.len(), <$t>::SIZE);
                assert_eq!(&v.encode()[..], p, "{} round trip", stringify!($t));
            }
            Err(e) => {
                assert_eq!(e, WireError::BadLength);
                assert_ne!(p.len(), <$t>::SIZE);
            }
        }
    }};
}

fn header(agreed: u32, b: &[u8]) {
    let Ok(h) = decode_header(agreed, b) else {
        return;
    };
    assert!(b.len() >= header_size(agreed));
    let mut out = [0u8; 16];
    match encode_header(agreed, h.command, h.volume, h.length, &mut out) {
        Ok(n) => {
            assert_eq!(n, header_size(agreed));
            assert_eq!(decode_header(agreed, &out[..n]), Ok(h));
            if agreed >= 100 {
                assert_eq!(&out[..], &b[..16]);
            }
        }
        // Only a p_header80 announcing more than 32 KiB cannot be sent back before 95.
        Err(e) => assert!(e == WireError::TooLong && agreed < 95 && h.length > 1 << 15),
    }
}

fn features(p: &[u8]) {
    let Ok(f) = Features::decode(p) else {
        assert_ne!(p.len(), FEATURES_SIZE);
        return;
    };
    let e = f.encode();
    assert_eq!(&e[..12], &p[..12]);
    assert!(e[12..].iter().all(|&b| b == 0));
    assert_eq!(Features::decode(&e), Ok(f));
    if let Ok((v, flags)) = Features::negotiate(&Features::OURS, &f) {
        assert!((PRO_VERSION_MIN..=PRO_VERSION_MAX).contains(&v));
        assert!(v >= f.protocol_min);
        assert_eq!(flags & !f.feature_flags, 0);
    }
}

fn protocol(agreed: u32, p: &[u8]) {
    let Ok(pr) = Protocol::decode(agreed, p) else {
        return;
    };
    assert!(c_str(&pr.integrity_alg).len() < pr.integrity_alg.len());
    let mut out = [0u8; 128];
    match pr.encode(agreed, &mut out) {
        Ok(n) => {
            assert_eq!(n, pr.size(agreed));
            assert_eq!(&out[..PROTOCOL_FIXED_SIZE], &p[..PROTOCOL_FIXED_SIZE]);
            assert_eq!(Protocol::decode(agreed, &out[..n]), Ok(pr));
        }
        Err(e) => assert_eq!(e, WireError::Incompatible),
    }
}

fn sync_param(agreed: u32, p: &[u8]) {
    let Ok(s) = SyncParam::decode(agreed, p) else {
        return;
    };
    assert!(p.len() <= SyncParam::max_size(agreed));
    let mut out = [0u8; 256];
    let n = s
        .encode(agreed, &mut out)
        .expect("decoded SyncParam encodes");
    assert_eq!(n, s.size(agreed));
    assert_eq!(SyncParam::decode(agreed, &out[..n]), Ok(s));
}

fn bitmap_plain(agreed: u32, words_left: u64, p: &[u8]) {
    let mut words = [0u64; SOCKET_BUFFER_SIZE / 8];
    let Ok(n) = decode_bitmap_plain(agreed, words_left, p, &mut words) else {
        return;
    };
    assert!(n as u64 <= words_left);
    let mut out = [0u8; SOCKET_BUFFER_SIZE];
    assert_eq!(
        encode_bitmap_plain(agreed, &words[..n], &mut out),
        Ok(p.len())
    );
    assert_eq!(&out[..p.len()], p);
}

fn data_check(inp: &mut Input<'_>) {
    let (length, sector) = (inp.le(4) as u32, inp.le(8));
    let (capacity, max_bio) = (inp.le(8), inp.le(4) as u32);
    if let Ok(d) = check_data(length, sector, capacity, max_bio) {
        assert_eq!(u64::from(d) + DataHeader::SIZE as u64, u64::from(length));
        assert!(d % 512 == 0 && d <= max_bio);
        assert!(u128::from(sector) + u128::from(d / 512) <= u128::from(capacity));
    }
}

fn vli(x: u64) {
    let (v, bits) = vli_decode(x);
    assert!((2..=64).contains(&bits) && v >= 1);
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    };
    assert_eq!(vli_encode(v), Some((x & mask, bits)), "VLI {x:#x}");
}

fn names(p: &[u8]) {
    if let Ok(b) = name_buf(p) {
        assert_eq!(c_str(&b), p);
    }
    let n = u32::from_le_bytes([p.first().copied().unwrap_or(0), 0, 0, 0]);
    if let Some(a) = AfterSb::from_u32(n) {
        assert_eq!(AfterSb::from_name(a.name()), Some(a));
        assert_eq!(a.from_peer().from_peer(), a);
    }
}

/// A peer's `P_STATE_CHG_REQ` (`mask`, `val`) against our state word `me` with the limits of
/// `flags`: the answer never panics; a crossing request is refused when `flags` says so; a
/// granted one changes only the peer's role and disk, passes the change rules, and makes no
/// second Primary without `allow-two-primaries` (unless there were two already). Our own
/// promotion and demotion from the same state obey the same rule.
fn state_request(me: u32, flags: u8, mask: u32, val: u32) {
    let Ok(os) = State::unpack(me) else {
        return;
    };
    let lim = Limits {
        two_primaries: flags & 1 != 0,
        device_open: flags & 2 != 0,
    };
    let two = |s: &State| s.role == Role::Primary && s.peer == Role::Primary;
    let concurrent = flags & 4 != 0;
    match peer_request(&os, mask, val, &lim, concurrent) {
        Ok(ns) => {
            assert!(!concurrent);
            let mut same = ns;
            (same.peer, same.pdsk) = (os.peer, os.pdsk);
            assert_eq!(same, os, "only the peer's role and disk change");
            assert!(check_change(&os, &ns, &lim).is_success());
            assert!(lim.two_primaries || !two(&ns) || two(&os));
        }
        Err(rv) => {
            assert!(!rv.is_success());
            assert!(!concurrent || rv == StateRv::ConcurrentStChg);
        }
    }
    for role in [Role::Primary, Role::Secondary] {
        let (ns, rv) = local_role_change(&os, role, flags & 8 != 0, &lim);
        assert_eq!(ns.role, role);
        if rv.is_success() {
            assert!(lim.two_primaries || !two(&ns) || two(&os));
        }
    }
}

/// One payload by packet number, as the receiver dispatches it.
fn payload(agreed: u32, command: u16, p: &[u8], words_left: u64) {
    let Some(pk) = Packet::from_u16(command) else {
        return;
    };
    assert_eq!(pk as u16, command);
    match pk {
        Packet::ConnectionFeatures => features(p),
        Packet::Data | Packet::DataReply | Packet::RsDataReply => {
            fixed!(DataHeader, p.get(..DataHeader::SIZE).unwrap_or(p))
        }
        Packet::Barrier => fixed!(Barrier, p),
        Packet::BarrierAck => fixed!(BarrierAck, p),
        Packet::DataRequest | Packet::RsDataRequest => fixed!(BlockReq, p),
        Packet::WriteAck
        | Packet::RecvAck
        | Packet::RsWriteAck
        | Packet::Superseded
        | Packet::NegAck
        | Packet::NegDReply
        | Packet::NegRsDReply
        | Packet::RsIsInSync => fixed!(BlockAck, p),
        Packet::OvRequest | Packet::CsumRsRequest | Packet::RsThinReq => {
            fixed!(BlockReq, p.get(..BlockReq::SIZE).unwrap_or(p))
        }
        Packet::Trim | Packet::Zeroes => fixed!(DataHeader, p.get(..DataHeader::SIZE).unwrap_or(p)),
        Packet::Uuids => fixed!(Uuids, p),
        Packet::Sizes => fixed!(Sizes, p.get(..Sizes::SIZE).unwrap_or(p)),
        Packet::State => fixed!(StateWord, p),
        Packet::SyncUuid => fixed!(SyncUuid, p),
        Packet::OutOfSync => fixed!(BlockDesc, p),
        Packet::StateChgReq | Packet::ConnStChgReq => {
            fixed!(ReqState, p);
            if let Ok(r) = ReqState::decode(p) {
                state_request(words_left as u32, (words_left >> 32) as u8, r.mask, r.val);
            }
        }
        Packet::StateChgReply | Packet::ConnStChgReply => fixed!(ReqStateReply, p),
        Packet::Protocol | Packet::ProtocolUpdate => protocol(agreed, p),
        Packet::SyncParam | Packet::SyncParam89 => sync_param(agreed, p),
        Packet::Bitmap => bitmap_plain(agreed, words_left, p),
        Packet::CompressedBitmap => {
            let mut bm = [0u8; 64];
            let mut off = 0;
            let _ = decode_compressed_bitmap(agreed, p, &mut bm, 512, &mut off);
        }
        _ => {}
    }
}

/// Every `drbd_wire` decoder. First byte: the agreed version; second: a decoder, or (from
/// 0xc0) a stream of packets, each header decoded and its payload dispatched by number like
/// the receiver does. Each decoded value encodes back to what was received (or, where the
/// receiver normalises, to bytes that decode to the same value).
pub fn drbd_wire(data: &[u8]) {
    let mut inp = Input::new(data);
    let agreed = agreed(inp.byte());
    let sel = inp.byte();
    if sel >= 0xc0 {
        let words_left = u64::from(sel & 0x3f) * 16;
        let mut rest = inp.rest();
        while let Ok(h) = decode_header(agreed, rest) {
            header(agreed, rest);
            rest = &rest[header_size(agreed)..];
            let n = (h.length as usize).min(rest.len());
            payload(agreed, h.command, &rest[..n], words_left);
            rest = &rest[n..];
        }
        return;
    }
    match sel % 20 {
        0 => header(agreed, inp.rest()),
        1 => features(inp.rest()),
        2 => fixed!(DataHeader, inp.rest()),
        3 => fixed!(BlockAck, inp.rest()),
        4 => fixed!(BlockReq, inp.rest()),
        5 => fixed!(Barrier, inp.rest()),
        6 => fixed!(BarrierAck, inp.rest()),
        7 => fixed!(Uuids, inp.rest()),
        8 => fixed!(Sizes, inp.rest()),
        9 => fixed!(StateWord, inp.rest()),
        10 => fixed!(BlockDesc, inp.rest()),
        11 => fixed!(SyncUuid, inp.rest()),
        12 => {
            // Our state word and flags for the answer, then the request.
            let me = inp.le(4) as u32;
            let flags = inp.byte();
            let p = inp.rest();
            fixed!(ReqState, p);
            if let Ok(r) = ReqState::decode(p) {
                state_request(me, flags, r.mask, r.val);
            }
        }
        13 => fixed!(ReqStateReply, inp.rest()),
        14 => protocol(agreed, inp.rest()),
        15 => sync_param(agreed, inp.rest()),
        16 => {
            let words_left = inp.le(8);
            bitmap_plain(agreed, words_left, inp.rest())
        }
        17 => data_check(&mut inp),
        18 => vli(inp.le(8)),
        _ => names(inp.rest()),
    }
}

fn bit(bm: &[u8], i: u64) -> bool {
    bm[(i / 8) as usize] & (1 << (i % 8)) != 0
}

/// The RLE+VLI bitmap code. Bit 0 of the first byte chooses the direction:
///
/// - decode: bitmap size and start offset from the next bytes, then one
///   `P_COMPRESSED_BITMAP` payload into a clear bitmap. No bit below the start or at or past
///   the bitmap's end is set (even on error), the offset only grows, the answer says whether
///   bits remain; on success the bits decoded encode with `rle_encode` to a code that decodes
///   to the same bits.
/// - encode: the rest is a bitmap; `rle_encode` in packet-sized steps and `rle_decode` of each
///   step rebuild it exactly as far as the encoder went.
pub fn drbd_bitmap(data: &[u8]) {
    let mut inp = Input::new(data);
    let sel = inp.byte();
    let agreed = agreed(sel >> 1);
    if sel & 1 == 0 {
        let bm_bits = inp.le(2);
        let start = inp.le(2) % (bm_bits + 1);
        let p = inp.rest();
        let mut bm = vec![0u8; bm_bits.div_ceil(8) as usize];
        let mut off = start;
        let r = decode_compressed_bitmap(agreed, p, &mut bm, bm_bits, &mut off);
        for i in 0..bm.len() as u64 * 8 {
            if i < start || i >= bm_bits {
                assert!(!bit(&bm, i), "bit {i} set outside {start}..{bm_bits}");
            }
        }
        assert!(off >= start);
        let Ok(more) = r else {
            return;
        };
        assert_eq!(more, off < bm_bits);
        let end = off.min(bm_bits);
        for i in off..bm_bits {
            assert!(!bit(&bm, i), "bit {i} set past the decoded runs");
        }
        round_trip(&bm, end, start, agreed);
    } else {
        let bm = inp.rest();
        let bits = bm.len() as u64 * 8;
        round_trip(bm, bits, 0, agreed);
    }
}

/// Encodes `bm[from..bits]` in packet-sized steps and decodes each step into a clear bitmap:
/// the bits agree as far as the encoder went (it stops where plain words would be smaller).
fn round_trip(bm: &[u8], bits: u64, from: u64, agreed: u32) {
    let mut out = vec![0u8; compressed_bitmap_code_max(agreed)];
    let mut copy = vec![0u8; bm.len()];
    let mut off = from;
    let mut at = from;
    while let Some((enc, len)) = rle_encode(bm, bits, &mut off, &mut out) {
        assert!(len > 0 && len <= out.len() && off > at && off <= bits);
        let more = rle_decode(enc, &out[..len], &mut copy, bits, &mut at).expect("own code");
        assert_eq!(at, off, "decoder and encoder disagree on the run ends");
        assert_eq!(more, off < bits);
    }
    assert_eq!(off, at);
    for i in from..off {
        assert_eq!(
            bit(bm, i),
            bit(&copy, i),
            "bit {i} changed by the round trip"
        );
    }
}
