// SPDX-License-Identifier: GPL-2.0

//! Names and numbers of the `drbd_rs` generic netlink family.
//!
//! The single source of truth for the family: the kernel module registers exactly these, and
//! `rdrbdadm` speaks exactly these. The numbering is fixed here so that it never changes under
//! a user.

#![deny(clippy::arithmetic_side_effects)]

/// Generic netlink family name.
pub const FAMILY_NAME: &str = "drbd_rs";
/// Family version; bumped on any incompatible change of commands or attributes.
pub const FAMILY_VERSION: u8 = 1;
/// Name of the multicast group carrying `events2`-style state changes.
pub const MCGRP_EVENTS: &str = "events";

/// Commands of the family (`genlmsghdr.cmd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    /// Reply to a command, or an event.
    Reply = 1,
    /// Create a resource.
    NewResource = 2,
    /// Delete a resource.
    DelResource = 3,
    /// Create a minor (`/dev/rdrbdN`) in a resource.
    NewMinor = 4,
    /// Delete a minor.
    DelMinor = 5,
    /// Attach a lower device.
    Attach = 6,
    /// Detach the lower device.
    Detach = 7,
    /// Become Primary.
    Primary = 8,
    /// Become Secondary.
    Secondary = 9,
    /// Dump the status of all resources.
    Status = 10,
    /// Connect a resource to its peer (net options as attributes).
    Connect = 11,
    /// Disconnect a resource (`StandAlone`).
    Disconnect = 12,
    /// Mark the local disk Outdated (`drbdsetup outdate`).
    Outdate = 13,
}

impl Cmd {
    /// Every command, in numeric order.
    pub const ALL: [Cmd; 13] = [
        Cmd::Reply,
        Cmd::NewResource,
        Cmd::DelResource,
        Cmd::NewMinor,
        Cmd::DelMinor,
        Cmd::Attach,
        Cmd::Detach,
        Cmd::Primary,
        Cmd::Secondary,
        Cmd::Status,
        Cmd::Connect,
        Cmd::Disconnect,
        Cmd::Outdate,
    ];

    /// Decodes a command number.
    pub fn from_u8(v: u8) -> Option<Cmd> {
        Self::ALL.iter().copied().find(|c| *c as u8 == v)
    }

    /// The command's name as `rdrbdadm` and the logs print it.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::Reply => "reply",
            Cmd::NewResource => "new-resource",
            Cmd::DelResource => "del-resource",
            Cmd::NewMinor => "new-minor",
            Cmd::DelMinor => "del-minor",
            Cmd::Attach => "attach",
            Cmd::Detach => "detach",
            Cmd::Primary => "primary",
            Cmd::Secondary => "secondary",
            Cmd::Status => "status",
            Cmd::Connect => "connect",
            Cmd::Disconnect => "disconnect",
            Cmd::Outdate => "outdate",
        }
    }
}

/// Attributes of the family (`nlattr.nla_type`). One flat attribute space for every command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Attr {
    /// Resource name, NUL-terminated string of at most [`RESOURCE_NAME_MAX`] bytes.
    ResourceName = 1,
    /// Minor number (`u32`), the N of `/dev/rdrbdN`.
    Minor = 2,
    /// Path of the lower block device (NUL-terminated string, at most [`PATH_MAX`] bytes).
    LowerDev = 3,
    /// Role (`u8`, [`Role`]).
    Role = 4,
    /// Disk state (`u8`, [`DiskState`]).
    DiskState = 5,
    /// Flag: force the operation (e.g. `primary --force`).
    Force = 6,
    /// Exposed size in 512-byte sectors (`u64`).
    SizeSectors = 7,
    /// Out-of-sync amount in KiB (`u64`).
    OutOfSyncKib = 8,
    /// Human-readable message accompanying a reply or an error (string).
    Message = 9,
    /// Event type of a multicast event (`u8`, [`EventType`]).
    EventType = 10,
    /// Replication protocol (`u8`: 1 = A, 2 = B, 3 = C).
    Protocol = 11,
    /// Local replication address ([`ADDR_SIZE`] bytes, see [`encode_addr`]).
    LocalAddr = 12,
    /// Peer replication address ([`ADDR_SIZE`] bytes).
    PeerAddr = 13,
    /// Connection state (`u8`, DRBD's `enum drbd_conns` numbering).
    ConnState = 14,
    /// Peer role (`u8`, [`Role`]; absent when unknown).
    PeerRole = 15,
    /// Peer disk state (`u8`, [`DiskState`]; absent when unknown).
    PeerDisk = 16,
    /// `timeout`, tenths of a second (`u32`).
    TimeoutDs = 17,
    /// `connect-int`, seconds (`u32`).
    ConnectIntS = 18,
    /// `ping-int`, seconds (`u32`).
    PingIntS = 19,
    /// `ping-timeout`, tenths of a second (`u32`).
    PingTimeoutDs = 20,
    /// `ko-count` (`u32`).
    KoCount = 21,
    /// `max-buffers` (`u32`).
    MaxBuffers = 22,
    /// `after-sb-0pri` (`u8`, DRBD's `enum drbd_after_sb_p`).
    AfterSb0p = 23,
    /// `after-sb-1pri` (`u8`).
    AfterSb1p = 24,
    /// `after-sb-2pri` (`u8`).
    AfterSb2p = 25,
    /// `verify-alg` (string).
    VerifyAlg = 26,
    /// `csums-alg` (string).
    CsumsAlg = 27,
    /// `cram-hmac-alg` (string).
    CramHmacAlg = 28,
    /// `shared-secret` (string).
    SharedSecret = 29,
    /// Agreed wire protocol version (`u32`).
    AgreedVersion = 30,
    /// Flag: `allow-two-primaries`.
    TwoPrimaries = 31,
    /// Resync rate while the dynamic controller is off (`c-plan-ahead 0`), KiB/s.
    ResyncRate = 32,
    /// Resync rate limit with the dynamic controller on (`c-max-rate`), KiB/s.
    CMaxRate = 33,
    /// Status: the amount the running resync started with, KiB (absent without a resync).
    SyncTotalKib = 34,
    /// Status: the running resync's average rate since its start, KiB/s.
    SyncRateKib = 35,
    /// Resync-controller planning horizon (`c-plan-ahead`), tenths of a second; 0 = fixed rate.
    CPlanAheadDs = 36,
    /// `fencing` policy (`u8`, `drbd_fence::Fencing`).
    Fencing = 37,
    /// `fence-peer` handler command line (string, at most [`HANDLER_MAX`] bytes).
    FencePeer = 38,
    /// `unfence-peer` handler command line (string, at most [`HANDLER_MAX`] bytes).
    UnfencePeer = 39,
}

