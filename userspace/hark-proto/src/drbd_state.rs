// SPDX-License-Identifier: GPL-2.0

//! DRBD 8.4's state as it travels in `P_STATE` and `P_STATE_CHG_REQ`: roles, connection and
//! disk states with DRBD's numbers and names (`include/uapi/linux/drbd.h`, `drbd_strings.c`),
//! the packed 32-bit `union drbd_state`, the `NS()` mask/value pairs of state change requests
//! and the state change results (`enum drbd_state_rv`).
//!
//! The state word is sent as `cpu_to_be32(state.i)` of the little-endian bitfield layout,
//! least significant bit first: role:2, peer:2, conn:5, disk:4, pdsk:4, susp:1, aftr_isp:1,
//! peer_isp:1, user_isp:1, susp_nod:1, susp_fen:1, 9 unused bits. (Big-endian hosts swap the
//! field order so that the word value is the same.)

#![deny(clippy::arithmetic_side_effects)]

use super::drbd_wire::{named_enum, WireError};

named_enum! {
    /// Node roles (`enum drbd_role`).
    Role: u32,
    /// Decodes a role number (`R_MASK`, 3, is no role).
    fn from_u32,
    /// DRBD's name (`drbd_role_str`).
    fn name;
    /// Not known (peer not connected).
    Unknown = 0, "Unknown";
    /// Primary.
    Primary = 1, "Primary";
    /// Secondary.
    Secondary = 2, "Secondary";
}

named_enum! {
    /// Connection states (`enum drbd_conns`). Below `WFReportParams` there is no socket.
    Conn: u32,
    /// Decodes a connection state number.
    fn from_u32,
    /// DRBD's name (`drbd_conn_str`).
    fn name;
    /// Not configured to connect.
    StandAlone = 0, "StandAlone";
    /// On the way to StandAlone.
    Disconnecting = 1, "Disconnecting";
    /// Configured, not yet connecting.
    Unconnected = 2, "Unconnected";
    /// Lost: the peer did not answer in time.
    Timeout = 3, "Timeout";
    /// Lost: the socket broke.
    BrokenPipe = 4, "BrokenPipe";
    /// Lost: network failure.
    NetworkFailure = 5, "NetworkFailure";
    /// Lost: the peer violated the protocol.
    ProtocolError = 6, "ProtocolError";
    /// Lost: the peer closed the connection.
    TearDown = 7, "TearDown";
    /// Waiting for the peer to connect.
    WFConnection = 8, "WFConnection";
    /// Socket up, handshake running.
    WFReportParams = 9, "WFReportParams";
    /// Connected, in sync (or unknown).
    Connected = 10, "Connected";
    /// Admin-requested full sync starting, we are source.
    StartingSyncS = 11, "StartingSyncS";
    /// Admin-requested full sync starting, we are target.
    StartingSyncT = 12, "StartingSyncT";
    /// Sending the bitmap, then sync source.
    WFBitMapS = 13, "WFBitMapS";
    /// Waiting for the bitmap, then sync target.
    WFBitMapT = 14, "WFBitMapT";
    /// Waiting for `P_SYNC_UUID`.
    WFSyncUUID = 15, "WFSyncUUID";
    /// Resync, we send.
    SyncSource = 16, "SyncSource";
    /// Resync, we receive.
    SyncTarget = 17, "SyncTarget";
    /// Online verify, we start it.
    VerifyS = 18, "VerifyS";
    /// Online verify, peer started it.
    VerifyT = 19, "VerifyT";
    /// Resync paused, we send.
    PausedSyncS = 20, "PausedSyncS";
    /// Resync paused, we receive.
    PausedSyncT = 21, "PausedSyncT";
    /// Congestion: only marking blocks out of sync.
    Ahead = 22, "Ahead";
    /// The peer is Ahead.
    Behind = 23, "Behind";
}

