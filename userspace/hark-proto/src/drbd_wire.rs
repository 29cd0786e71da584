// SPDX-License-Identifier: GPL-2.0

//! DRBD 8.4's wire protocol (versions 86..=101): packet numbers, the three packet headers, the
//! feature handshake, the payloads drbd_rs exchanges (protocol and sync parameters, sizes,
//! UUIDs, state, data, acks, barriers, resync requests) and the plain and RLE/VLI-compressed
//! bitmap. Facts from `drivers/block/drbd/drbd_protocol.h` and
//! `drbd_receiver.c` (`decode_header`, `drbd_do_features`) of the 7.3 source.
//!
//! Everything on the wire is big-endian. Which header a packet carries depends on the agreed
//! protocol version: from 100 on, `p_header100` (16 bytes, with a volume number); before, 8
//! bytes: `p_header80` (16-bit length) or, from 95 on and for payloads over 32 KiB,
//! `p_header95` (16-bit magic, 32-bit length). Before the handshake the agreed version is 80.
//!
//! `drbd_rs/conn.rs` encodes and decodes every packet of a connection with this module.
//!
//! Every length, offset and count here may come from the peer: arithmetic is checked (an
//! overflow in the kernel module is an oops). Offsets within a buffer use `saturating_add`,
//! which cannot saturate as a buffer is at most `isize::MAX` bytes long.

#![deny(clippy::arithmetic_side_effects)]

/// Lowest protocol version we speak (`PRO_VERSION_MIN`).
pub const PRO_VERSION_MIN: u32 = 86;
/// Highest protocol version we speak (`PRO_VERSION_MAX`).
pub const PRO_VERSION_MAX: u32 = 101;
/// Version assumed before the feature handshake (`conn_connect`).
pub const PRO_VERSION_INITIAL: u32 = 80;

/// `DRBD_MAGIC`, the magic of `p_header80`.
pub const MAGIC_80: u32 = 0x8374_0267;
/// `DRBD_MAGIC_BIG`, the 16-bit magic of `p_header95`.
pub const MAGIC_95: u16 = 0x835a;
/// `DRBD_MAGIC_100`, the magic of `p_header100`.
pub const MAGIC_100: u32 = 0x8620_ec20;

/// Largest payload a `p_header80` may announce (`DRBD_MAX_SIZE_H80_PACKET`).
pub const MAX_SIZE_H80_PACKET: u32 = 1 << 15;

/// Feature flags of the handshake (`DRBD_FF_*`).
pub const FF_TRIM: u32 = 1;
/// Thin resync (`DRBD_FF_THIN_RESYNC`).
pub const FF_THIN_RESYNC: u32 = 2;
/// Write same (`DRBD_FF_WSAME`).
pub const FF_WSAME: u32 = 4;
/// Write zeroes (`DRBD_FF_WZEROES`).
pub const FF_WZEROES: u32 = 8;