impl Attr {
    /// Highest attribute number (`maxattr` of the family).
    pub const MAX: u16 = 39;

    /// Every attribute, in numeric order.
    pub const ALL: [Attr; 39] = [
        Attr::ResourceName,
        Attr::Minor,
        Attr::LowerDev,
        Attr::Role,
        Attr::DiskState,
        Attr::Force,
        Attr::SizeSectors,
        Attr::OutOfSyncKib,
        Attr::Message,
        Attr::EventType,
        Attr::Protocol,
        Attr::LocalAddr,
        Attr::PeerAddr,
        Attr::ConnState,
        Attr::PeerRole,
        Attr::PeerDisk,
        Attr::TimeoutDs,
        Attr::ConnectIntS,
        Attr::PingIntS,
        Attr::PingTimeoutDs,
        Attr::KoCount,
        Attr::MaxBuffers,
        Attr::AfterSb0p,
        Attr::AfterSb1p,
        Attr::AfterSb2p,
        Attr::VerifyAlg,
        Attr::CsumsAlg,
        Attr::CramHmacAlg,
        Attr::SharedSecret,
        Attr::AgreedVersion,
        Attr::TwoPrimaries,
        Attr::ResyncRate,
        Attr::CMaxRate,
        Attr::SyncTotalKib,
        Attr::SyncRateKib,
        Attr::CPlanAheadDs,
        Attr::Fencing,
        Attr::FencePeer,
        Attr::UnfencePeer,
    ];

    /// Decodes an attribute number.
    pub const fn from_u16(v: u16) -> Option<Attr> {
        if v == 0 || v > Self::MAX {
            return None;
        }
        // `ALL` is in numeric order without gaps (checked by a test).
        Some(Self::ALL[v.saturating_sub(1) as usize])
    }

    /// The payload type, which is also what the kernel's policy enforces.
    pub const fn kind(self) -> AttrKind {
        match self {
            Attr::ResourceName => AttrKind::String(RESOURCE_NAME_MAX),
            Attr::LowerDev => AttrKind::String(PATH_MAX),
            Attr::Message => AttrKind::String(MESSAGE_MAX),
            Attr::FencePeer | Attr::UnfencePeer => AttrKind::String(HANDLER_MAX),
            Attr::VerifyAlg | Attr::CsumsAlg | Attr::CramHmacAlg | Attr::SharedSecret => {
                AttrKind::String(ALG_NAME_MAX)
            }
            Attr::Minor
            | Attr::TimeoutDs
            | Attr::ConnectIntS
            | Attr::PingIntS
            | Attr::PingTimeoutDs
            | Attr::KoCount
            | Attr::MaxBuffers
            | Attr::AgreedVersion
            | Attr::ResyncRate
            | Attr::CMaxRate
            | Attr::CPlanAheadDs => AttrKind::U32,
            Attr::Role
            | Attr::DiskState
            | Attr::EventType
            | Attr::Protocol
            | Attr::ConnState
            | Attr::PeerRole
            | Attr::PeerDisk
            | Attr::Fencing
            | Attr::AfterSb0p
            | Attr::AfterSb1p
            | Attr::AfterSb2p => AttrKind::U8,
            Attr::LocalAddr | Attr::PeerAddr => AttrKind::Bytes(ADDR_SIZE as u16),
            Attr::Force | Attr::TwoPrimaries => AttrKind::Flag,
            Attr::SizeSectors | Attr::OutOfSyncKib | Attr::SyncTotalKib | Attr::SyncRateKib => {
                AttrKind::U64
            }
        }
    }
}