named_enum! {
    /// Disk states (`enum drbd_disk_state`).
    Disk: u32,
    /// Decodes a disk state number.
    fn from_u32,
    /// DRBD's name (`drbd_disk_str`).
    fn name;
    /// No backing device.
    Diskless = 0, "Diskless";
    /// Reading the metadata.
    Attaching = 1, "Attaching";
    /// I/O error, about to become Diskless.
    Failed = 2, "Failed";
    /// Attaching while connected: the peer decides.
    Negotiating = 3, "Negotiating";
    /// Data not usable (resync target, never synced).
    Inconsistent = 4, "Inconsistent";
    /// Consistent but known to be old.
    Outdated = 5, "Outdated";
    /// Peer disk not known (peer only).
    DUnknown = 6, "DUnknown";
    /// Consistent, maybe Outdated, maybe UpToDate.
    Consistent = 7, "Consistent";
    /// Current data.
    UpToDate = 8, "UpToDate";
}

named_enum! {
    /// Results of a state change (`enum drbd_state_rv`), as carried by `P_STATE_CHG_REPLY`.
    StateRv: i32,
    /// Decodes a result (`SS_AFTER_LAST_ERROR` and the unused -3 are none).
    fn from_i32,
    /// A description: DRBD's text for the errors (`drbd_set_st_err_str`), ours for the
    /// others (DRBD has none).
    fn name;
    /// `SS_CW_NO_NEED`: no cluster-wide change needed.
    CwNoNeed = 4, "No cluster-wide state change needed";
    /// `SS_CW_SUCCESS`: cluster-wide change succeeded.
    CwSuccess = 3, "Cluster-wide state change succeeded";
    /// `SS_NOTHING_TO_DO`.
    NothingToDo = 2, "Nothing to do";
    /// `SS_SUCCESS`.
    Success = 1, "Success";
    /// `SS_UNKNOWN_ERROR`.
    UnknownError = 0, "Unknown error";
    /// `SS_TWO_PRIMARIES`.
    TwoPrimaries = -1, "Multiple primaries not allowed by config";
    /// `SS_NO_UP_TO_DATE_DISK`.
    NoUpToDateDisk = -2, "Need access to UpToDate data";
    /// `SS_NO_LOCAL_DISK`.
    NoLocalDisk = -4, "Can not resync without local disk";
    /// `SS_NO_REMOTE_DISK`.
    NoRemoteDisk = -5, "Can not resync without remote disk";
    /// `SS_CONNECTED_OUTDATES`.
    ConnectedOutdates = -6, "Refusing to be Outdated while Connected";
    /// `SS_PRIMARY_NOP`.
    PrimaryNop = -7, "Refusing to be Primary while peer is not outdated";
    /// `SS_RESYNC_RUNNING`.
    ResyncRunning = -8, "Can not start OV/resync since it is already active";
    /// `SS_ALREADY_STANDALONE`.
    AlreadyStandalone = -9, "Can not disconnect a StandAlone device";
    /// `SS_CW_FAILED_BY_PEER`.
    CwFailedByPeer = -10, "State change was refused by peer node";
    /// `SS_IS_DISKLESS`.
    IsDiskless = -11, "Device is diskless, the requested operation requires a disk";
    /// `SS_DEVICE_IN_USE`.
    DeviceInUse = -12, "Device is held open by someone";
    /// `SS_NO_NET_CONFIG`.
    NoNetConfig = -13, "Have no net/connection configuration";
    /// `SS_NO_VERIFY_ALG`.
    NoVerifyAlg = -14, "Need a verify algorithm to start online verify";
    /// `SS_NEED_CONNECTION`.
    NeedConnection = -15, "Need a connection to start verify or resync";
    /// `SS_LOWER_THAN_OUTDATED`.
    LowerThanOutdated = -16, "Disk state is lower than outdated";
    /// `SS_NOT_SUPPORTED`.
    NotSupported = -17, "Peer does not support protocol";
    /// `SS_IN_TRANSIENT_STATE`.
    InTransientState = -18, "In transient state, retry after next state change";
    /// `SS_CONCURRENT_ST_CHG`.
    ConcurrentStChg = -19, "Concurrent state changes detected and aborted";
    /// `SS_O_VOL_PEER_PRI`.
    OVolPeerPri = -20, "Other vol primary on peer not allowed by config";
    /// `SS_OUTDATE_WO_CONN`.
    OutdateWoConn = -21, "Need a connection for a graceful disconnect/outdate peer";
}

