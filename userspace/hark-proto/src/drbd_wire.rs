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
}
