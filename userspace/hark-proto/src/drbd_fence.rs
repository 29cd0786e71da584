// SPDX-License-Identifier: GPL-2.0

//! Fencing, as DRBD 8.4 does it (`conn_try_outdate_peer()` in `drbd_nl.c`, the `fencing`
//! checks of `drbd_state.c`): the policy, when the `fence-peer` handler runs, what its exit
//! code means, and when `unfence-peer` runs.

#![deny(clippy::arithmetic_side_effects)]

use crate::drbd_state::Disk;

/// The `fencing` policy (`enum drbd_fencing_p`; netlink `u8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fencing {
    /// No fencing (DRBD's default).
    DontCare = 0,
    /// A Primary that loses its peer runs `fence-peer`; I/O goes on meanwhile.
    ResourceOnly = 1,
    /// Like `ResourceOnly`, with application I/O frozen until the handler returns.
    ResourceAndStonith = 2,
}

impl Fencing {
    /// Decodes the netlink value.
    pub fn from_u8(v: u8) -> Option<Fencing> {
        match v {
            0 => Some(Fencing::DontCare),
            1 => Some(Fencing::ResourceOnly),
            2 => Some(Fencing::ResourceAndStonith),
            _ => None,
        }
    }

    /// Parses drbd.conf's name.
    pub fn from_name(s: &str) -> Option<Fencing> {
        match s {
            "dont-care" => Some(Fencing::DontCare),
            "resource-only" => Some(Fencing::ResourceOnly),
            "resource-and-stonith" => Some(Fencing::ResourceAndStonith),
            _ => None,
        }
    }

    /// drbd.conf's name.
    pub fn name(self) -> &'static str {
        match self {
            Fencing::DontCare => "dont-care",
            Fencing::ResourceOnly => "resource-only",
            Fencing::ResourceAndStonith => "resource-and-stonith",
        }
    }
}

/// What the `fence-peer` handler's exit code says (`enum drbd_peer_state` of 8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceResult {
    /// 3: the peer's disk is Inconsistent (or worse).
    PeerInconsistent,
    /// 4: the peer was outdated (or already was).
    PeerOutdated,
    /// 5: the peer is down or unreachable.
    PeerDown,
    /// 6: the peer is Primary: we must not be (8.4 outdates its own disk).
    PeerPrimary,
    /// 7: the peer was fenced (STONITH).
    PeerStonithed,
    /// Anything else, or the handler could not run: it is broken.
    Broken(i32),
}

impl FenceResult {
    /// The result of a handler's exit code (`-1`: it could not be started).
    pub fn from_exit(code: i32) -> FenceResult {
        match code {
            3 => FenceResult::PeerInconsistent,
            4 => FenceResult::PeerOutdated,
            5 => FenceResult::PeerDown,
            6 => FenceResult::PeerPrimary,
            7 => FenceResult::PeerStonithed,
            c => FenceResult::Broken(c),
        }
    }

    /// The exit code of a `call_usermodehelper(UMH_WAIT_PROC)` return value: the wait status
    /// (`code << 8`) of an exited process, `-1` for an errno or a signal.
    pub fn exit_code_of_umh(ret: i32) -> i32 {
        if ret < 0 || ret & 0x7f != 0 {
            -1
        } else {
            (ret >> 8) & 0xff
        }
    }

    /// The peer disk state we record (`pdsk`), if any, given our own disk (5 outdates the
    /// peer only if our disk is UpToDate, as in 8.4).
    pub fn peer_disk(self, ours: Disk) -> Option<Disk> {
        match self {
            FenceResult::PeerInconsistent => Some(Disk::Inconsistent),
            FenceResult::PeerOutdated | FenceResult::PeerStonithed => Some(Disk::Outdated),
            FenceResult::PeerDown if ours == Disk::UpToDate => Some(Disk::Outdated),
            FenceResult::PeerDown | FenceResult::PeerPrimary | FenceResult::Broken(_) => None,
        }
    }

    /// Whether we may be (or stay) Primary afterwards: the peer's disk is Outdated or worse.
    pub fn peer_fenced(self, ours: Disk) -> bool {
        self.peer_disk(ours).is_some()
    }

    /// Why, as 8.4 logs it.
    pub fn text(self) -> &'static str {
        match self {
            FenceResult::PeerInconsistent => "peer is inconsistent or worse",
            FenceResult::PeerOutdated => "peer was fenced",
            FenceResult::PeerDown => "peer is unreachable, assumed to be dead",
            FenceResult::PeerPrimary => "peer is active",
            FenceResult::PeerStonithed => "peer was stonithed",
            FenceResult::Broken(_) => "fence-peer helper broken",
        }
    }
}