impl StateRv {
    /// Whether the requester treats it as success (`retcode >= SS_SUCCESS`, `got_RqSReply`).
    pub const fn is_success(self) -> bool {
        self as i32 >= StateRv::Success as i32
    }

    /// The reply word of `P_STATE_CHG_REPLY` (two's complement).
    pub const fn to_wire(self) -> u32 {
        self as i32 as u32
    }

    /// Decodes a reply word.
    pub const fn from_wire(v: u32) -> Option<StateRv> {
        StateRv::from_i32(v as i32)
    }
}

/// Bit position and width of the fields of the state word.
const ROLE: (u32, u32) = (0, 2);
const PEER: (u32, u32) = (2, 2);
const CONN: (u32, u32) = (4, 5);
const DISK: (u32, u32) = (9, 4);
const PDSK: (u32, u32) = (13, 4);
const SUSP: (u32, u32) = (17, 1);
const AFTR_ISP: (u32, u32) = (18, 1);
const PEER_ISP: (u32, u32) = (19, 1);
const USER_ISP: (u32, u32) = (20, 1);
const SUSP_NOD: (u32, u32) = (21, 1);
const SUSP_FEN: (u32, u32) = (22, 1);

/// The field mask `(shift, width)` covers, in place.
const fn mask_of((shift, width): (u32, u32)) -> u32 {
    !(u32::MAX << width) << shift
}

/// Reads a field out of a word.
const fn get((shift, width): (u32, u32), word: u32) -> u32 {
    (word >> shift) & !(u32::MAX << width)
}

/// Writes a field into a word (the value truncated to the field's width, as C bitfields do).
const fn put(f: (u32, u32), word: u32, v: u32) -> u32 {
    (word & !mask_of(f)) | ((v << f.0) & mask_of(f))
}

/// DRBD's state of one device on one node, as in `P_STATE` (sender's view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Own role.
    pub role: Role,
    /// Peer's role.
    pub peer: Role,
    /// Connection state.
    pub conn: Conn,
    /// Own disk.
    pub disk: Disk,
    /// Peer's disk.
    pub pdsk: Disk,
    /// I/O suspended by the user.
    pub susp: bool,
    /// Resync paused by the resync-after dependency.
    pub aftr_isp: bool,
    /// Resync paused by the peer.
    pub peer_isp: bool,
    /// Resync paused by the user.
    pub user_isp: bool,
    /// I/O suspended: no data accessible.
    pub susp_nod: bool,
    /// I/O suspended: fence-peer handler running.
    pub susp_fen: bool,
}

impl State {
    /// A state with these roles, connection and disk states, and every flag clear.
    pub const fn new(role: Role, peer: Role, conn: Conn, disk: Disk, pdsk: Disk) -> State {
        State {
            role,
            peer,
            conn,
            disk,
            pdsk,
            susp: false,
            aftr_isp: false,
            peer_isp: false,
            user_isp: false,
            susp_nod: false,
            susp_fen: false,
        }
    }

    /// The packed word (`union drbd_state`'s `i`; unused bits 0).
    pub const fn pack(&self) -> u32 {
        let mut w = 0;
        w = put(ROLE, w, self.role as u32);
        w = put(PEER, w, self.peer as u32);
        w = put(CONN, w, self.conn as u32);
        w = put(DISK, w, self.disk as u32);
        w = put(PDSK, w, self.pdsk as u32);
        w = put(SUSP, w, self.susp as u32);
        w = put(AFTR_ISP, w, self.aftr_isp as u32);
        w = put(PEER_ISP, w, self.peer_isp as u32);
        w = put(USER_ISP, w, self.user_isp as u32);
        w = put(SUSP_NOD, w, self.susp_nod as u32);
        put(SUSP_FEN, w, self.susp_fen as u32)
    }

