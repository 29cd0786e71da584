// SPDX-License-Identifier: GPL-2.0

//! Cluster-wide state changes, DRBD 8.4 style (`drbd_state.c`): which changes need the peer's
//! consent (`cl_wide_st_chg()`), whether a new state is allowed (`is_valid_state()`,
//! `is_valid_soft_transition()` and `_drbd_set_state()`'s rule for states that were invalid
//! already), and the answer to a peer's `P_STATE_CHG_REQ` (`receive_req_state()`).
//!
//! drbd_rs does not implement dual-primary (it refuses `allow-two-primaries` when configured),
//! fencing, online verify or peer-initiated resyncs: the rules for those are left out, and a
//! peer request to change the connection state (start a resync or verify) or our own role or
//! disk is answered `SS_NOT_SUPPORTED`.

#![deny(clippy::arithmetic_side_effects)]

use super::drbd_state::{apply, convert_peer, ns, Conn, Disk, Field, Role, State, StateRv};

/// What the validity of a state depends on besides the state itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `allow-two-primaries` (drbd_rs: always false).
    pub two_primaries: bool,
    /// The device is open (a Secondary must not be held open: `SS_DEVICE_IN_USE`).
    pub device_open: bool,
}

/// Whether `c` is at least `min` in DRBD's order.
fn at_least(c: Conn, min: Conn) -> bool {
    c as u32 >= min as u32
}

/// Whether `d` is below `min` in DRBD's order.
fn below(d: Disk, min: Disk) -> bool {
    (d as u32) < min as u32
}

/// `cl_wide_st_chg()`: a change from `os` to `ns` that the peer must agree to first.
pub fn is_cluster_wide(os: &State, ns: &State) -> bool {
    let connected = at_least(os.conn, Conn::Connected) && at_least(ns.conn, Conn::Connected);
    let became = |o: bool, n: bool| !o && n;
    (connected
        && (became(os.role == Role::Primary, ns.role == Role::Primary)
            || became(
                os.conn == Conn::StartingSyncT,
                ns.conn == Conn::StartingSyncT,
            )
            || became(
                os.conn == Conn::StartingSyncS,
                ns.conn == Conn::StartingSyncS,
            )
            || became(os.disk == Disk::Failed, ns.disk == Disk::Failed)))
        || (at_least(os.conn, Conn::Connected) && ns.conn == Conn::Disconnecting)
        || (os.conn == Conn::Connected && ns.conn == Conn::VerifyS)
        || (os.conn == Conn::Connected && ns.conn == Conn::WFReportParams)
}

/// `is_valid_state()` without the fencing, verify and multi-volume rules: the first rule
/// that applies, in DRBD's order.
pub fn valid_state(ns: &State, lim: &Limits) -> StateRv {
    use Conn as C;
    use Disk as D;
    let primary = ns.role == Role::Primary;
    let beyond = at_least(ns.conn, C::StartingSyncS);
    let no_uptodate = StateRv::NoUpToDateDisk;
    let rules = [
        (
            !lim.two_primaries && primary && ns.peer == Role::Primary,
            StateRv::TwoPrimaries,
        ),
        (
            ns.role == Role::Secondary && lim.device_open,
            StateRv::DeviceInUse,
        ),
        (
            primary && !at_least(ns.conn, C::Connected) && below(ns.disk, D::UpToDate),
            no_uptodate,
        ),
        (
            primary && !below(D::Inconsistent, ns.disk) && !below(D::Inconsistent, ns.pdsk),
            no_uptodate,
        ),
        (
            beyond && below(ns.disk, D::Inconsistent),
            StateRv::NoLocalDisk,
        ),
        (
            beyond && below(ns.pdsk, D::Inconsistent),
            StateRv::NoRemoteDisk,
        ),
        (
            beyond && below(ns.disk, D::UpToDate) && below(ns.pdsk, D::UpToDate),
            no_uptodate,
        ),
        (
            matches!(
                ns.conn,
                C::Connected | C::WFBitMapS | C::SyncSource | C::PausedSyncS
            ) && ns.disk == D::Outdated,
            StateRv::ConnectedOutdates,
        ),
        (
            primary && below(ns.disk, D::UpToDate) && below(ns.pdsk, D::UpToDate),
            no_uptodate,
        ),
        (
            matches!(ns.conn, C::StartingSyncS | C::StartingSyncT) && ns.pdsk == D::DUnknown,
            StateRv::NeedConnection,
        ),
        (
            at_least(ns.conn, C::Connected) && ns.pdsk == D::DUnknown,
            StateRv::ConnectedOutdates,
        ),
    ];
    rules
        .iter()
        .find(|(applies, _)| *applies)
        .map_or(StateRv::Success, |&(_, rv)| rv)
}