/// Payload type of an attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    /// No payload.
    Flag,
    /// One byte.
    U8,
    /// Four bytes, host order.
    U32,
    /// Eight bytes, host order.
    U64,
    /// NUL-terminated string of at most this many bytes, NUL excluded.
    String(u16),
    /// Exactly this many bytes.
    Bytes(u16),
}

/// Longest digest or secret name (`SHARED_SECRET_MAX` - 1), in bytes.
pub const ALG_NAME_MAX: u16 = 63;

/// `AF_INET` on Linux.
pub const AF_INET: u16 = 2;
/// `AF_INET6` on Linux.
pub const AF_INET6: u16 = 10;
/// Size of an address attribute.
pub const ADDR_SIZE: usize = 20;

/// Encodes an address attribute: family and port in host order, then 16 address bytes
/// (network order; IPv4 uses the first 4, the rest zero). This is `struct drbd_rs_addr`.
pub fn encode_addr(family: u16, port: u16, addr: &[u8]) -> Option<[u8; ADDR_SIZE]> {
    let want = match family {
        AF_INET => 4,
        AF_INET6 => 16,
        _ => return None,
    };
    if addr.len() != want || port == 0 {
        return None;
    }
    let mut b = [0u8; ADDR_SIZE];
    b[0..2].copy_from_slice(&family.to_ne_bytes());
    b[2..4].copy_from_slice(&port.to_ne_bytes());
    b[4..][..want].copy_from_slice(addr);
    Some(b)
}

/// Decodes an address attribute into (family, port, 16 address bytes); `None` unless it is
/// what [`encode_addr`] produces.
pub fn decode_addr(p: &[u8]) -> Option<(u16, u16, [u8; 16])> {
    if p.len() != ADDR_SIZE {
        return None;
    }
    let family = u16::from_ne_bytes([p[0], p[1]]);
    let port = u16::from_ne_bytes([p[2], p[3]]);
    let mut a = [0u8; 16];
    a.copy_from_slice(&p[4..]);
    let len = match family {
        AF_INET => 4,
        AF_INET6 => 16,
        _ => return None,
    };
    (port != 0 && a[len..].iter().all(|&b| b == 0)).then_some((family, port, a))
}

/// Longest resource name, in bytes.
pub const RESOURCE_NAME_MAX: u16 = 63;

/// Whether `name` may name a resource: 1..=[`RESOURCE_NAME_MAX`] printable ASCII bytes, no
/// space and no `/` (DRBD forbids `/` too: names become paths in sysfs and udev rules).
pub fn valid_resource_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= RESOURCE_NAME_MAX as usize
        && name.iter().all(|&b| b.is_ascii_graphic() && b != b'/')
}
/// Longest lower device path, in bytes.
pub const PATH_MAX: u16 = 255;
/// Longest handler command line, in bytes.
pub const HANDLER_MAX: u16 = 255;
/// Longest message, in bytes.
pub const MESSAGE_MAX: u16 = 255;

/// Role of a device, DRBD's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Accepts application I/O.
    Primary = 1,
    /// Refuses writes and write-opens.
    Secondary = 2,
}

impl Role {
    /// Decodes a role.
    pub fn from_u8(v: u8) -> Option<Role> {
        match v {
            1 => Some(Role::Primary),
            2 => Some(Role::Secondary),
            _ => None,
        }
    }

    /// DRBD's name of the role.
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "Primary",
            Role::Secondary => "Secondary",
        }
    }
}

/// Disk state of a device, DRBD's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DiskState {
    /// No lower device attached.
    Diskless = 1,
    /// Being attached.
    Attaching = 2,
    /// Data not usable (a sync target that has not finished).
    Inconsistent = 3,
    /// Data consistent but known to be older than the peer's.
    Outdated = 4,
    /// Data consistent, freshness unknown.
    Consistent = 5,
    /// Data consistent and up to date.
    UpToDate = 6,
}

impl DiskState {
    /// Every state, in numeric order.
    pub const ALL: [DiskState; 6] = [
        DiskState::Diskless,
        DiskState::Attaching,
        DiskState::Inconsistent,
        DiskState::Outdated,
        DiskState::Consistent,
        DiskState::UpToDate,
    ];