/// Defines a C enum with its numbers and names: the enum, `ALL` (in C order), a decoder from
/// the number and `name()`. Shared with `drbd_state`.
macro_rules! named_enum {
    (
        $(#[$em:meta])* $enum:ident: $repr:ident,
        $(#[$fm:meta])* fn $from:ident, $(#[$nm:meta])* fn name;
        $($(#[$m:meta])* $name:ident = $num:literal, $text:expr;)*
    ) => {
        $(#[$em])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr($repr)]
        pub enum $enum {
            $($(#[$m])* $name = $num,)*
        }

        impl $enum {
            /// Every value, in C order.
            pub const ALL: &'static [$enum] = &[$($enum::$name,)*];

            $(#[$fm])*
            pub const fn $from(v: $repr) -> Option<$enum> {
                match v {
                    $($num => Some($enum::$name),)*
                    _ => None,
                }
            }

            $(#[$nm])*
            pub const fn name(self) -> &'static str {
                match self {
                    $($enum::$name => $text,)*
                }
            }
        }
    };
}
pub(crate) use named_enum;

named_enum! {
    /// Packet types (`enum drbd_packet`).
    Packet: u16,
    /// Decodes a packet number.
    fn from_u16,
    /// DRBD's name of the packet (`cmdname()`; ours where DRBD has none).
    fn name;
    /// Application write (data socket).
    Data = 0x00, "Data";
    /// Answer to `DataRequest`.
    DataReply = 0x01, "DataReply";
    /// Answer to `RsDataRequest`.
    RsDataReply = 0x02, "RSDataReply";
    /// Closes an epoch.
    Barrier = 0x03, "Barrier";
    /// Plain bitmap.
    Bitmap = 0x04, "ReportBitMap";
    /// Peer should become sync target.
    BecomeSyncTarget = 0x05, "BecomeSyncTarget";
    /// Peer should become sync source.
    BecomeSyncSource = 0x06, "BecomeSyncSource";
    /// Unplug hint.
    UnplugRemote = 0x07, "UnplugRemote";
    /// Read from the peer.
    DataRequest = 0x08, "DataRequest";
    /// Resync read from the peer.
    RsDataRequest = 0x09, "RSDataRequest";
    /// Resync parameters (before 89).
    SyncParam = 0x0a, "SyncParam";
    /// Replication protocol and policies.
    Protocol = 0x0b, "ReportProtocol";
    /// Generation UUIDs.
    Uuids = 0x0c, "ReportUUIDs";
    /// Device sizes.
    Sizes = 0x0d, "ReportSizes";
    /// Peer state.
    State = 0x0e, "ReportState";
    /// Sync UUID.
    SyncUuid = 0x0f, "ReportSyncUUID";
    /// CRAM-HMAC challenge.
    AuthChallenge = 0x10, "AuthChallenge";
    /// CRAM-HMAC response.
    AuthResponse = 0x11, "AuthResponse";
    /// State change request.
    StateChgReq = 0x12, "StateChgRequest";
    /// Ping (meta socket).
    Ping = 0x13, "Ping";
    /// Ping answer.
    PingAck = 0x14, "PingAck";
    /// Protocol B acknowledgement.
    RecvAck = 0x15, "RecvAck";
    /// Protocol C acknowledgement.
    WriteAck = 0x16, "WriteAck";
    /// Resync write acknowledgement.
    RsWriteAck = 0x17, "RSWriteAck";
    /// Conflict: write superseded.
    Superseded = 0x18, "Superseded";
    /// Write failed on the peer.
    NegAck = 0x19, "NegAck";
    /// Read failed on the peer.
    NegDReply = 0x1a, "NegDReply";
    /// Resync read failed on the peer.
    NegRsDReply = 0x1b, "NegRSDReply";
    /// Epoch written on the peer.
    BarrierAck = 0x1c, "BarrierAck";
    /// State change answer.
    StateChgReply = 0x1d, "StateChgReply";
    /// Online verify request.
    OvRequest = 0x1e, "OVRequest";
    /// Online verify reply.
    OvReply = 0x1f, "OVReply";
    /// Online verify result.
    OvResult = 0x20, "OVResult";
    /// Checksum-based resync request.
    CsumRsRequest = 0x21, "CsumRSRequest";
    /// Block already in sync.
    RsIsInSync = 0x22, "CsumRSIsInSync";
    /// Resync parameters (89 on).
    SyncParam89 = 0x23, "SyncParam89";
    /// RLE+VLI encoded bitmap.
    CompressedBitmap = 0x24, "CBitmap";
    /// Delay probe.
    DelayProbe = 0x27, "DelayProbe";
    /// Mark out of sync.
    OutOfSync = 0x28, "OutOfSync";
    /// Cancel a resync request.
    RsCancel = 0x29, "RSCancel";
    /// Connection state change request.
    ConnStChgReq = 0x2a, "conn_st_chg_req";
    /// Connection state change reply.
    ConnStChgReply = 0x2b, "conn_st_chg_reply";
    /// Retry a conflicting write.
    RetryWrite = 0x2c, "retry_write";
    /// Protocol change on a live connection.
    ProtocolUpdate = 0x2d, "protocol_update";
    /// Discard.
    Trim = 0x31, "Trim";
    /// Thin resync request.
    RsThinReq = 0x32, "rs_thin_req";
    /// Deallocated on the sync source.
    RsDeallocated = 0x33, "rs_deallocated";
    /// Write same.
    Wsame = 0x34, "WriteSame";
    /// Write zeroes.
    Zeroes = 0x36, "Zeroes";
    /// First packet on the meta socket.
    InitialMeta = 0xfff1, "InitialMeta";
    /// First packet on the data socket.
    InitialData = 0xfff2, "InitialData";
    /// Feature handshake.
    ConnectionFeatures = 0xfffe, "ConnectionFeatures";
}

/// A decoded packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Packet number (unknown numbers are kept: the caller decides, see `P_MAY_IGNORE`).
    pub command: u16,
    /// Payload bytes after the header.
    pub length: u32,
    /// Volume number (0 before protocol 100).
    pub volume: u16,
}

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// No magic matches the header size of the agreed version.
    BadMagic(u32),
    /// `p_header100` with a non-zero pad.
    BadPadding,
    /// The buffer is shorter than the header.
    Short,
    /// The payload does not fit the header the version allows.
    TooLong,
    /// A packet's payload has the wrong size.
    BadLength,
    /// The peer's version range does not meet ours.
    Incompatible,
    /// A compressed bitmap with an encoding other than RLE+VLI.
    BadEncoding,
    /// A field holds a value the protocol does not define (e.g. a replication protocol outside
    /// A..C), or a name to send is not NUL-terminated within its buffer.
    BadValue,
}

/// Header size in bytes for an agreed protocol version (`drbd_header_size`).
pub const fn header_size(agreed: u32) -> usize {
    if agreed >= 100 {
        16
    } else {
        8
    }
}

/// Decodes the header at the start of `buf` like `decode_header`: only the header of the
/// agreed version's size is accepted.
pub fn decode_header(agreed: u32, buf: &[u8]) -> Result<Header, WireError> {
    let size = header_size(agreed);
    let b = buf.get(..size).ok_or(WireError::Short)?;
    let be16 = |o: usize| u16::from_be_bytes([b[o], b[o..][1]]);
    let be32 = |o: usize| be32_at(b, o);
    if size == 16 && be32(0) == MAGIC_100 {
        if be32(12) != 0 {
            return Err(WireError::BadPadding);
        }
        return Ok(Header {
            volume: be16(4),
            command: be16(6),
            length: be32(8),
        });
    }
    if size == 8 && be16(0) == MAGIC_95 {
        return Ok(Header {
            command: be16(2),
            length: be32(4),
            volume: 0,
        });
    }
    if size == 8 && be32(0) == MAGIC_80 {
        return Ok(Header {
            command: be16(4),
            length: u32::from(be16(6)),
            volume: 0,
        });
    }
    Err(WireError::BadMagic(be32(0)))
}

/// Encodes a header for the agreed version into `out` (like `prepare_header`); returns its
/// size.
pub fn encode_header(
    agreed: u32,
    command: u16,
    volume: u16,
    length: u32,
    out: &mut [u8; 16],
) -> Result<usize, WireError> {
    *out = [0; 16];
    if agreed >= 100 {
        out[0..4].copy_from_slice(&MAGIC_100.to_be_bytes());
        out[4..6].copy_from_slice(&volume.to_be_bytes());
        out[6..8].copy_from_slice(&command.to_be_bytes());
        out[8..12].copy_from_slice(&length.to_be_bytes());
        return Ok(16);
    }
    if volume != 0 {
        return Err(WireError::TooLong);
    }
    if length > MAX_SIZE_H80_PACKET {
        if agreed < 95 {
            return Err(WireError::TooLong);
        }
        out[0..2].copy_from_slice(&MAGIC_95.to_be_bytes());
        out[2..4].copy_from_slice(&command.to_be_bytes());
        out[4..8].copy_from_slice(&length.to_be_bytes());
        return Ok(8);
    }
    out[0..4].copy_from_slice(&MAGIC_80.to_be_bytes());
    out[4..6].copy_from_slice(&command.to_be_bytes());
    // length <= 32 KiB here.
    out[6..8].copy_from_slice(&(length as u16).to_be_bytes());
    Ok(8)
}

/// Payload size of `P_CONNECTION_FEATURES` (`struct p_connection_features`).
pub const FEATURES_SIZE: usize = 4 + 4 + 4 + 4 + 7 * 8;

/// `P_CONNECTION_FEATURES` payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Lowest version the sender speaks.
    pub protocol_min: u32,
    /// `DRBD_FF_*` flags the sender supports.
    pub feature_flags: u32,
    /// Highest version the sender speaks (0 from old peers: same as `protocol_min`).
    pub protocol_max: u32,
}

impl Features {
    /// What we offer: 86..=101 and no feature flags (drbd_rs implements none of `DRBD_FF_TRIM`,
    /// `THIN_RESYNC`, `WSAME`, `WZEROES`).
    pub const OURS: Features = Features {
        protocol_min: PRO_VERSION_MIN,
        feature_flags: 0,
        protocol_max: PRO_VERSION_MAX,
    };

    /// Encodes the payload (pad and reserved words zero).
    pub fn encode(&self) -> [u8; FEATURES_SIZE] {
        let mut b = [0u8; FEATURES_SIZE];
        b[0..4].copy_from_slice(&self.protocol_min.to_be_bytes());
        b[4..8].copy_from_slice(&self.feature_flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.protocol_max.to_be_bytes());
        b
    }

    /// Decodes a payload of exactly [`FEATURES_SIZE`] bytes (as `drbd_do_features` insists).
    pub fn decode(p: &[u8]) -> Result<Features, WireError> {
        if p.len() != FEATURES_SIZE {
            return Err(WireError::BadLength);
        }
        let be32 = |o: usize| be32_at(p, o);
        Ok(Features {
            protocol_min: be32(0),
            feature_flags: be32(4),
            protocol_max: be32(8),
        })
    }

    /// The agreed version and features between us (`ours`) and the peer, as
    /// `drbd_do_features` computes them. A peer whose lowest version is above its highest is
    /// refused (the C driver would agree on a version below the peer's own minimum).
    pub fn negotiate(ours: &Features, peer: &Features) -> Result<(u32, u32), WireError> {
        let peer_max = if peer.protocol_max == 0 {
            peer.protocol_min
        } else {
            peer.protocol_max
        };
        if peer.protocol_min > peer_max
            || ours.protocol_max < peer.protocol_min
            || ours.protocol_min > peer_max
        {
            return Err(WireError::Incompatible);
        }
        Ok((
            ours.protocol_max.min(peer_max),
            ours.feature_flags & peer.feature_flags,
        ))
    }
}

/// Bitmap encoding in `P_COMPRESSED_BITMAP` (`RLE_VLI_Bits`).
pub const RLE_VLI_BITS: u8 = 2;

/// VLI code levels: (total bits, prefix bits, prefix value), `VLI_L_1_1` of `drbd_vli.h`.
const VLI_LEVELS: [(u32, u32, u64); 10] = [
    (2, 1, 0x00),
    (3, 2, 0x01),
    (5, 3, 0x03),
    (7, 4, 0x07),
    (10, 5, 0x0f),
    (14, 6, 0x1f),
    (21, 8, 0x3f),
    (29, 8, 0x7f),
    (42, 8, 0xbf),
    (64, 8, 0xff),
];

/// Encodes a run length (`1..`) as DRBD's VLI code: `(code, bits)`, least significant bit
/// first; `None` for 0 or a value beyond the code (`__vli_encode_bits`).
pub fn vli_encode(v: u64) -> Option<(u64, u32)> {
    if v == 0 {
        return None;
    }
    // Over the constant levels: `max` stays below 2^57, `adj` <= `v` when used.
    let mut max = 0u64;
    let mut adj = 1u64;
    for &(t, b, prefix) in &VLI_LEVELS {
        max = max.saturating_add(1u64 << t.saturating_sub(b));
        if v <= max {
            return Some(((v.saturating_sub(adj) << b) | prefix, t));
        }
        adj = max.saturating_add(1);
    }
    None
}

/// Decodes the VLI code in the low bits of `input`: `(value, bits consumed)`
/// (`vli_decode_bits`; every bit pattern decodes).
pub fn vli_decode(input: u64) -> (u64, u32) {
    // Over the constant levels: `adj` and the value stay below 2^57.
    let mut adj = 1u64;
    for &(t, b, prefix) in &VLI_LEVELS {
        if input & !(u64::MAX << b) == prefix {
            let mask = u64::MAX.checked_shl(t).map_or(u64::MAX, |m| !m);
            return (((input & mask) >> b).saturating_add(adj), t);
        }
        adj = adj.saturating_add(1u64 << t.saturating_sub(b));
    }
    // The last level's prefix is 0xff and the others cover every other 8-bit prefix.
    unreachable!("VLI levels cover every prefix")
}

/// Bit `i` of a DRBD bitmap (little-endian bit order).
fn bm_bit(bm: &[u8], i: u64) -> bool {
    bm.get((i / 8) as usize)
        .is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// First bit from `from` (below `end`) whose value is `want`, else `end`.
fn bm_find(bm: &[u8], from: u64, end: u64, want: bool) -> u64 {
    let mut i = from;
    while i < end {
        // `i` < `end`: the steps below stay within `end`.
        if i % 64 == 0 && end.saturating_sub(i) >= 64 {
            // A whole word without the bit looked for: skip it at once.
            let b = (i / 8) as usize;
            let w = bm.get(b..b.saturating_add(8)).map_or(0, |w| {
                let mut a = [0u8; 8];
                a.copy_from_slice(w);
                u64::from_le_bytes(a)
            });
            if (want && w == 0) || (!want && w == u64::MAX) {
                i = i.saturating_add(64);
                continue;
            }
        }
        if i % 8 == 0 && end.saturating_sub(i) >= 8 {
            let byte = bm.get((i / 8) as usize).copied().unwrap_or(0);
            if (want && byte == 0) || (!want && byte == 0xff) {
                i = i.saturating_add(8);
                continue;
            }
        }
        if bm_bit(bm, i) == want {
            return i;
        }
        i = i.saturating_add(1);
    }
    end
}

/// Encodes bits `*offset..bm_bits` of `bm` as RLE+VLI into `out` (one `P_COMPRESSED_BITMAP`
/// payload after the encoding byte), like `fill_bitmap_rle_bits`: as many runs as fit. Returns
/// the encoding byte and the code length, and advances `*offset` past the runs encoded. Returns
/// `None` (offset unchanged) when nothing is left or the code would not be smaller than the
/// plain bits: the caller sends those as a plain `P_BITMAP`.
pub fn rle_encode(
    bm: &[u8],
    bm_bits: u64,
    offset: &mut u64,
    out: &mut [u8],
) -> Option<(u8, usize)> {
    let start = *offset;
    if start >= bm_bits || out.is_empty() {
        return None;
    }
    out.fill(0);
    let mut pos = 0usize; // bit position in `out`
    let mut at = start;
    let first_set = bm_bit(bm, at);
    let mut want_set = !first_set; // the run ends where the polarity flips
    while at < bm_bits {
        let end = bm_find(bm, at, bm_bits, want_set);
        // `end` >= `at`; `pos` counts bits of `out`.
        let (code, bits) = vli_encode(end.saturating_sub(at))?;
        let next = pos.saturating_add(bits as usize);
        if next > out.len().saturating_mul(8) {
            break;
        }
        for (k, p) in (pos..next).enumerate() {
            if code >> k & 1 != 0 {
                out[p / 8] |= 1 << (p % 8);
            }
        }
        pos = next;
        at = end;
        want_set = !want_set;
    }
    let len = pos.div_ceil(8);
    // `at` >= `start`; the code is shorter than `out`.
    if at.saturating_sub(start) < (len as u64).saturating_mul(8) || at == start {
        return None;
    }
    *offset = at;
    let pad = (len.saturating_mul(8).saturating_sub(pos)) as u8;
    Some(((u8::from(first_set) << 7) | (pad << 4) | RLE_VLI_BITS, len))
}

/// Applies one `P_COMPRESSED_BITMAP` payload (`encoding` byte and `code`) to `bm` from bit
/// `*offset`, like `recv_bm_rle_bits`: set runs are ORed in, clear runs skipped. Advances
/// `*offset`; returns whether bits remain. A malformed payload (unknown encoding, a run past
/// `bm_bits`, a truncated code) is an error and may have set some bits already, as in DRBD,
/// where the connection is then torn down. [`RleDecoder`] does the same in bounded slices.
pub fn rle_decode(
    encoding: u8,
    code: &[u8],
    bm: &mut [u8],
    bm_bits: u64,
    offset: &mut u64,
) -> Result<bool, WireError> {
    let mut d = RleDecoder::new(encoding, code, bm_bits, *offset)?;
    while !d.apply(bm, u64::MAX)?.done {}
    *offset = d.offset();
    Ok(d.offset() < bm_bits)
}

/// Work one bitmap run costs at least, in bits of [`RleDecoder::apply`]'s budget (decoding its
/// code), so that many short runs are bounded like a few long ones.
pub const RLE_RUN_COST: u64 = 64;

/// What one [`RleDecoder::apply`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RleProgress {
    /// Bits newly set in the bitmap (they were clear).
    pub newly_set: u64,
    /// Bits `first..end` were covered by this call (set or skipped).
    pub first: u64,
    /// See `first`.
    pub end: u64,
    /// The payload is fully applied.
    pub done: bool,
}

/// A `P_COMPRESSED_BITMAP` payload being applied (`recv_bm_rle_bits`), resumable: each
/// [`Self::apply`] sets runs word-wise until a budget of bits is used up, so that a caller
/// holding an interrupt-safe lock can drop it between slices however long the runs are.
pub struct RleDecoder<'a> {
    code: &'a [u8],
    /// Code bits (without the padding).
    total: u64,
    /// Next code bit.
    pos: u64,
    /// Next bitmap bit.
    at: u64,
    /// Whether the next run is a set run.
    set: bool,
    bm_bits: u64,
    /// The rest of a set run that a budget cut: bits `at..pending_end`.
    pending_end: Option<u64>,
}

impl<'a> RleDecoder<'a> {
    /// Checks the encoding byte and the padding; the runs start at bit `offset`.
    pub fn new(encoding: u8, code: &'a [u8], bm_bits: u64, offset: u64) -> Result<Self, WireError> {
        if encoding & 0x0f != RLE_VLI_BITS {
            return Err(WireError::BadEncoding);
        }
        let pad = u64::from((encoding >> 4) & 7);
        let total = (code.len() as u64)
            .checked_mul(8)
            .and_then(|t| t.checked_sub(pad))
            .ok_or(WireError::BadLength)?;
        Ok(RleDecoder {
            code,
            total,
            pos: 0,
            at: offset,
            set: encoding & 0x80 != 0,
            bm_bits,
            pending_end: None,
        })
    }

    /// The next bitmap bit (after the runs applied so far).
    pub fn offset(&self) -> u64 {
        self.at
    }

    /// Up to 64 code bits from `pos`, least significant first; bits past the end read as 0.
    fn peek64(&self) -> u64 {
        let left = self.total.saturating_sub(self.pos);
        let Ok(byte) = usize::try_from(self.pos / 8) else {
            return 0;
        };
        let mut v = 0u128;
        for k in 0..9usize {
            if let Some(&b) = self.code.get(byte.saturating_add(k)) {
                v |= u128::from(b) << k.saturating_mul(8);
            }
        }
        let look = (v >> (self.pos % 8)) as u64;
        if left < 64 {
            look & !(u64::MAX << left)
        } else {
            look
        }
    }

    /// Decodes the next run: its end bit and whether it is set; `None` when the code is used up.
    fn next_run(&mut self) -> Option<Result<(u64, bool), WireError>> {
        if self.pos >= self.total {
            return None;
        }
        let (rl, bits) = vli_decode(self.peek64());
        if u64::from(bits) > self.total.saturating_sub(self.pos) {
            return Some(Err(WireError::BadLength));
        }
        self.pos = self.pos.saturating_add(u64::from(bits));
        let Some(end) = self.at.checked_add(rl) else {
            return Some(Err(WireError::TooLong));
        };
        let set = self.set;
        self.set = !self.set;
        if set && end > self.bm_bits {
            return Some(Err(WireError::TooLong));
        }
        Some(Ok((end, set)))
    }

    /// Applies runs to `bm` until about `budget` bits of work are done (each run costs at
    /// least [`RLE_RUN_COST`], a set run its length; a clear run is skipped at that cost) or
    /// the payload is used up. Errors as [`rle_decode`].
    pub fn apply(&mut self, bm: &mut [u8], budget: u64) -> Result<RleProgress, WireError> {
        let first = self.at;
        let mut newly_set = 0u64;
        let mut left = budget;
        loop {
            let end = match self.pending_end.take() {
                Some(end) => end,
                None => match self.next_run() {
                    None => break,
                    Some(r) => {
                        let (end, set) = r?;
                        left = left.saturating_sub(RLE_RUN_COST);
                        if !set {
                            self.at = end;
                            if left == 0 {
                                break;
                            }
                            continue;
                        }
                        end
                    }
                },
            };
            // A set run, or what is left of one: as much as the budget allows.
            let stop = end.min(self.at.saturating_add(left.max(RLE_RUN_COST)));
            // Set bits of a slice: no saturation.
            newly_set = newly_set.saturating_add(super::drbd_md::bm_set_range(bm, self.at, stop));
            left = left.saturating_sub(stop.saturating_sub(self.at));
            self.at = stop;
            if stop < end {
                self.pending_end = Some(end);
                break;
            }
            if left == 0 {
                break;
            }
        }
        Ok(RleProgress {
            newly_set,
            first,
            end: self.at,
            done: self.pending_end.is_none() && self.pos >= self.total,
        })
    }
}

/// ORs one plain `P_BITMAP` payload (little-endian words) into `bm` at word `word` and returns
/// how many bits were newly set; bits from `bm_bits` on stay clear. `BadLength` if the words
/// do not lie within `bm`.
pub fn merge_bitmap_plain(
    bm: &mut [u8],
    word: u64,
    p: &[u8],
    bm_bits: u64,
) -> Result<u64, WireError> {
    let b0 = usize::try_from(word)
        .ok()
        .and_then(|w| w.checked_mul(8))
        .ok_or(WireError::BadLength)?;
    let dst = bm
        .get_mut(b0..)
        .and_then(|d| d.get_mut(..p.len()))
        .ok_or(WireError::BadLength)?;
    let mut newly = 0u64;
    // `b0 + i` is a byte of `bm`: its bits are below 2^64.
    for (i, (d, s)) in dst.iter_mut().zip(p).enumerate() {
        let bit = (b0.saturating_add(i) as u64).saturating_mul(8);
        let keep = match bm_bits.saturating_sub(bit) {
            0 => 0,
            n if n < 8 => !(0xffu8 << n),
            _ => 0xff,
        };
        let add = *s & keep & !*d;
        newly = newly.saturating_add(u64::from(add.count_ones()));
        *d |= add;
    }
    Ok(newly)
}

/// `dp_flags` of `P_DATA` (`DP_*`).
pub const DP_RW_SYNC: u32 = 2;
/// The receiver may mark the block in sync.
pub const DP_MAY_SET_IN_SYNC: u32 = 4;
/// Write with FUA.
pub const DP_FUA: u32 = 16;
/// Preflush before the write.
pub const DP_FLUSH: u32 = 32;
/// Discard.
pub const DP_DISCARD: u32 = 64;
/// Protocol B write: answer with `P_RECV_ACK`.
pub const DP_SEND_RECEIVE_ACK: u32 = 128;
/// Protocol C write: answer with `P_WRITE_ACK`.
pub const DP_SEND_WRITE_ACK: u32 = 256;
/// Write zeroes.
pub const DP_ZEROES: u32 = 1024;

/// Fixed-size big-endian payloads: a struct per packet layout with `SIZE`, `encode` and an
/// exact-length `decode`. `block_id` fields are opaque to the receiver, which echoes them.
macro_rules! fixed_payloads {
    ($($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident: $ty:ident),* $(,)? })*) => {
        $(
            $(#[$m])*
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
            pub struct $name {
                $($(#[$fm])* pub $field: $ty,)*
            }

            impl $name {
                /// Payload size in bytes.
                pub const SIZE: usize = 0 $(+ core::mem::size_of::<$ty>())*;

                /// Encodes the payload.
                pub fn encode(&self) -> [u8; Self::SIZE] {
                    let mut b = [0u8; Self::SIZE];
                    let mut _rest = &mut b[..];
                    $(
                        let v = self.$field.to_be_bytes();
                        let (f, r) = core::mem::take(&mut _rest).split_at_mut(v.len());
                        f.copy_from_slice(&v);
                        _rest = r;
                    )*
                    b
                }

                /// Decodes a payload of exactly [`Self::SIZE`] bytes.
                pub fn decode(p: &[u8]) -> Result<Self, WireError> {
                    if p.len() != Self::SIZE {
                        return Err(WireError::BadLength);
                    }
                    let mut _rest = p;
                    $(
                        let mut a = [0u8; core::mem::size_of::<$ty>()];
                        let (f, r) = _rest.split_at(a.len());
                        a.copy_from_slice(f);
                        let $field = $ty::from_be_bytes(a);
                        _rest = r;
                    )*
                    Ok($name { $($field,)* })
                }
            }
        )*
    };
}

fixed_payloads! {
    /// `P_DATA` (and `P_TRIM`, `P_ZEROES`) header before the data (`struct p_data`).
    DataHeader {
        /// First sector.
        sector: u64,
        /// Request handle, echoed in the ack.
        block_id: u64,
        /// Sequence number (conflict detection).
        seq_num: u32,
        /// `DP_*` flags.
        dp_flags: u32,
    }
    /// `P_RECV_ACK`, `P_WRITE_ACK`, `P_RS_WRITE_ACK`, `P_NEG_ACK`, ... (`struct p_block_ack`).
    BlockAck {
        /// First sector.
        sector: u64,
        /// The request handle from `P_DATA`.
        block_id: u64,
        /// Bytes.
        blksize: u32,
        /// Sequence number.
        seq_num: u32,
    }
    /// `P_DATA_REQUEST`, `P_RS_DATA_REQUEST`, ... (`struct p_block_req`).
    BlockReq {
        /// First sector.
        sector: u64,
        /// Request handle.
        block_id: u64,
        /// Bytes.
        blksize: u32,
        /// Zero.
        pad: u32,
    }
    /// `P_BARRIER` (`struct p_barrier`).
    Barrier {
        /// Epoch number.
        barrier: u32,
        /// Zero.
        pad: u32,
    }
    /// `P_BARRIER_ACK` (`struct p_barrier_ack`).
    BarrierAck {
        /// Epoch number.
        barrier: u32,
        /// Writes in the epoch.
        set_size: u32,
    }
    /// `P_UUIDS` (`struct p_uuids`: `UI_EXTENDED_SIZE` words).
    Uuids {
        /// Current UUID.
        current: u64,
        /// Bitmap UUID.
        bitmap: u64,
        /// History UUIDs.
        history_start: u64,
        /// Second history UUID.
        history_end: u64,
        /// Set bits of the sender's bitmap.
        dirty_bits: u64,
        /// UUID flags (1: discard my data, 2: crashed primary, 4: inconsistent, 8: skip initial sync).
        flags: u64,
    }
    /// `P_SIZES` without the optional queue limits (`struct p_sizes`).
    Sizes {
        /// Backing disk size, sectors.
        d_size: u64,
        /// User-requested size.
        u_size: u64,
        /// Current exported size.
        c_size: u64,
        /// Largest bio, bytes.
        max_bio_size: u32,
        /// Unused (0).
        queue_order_type: u16,
        /// `dds_flags`.
        dds_flags: u16,
    }
    /// `P_STATE` (`struct p_state`: DRBD's packed state word).
    StateWord {
        /// The state bitfield.
        state: u32,
    }
}

fixed_payloads! {
    /// `P_OUT_OF_SYNC` (`struct p_block_desc`): a range the sender marked out of sync.
    BlockDesc {
        /// First sector.
        sector: u64,
        /// Bytes.
        blksize: u32,
        /// Zero.
        pad: u32,
    }
    /// `P_SYNC_UUID` (`struct p_rs_uuid`): the sync source's new bitmap UUID at resync start.
    SyncUuid {
        /// The UUID.
        uuid: u64,
    }
    /// `P_STATE_CHG_REQ` and `P_CONN_ST_CHG_REQ` (`struct p_req_state`): a state change as
    /// a mask and a value of packed state words (see `drbd_state::ns`), in the sender's view.
    ReqState {
        /// Bits of the state word to change.
        mask: u32,
        /// Their new values.
        val: u32,
    }
    /// `P_STATE_CHG_REPLY` and `P_CONN_ST_CHG_REPLY` (`struct p_req_state_reply`, meta
    /// socket): an `enum drbd_state_rv` (negative on failure) as a two's complement word.
    ReqStateReply {
        /// The result (`as i32`: `SS_SUCCESS` = 1, errors below 0).
        retcode: u32,
    }
}

/// `P_PING` and `P_PING_ACK` (meta socket) carry no payload: the header's length is 0, and
/// DRBD's ack receiver refuses any other length.
pub const PING_SIZE: usize = 0;

/// Length of the random challenge we send in `P_AUTH_CHALLENGE` (`CHALLENGE_LEN`).
///
/// CRAM-HMAC framing (`drbd_do_auth`, data socket, right after the feature handshake): each
/// side sends `P_AUTH_CHALLENGE` with `CHALLENGE_LEN` random bytes and reads the peer's, which
/// must be `CHALLENGE_LEN..=2 * CHALLENGE_LEN` bytes ([`AUTH_CHALLENGE_MAX`]) and differ from
/// its own in the first `CHALLENGE_LEN` bytes. It then sends `P_AUTH_RESPONSE` whose payload is
/// HMAC(`cram-hmac-alg`, key = shared secret without its NUL, message = the whole peer
/// challenge), exactly the digest size, and checks the peer's response (which must have exactly
/// that size) against the HMAC of its own challenge.
pub const CHALLENGE_LEN: usize = 64;

/// Longest `P_AUTH_CHALLENGE` payload DRBD accepts.
pub const AUTH_CHALLENGE_MAX: usize = 2 * CHALLENGE_LEN;

/// Replication protocol A (`DRBD_PROT_A`): a write completes when written locally and sent.
pub const PROT_A: u32 = 1;
/// Protocol B: ... and received by the peer (`P_RECV_ACK`).
pub const PROT_B: u32 = 2;
/// Protocol C: ... and written on the peer (`P_WRITE_ACK`).
pub const PROT_C: u32 = 3;

/// `conn_flags` of `P_PROTOCOL`: the sender discards its data in a split brain
/// (`CF_DISCARD_MY_DATA`).
pub const CF_DISCARD_MY_DATA: u32 = 1;
/// `conn_flags`: dry-run connect, disconnect after the sync handshake (`CF_DRY_RUN`, 92 on).
pub const CF_DRY_RUN: u32 = 2;

/// Size of the name buffers on the wire (integrity, verify and csums algorithm;
/// `SHARED_SECRET_MAX`), NUL included.
pub const SHARED_SECRET_MAX: usize = 64;

/// Largest packet (header and payload) of the bitmap exchange (`DRBD_SOCKET_BUFFER_SIZE`).
pub const SOCKET_BUFFER_SIZE: usize = 4096;

named_enum! {
    /// After-split-brain recovery policies (`enum drbd_after_sb_p`; also `rr-conflict`).
    AfterSb: u32,
    /// Decodes a policy number.
    fn from_u32,
    /// The drbdsetup/drbd.conf name (`asb0p_n`, `asb1p_n`, `asb2p_n` of drbd-utils).
    fn name;
    /// No automatic recovery.
    Disconnect = 0, "disconnect";
    /// 0 primaries: discard the node that was primary last.
    DiscardYoungerPri = 1, "discard-younger-primary";
    /// 0 primaries: discard the node that was primary first.
    DiscardOlderPri = 2, "discard-older-primary";
    /// 0 primaries: discard a node without changes.
    DiscardZeroChg = 3, "discard-zero-changes";
    /// 0 primaries: discard the node with fewer changes.
    DiscardLeastChg = 4, "discard-least-changes";
    /// 0 primaries: discard the local data.
    DiscardLocal = 5, "discard-local";
    /// 0 primaries: discard the peer's data.
    DiscardRemote = 6, "discard-remote";
    /// 1 primary: the 0-primaries decision if it discards the secondary.
    Consensus = 7, "consensus";
    /// 1 primary: discard the secondary.
    DiscardSecondary = 8, "discard-secondary";
    /// The 0-primaries decision; a primary to be discarded runs `pri-lost-after-sb`.
    CallHelper = 9, "call-pri-lost-after-sb";
    /// The 0-primaries decision even against a primary.
    Violently = 10, "violently-as0p";
}

impl AfterSb {
    /// Looks a policy up by its drbdsetup name.
    pub fn from_name(name: &str) -> Option<AfterSb> {
        AfterSb::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// The peer's policy in our view (`convert_after_sb`): its discard-local is our
    /// discard-remote and vice versa.
    pub const fn from_peer(self) -> AfterSb {
        match self {
            AfterSb::DiscardRemote => AfterSb::DiscardLocal,
            AfterSb::DiscardLocal => AfterSb::DiscardRemote,
            p => p,
        }
    }
}

/// The C string in a NUL-padded name buffer: the bytes before the first NUL (all of them if
/// there is none).
pub fn c_str(buf: &[u8]) -> &[u8] {
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    &buf[..n]
}

/// A NUL-padded name buffer for `name` (at most `SHARED_SECRET_MAX - 1` bytes, no NUL).
pub fn name_buf(name: &[u8]) -> Result<[u8; SHARED_SECRET_MAX], WireError> {
    if name.len() >= SHARED_SECRET_MAX || name.contains(&0) {
        return Err(WireError::BadValue);
    }
    let mut b = [0u8; SHARED_SECRET_MAX];
    b[..name.len()].copy_from_slice(name);
    Ok(b)
}

/// A received name field as DRBD reads it into a zeroed `SHARED_SECRET_MAX` buffer and then
/// forces a NUL at index `nul_at` (against evil peers); bytes after the first NUL cleared.
fn received_name(field: &[u8], nul_at: usize) -> [u8; SHARED_SECRET_MAX] {
    let mut b = [0u8; SHARED_SECRET_MAX];
    let n = field.len().min(nul_at).min(SHARED_SECRET_MAX - 1);
    let s = c_str(&field[..n]);
    b[..s.len()].copy_from_slice(s);
    b
}

/// The length of the name in `buf` to send; refuses a buffer without NUL.
fn sendable_name(buf: &[u8; SHARED_SECRET_MAX]) -> Result<usize, WireError> {
    let n = c_str(buf).len();
    if n >= SHARED_SECRET_MAX {
        return Err(WireError::BadValue);
    }
    Ok(n)
}

/// The big-endian word at `p[o..o + 4]` (panics if `p` is shorter, like indexing).
fn be32_at(p: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&p[o..][..4]);
    u32::from_be_bytes(a)
}

/// Writes big-endian words at the start of `out`.
fn put_be32s(mut out: &mut [u8], words: &[u32]) {
    for w in words {
        let (f, rest) = core::mem::take(&mut out).split_at_mut(4);
        f.copy_from_slice(&w.to_be_bytes());
        out = rest;
    }
}

/// Fixed part of `P_PROTOCOL` (`struct p_protocol` without `integrity_alg`).
pub const PROTOCOL_FIXED_SIZE: usize = 24;

/// `P_PROTOCOL` / `P_PROTOCOL_UPDATE` payload (`struct p_protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol {
    /// [`PROT_A`], [`PROT_B`] or [`PROT_C`].
    pub protocol: u32,
    /// after-sb-0pri ([`AfterSb`] number, in the sender's view).
    pub after_sb_0p: u32,
    /// after-sb-1pri.
    pub after_sb_1p: u32,
    /// after-sb-2pri.
    pub after_sb_2p: u32,
    /// [`CF_DISCARD_MY_DATA`], [`CF_DRY_RUN`].
    pub conn_flags: u32,
    /// allow-two-primaries (0 or 1).
    pub two_primaries: u32,
    /// data-integrity-alg, NUL-padded (empty: none).
    pub integrity_alg: [u8; SHARED_SECRET_MAX],
}

impl Protocol {
    /// The data-integrity-alg name without NUL padding.
    pub fn integrity_alg_str(&self) -> &[u8] {
        c_str(&self.integrity_alg)
    }

    /// Payload size for the agreed version: the integrity algorithm with its NUL follows from
    /// 87 on.
    pub fn size(&self, agreed: u32) -> usize {
        // At most SHARED_SECRET_MAX bytes of name and NUL.
        let alg = if agreed >= 87 {
            self.integrity_alg_str()
                .len()
                .min(SHARED_SECRET_MAX - 1)
                .saturating_add(1)
        } else {
            0
        };
        PROTOCOL_FIXED_SIZE.saturating_add(alg)
    }

    /// Encodes the payload into `out` like `__drbd_send_protocol`; returns its size.
    /// `BadValue` for a protocol outside A..C or an unterminated name, `Incompatible` for a
    /// dry run below 92 (DRBD refuses it too), `Short` if `out` is too small.
    pub fn encode(&self, agreed: u32, out: &mut [u8]) -> Result<usize, WireError> {
        if !(PROT_A..=PROT_C).contains(&self.protocol) {
            return Err(WireError::BadValue);
        }
        let alg = sendable_name(&self.integrity_alg)?;
        if self.conn_flags & CF_DRY_RUN != 0 && agreed < 92 {
            return Err(WireError::Incompatible);
        }
        let size = self.size(agreed);
        let out = out.get_mut(..size).ok_or(WireError::Short)?;
        put_be32s(
            out,
            &[
                self.protocol,
                self.after_sb_0p,
                self.after_sb_1p,
                self.after_sb_2p,
                self.conn_flags,
                self.two_primaries,
            ],
        );
        if agreed >= 87 {
            let name = &mut out[PROTOCOL_FIXED_SIZE..];
            name[..alg].copy_from_slice(&self.integrity_alg[..alg]);
            name[alg] = 0;
        }
        Ok(size)
    }

    /// Decodes a whole payload like `drbdd` + `receive_protocol`: at least the fixed part; from
    /// 87 on at most [`SHARED_SECRET_MAX`] name bytes after it (NUL forced into the last),
    /// before 87 nothing after it. A protocol outside A..C is `BadValue`; the policies are
    /// passed on unchecked (DRBD compares them with its own configuration).
    pub fn decode(agreed: u32, p: &[u8]) -> Result<Protocol, WireError> {
        if p.len() < PROTOCOL_FIXED_SIZE {
            return Err(WireError::BadLength);
        }
        let tail = &p[PROTOCOL_FIXED_SIZE..];
        if agreed < 87 && !tail.is_empty() {
            return Err(WireError::BadLength);
        }
        if tail.len() > SHARED_SECRET_MAX {
            return Err(WireError::TooLong);
        }
        let protocol = be32_at(p, 0);
        if !(PROT_A..=PROT_C).contains(&protocol) {
            return Err(WireError::BadValue);
        }
        Ok(Protocol {
            protocol,
            after_sb_0p: be32_at(p, 4),
            after_sb_1p: be32_at(p, 8),
            after_sb_2p: be32_at(p, 12),
            conn_flags: be32_at(p, 16),
            two_primaries: be32_at(p, 20),
            integrity_alg: received_name(tail, SHARED_SECRET_MAX - 1),
        })
    }
}

/// `P_SYNC_PARAM` / `P_SYNC_PARAM89` payload (`struct p_rs_param`, `_89`, `_95`). What a
/// version does not carry decodes as 0 (names: empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncParam {
    /// resync-rate, KiB/s.
    pub resync_rate: u32,
    /// verify-alg, NUL-padded (88 on).
    pub verify_alg: [u8; SHARED_SECRET_MAX],
    /// csums-alg, NUL-padded (89 on).
    pub csums_alg: [u8; SHARED_SECRET_MAX],
    /// c-plan-ahead, 0.1 s (95 on).
    pub c_plan_ahead: u32,
    /// c-delay-target, 0.1 s (95 on).
    pub c_delay_target: u32,
    /// c-fill-target, sectors (95 on).
    pub c_fill_target: u32,
    /// c-max-rate, KiB/s (95 on).
    pub c_max_rate: u32,
}

/// `sizeof(struct p_rs_param_89)`.
const RS_PARAM_89_SIZE: usize = 4 + 2 * SHARED_SECRET_MAX;
/// `sizeof(struct p_rs_param_95)`.
const RS_PARAM_95_SIZE: usize = RS_PARAM_89_SIZE + 16;

impl SyncParam {
    /// The packet for the agreed version: `P_SYNC_PARAM89` from 89 on, else `P_SYNC_PARAM`.
    pub const fn packet(agreed: u32) -> Packet {
        if agreed >= 89 {
            Packet::SyncParam89
        } else {
            Packet::SyncParam
        }
    }

    /// Largest payload the receiver accepts for the version (`exp_max_sz`).
    pub const fn max_size(agreed: u32) -> usize {
        match agreed {
            0..=87 => 4,
            88 => 4 + SHARED_SECRET_MAX,
            89..=94 => RS_PARAM_89_SIZE,
            _ => RS_PARAM_95_SIZE,
        }
    }

    /// Payload size we send (`drbd_send_sync_param`): at 88 the verify-alg with its NUL
    /// follows the rate, otherwise the size is fixed by the version.
    pub fn size(&self, agreed: u32) -> usize {
        if agreed == 88 {
            // The rate, at most SHARED_SECRET_MAX bytes of name and NUL.
            c_str(&self.verify_alg)
                .len()
                .min(SHARED_SECRET_MAX - 1)
                .saturating_add(5)
        } else {
            Self::max_size(agreed)
        }
    }

    /// Encodes the payload into `out`; returns its size. `BadValue` for an unterminated name,
    /// `Short` if `out` is too small.
    pub fn encode(&self, agreed: u32, out: &mut [u8]) -> Result<usize, WireError> {
        let verify = sendable_name(&self.verify_alg)?;
        let csums = sendable_name(&self.csums_alg)?;
        let size = self.size(agreed);
        let out = out.get_mut(..size).ok_or(WireError::Short)?;
        out.fill(0);
        put_be32s(out, &[self.resync_rate]);
        if agreed >= 88 {
            out[4..][..verify].copy_from_slice(&self.verify_alg[..verify]);
        }
        if agreed >= 89 {
            let c = 4 + SHARED_SECRET_MAX;
            out[c..][..csums].copy_from_slice(&self.csums_alg[..csums]);
        }
        if agreed >= 95 {
            put_be32s(
                &mut out[RS_PARAM_89_SIZE..],
                &[
                    self.c_plan_ahead,
                    self.c_delay_target,
                    self.c_fill_target,
                    self.c_max_rate,
                ],
            );
        }
        Ok(size)
    }

    /// Decodes a payload like `receive_SyncParam`: longer than [`Self::max_size`] is
    /// `TooLong`; at 88 the name part must be 1..=64 bytes, from 89 on the size is exact;
    /// names get a forced final NUL.
    pub fn decode(agreed: u32, p: &[u8]) -> Result<SyncParam, WireError> {
        if p.len() > Self::max_size(agreed) {
            return Err(WireError::TooLong);
        }
        let ok = match agreed {
            0..=87 => p.len() == 4,
            88 => p.len() > 4,
            _ => p.len() == Self::max_size(agreed),
        };
        if !ok {
            return Err(WireError::BadLength);
        }
        let mut s = SyncParam {
            resync_rate: be32_at(p, 0),
            verify_alg: [0; SHARED_SECRET_MAX],
            csums_alg: [0; SHARED_SECRET_MAX],
            c_plan_ahead: 0,
            c_delay_target: 0,
            c_fill_target: 0,
            c_max_rate: 0,
        };
        if agreed == 88 {
            // The NUL is forced over the last byte received.
            // 5 or more bytes (checked above).
            s.verify_alg = received_name(&p[4..], p.len().saturating_sub(5));
        }
        if agreed >= 89 {
            let last = SHARED_SECRET_MAX - 1;
            s.verify_alg = received_name(&p[4..4 + SHARED_SECRET_MAX], last);
            s.csums_alg = received_name(&p[4 + SHARED_SECRET_MAX..RS_PARAM_89_SIZE], last);
        }
        if agreed >= 95 {
            let o = RS_PARAM_89_SIZE;
            s.c_plan_ahead = be32_at(p, o);
            s.c_delay_target = be32_at(p, o + 4);
            s.c_fill_target = be32_at(p, o + 8);
            s.c_max_rate = be32_at(p, o + 12);
        }
        Ok(s)
    }
}

/// Bitmap words in one plain `P_BITMAP` when `words_left` words remain to be sent: as many as
/// fit into [`SOCKET_BUFFER_SIZE`] after the header (`send_bitmap_rle_or_plain`,
/// `receive_bitmap_plain`; DRBD's words are `unsigned long`, 64 bits on the hosts we meet).
pub fn bitmap_plain_words(agreed: u32, words_left: u64) -> usize {
    let fit = SOCKET_BUFFER_SIZE.saturating_sub(header_size(agreed)) / 8;
    // `fit` is at most 511: the minimum fits usize.
    words_left.min(fit as u64) as usize
}

/// Checks a peer's `P_DATA` before anything is written: `length` is the packet's payload
/// (the [`DataHeader`] plus the data), which must be a whole number of 512-byte sectors, at
/// most `max_bio` bytes of data, and lie within `capacity` sectors from `sector`. Returns the
/// data size in bytes. A malicious peer gets `BadLength` or `BadValue`, never an overflow.
pub fn check_data(length: u32, sector: u64, capacity: u64, max_bio: u32) -> Result<u32, WireError> {
    let data = length
        .checked_sub(DataHeader::SIZE as u32)
        .ok_or(WireError::BadLength)?;
    if data > max_bio || data % 512 != 0 {
        return Err(WireError::BadLength);
    }
    match sector.checked_add(u64::from(data >> 9)) {
        Some(end) if end <= capacity => Ok(data),
        _ => Err(WireError::BadValue),
    }
}

/// Encodes bitmap words as a plain `P_BITMAP` payload: each word little-endian
/// (`drbd_bm_get_lel`), so the payload is the bitmap's byte stream. `TooLong` for more words
/// than one packet holds, `Short` if `out` is too small; returns the payload size.
pub fn encode_bitmap_plain(agreed: u32, words: &[u64], out: &mut [u8]) -> Result<usize, WireError> {
    if words.len() > bitmap_plain_words(agreed, u64::MAX) {
        return Err(WireError::TooLong);
    }
    // At most 511 words (checked above).
    let len = words.len().saturating_mul(8);
    let mut out = out.get_mut(..len).ok_or(WireError::Short)?;
    // No zipped `chunks_exact` iterators: they compile to code objtool flags in the kernel
    // module ("falls through to next function").
    for w in words {
        let (f, rest) = core::mem::take(&mut out).split_at_mut(8);
        f.copy_from_slice(&w.to_le_bytes());
        out = rest;
    }
    Ok(len)
}

/// Decodes a plain `P_BITMAP` payload into `out` when `words_left` words remain: the payload
/// must be exactly [`bitmap_plain_words`] words (`receive_bitmap_plain`), else `BadLength`;
/// `TooLong` if `out` is shorter. Returns the number of words; the receiver ORs them into its
/// bitmap (`drbd_bm_merge_lel`).
pub fn decode_bitmap_plain(
    agreed: u32,
    words_left: u64,
    p: &[u8],
    out: &mut [u64],
) -> Result<usize, WireError> {
    let n = bitmap_plain_words(agreed, words_left);
    // `n` is at most 511.
    if p.len() != n.saturating_mul(8) {
        return Err(WireError::BadLength);
    }
    let out = out.get_mut(..n).ok_or(WireError::TooLong)?;
    let mut p = p;
    for w in out.iter_mut() {
        let (f, rest) = p.split_at(8);
        let mut a = [0u8; 8];
        a.copy_from_slice(f);
        *w = u64::from_le_bytes(a);
        p = rest;
    }
    Ok(n)
}

/// Largest RLE+VLI code in one `P_COMPRESSED_BITMAP` (the `out` size for [`rle_encode`]):
/// the socket buffer less the header and the encoding byte.
pub fn compressed_bitmap_code_max(agreed: u32) -> usize {
    SOCKET_BUFFER_SIZE
        .saturating_sub(header_size(agreed))
        .saturating_sub(1)
}

/// Applies a whole `P_COMPRESSED_BITMAP` payload (encoding byte, then the code) like
/// `receive_bitmap`: more than fits the socket buffer is `TooLong`, nothing after the
/// encoding byte is `BadLength`; then [`rle_decode`].
pub fn decode_compressed_bitmap(
    agreed: u32,
    p: &[u8],
    bm: &mut [u8],
    bm_bits: u64,
    offset: &mut u64,
) -> Result<bool, WireError> {
    let (enc, code) = compressed_bitmap_parts(agreed, p)?;
    rle_decode(enc, code, bm, bm_bits, offset)
}

/// The encoding byte and the code of a `P_COMPRESSED_BITMAP` payload: more than fits the
/// socket buffer is `TooLong`, nothing after the encoding byte is `BadLength`.
pub fn compressed_bitmap_parts(agreed: u32, p: &[u8]) -> Result<(u8, &[u8]), WireError> {
    if p.len() > SOCKET_BUFFER_SIZE.saturating_sub(header_size(agreed)) {
        return Err(WireError::TooLong);
    }
    match p.split_first() {
        Some((&enc, code)) if !code.is_empty() => Ok((enc, code)),
        _ => Err(WireError::BadLength),
    }
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn packet_numbers_round_trip_and_match_drbd() {
        for &p in Packet::ALL {
            assert_eq!(Packet::from_u16(p as u16), Some(p));
        }
        assert_eq!(Packet::WriteAck as u16, 0x16);
        assert_eq!(Packet::CompressedBitmap as u16, 0x24);
        assert_eq!(Packet::ConnectionFeatures as u16, 0xfffe);
        assert_eq!(Packet::from_u16(0x25), None);
        assert_eq!(Packet::from_u16(0x100), None);
        assert_eq!(Packet::Bitmap.name(), "ReportBitMap");
    }

    #[test]
    fn headers_by_version() {
        let mut h = [0u8; 16];
        // Before the handshake: header80.
        assert_eq!(
            encode_header(PRO_VERSION_INITIAL, 0xfffe, 0, 80, &mut h),
            Ok(8)
        );
        assert_eq!(&h[..8], &[0x83, 0x74, 0x02, 0x67, 0xff, 0xfe, 0x00, 0x50]);
        // 95..99: header95 only for big payloads.
        assert_eq!(encode_header(96, 0, 0, 1 << 20, &mut h), Ok(8));
        assert_eq!(&h[..8], &[0x83, 0x5a, 0, 0, 0x00, 0x10, 0x00, 0x00]);
        assert_eq!(
            decode_header(96, &h),
            Ok(Header {
                command: 0,
                length: 1 << 20,
                volume: 0
            })
        );
        assert_eq!(
            encode_header(90, 0, 0, 1 << 20, &mut h),
            Err(WireError::TooLong)
        );
        // 100 on: header100 with volume and a zero pad.
        assert_eq!(encode_header(101, 0x16, 3, 24, &mut h), Ok(16));
        assert_eq!(
            h,
            [0x86, 0x20, 0xec, 0x20, 0, 3, 0, 0x16, 0, 0, 0, 24, 0, 0, 0, 0]
        );
        h[15] = 1;
        assert_eq!(decode_header(101, &h), Err(WireError::BadPadding));
        // A header of the wrong size for the version is refused, as decode_header does.
        let mut h80 = [0u8; 16];
        encode_header(80, 1, 0, 8, &mut h80).unwrap();
        assert!(matches!(
            decode_header(101, &h80),
            Err(WireError::BadMagic(_))
        ));
        assert_eq!(decode_header(101, &h80[..8]), Err(WireError::Short));
    }

    #[test]
    fn random_headers_never_panic_and_round_trip() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut h = [0u8; 16];
        for _ in 0..1_000_000 {
            let r = next();
            let agreed = [80, 86, 94, 95, 99, 100, 101][(r % 7) as usize];
            let cmd = (r >> 8) as u16;
            let len = (r >> 24) as u32 >> (r % 17);
            let vol = if agreed >= 100 { (r >> 56) as u16 } else { 0 };
            if let Ok(n) = encode_header(agreed, cmd, vol, len, &mut h) {
                assert_eq!(n, header_size(agreed));
                assert_eq!(
                    decode_header(agreed, &h),
                    Ok(Header {
                        command: cmd,
                        length: len,
                        volume: vol
                    })
                );
            }
            // Arbitrary bytes: an answer, never a panic.
            let garbage = next().to_le_bytes();
            let mut g = [0u8; 16];
            g[..8].copy_from_slice(&garbage);
            g[8..].copy_from_slice(&next().to_le_bytes());
            let _ = decode_header(agreed, &g[..(r % 17) as usize]);
        }
    }

    #[test]
    fn feature_handshake() {
        let b = Features::OURS.encode();
        assert_eq!(b.len(), 72);
        assert_eq!(Features::decode(&b), Ok(Features::OURS));
        assert_eq!(Features::decode(&b[..71]), Err(WireError::BadLength));
        // The in-tree C driver offers 86..101: we agree on 101.
        assert_eq!(
            Features::negotiate(&Features::OURS, &Features::OURS),
            Ok((101, 0))
        );
        let old = Features {
            protocol_min: 88,
            feature_flags: FF_TRIM,
            protocol_max: 0,
        };
        assert_eq!(Features::negotiate(&Features::OURS, &old), Ok((88, 0)));
        // Peers entirely above or below our range, and one whose minimum is above its maximum
        // (found by the drbd_wire fuzz target: we would have agreed on 90, below its minimum).
        for (min, max) in [(110, 121), (80, 85), (100, 90)] {
            let peer = Features {
                protocol_min: min,
                feature_flags: 0,
                protocol_max: max,
            };
            assert_eq!(
                Features::negotiate(&Features::OURS, &peer),
                Err(WireError::Incompatible)
            );
        }
    }
    #[test]
    fn vli_table() {
        // Level boundaries of drbd_vli.h's table.
        assert_eq!(vli_encode(1), Some((0b00, 2)));
        assert_eq!(vli_encode(2), Some((0b10, 2)));
        assert_eq!(vli_encode(3), Some((0b001, 3)));
        assert_eq!(vli_encode(0), None);
        let max = 2 + 2 + 4 + 8 + 32 + 256 + 8192 + (1 << 21) + (1u64 << 34) + (1u64 << 56);
        assert_eq!(max, 0x0100_0004_0020_2130); // drbd_vli.h: 0x100000400202130
        assert!(vli_encode(max).is_some());
        assert_eq!(vli_encode(max + 1), None);
        let mut s = 1u64;
        for _ in 0..200_000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (s >> (s % 64)).max(1).min(max);
            let (code, bits) = vli_encode(v).unwrap();
            let noise = if bits < 64 { s << bits } else { 0 };
            assert_eq!(vli_decode(code | noise), (v, bits), "v={v}");
        }
        // Any 64-bit input decodes to something.
        for k in 0..64 {
            let _ = vli_decode(u64::MAX >> k);
        }
    }

    /// Sends a whole bitmap the way DRBD does (RLE packets where they compress, plain bytes
    /// elsewhere) and checks the receiver gets the same bitmap.
    fn transfer(bm: &[u8], bm_bits: u64, chunk: usize) -> std::vec::Vec<u8> {
        let mut got = std::vec![0u8; bm.len()];
        let mut tx = 0u64;
        let mut rx = 0u64;
        let mut out = std::vec![0u8; chunk];
        while tx < bm_bits {
            match rle_encode(bm, bm_bits, &mut tx, &mut out) {
                Some((enc, len)) => {
                    let more = rle_decode(enc, &out[..len], &mut got, bm_bits, &mut rx).unwrap();
                    assert_eq!(rx, tx);
                    assert_eq!(more, rx < bm_bits);
                }
                None => {
                    // Plain: one byte (8 bits) at a time, from a byte boundary as in DRBD.
                    let byte = (tx / 8) as usize;
                    got[byte] |= bm[byte] & !((1u8 << (tx % 8)) - 1);
                    tx = ((byte as u64) + 1) * 8;
                    rx = tx;
                }
            }
        }
        got
    }

    extern crate std;

    #[test]
    fn rle_round_trip() {
        let mut s = 7u64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for round in 0..120 {
            let bytes = 1 + (rnd() % 4096) as usize;
            let bm_bits = bytes as u64 * 8 - rnd() % 8;
            let mut bm = std::vec![0u8; bytes];
            // Runs of random polarity and length: sparse, dense and noisy maps.
            let mut i = 0u64;
            let mut set = rnd() % 2 == 0;
            while i < bm_bits {
                let run = 1 + rnd() % [3, 40, 5000][round % 3];
                for k in i..(i + run).min(bm_bits) {
                    if set {
                        bm[(k / 8) as usize] |= 1 << (k % 8);
                    }
                }
                i += run;
                set = !set;
            }
            let chunk = [1usize, 7, 64, 4096][round % 4];
            assert_eq!(transfer(&bm, bm_bits, chunk), bm, "round {round}");
        }
        // All clear and all set compress to a few bytes.
        let zero = std::vec![0u8; 1 << 16];
        let mut off = 0;
        let mut out = [0u8; 16];
        let (enc, len) = rle_encode(&zero, 1 << 19, &mut off, &mut out).unwrap();
        assert_eq!((enc & 0x80, off), (0, 1 << 19));
        assert!(len <= 4);
    }

    /// A bit-by-bit reference for setting a range (what the decoder did before).
    fn set_range_bitwise(bm: &mut [u8], first: u64, end: u64) -> u64 {
        let mut n = 0;
        for i in first..end.min(bm.len() as u64 * 8) {
            let m = 1u8 << (i % 8);
            if bm[(i / 8) as usize] & m == 0 {
                n += 1;
                bm[(i / 8) as usize] |= m;
            }
        }
        n
    }

    #[test]
    fn set_range_is_word_wise_and_exact() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut a = [0u8; 64];
            for b in a.iter_mut() {
                *b = next() as u8 & next() as u8;
            }
            let mut b = a;
            let first = next() % 530;
            let end = first + next() % 530;
            let n = crate::drbd_md::bm_set_range(&mut a, first, end);
            assert_eq!(n, set_range_bitwise(&mut b, first, end), "{first}..{end}");
            assert_eq!(a, b, "{first}..{end}");
        }
    }

    /// Encodes a whole bitmap as one RLE payload (it must fit `chunk`).
    fn one_packet(bm: &[u8], bm_bits: u64, chunk: usize) -> (u8, std::vec::Vec<u8>) {
        let mut out = std::vec![0u8; chunk];
        let mut off = 0;
        let (enc, len) = rle_encode(bm, bm_bits, &mut off, &mut out).unwrap();
        assert_eq!(off, bm_bits);
        (enc, out[..len].to_vec())
    }

    #[test]
    fn rle_apply_in_budgeted_slices() {
        // A 1 TiB device's bitmap (2^28 bits, 32 MiB), wholly set by a single short packet: the
        // decoder sets it in slices of the budget (a lock may be dropped between them), word-wise.
        let bits = 1u64 << 28;
        let (enc, code) = one_packet(&std::vec![0xffu8; (bits / 8) as usize], bits, 64);
        assert!(code.len() < 16);
        let mut bm = std::vec![0u8; (bits / 8) as usize];
        let mut d = RleDecoder::new(enc, &code, bits, 0).unwrap();
        let budget = 1u64 << 20;
        let (mut slices, mut set, mut at) = (0, 0, 0);
        loop {
            let p = d.apply(&mut bm, budget).unwrap();
            assert_eq!(p.first, at);
            assert!(p.end - p.first <= budget, "{p:?}");
            at = p.end;
            set += p.newly_set;
            slices += 1;
            if p.done {
                break;
            }
        }
        // 256 budgets of bits, plus one because decoding the run cost RLE_RUN_COST of the first.
        assert_eq!((slices, set, at), (257, bits, bits));
        assert!(bm.iter().all(|&b| b == 0xff));
        // Noise: sliced and unsliced application agree, and each slice stays within its budget
        // plus one run's cost.
        let bits = 40_000u64;
        let mut src = std::vec![0u8; 5000];
        let mut x = 7u32;
        for (i, b) in src.iter_mut().enumerate() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = if i % 700 < 300 {
                0xff
            } else {
                (x >> 16) as u8 & (x >> 8) as u8
            };
        }
        let mut tx = 0;
        let mut whole = std::vec![0u8; 5000];
        let mut sliced = std::vec![0u8; 5000];
        let mut out = std::vec![0u8; 600];
        let (mut rx, mut total) = (0u64, 0u64);
        while let Some((enc, len)) = rle_encode(&src, bits, &mut tx, &mut out) {
            let mut off = rx;
            rle_decode(enc, &out[..len], &mut whole, bits, &mut off).unwrap();
            let mut d = RleDecoder::new(enc, &out[..len], bits, rx).unwrap();
            for budget in [1u64, 64, 100, 1000].iter().cycle() {
                let p = d.apply(&mut sliced, *budget).unwrap();
                total += p.newly_set;
                if p.done {
                    break;
                }
            }
            assert_eq!(d.offset(), off);
            rx = off;
            if rx >= bits {
                break;
            }
        }
        assert_eq!(whole, sliced);
        assert_eq!(total, crate::drbd_md::bm_count(&sliced));
    }

    #[test]
    fn plain_merge_counts_new_bits_and_stops_at_the_end() {
        let mut bm = [0u8; 24];
        bm[8] = 0x0f;
        let p = [0xffu8; 16];
        // Words 1 and 2; 150 bits: bits 150.. of the last word stay clear.
        assert_eq!(merge_bitmap_plain(&mut bm, 1, &p, 150), Ok(150 - 64 - 4));
        assert_eq!(bm[8], 0xff);
        assert_eq!(bm[18], 0x3f);
        assert_eq!(&bm[19..], &[0; 5]);
        assert_eq!(merge_bitmap_plain(&mut bm, 1, &p, 150), Ok(0));
        assert_eq!(
            merge_bitmap_plain(&mut bm, 2, &p, 150),
            Err(WireError::BadLength)
        );
        assert_eq!(
            merge_bitmap_plain(&mut bm, u64::MAX, &p, 150),
            Err(WireError::BadLength)
        );
    }

    #[test]
    fn rle_decode_refuses_garbage() {
        let mut bm = [0u8; 16];
        let mut off = 0;
        assert_eq!(
            rle_decode(0x03, &[0xff], &mut bm, 128, &mut off),
            Err(WireError::BadEncoding)
        );
        // A set run past the end of the bitmap.
        let (code, _) = vli_encode(200).unwrap();
        let bytes = code.to_le_bytes();
        assert_eq!(
            rle_decode(0x80 | RLE_VLI_BITS, &bytes, &mut bm, 128, &mut off),
            Err(WireError::TooLong)
        );
        // Random payloads: an answer, never a panic, never a write past the bitmap.
        let mut s = 99u64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let payload = s.to_le_bytes();
            let mut off = s % 64;
            let _ = rle_decode(
                (s >> 56) as u8,
                &payload[..(s % 9) as usize],
                &mut bm,
                128,
                &mut off,
            );
        }
    }
    #[test]
    fn fixed_payloads_match_the_c_structs() {
        assert_eq!(DataHeader::SIZE, 24);
        assert_eq!(BlockAck::SIZE, 24);
        assert_eq!(BlockReq::SIZE, 24);
        assert_eq!(Barrier::SIZE, 8);
        assert_eq!(BarrierAck::SIZE, 8);
        assert_eq!(Uuids::SIZE, 48);
        assert_eq!(Sizes::SIZE, 32);
        assert_eq!(StateWord::SIZE, 4);
        let d = DataHeader {
            sector: 0x0102_0304_0506_0708,
            block_id: 0xdead_beef,
            seq_num: 7,
            dp_flags: DP_SEND_WRITE_ACK | DP_FUA,
        };
        let b = d.encode();
        assert_eq!(&b[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[20..], &(DP_SEND_WRITE_ACK | DP_FUA).to_be_bytes());
        assert_eq!(DataHeader::decode(&b), Ok(d));
        assert_eq!(DataHeader::decode(&b[..23]), Err(WireError::BadLength));
        let s = Sizes {
            d_size: 1 << 30,
            u_size: 0,
            c_size: 196528,
            max_bio_size: 1 << 20,
            queue_order_type: 0,
            dds_flags: 1,
        };
        assert_eq!(Sizes::decode(&s.encode()), Ok(s));
        let mut x = 5u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut buf = [0u8; 48];
            buf[..8].copy_from_slice(&x.to_le_bytes());
            let n = (x % 49) as usize;
            if let Ok(u) = Uuids::decode(&buf[..n]) {
                assert_eq!(u.encode(), buf);
            }
            if let Ok(a) = BlockAck::decode(&buf[..n]) {
                assert_eq!(&a.encode()[..], &buf[..24]);
            }
        }
    }
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod handshake_payload_tests {
    use super::*;

    fn proto(alg: &[u8]) -> Protocol {
        Protocol {
            protocol: PROT_C,
            after_sb_0p: AfterSb::DiscardZeroChg as u32,
            after_sb_1p: AfterSb::Consensus as u32,
            after_sb_2p: AfterSb::Disconnect as u32,
            conn_flags: CF_DISCARD_MY_DATA,
            two_primaries: 0,
            integrity_alg: name_buf(alg).unwrap(),
        }
    }

    #[test]
    fn after_sb_numbers_and_names_match_drbd() {
        // enum drbd_after_sb_p and drbd-utils' asb*_n tables.
        assert_eq!(AfterSb::ALL.len(), 11);
        assert_eq!(AfterSb::Disconnect as u32, 0);
        assert_eq!(AfterSb::DiscardLocal as u32, 5);
        assert_eq!(AfterSb::CallHelper as u32, 9);
        assert_eq!(AfterSb::Violently as u32, 10);
        assert_eq!(AfterSb::from_u32(11), None);
        assert_eq!(
            AfterSb::from_name("discard-younger-primary"),
            Some(AfterSb::DiscardYoungerPri)
        );
        assert_eq!(
            AfterSb::from_name("call-pri-lost-after-sb"),
            Some(AfterSb::CallHelper)
        );
        assert_eq!(AfterSb::from_name("call-pri-lost"), None);
        for &p in AfterSb::ALL {
            assert_eq!(AfterSb::from_u32(p as u32), Some(p));
            assert_eq!(AfterSb::from_name(p.name()), Some(p));
            assert_eq!(p.from_peer().from_peer(), p);
        }
        assert_eq!(AfterSb::DiscardRemote.from_peer(), AfterSb::DiscardLocal);
        assert_eq!(AfterSb::Consensus.from_peer(), AfterSb::Consensus);
    }

    #[test]
    fn protocol_layout_and_validation() {
        let p = proto(b"crc32c");
        let mut b = [0u8; 128];
        // 87 on: 6 words, then "crc32c\0" (strlen + 1).
        assert_eq!(p.encode(101, &mut b), Ok(24 + 7));
        assert_eq!(&b[..8], &[0, 0, 0, 3, 0, 0, 0, 3]);
        assert_eq!(&b[8..12], &[0, 0, 0, 7]);
        assert_eq!(&b[16..20], &[0, 0, 0, 1]);
        assert_eq!(&b[24..31], b"crc32c\0");
        assert_eq!(Protocol::decode(101, &b[..31]), Ok(p));
        assert_eq!(p.integrity_alg_str(), b"crc32c");
        // 86: no name on the wire, and nothing may follow the fixed part.
        assert_eq!(p.encode(86, &mut b), Ok(24));
        assert_eq!(Protocol::decode(86, &b[..25]), Err(WireError::BadLength));
        let got = Protocol::decode(86, &b[..24]).unwrap();
        assert_eq!(got.integrity_alg_str(), b"");
        // An empty name is just the NUL.
        assert_eq!(proto(b"").encode(100, &mut b), Ok(25));
        assert_eq!(
            Protocol::decode(100, &b[..24]).unwrap().integrity_alg_str(),
            b""
        );
        // Short fixed part, oversized name, unknown protocol.
        assert_eq!(Protocol::decode(101, &b[..23]), Err(WireError::BadLength));
        let big = [b'a'; 24 + 65];
        assert_eq!(Protocol::decode(101, &big), Err(WireError::TooLong));
        let mut bad = [0u8; 24];
        bad[3] = 4;
        assert_eq!(Protocol::decode(101, &bad), Err(WireError::BadValue));
        bad[3] = 0;
        assert_eq!(Protocol::decode(101, &bad), Err(WireError::BadValue));
        // 64 name bytes without NUL: the last is forced to NUL (63 remain).
        let mut evil = [b'x'; 24 + 64];
        evil[..24].fill(0);
        evil[3] = 1;
        let got = Protocol::decode(101, &evil).unwrap();
        assert_eq!(got.integrity_alg_str().len(), 63);
        // Dry run needs 92; a full buffer name cannot be sent.
        let mut dry = proto(b"");
        dry.conn_flags = CF_DRY_RUN;
        assert_eq!(dry.encode(91, &mut b), Err(WireError::Incompatible));
        assert_eq!(dry.encode(92, &mut b), Ok(25));
        dry.integrity_alg = [b'y'; SHARED_SECRET_MAX];
        assert_eq!(dry.encode(101, &mut b), Err(WireError::BadValue));
        assert_eq!(
            proto(b"md5").encode(101, &mut b[..27]),
            Err(WireError::Short)
        );
        assert_eq!(name_buf(&[b'z'; 64]), Err(WireError::BadValue));
        assert_eq!(name_buf(b"a\0b"), Err(WireError::BadValue));
    }

    fn sync_param() -> SyncParam {
        SyncParam {
            resync_rate: 250,
            verify_alg: name_buf(b"sha1").unwrap(),
            csums_alg: name_buf(b"md5").unwrap(),
            c_plan_ahead: 20,
            c_delay_target: 10,
            c_fill_target: 100,
            c_max_rate: 102400,
        }
    }

    #[test]
    fn sync_param_layout_by_version() {
        let s = sync_param();
        let mut b = [0u8; 200];
        assert_eq!(SyncParam::packet(88), Packet::SyncParam);
        assert_eq!(SyncParam::packet(89), Packet::SyncParam89);
        // p_rs_param: the rate alone.
        assert_eq!(s.encode(87, &mut b), Ok(4));
        assert_eq!(&b[..4], &250u32.to_be_bytes());
        let got = SyncParam::decode(87, &b[..4]).unwrap();
        assert_eq!((got.resync_rate, got.c_max_rate), (250, 0));
        assert_eq!(c_str(&got.verify_alg), b"");
        // 88: rate + "sha1\0".
        assert_eq!(s.encode(88, &mut b), Ok(9));
        assert_eq!(&b[4..9], b"sha1\0");
        let got = SyncParam::decode(88, &b[..9]).unwrap();
        assert_eq!(c_str(&got.verify_alg), b"sha1");
        assert_eq!(c_str(&got.csums_alg), b"");
        // 88 forces a NUL over the last byte received: "sha1" without NUL reads "sha".
        assert_eq!(
            c_str(&SyncParam::decode(88, &b[..8]).unwrap().verify_alg),
            b"sha"
        );
        assert_eq!(SyncParam::decode(88, &b[..4]), Err(WireError::BadLength));
        assert_eq!(SyncParam::decode(88, &[0; 69]), Err(WireError::TooLong));
        // p_rs_param_89: 4 + 64 + 64.
        assert_eq!(s.encode(94, &mut b), Ok(132));
        assert_eq!(&b[68..72], b"md5\0");
        let got = SyncParam::decode(94, &b[..132]).unwrap();
        assert_eq!(c_str(&got.csums_alg), b"md5");
        assert_eq!(got.c_plan_ahead, 0);
        // p_rs_param_95: + 4 words.
        assert_eq!(s.encode(101, &mut b), Ok(148));
        assert_eq!(&b[132..136], &20u32.to_be_bytes());
        assert_eq!(&b[144..148], &102400u32.to_be_bytes());
        assert_eq!(SyncParam::decode(101, &b[..148]), Ok(s));
        assert_eq!(SyncParam::decode(101, &b[..147]), Err(WireError::BadLength));
        assert_eq!(SyncParam::decode(101, &b[..149]), Err(WireError::TooLong));
        assert_eq!(SyncParam::decode(90, &b[..148]), Err(WireError::TooLong));
    }

    #[test]
    fn small_fixed_payloads() {
        assert_eq!(SyncUuid::SIZE, 8);
        assert_eq!(BlockDesc::SIZE, 16);
        assert_eq!(ReqState::SIZE, 8);
        assert_eq!(ReqStateReply::SIZE, 4);
        let r = ReqStateReply {
            retcode: (-10i32) as u32,
        };
        assert_eq!(r.encode(), [0xff, 0xff, 0xff, 0xf6]);
        assert_eq!(ReqStateReply::decode(&r.encode()), Ok(r));
        let q = ReqState { mask: 3, val: 1 };
        assert_eq!(q.encode(), [0, 0, 0, 3, 0, 0, 0, 1]);
        assert_eq!(CHALLENGE_LEN, 64);
        assert_eq!(PING_SIZE, 0);
    }

    #[test]
    fn plain_bitmap_is_little_endian_and_bounded() {
        // (4096 - 16) / 8 words with header100, (4096 - 8) / 8 with the 8-byte headers.
        assert_eq!(bitmap_plain_words(101, u64::MAX), 510);
        assert_eq!(bitmap_plain_words(94, u64::MAX), 511);
        assert_eq!(bitmap_plain_words(101, 3), 3);
        let words = [0x0102_0304_0506_0708u64, 1, 1 << 63];
        let mut b = [0u8; 4096];
        assert_eq!(encode_bitmap_plain(101, &words, &mut b), Ok(24));
        assert_eq!(&b[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b[23], 0x80);
        let mut out = [0u64; 511];
        assert_eq!(decode_bitmap_plain(101, 3, &b[..24], &mut out), Ok(3));
        assert_eq!(&out[..3], &words);
        // The receiver insists on exactly min(510, left) words.
        assert_eq!(
            decode_bitmap_plain(101, 4, &b[..24], &mut out),
            Err(WireError::BadLength)
        );
        assert_eq!(
            decode_bitmap_plain(101, 1000, &b[..4080], &mut out),
            Ok(510)
        );
        assert_eq!(
            decode_bitmap_plain(101, 3, &b[..24], &mut out[..2]),
            Err(WireError::TooLong)
        );
        assert_eq!(decode_bitmap_plain(101, 0, &[], &mut out), Ok(0));
        assert_eq!(
            encode_bitmap_plain(101, &[0; 511], &mut b),
            Err(WireError::TooLong)
        );
        assert_eq!(encode_bitmap_plain(94, &[0; 511], &mut b), Ok(4088));
        // Compressed: the payload may fill the socket buffer after the header.
        assert_eq!(compressed_bitmap_code_max(101), 4079);
        let mut bm = [0u8; 8];
        let mut off = 0;
        assert_eq!(
            decode_compressed_bitmap(101, &[RLE_VLI_BITS], &mut bm, 64, &mut off),
            Err(WireError::BadLength)
        );
        assert_eq!(
            decode_compressed_bitmap(101, &[0; 4081], &mut bm, 64, &mut off),
            Err(WireError::TooLong)
        );
    }

    #[test]
    fn data_requests_are_checked() {
        let h = DataHeader::SIZE as u32;
        assert_eq!(check_data(h + 4096, 0, 8, 1 << 20), Ok(4096));
        assert_eq!(check_data(h + 4096, 120, 128, 1 << 20), Ok(4096));
        assert_eq!(check_data(h, 128, 128, 1 << 20), Ok(0));
        assert_eq!(
            check_data(h + 4096, 121, 128, 1 << 20),
            Err(WireError::BadValue)
        );
        assert_eq!(
            check_data(h + 512, u64::MAX, u64::MAX, 1 << 20),
            Err(WireError::BadValue)
        );
        assert_eq!(
            check_data(h + 100, 0, 128, 1 << 20),
            Err(WireError::BadLength)
        );
        assert_eq!(
            check_data(h - 1, 0, 128, 1 << 20),
            Err(WireError::BadLength)
        );
        assert_eq!(
            check_data(h + (2 << 20), 0, u64::MAX, 1 << 20),
            Err(WireError::BadLength)
        );
        assert_eq!(
            check_data(u32::MAX, 0, u64::MAX, u32::MAX),
            Err(WireError::BadLength)
        );
    }
}