/// `is_valid_soft_transition()`: the rules for changes a user (or peer) asks for, without the
/// verify rules and the handshake's `STATE_SENT` rule. The last rule that applies wins, as in
/// DRBD.
pub fn valid_soft_transition(os: &State, ns: &State) -> StateRv {
    use Conn as C;
    use Disk as D;
    let mut rv = StateRv::Success;
    let starting_sync = matches!(ns.conn, C::StartingSyncS | C::StartingSyncT);
    if starting_sync && !at_least(C::Connected, os.conn) {
        rv = StateRv::ResyncRunning;
    }
    if ns.conn == C::Disconnecting && os.conn == C::StandAlone {
        rv = StateRv::AlreadyStandalone;
    }
    if !below(ns.disk, D::Failed) && os.disk == D::Diskless {
        rv = StateRv::IsDiskless;
    }
    if ns.disk == D::Outdated && below(os.disk, D::Outdated) && os.disk != D::Attaching {
        rv = StateRv::LowerThanOutdated;
    }
    // Promotion during the resync handshake that a forced promotion of the peer started.
    if os.role != Role::Primary
        && ns.role == Role::Primary
        && ns.pdsk == D::UpToDate
        && !matches!(ns.disk, D::UpToDate | D::Diskless)
        && (!at_least(ns.conn, C::SyncSource) || ns.conn != os.conn)
    {
        rv = StateRv::InTransientState;
    }
    if starting_sync && !at_least(os.conn, C::Connected) {
        rv = StateRv::NeedConnection;
    }
    rv
}

/// `_drbd_set_state()`'s check of a requested change: an invalid new state is allowed only if
/// the old state was invalid for the same reason; then the soft-transition rules apply.
pub fn check_change(os: &State, ns: &State, lim: &Limits) -> StateRv {
    let rv = valid_state(ns, lim);
    if !rv.is_success() && valid_state(os, lim) != rv {
        return rv;
    }
    valid_soft_transition(os, ns)
}

/// Our own promotion (or demotion) to `role` while in state `os`: the new state, and whether
/// it is allowed locally. A forced promotion (`force`) makes our disk UpToDate.
pub fn local_role_change(os: &State, role: Role, force: bool, lim: &Limits) -> (State, StateRv) {
    let mut ns = *os;
    ns.role = role;
    if force && role == Role::Primary {
        ns.disk = Disk::UpToDate;
    }
    (ns, check_change(os, &ns, lim))
}

/// The `(mask, val)` of our `P_STATE_CHG_REQ` for a promotion (`drbd_set_role()`): the role,
/// and with `force` the disk made UpToDate. Phrased in our view, as DRBD sends it.
pub fn role_request(role: Role, force: bool) -> (u32, u32) {
    if force {
        ns(&[Field::Role(role), Field::Disk(Disk::UpToDate)])
    } else {
        ns(&[Field::Role(role)])
    }
}

/// The answer to a peer's `P_STATE_CHG_REQ` (`mask`, `val` in the peer's view) while our
/// state is `os`: the new state (the peer's role and disk as it will have them) or the reason
/// to refuse. `concurrent`: we have `RESOLVE_CONFLICTS` and a state change of our own is
/// being decided (`SS_CONCURRENT_ST_CHG`, as DRBD answers when its state mutex is held).
pub fn peer_request(
    os: &State,
    mask: u32,
    val: u32,
    lim: &Limits,
    concurrent: bool,
) -> Result<State, StateRv> {
    if concurrent {
        return Err(StateRv::ConcurrentStChg);
    }
    let (mask, val) = (convert_peer(mask), convert_peer(val));
    // Only the peer's own role and disk (the mask's peer and pdsk fields, in our view).
    let (allowed, _) = ns(&[Field::Peer(Role::Unknown), Field::Pdsk(Disk::Diskless)]);
    if mask & !allowed != 0 {
        return Err(StateRv::NotSupported);
    }
    let ns = State::unpack(apply(os.pack(), mask, val)).map_err(|_| StateRv::UnknownError)?;
    let rv = check_change(os, &ns, lim);
    if rv.is_success() {
        Ok(ns)
    } else {
        Err(rv)
    }
}