    /// Unpacks a word; a number that is no role, connection or disk state is `BadValue`.
    /// The 9 unused bits are ignored, as DRBD does.
    pub fn unpack(w: u32) -> Result<State, WireError> {
        let bad = WireError::BadValue;
        Ok(State {
            role: Role::from_u32(get(ROLE, w)).ok_or(bad)?,
            peer: Role::from_u32(get(PEER, w)).ok_or(bad)?,
            conn: Conn::from_u32(get(CONN, w)).ok_or(bad)?,
            disk: Disk::from_u32(get(DISK, w)).ok_or(bad)?,
            pdsk: Disk::from_u32(get(PDSK, w)).ok_or(bad)?,
            susp: get(SUSP, w) != 0,
            aftr_isp: get(AFTR_ISP, w) != 0,
            peer_isp: get(PEER_ISP, w) != 0,
            user_isp: get(USER_ISP, w) != 0,
            susp_nod: get(SUSP_NOD, w) != 0,
            susp_fen: get(SUSP_FEN, w) != 0,
        })
    }
}

/// One field assignment of a state change request (an argument pair of DRBD's `NS()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `role`.
    Role(Role),
    /// `peer`.
    Peer(Role),
    /// `conn`.
    Conn(Conn),
    /// `disk`.
    Disk(Disk),
    /// `pdsk`.
    Pdsk(Disk),
    /// `susp`.
    Susp(bool),
    /// `aftr_isp`.
    AftrIsp(bool),
    /// `peer_isp` (DRBD has no `NS()` mask for it; ours covers the bit).
    PeerIsp(bool),
    /// `user_isp`.
    UserIsp(bool),
    /// `susp_nod`.
    SuspNod(bool),
    /// `susp_fen`.
    SuspFen(bool),
}

impl Field {
    const fn place(self) -> ((u32, u32), u32) {
        match self {
            Field::Role(r) => (ROLE, r as u32),
            Field::Peer(r) => (PEER, r as u32),
            Field::Conn(c) => (CONN, c as u32),
            Field::Disk(d) => (DISK, d as u32),
            Field::Pdsk(d) => (PDSK, d as u32),
            Field::Susp(b) => (SUSP, b as u32),
            Field::AftrIsp(b) => (AFTR_ISP, b as u32),
            Field::PeerIsp(b) => (PEER_ISP, b as u32),
            Field::UserIsp(b) => (USER_ISP, b as u32),
            Field::SuspNod(b) => (SUSP_NOD, b as u32),
            Field::SuspFen(b) => (SUSP_FEN, b as u32),
        }
    }
}

/// The `(mask, val)` pair of DRBD's `NS()`, `NS2()`, `NS3()` for field assignments: each
/// field's whole width in the mask (`R_MASK`, `C_MASK`, `D_MASK`, 1), its value in `val`.
/// A later assignment of the same field wins.
pub fn ns(fields: &[Field]) -> (u32, u32) {
    let mut mask = 0;
    let mut val = 0;
    for f in fields {
        let (place, v) = f.place();
        mask |= mask_of(place);
        val = put(place, val, v);
    }
    (mask, val)
}

/// Applies a `(mask, val)` change to a state word: `(word & !mask) | val`.
pub const fn apply(word: u32, mask: u32, val: u32) -> u32 {
    (word & !mask) | (val & mask)
}

