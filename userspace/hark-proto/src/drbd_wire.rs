// SPDX-License-Identifier: GPL-2.0

//! DRBD 8.4's wire protocol (versions 86..=101): packet numbers, the three packet headers and
//! the feature handshake. Facts from `drivers/block/drbd/drbd_protocol.h` and
//! `drbd_receiver.c` (`decode_header`, `drbd_do_features`) of the 7.3 source.
//!
//! Everything on the wire is big-endian. Which header a packet carries depends on the agreed
//! protocol version: from 100 on, `p_header100` (16 bytes, with a volume number); before, 8
//! bytes: `p_header80` (16-bit length) or, from 95 on and for payloads over 32 KiB,
//! `p_header95` (16-bit magic, 32-bit length). Before the handshake the agreed version is 80.
//!
//! State: the codec layer for replication (issue 4); no packet is sent by the module yet.

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

macro_rules! packets {
    ($($(#[$m:meta])* $name:ident = $num:expr, $text:expr;)*) => {
        /// Packet types (`enum drbd_packet`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        pub enum Packet {
            $($(#[$m])* $name = $num,)*
        }

        impl Packet {
            /// Every packet type.
            pub const ALL: &'static [Packet] = &[$(Packet::$name,)*];

            /// Decodes a packet number.
            pub const fn from_u16(v: u16) -> Option<Packet> {
                match v {
                    $($num => Some(Packet::$name),)*
                    _ => None,
                }
            }

            /// DRBD's name of the packet (`cmdname()`; ours where DRBD has none).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Packet::$name => $text,)*
                }
            }
        }
    };
}

packets! {
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
    let be16 = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
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
    /// What we offer: 86..=101 and no optional features yet.
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
        let be32 = |o: usize| u32::from_be_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]);
        Ok(Features {
            protocol_min: be32(0),
            feature_flags: be32(4),
            protocol_max: be32(8),
        })
    }

    /// The agreed version and features between us (`ours`) and the peer, as
    /// `drbd_do_features` computes them.
    pub fn negotiate(ours: &Features, peer: &Features) -> Result<(u32, u32), WireError> {
        let peer_max = if peer.protocol_max == 0 {
            peer.protocol_min
        } else {
            peer.protocol_max
        };
        if ours.protocol_max < peer.protocol_min || ours.protocol_min > peer_max {
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
    let mut max = 0u64;
    let mut adj = 1u64;
    for &(t, b, prefix) in &VLI_LEVELS {
        max += 1u64 << (t - b);
        if v <= max {
            return Some((((v - adj) << b) | prefix, t));
        }
        adj = max + 1;
    }
    None
}

/// Decodes the VLI code in the low bits of `input`: `(value, bits consumed)`
/// (`vli_decode_bits`; every bit pattern decodes).
pub fn vli_decode(input: u64) -> (u64, u32) {
    let mut adj = 1u64;
    for &(t, b, prefix) in &VLI_LEVELS {
        if input & ((1u64 << b) - 1) == prefix {
            let mask = u64::MAX >> (64 - t);
            return (((input & mask) >> b) + adj, t);
        }
        adj += 1u64 << (t - b);
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
        if i % 8 == 0 && end - i >= 8 {
            let byte = bm.get((i / 8) as usize).copied().unwrap_or(0);
            if (want && byte == 0) || (!want && byte == 0xff) {
                i += 8;
                continue;
            }
        }
        if bm_bit(bm, i) == want {
            return i;
        }
        i += 1;
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
        let (code, bits) = vli_encode(end - at)?;
        if pos + bits as usize > out.len() * 8 {
            break;
        }
        for k in 0..bits as usize {
            if code >> k & 1 != 0 {
                out[(pos + k) / 8] |= 1 << ((pos + k) % 8);
            }
        }
        pos += bits as usize;
        at = end;
        want_set = !want_set;
    }
    let len = pos.div_ceil(8);
    if at - start < (len as u64) * 8 || at == start {
        return None;
    }
    *offset = at;
    let pad = ((8 - pos % 8) % 8) as u8;
    Some(((u8::from(first_set) << 7) | (pad << 4) | RLE_VLI_BITS, len))
}

/// Applies one `P_COMPRESSED_BITMAP` payload (`encoding` byte and `code`) to `bm` from bit
/// `*offset`, like `recv_bm_rle_bits`: set runs are ORed in, clear runs skipped. Advances
/// `*offset`; returns whether bits remain. A malformed payload (unknown encoding, a run past
/// `bm_bits`, a truncated code) is an error and may have set some bits already, as in DRBD,
/// where the connection is then torn down.
pub fn rle_decode(
    encoding: u8,
    code: &[u8],
    bm: &mut [u8],
    bm_bits: u64,
    offset: &mut u64,
) -> Result<bool, WireError> {
    if encoding & 0x0f != RLE_VLI_BITS {
        return Err(WireError::BadEncoding);
    }
    let pad = u64::from((encoding >> 4) & 7);
    let total = (code.len() as u64 * 8)
        .checked_sub(pad)
        .ok_or(WireError::BadLength)?;
    let get = |pos: u64| code[(pos / 8) as usize] >> (pos % 8) & 1 != 0;
    let mut pos = 0u64;
    let mut set = encoding & 0x80 != 0;
    let mut at = *offset;
    while pos < total {
        // Up to 64 bits of look-ahead; missing bits past the end read as 0.
        let mut look = 0u64;
        for k in 0..64.min(total - pos) {
            if get(pos + k) {
                look |= 1 << k;
            }
        }
        let (rl, bits) = vli_decode(look);
        if u64::from(bits) > total - pos {
            return Err(WireError::BadLength);
        }
        pos += u64::from(bits);
        let end = at.checked_add(rl).ok_or(WireError::TooLong)?;
        if set {
            if end > bm_bits {
                return Err(WireError::TooLong);
            }
            for i in at..end {
                if let Some(b) = bm.get_mut((i / 8) as usize) {
                    *b |= 1 << (i % 8);
                }
            }
        }
        at = end;
        set = !set;
    }
    *offset = at;
    Ok(at < bm_bits)
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
                    let mut _o = 0;
                    $(
                        let v = self.$field.to_be_bytes();
                        b[_o.._o + v.len()].copy_from_slice(&v);
                        _o += v.len();
                    )*
                    b
                }

                /// Decodes a payload of exactly [`Self::SIZE`] bytes.
                pub fn decode(p: &[u8]) -> Result<Self, WireError> {
                    if p.len() != Self::SIZE {
                        return Err(WireError::BadLength);
                    }
                    let mut _o = 0;
                    $(
                        let n = core::mem::size_of::<$ty>();
                        let mut a = [0u8; core::mem::size_of::<$ty>()];
                        a.copy_from_slice(&p[_o.._o + n]);
                        let $field = $ty::from_be_bytes(a);
                        _o += n;
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

#[cfg(test)]
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
        // Peers entirely above or below our range.
        for (min, max) in [(110, 121), (80, 85)] {
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
