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

/// Name of the block devices (`/dev/rdrbdN`).
pub const DEVICE_PREFIX: &str = "rdrbd";

#[cfg(test)]
mod tests {
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
    fn family_name_fits_genl() {
        // GENL_NAMSIZ is 16 including the terminating NUL.
        assert!(FAMILY_NAME.len() < 16);
    }
}