/// A peer's state word (or request mask/value) in our view (`convert_state`): roles and disks
/// swap, `peer_isp` becomes the peer's `aftr_isp | user_isp`, and the connection state maps
/// through DRBD's table (StartingSyncS <-> StartingSyncT, VerifyS -> VerifyT, Disconnecting ->
/// TearDown, WFReportParams, Connected and the mask value 31 stay; every other value becomes
/// 0, StandAlone, as in DRBD).
pub const fn convert_peer(w: u32) -> u32 {
    let conn = match get(CONN, w) {
        9 => 9,
        10 => 10,
        11 => 12,
        12 => 11,
        1 => 7,
        18 => 19,
        31 => 31,
        _ => 0,
    };
    let mut m = put(CONN, w, conn);
    m = put(PEER, m, get(ROLE, w));
    m = put(ROLE, m, get(PEER, w));
    m = put(PDSK, m, get(DISK, w));
    m = put(DISK, m, get(PDSK, w));
    put(PEER_ISP, m, get(AFTR_ISP, w) | get(USER_ISP, w))
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn st(role: Role, peer: Role, conn: Conn, disk: Disk, pdsk: Disk) -> State {
        State::new(role, peer, conn, disk, pdsk)
    }

    #[test]
    fn numbers_and_names_match_drbd() {
        assert_eq!(Role::ALL.len(), 3);
        assert_eq!(Conn::ALL.len(), 24);
        assert_eq!(Disk::ALL.len(), 9);
        assert_eq!(Conn::WFReportParams as u32, 9);
        assert_eq!(Conn::SyncSource as u32, 16);
        assert_eq!(Conn::Behind as u32, 23);
        assert_eq!(Disk::DUnknown as u32, 6);
        assert_eq!(Disk::UpToDate.name(), "UpToDate");
        assert_eq!(Conn::WFBitMapS.name(), "WFBitMapS");
        assert_eq!(Conn::WFSyncUUID.name(), "WFSyncUUID");
        assert_eq!(Role::from_u32(3), None);
        assert_eq!(Conn::from_u32(24), None);
        assert_eq!(Disk::from_u32(9), None);
        for (i, c) in Conn::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(Conn::from_u32(i as u32), Some(*c));
        }
        for (i, d) in Disk::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
        }
        assert_eq!(StateRv::from_i32(-3), None);
        assert_eq!(StateRv::from_i32(-22), None);
        assert_eq!(StateRv::CwFailedByPeer as i32, -10);
        assert!(StateRv::CwNoNeed.is_success());
        assert!(!StateRv::UnknownError.is_success());
        assert_eq!(
            StateRv::from_wire(0xffff_fff6),
            Some(StateRv::CwFailedByPeer)
        );
        assert_eq!(StateRv::TwoPrimaries.to_wire(), 0xffff_ffff);
        for &r in StateRv::ALL {
            assert_eq!(StateRv::from_wire(r.to_wire()), Some(r));
        }
    }

    #[test]
    fn packed_words_computed_from_the_c_layout() {
        use super::{Conn as C, Disk as D, Role as R};
        // Secondary/Secondary Connected UpToDate/UpToDate:
        // 2 | 2<<2 | 10<<4 | 8<<9 | 8<<13 = 0x2 + 0x8 + 0xa0 + 0x1000 + 0x10000.
        let s = st(
            R::Secondary,
            R::Secondary,
            C::Connected,
            D::UpToDate,
            D::UpToDate,
        );
        assert_eq!(s.pack(), 0x0001_10aa);
        assert_eq!(State::unpack(0x0001_10aa), Ok(s));
        // Primary/Unknown WFConnection UpToDate/DUnknown, fencing: 1 | 8<<4 | 8<<9 | 6<<13 | 1<<22.
        let mut p = st(
            R::Primary,
            R::Unknown,
            C::WFConnection,
            D::UpToDate,
            D::DUnknown,
        );
        p.susp_fen = true;
        assert_eq!(p.pack(), 0x0040_d081);
        assert_eq!(State::unpack(0x0040_d081), Ok(p));
        // Each flag at its bit: susp 17, aftr_isp 18, peer_isp 19, user_isp 20, susp_nod 21.
        let base = st(
            R::Unknown,
            R::Unknown,
            C::StandAlone,
            D::Diskless,
            D::Diskless,
        );
        type SetFlag = fn(&mut State);
        let flags: [(SetFlag, u32); 5] = [
            (|s| s.susp = true, 1 << 17),
            (|s| s.aftr_isp = true, 1 << 18),
            (|s| s.peer_isp = true, 1 << 19),
            (|s| s.user_isp = true, 1 << 20),
            (|s| s.susp_nod = true, 1 << 21),
        ];
        for (set, bit) in flags {
            let mut s = base;
            set(&mut s);
            assert_eq!(s.pack(), bit);
            assert_eq!(State::unpack(bit), Ok(s));
        }
        // Unknown values; unused bits ignored.
        assert_eq!(State::unpack(3), Err(WireError::BadValue));
        assert_eq!(State::unpack(3 << 2), Err(WireError::BadValue));
        assert_eq!(State::unpack(24 << 4), Err(WireError::BadValue));
        assert_eq!(State::unpack(9 << 9), Err(WireError::BadValue));
        assert_eq!(State::unpack(15 << 13), Err(WireError::BadValue));
        assert_eq!(State::unpack(0xff80_0000), Ok(base));
    }

    #[test]
    fn ns_masks_like_drbd() {
        // NS(conn, C_DISCONNECTING): C_MASK (31) at bit 4, 1 at bit 4.
        assert_eq!(ns(&[Field::Conn(Conn::Disconnecting)]), (0x1f0, 0x10));
        // NS2(role, R_SECONDARY, disk, D_OUTDATED): 3 | 15<<9, 2 | 5<<9.
        assert_eq!(
            ns(&[Field::Role(Role::Secondary), Field::Disk(Disk::Outdated)]),
            (0x1e03, 0xa02)
        );
        // NS(pdsk, D_OUTDATED) and NS(susp_fen, 0).
        assert_eq!(ns(&[Field::Pdsk(Disk::Outdated)]), (0x1_e000, 0xa000));
        assert_eq!(ns(&[Field::SuspFen(false)]), (1 << 22, 0));
        let s = st(
            Role::Primary,
            Role::Secondary,
            Conn::Connected,
            Disk::UpToDate,
            Disk::UpToDate,
        );
        let (m, v) = ns(&[
            Field::Conn(Conn::SyncSource),
            Field::Pdsk(Disk::Inconsistent),
        ]);
        let mut want = s;
        want.conn = Conn::SyncSource;
        want.pdsk = Disk::Inconsistent;
        assert_eq!(State::unpack(apply(s.pack(), m, v)), Ok(want));
    }

    #[test]
    fn convert_peer_swaps_views() {
        let mut peer = st(
            Role::Primary,
            Role::Secondary,
            Conn::StartingSyncS,
            Disk::UpToDate,
            Disk::Inconsistent,
        );
        peer.user_isp = true;
        let mut ours = st(
            Role::Secondary,
            Role::Primary,
            Conn::StartingSyncT,
            Disk::Inconsistent,
            Disk::UpToDate,
        );
        ours.user_isp = true;
        ours.peer_isp = true;
        assert_eq!(State::unpack(convert_peer(peer.pack())), Ok(ours));
        // A request mask keeps its full-width fields.
        let (m, v) = ns(&[Field::Conn(Conn::VerifyS)]);
        assert_eq!(convert_peer(m), m);
        assert_eq!(convert_peer(v), (Conn::VerifyT as u32) << 4);
        let (m, v) = ns(&[Field::Role(Role::Secondary), Field::Disk(Disk::Outdated)]);
        assert_eq!(
            (convert_peer(m), convert_peer(v)),
            ns(&[Field::Peer(Role::Secondary), Field::Pdsk(Disk::Outdated)])
        );
        // Connection states outside DRBD's table become StandAlone.
        let (_, v) = ns(&[Field::Conn(Conn::SyncTarget)]);
        assert_eq!(convert_peer(v), 0);
        assert_eq!(
            convert_peer(ns(&[Field::Conn(Conn::Disconnecting)]).1),
            (Conn::TearDown as u32) << 4
        );
    }
}