    /// Decodes a disk state.
    pub fn from_u8(v: u8) -> Option<DiskState> {
        Self::ALL.iter().copied().find(|d| *d as u8 == v)
    }

    /// DRBD's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            DiskState::Diskless => "Diskless",
            DiskState::Attaching => "Attaching",
            DiskState::Inconsistent => "Inconsistent",
            DiskState::Outdated => "Outdated",
            DiskState::Consistent => "Consistent",
            DiskState::UpToDate => "UpToDate",
        }
    }
}

/// Type of a multicast event, as `drbdsetup events2` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventType {
    /// Initial state dump (`events --now`).
    Exists = 1,
    /// An object was created.
    Create = 2,
    /// An object changed.
    Change = 3,
    /// An object was destroyed.
    Destroy = 4,
}

impl EventType {
    /// Decodes an event type.
    pub fn from_u8(v: u8) -> Option<EventType> {
        match v {
            1 => Some(EventType::Exists),
            2 => Some(EventType::Create),
            3 => Some(EventType::Change),
            4 => Some(EventType::Destroy),
            _ => None,
        }
    }

    /// The word `events2` starts its lines with.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Exists => "exists",
            EventType::Create => "create",
            EventType::Change => "change",
            EventType::Destroy => "destroy",
        }
    }
}

/// Name of the block devices (`/dev/rdrbdN`).
pub const DEVICE_PREFIX: &str = "rdrbd";

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    #[test]
    fn resource_names() {
        assert!(super::valid_resource_name(b"r0"));
        assert!(super::valid_resource_name(b"data-1.web_2"));
        assert!(super::valid_resource_name(&[b'a'; 63]));
        assert!(!super::valid_resource_name(&[b'a'; 64]));
        assert!(!super::valid_resource_name(b""));
        assert!(!super::valid_resource_name(b"a/b"));
        assert!(!super::valid_resource_name(b"a b"));
        assert!(!super::valid_resource_name(b"r\x00"));
        assert!(!super::valid_resource_name("r\u{e9}".as_bytes()));
    }

    use super::*;

    #[test]
    fn commands_round_trip_and_are_unique() {
        for (i, c) in Cmd::ALL.iter().enumerate() {
            assert_eq!(Cmd::from_u8(*c as u8), Some(*c));
            for d in &Cmd::ALL[i + 1..] {
                assert_ne!(*c as u8, *d as u8);
                assert_ne!(c.name(), d.name());
            }
        }
        assert_eq!(Cmd::from_u8(0), None);
        assert_eq!(Cmd::from_u8(200), None);
    }

    #[test]
    fn attributes_round_trip() {
        for v in 0..=Attr::MAX + 5 {
            match Attr::from_u16(v) {
                Some(a) => assert_eq!(a as u16, v),
                None => assert!(v == 0 || v > Attr::MAX),
            }
        }
        for d in DiskState::ALL {
            assert_eq!(DiskState::from_u8(d as u8), Some(d));
        }
        for r in [Role::Primary, Role::Secondary] {
            assert_eq!(Role::from_u8(r as u8), Some(r));
        }
        for v in 1..=4 {
            assert_eq!(EventType::from_u8(v).map(|e| e as u8), Some(v));
        }
        assert_eq!(EventType::from_u8(5), None);
    }

    #[test]
    fn attribute_table_is_dense_and_addresses_round_trip() {
        for (i, a) in Attr::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i + 1);
        }
        assert_eq!(Attr::ALL.len(), Attr::MAX as usize);
        let v4 = encode_addr(AF_INET, 7789, &[10, 0, 0, 1]).unwrap();
        let (f, p, a) = decode_addr(&v4).unwrap();
        assert_eq!((f, p, &a[..4]), (AF_INET, 7789, &[10u8, 0, 0, 1][..]));
        let mut six = [0u8; 16];
        six[0] = 0xfd;
        six[15] = 2;
        let v6 = encode_addr(AF_INET6, 1, &six).unwrap();
        assert_eq!(decode_addr(&v6), Some((AF_INET6, 1, six)));
        assert_eq!(encode_addr(AF_INET, 0, &[1, 2, 3, 4]), None);
        assert_eq!(encode_addr(AF_INET, 1, &six), None);
        assert_eq!(encode_addr(7, 1, &[1, 2, 3, 4]), None);
        let mut junk = v4;
        junk[10] = 1; // bytes past an IPv4 address must be zero
        assert_eq!(decode_addr(&junk), None);
        assert_eq!(decode_addr(&v4[..19]), None);
    }

    #[test]
    fn family_name_fits_genl() {
        // GENL_NAMSIZ is 16 including the terminating NUL.
        assert!(FAMILY_NAME.len() < 16);
    }
}