/// Whether a node must run `fence-peer` now: fencing is on, it is (or is becoming) Primary,
/// it is not connected, and the peer's disk as last known (`pdsk`) is DUnknown, Consistent or
/// UpToDate (8.4's `pdsk >= D_UNKNOWN` in `conn_disconnect()`: a peer known to be Outdated,
/// Inconsistent, e.g. a sync target, or diskless holds no data to fence). Without consistent
/// data of our own there is nothing to protect (8.4's `FP_NOT_AVAIL`).
pub fn must_fence(
    fencing: Fencing,
    primary: bool,
    connected: bool,
    pdsk: Disk,
    ours: Disk,
) -> bool {
    fencing != Fencing::DontCare
        && primary
        && !connected
        && pdsk as u32 >= Disk::DUnknown as u32
        && ours as u32 >= Disk::Consistent as u32
}

/// Whether `unfence-peer` runs: a resync in which we were the source ended with both disks
/// UpToDate, and fencing is on (`drbd_resync_finished()`).
pub fn must_unfence(fencing: Fencing, was_sync_source: bool, ours: Disk, pdsk: Disk) -> bool {
    fencing != Fencing::DontCare
        && was_sync_source
        && ours == Disk::UpToDate
        && pdsk == Disk::UpToDate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip() {
        for f in [
            Fencing::DontCare,
            Fencing::ResourceOnly,
            Fencing::ResourceAndStonith,
        ] {
            assert_eq!(Fencing::from_u8(f as u8), Some(f));
            assert_eq!(Fencing::from_name(f.name()), Some(f));
        }
        assert_eq!(Fencing::from_u8(3), None);
        assert_eq!(Fencing::from_name("stonith"), None);
    }

    #[test]
    fn exit_codes_map_like_8_4() {
        use FenceResult as R;
        let up = Disk::UpToDate;
        assert_eq!(R::from_exit(3).peer_disk(up), Some(Disk::Inconsistent));
        assert_eq!(R::from_exit(4).peer_disk(up), Some(Disk::Outdated));
        assert_eq!(R::from_exit(5).peer_disk(up), Some(Disk::Outdated));
        assert_eq!(R::from_exit(5).peer_disk(Disk::Consistent), None);
        assert_eq!(R::from_exit(6).peer_disk(up), None);
        assert_eq!(R::from_exit(7).peer_disk(up), Some(Disk::Outdated));
        for c in [-1, 0, 1, 2, 8, 255] {
            assert_eq!(R::from_exit(c), R::Broken(c));
            assert!(!R::from_exit(c).peer_fenced(up));
        }
        assert!(R::from_exit(4).peer_fenced(up));
        assert!(!R::from_exit(6).peer_fenced(up));
    }

    #[test]
    fn umh_return_values() {
        assert_eq!(FenceResult::exit_code_of_umh(4 << 8), 4);
        assert_eq!(FenceResult::exit_code_of_umh(0), 0);
        assert_eq!(FenceResult::exit_code_of_umh(-2), -1); // ENOENT: no such program
        assert_eq!(FenceResult::exit_code_of_umh(9), -1); // killed by SIGKILL
        assert_eq!(FenceResult::exit_code_of_umh(255 << 8), 255);
    }

    #[test]
    fn when_to_fence() {
        let (on, up) = (Fencing::ResourceOnly, Disk::UpToDate);
        assert!(must_fence(on, true, false, Disk::DUnknown, up));
        assert!(must_fence(
            Fencing::ResourceAndStonith,
            true,
            false,
            Disk::UpToDate,
            up
        ));
        assert!(!must_fence(
            Fencing::DontCare,
            true,
            false,
            Disk::DUnknown,
            up
        ));
        assert!(!must_fence(on, false, false, Disk::DUnknown, up)); // Secondary
        assert!(!must_fence(on, true, true, Disk::DUnknown, up)); // connected
        assert!(!must_fence(on, true, false, Disk::Outdated, up)); // already fenced
        assert!(!must_fence(on, true, false, Disk::Inconsistent, up));
        assert!(!must_fence(
            on,
            true,
            false,
            Disk::DUnknown,
            Disk::Inconsistent
        ));
        assert!(!must_fence(on, true, false, Disk::DUnknown, Disk::Diskless));
        assert!(!must_fence(on, true, false, Disk::DUnknown, Disk::Outdated));
        assert!(must_fence(
            on,
            true,
            false,
            Disk::Consistent,
            Disk::Consistent
        ));
        assert!(!must_fence(on, true, false, Disk::Diskless, up));
        assert!(!must_fence(on, true, false, Disk::Negotiating, up));
    }

    #[test]
    fn when_to_unfence() {
        let (on, up) = (Fencing::ResourceOnly, Disk::UpToDate);
        assert!(must_unfence(on, true, up, up));
        assert!(!must_unfence(Fencing::DontCare, true, up, up));
        assert!(!must_unfence(on, false, up, up)); // we were the target
        assert!(!must_unfence(on, true, up, Disk::Inconsistent));
    }
}