/// DRBD's name of a result (`SS_TWO_PRIMARIES`, ...), for messages next to its description.
pub fn ss_name(rv: StateRv) -> &'static str {
    match rv {
        StateRv::CwNoNeed => "SS_CW_NO_NEED",
        StateRv::CwSuccess => "SS_CW_SUCCESS",
        StateRv::NothingToDo => "SS_NOTHING_TO_DO",
        StateRv::Success => "SS_SUCCESS",
        StateRv::UnknownError => "SS_UNKNOWN_ERROR",
        StateRv::TwoPrimaries => "SS_TWO_PRIMARIES",
        StateRv::NoUpToDateDisk => "SS_NO_UP_TO_DATE_DISK",
        StateRv::NoLocalDisk => "SS_NO_LOCAL_DISK",
        StateRv::NoRemoteDisk => "SS_NO_REMOTE_DISK",
        StateRv::ConnectedOutdates => "SS_CONNECTED_OUTDATES",
        StateRv::PrimaryNop => "SS_PRIMARY_NOP",
        StateRv::ResyncRunning => "SS_RESYNC_RUNNING",
        StateRv::AlreadyStandalone => "SS_ALREADY_STANDALONE",
        StateRv::CwFailedByPeer => "SS_CW_FAILED_BY_PEER",
        StateRv::IsDiskless => "SS_IS_DISKLESS",
        StateRv::DeviceInUse => "SS_DEVICE_IN_USE",
        StateRv::NoNetConfig => "SS_NO_NET_CONFIG",
        StateRv::NoVerifyAlg => "SS_NO_VERIFY_ALG",
        StateRv::NeedConnection => "SS_NEED_CONNECTION",
        StateRv::LowerThanOutdated => "SS_LOWER_THAN_OUTDATED",
        StateRv::NotSupported => "SS_NOT_SUPPORTED",
        StateRv::InTransientState => "SS_IN_TRANSIENT_STATE",
        StateRv::ConcurrentStChg => "SS_CONCURRENT_ST_CHG",
        StateRv::OVolPeerPri => "SS_O_VOL_PEER_PRI",
        StateRv::OutdateWoConn => "SS_OUTDATE_WO_CONN",
    }
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use Conn as C;
    use Disk as D;
    use Role as R;

    fn st(role: Role, peer: Role, conn: Conn, disk: Disk, pdsk: Disk) -> State {
        State::new(role, peer, conn, disk, pdsk)
    }

    /// Both Secondary and Connected.
    fn secondaries(disk: Disk, pdsk: Disk) -> State {
        st(R::Secondary, R::Secondary, C::Connected, disk, pdsk)
    }

    const NONE: Limits = Limits {
        two_primaries: false,
        device_open: false,
    };

    /// The peer's request as it sends it (its own view): promote itself.
    fn peer_promotes(force: bool) -> (u32, u32) {
        role_request(R::Primary, force)
    }

    #[test]
    fn result_names() {
        assert_eq!(ss_name(StateRv::TwoPrimaries), "SS_TWO_PRIMARIES");
        assert_eq!(ss_name(StateRv::CwFailedByPeer), "SS_CW_FAILED_BY_PEER");
        for &r in StateRv::ALL {
            assert!(ss_name(r).starts_with("SS_"));
        }
    }

    #[test]
    fn promotion_while_connected_is_cluster_wide() {
        let os = secondaries(D::UpToDate, D::UpToDate);
        let (ns, rv) = local_role_change(&os, R::Primary, false, &NONE);
        assert_eq!(rv, StateRv::Success);
        assert!(is_cluster_wide(&os, &ns));
        // Demotion, and promotion without a connection, are local.
        let (ns2, _) = local_role_change(&ns, R::Secondary, false, &NONE);
        assert!(!is_cluster_wide(&ns, &ns2));
        let lone = st(
            R::Secondary,
            R::Unknown,
            C::WFConnection,
            D::UpToDate,
            D::DUnknown,
        );
        let (ns3, rv3) = local_role_change(&lone, R::Primary, false, &NONE);
        assert_eq!(rv3, StateRv::Success);
        assert!(!is_cluster_wide(&lone, &ns3));
        // During a sync too (SyncSource is beyond Connected).
        let sync = st(
            R::Secondary,
            R::Secondary,
            C::SyncSource,
            D::UpToDate,
            D::Inconsistent,
        );
        let (ns4, _) = local_role_change(&sync, R::Primary, false, &NONE);
        assert!(is_cluster_wide(&sync, &ns4));
    }

    #[test]
    fn second_primary_refused_locally_and_by_the_peer() {
        // We are Secondary, the peer is Primary: our promotion fails before asking.
        let os = st(
            R::Secondary,
            R::Primary,
            C::Connected,
            D::UpToDate,
            D::UpToDate,
        );
        let (_, rv) = local_role_change(&os, R::Primary, false, &NONE);
        assert_eq!(rv, StateRv::TwoPrimaries);
        assert_eq!(rv.to_wire(), 0xffff_ffff);
        let (_, forced) = local_role_change(&os, R::Primary, true, &NONE);
        assert_eq!(forced, StateRv::TwoPrimaries);
        // We are Primary and the peer asks to be promoted: refused.
        let me = st(
            R::Primary,
            R::Secondary,
            C::Connected,
            D::UpToDate,
            D::UpToDate,
        );
        let (m, v) = peer_promotes(false);
        assert_eq!(
            peer_request(&me, m, v, &NONE, false),
            Err(StateRv::TwoPrimaries)
        );
        // With allow-two-primaries it would be allowed (drbd_rs refuses that option).
        let two = Limits {
            two_primaries: true,
            ..NONE
        };
        assert!(peer_request(&me, m, v, &two, false).is_ok());
    }

    #[test]
    fn peer_promotion_granted_to_a_secondary() {
        let me = secondaries(D::UpToDate, D::UpToDate);
        let (m, v) = peer_promotes(false);
        let ns = peer_request(&me, m, v, &NONE, false).unwrap();
        assert_eq!(ns.peer, R::Primary);
        assert_eq!(ns.role, R::Secondary);
        assert_eq!(ns.pdsk, D::UpToDate);
        // A Secondary held open still grants it (its own role does not change).
        let open = Limits {
            device_open: true,
            ..NONE
        };
        assert!(peer_request(&me, m, v, &open, false).is_ok());
        // Once granted, our own promotion fails.
        let (_, rv) = local_role_change(&ns, R::Primary, false, &NONE);
        assert_eq!(rv, StateRv::TwoPrimaries);
    }

    #[test]
    fn forced_peer_promotion_over_our_inconsistent_disk() {
        // The C driver's `primary --force` on a fresh pair: role Primary, disk UpToDate.
        let me = secondaries(D::Inconsistent, D::Inconsistent);
        let (m, v) = peer_promotes(true);
        let ns = peer_request(&me, m, v, &NONE, false).unwrap();
        assert_eq!((ns.peer, ns.pdsk), (R::Primary, D::UpToDate));
        assert_eq!(ns.disk, D::Inconsistent);
        // Unforced, the peer refuses itself (no UpToDate data on either side): our rules
        // judge our own role, as DRBD's receiver does.
        let (m, v) = peer_promotes(false);
        let peer_view = secondaries(D::Inconsistent, D::Inconsistent);
        let (_, rv) = local_role_change(&peer_view, R::Primary, false, &NONE);
        assert_eq!(rv, StateRv::NoUpToDateDisk);
        assert!(peer_request(&me, m, v, &NONE, false).is_ok());
    }

    #[test]
    fn unsupported_and_concurrent_requests() {
        let me = secondaries(D::UpToDate, D::UpToDate);
        // invalidate-remote on the peer: conn StartingSyncS (ours would be StartingSyncT).
        let (m, v) = ns(&[Field::Conn(C::StartingSyncS), Field::Pdsk(D::Inconsistent)]);
        assert_eq!(
            peer_request(&me, m, v, &NONE, false),
            Err(StateRv::NotSupported)
        );
        // Our role is not the peer's to change.
        let (m, v) = ns(&[Field::Peer(R::Primary)]);
        assert_eq!(
            peer_request(&me, m, v, &NONE, false),
            Err(StateRv::NotSupported)
        );
        let (m, v) = peer_promotes(false);
        assert_eq!(
            peer_request(&me, m, v, &NONE, true),
            Err(StateRv::ConcurrentStChg)
        );
        // The peer detaching while connected (disk Failed) is granted.
        let (m, v) = ns(&[Field::Disk(D::Failed)]);
        let ns2 = peer_request(&me, m, v, &NONE, false).unwrap();
        assert_eq!(ns2.pdsk, D::Failed);
    }

    #[test]
    fn invalid_old_state_does_not_block_unrelated_changes() {
        // Connected with the peer's disk unknown is invalid (ConnectedOutdates), and stays so:
        // a role change is judged by the soft-transition rules only.
        let os = secondaries(D::UpToDate, D::DUnknown);
        assert_eq!(valid_state(&os, &NONE), StateRv::ConnectedOutdates);
        let (_, rv) = local_role_change(&os, R::Primary, false, &NONE);
        assert_eq!(rv, StateRv::Success);
    }

    #[test]
    fn promotion_during_the_forced_peers_handshake_waits() {
        // We are Inconsistent, the peer UpToDate (forced Primary), the sync not yet running.
        let os = st(
            R::Secondary,
            R::Secondary,
            C::WFBitMapT,
            D::Inconsistent,
            D::UpToDate,
        );
        let (_, rv) = local_role_change(&os, R::Primary, false, &NONE);
        assert_eq!(rv, StateRv::InTransientState);
    }

    #[test]
    fn every_request_word_gets_an_answer() {
        // No request word panics, and a granted one changes only the peer's role and disk.
        let me = st(
            R::Primary,
            R::Secondary,
            C::Connected,
            D::UpToDate,
            D::UpToDate,
        );
        let mut x: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let (m, v) = (x.rotate_left(7), x);
            if let Ok(ns) = peer_request(&me, m, v, &NONE, false) {
                assert_eq!((ns.role, ns.conn, ns.disk), (me.role, me.conn, me.disk));
            }
        }
    }
}
