// SPDX-License-Identifier: GPL-2.0

//! Names and numbers of the `drbd_rs` generic netlink family.
//!
//! The single source of truth for the family: the kernel module registers exactly these, and
//! `rdrbdadm` speaks exactly these. The commands are implemented by later work; the numbering
//! is fixed here so that it never changes under a user.

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
}

impl Cmd {
    /// Every command, in numeric order.
    pub const ALL: [Cmd; 10] = [
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
}

impl Attr {
    /// Highest attribute number (`maxattr` of the family).
    pub const MAX: u16 = 11;

    /// Decodes an attribute number.
    pub const fn from_u16(v: u16) -> Option<Attr> {
        Some(match v {
            1 => Attr::ResourceName,
            2 => Attr::Minor,
            3 => Attr::LowerDev,
            4 => Attr::Role,
            5 => Attr::DiskState,
            6 => Attr::Force,
            7 => Attr::SizeSectors,
            8 => Attr::OutOfSyncKib,
            9 => Attr::Message,
            10 => Attr::EventType,
            11 => Attr::Protocol,
            _ => return None,
        })
    }

    /// The payload type, which is also what the kernel's policy enforces.
    pub const fn kind(self) -> AttrKind {
        match self {
            Attr::ResourceName => AttrKind::String(RESOURCE_NAME_MAX),
            Attr::LowerDev => AttrKind::String(PATH_MAX),
            Attr::Message => AttrKind::String(MESSAGE_MAX),
            Attr::Minor => AttrKind::U32,
            Attr::Role | Attr::DiskState | Attr::EventType | Attr::Protocol => AttrKind::U8,
            Attr::Force => AttrKind::Flag,
            Attr::SizeSectors | Attr::OutOfSyncKib => AttrKind::U64,
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
    fn family_name_fits_genl() {
        // GENL_NAMSIZ is 16 including the terminating NUL.
        assert!(FAMILY_NAME.len() < 16);
    }
}
