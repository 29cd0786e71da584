// SPDX-License-Identifier: GPL-2.0

//! DRBD 8.4's sync handshake as pure logic: which node becomes sync source or target, whether
//! the bitmap or the whole device is synced, and when it is a split brain. Our port of the
//! semantics of `drbd_uuid_compare()`, `drbd_asb_recover_*p()` and the decision part of
//! `drbd_sync_handshake()` in `drbd_receiver.c`; rule numbers are DRBD's (for log lines).
//!
//! Generation UUIDs: the lowest bit of the current UUID says "was primary" and is masked out
//! in every comparison; the bitmap UUID is the current UUID when the bitmap started to record
//! changes; history UUIDs are former bitmap UUIDs.

#![deny(clippy::arithmetic_side_effects)]

use super::drbd_state::{Disk, Role};
use super::drbd_wire::{self, AfterSb, FF_WSAME, PRO_VERSION_MAX};

/// Current UUID of freshly created metadata (`UUID_JUST_CREATED`).
pub const UUID_JUST_CREATED: u64 = 4;
/// Distance DRBD adds to the bitmap UUID at resync start from 96 on (`UUID_NEW_BM_OFFSET`).
pub const UUID_NEW_BM_OFFSET: u64 = 1 << 48;
/// `P_UUIDS` flag: the sender discards its data in a split brain (discard-my-data).
pub const UUID_FLAG_DISCARD_MY_DATA: u64 = 1;
/// `P_UUIDS` flag: the sender was primary when it crashed.
pub const UUID_FLAG_CRASHED_PRIMARY: u64 = 2;
/// `P_UUIDS` flag: the sender's disk is (about to be) Inconsistent.
pub const UUID_FLAG_INCONSISTENT: u64 = 4;
/// `P_UUIDS` flag: skip the initial sync (new-current-uuid --clear-bitmap).
pub const UUID_FLAG_SKIP_INITIAL_SYNC: u64 = 8;

/// One node's generation UUIDs as exchanged in `P_UUIDS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uuids {
    /// Current UUID (bit 0: was primary).
    pub current: u64,
    /// Bitmap UUID (0: bitmap not in use).
    pub bitmap: u64,
    /// History UUIDs (`UI_HISTORY_START`, `UI_HISTORY_END`).
    pub history: [u64; 2],
    /// Set bits in the bitmap (own: at handshake time, `comm_bm_set`).
    pub dirty_bits: u64,
    /// `UUID_FLAG_*`.
    pub flags: u64,
}

impl Uuids {
    /// From a `P_UUIDS` payload.
    pub fn from_wire(w: &drbd_wire::Uuids) -> Uuids {
        Uuids {
            current: w.current,
            bitmap: w.bitmap,
            history: [w.history_start, w.history_end],
            dirty_bits: w.dirty_bits,
            flags: w.flags,
        }
    }

    /// As a `P_UUIDS` payload.
    pub fn to_wire(&self) -> drbd_wire::Uuids {
        drbd_wire::Uuids {
            current: self.current,
            bitmap: self.bitmap,
            history_start: self.history[0],
            history_end: self.history[1],
            dirty_bits: self.dirty_bits,
            flags: self.flags,
        }
    }

    /// Moves the bitmap UUID into the history (the "resync finished" rotation).
    fn rotate_bitmap_into_history(&mut self) {
        self.history[1] = self.history[0];
        self.history[0] = self.bitmap;
        self.bitmap = 0;
    }

    /// Undoes the start of a resync as sync source (bitmap UUID back from the history).
    fn undo_resync_start(&mut self) {
        self.bitmap = self.history[0];
        self.history[0] = self.history[1];
    }
}

/// A UUID without its "was primary" bit.
const fn id(u: u64) -> u64 {
    u & !1
}

/// A UUID correction `drbd_uuid_compare` makes on the way (DRBD writes it back to the
/// metadata for our side, and uses the corrected peer UUIDs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Rule 34: we were sync source and missed the resync-finished event: our bitmap UUID
    /// moves into the history.
    SelfResyncFinished,
    /// Rule 35: the peer was sync source and missed it: the same on the peer's UUIDs.
    PeerResyncFinished,
    /// Rule 51: the peer's last `P_SYNC_UUID` was lost: its bitmap UUID comes back from its
    /// history.
    PeerSyncUuidLost,
    /// Rule 71: our last `P_SYNC_UUID` did not get through: the same on our UUIDs.
    SelfSyncUuidLost,
}

impl Fix {
    /// Applies the correction to our and the peer's UUIDs.
    pub fn apply(self, me: &mut Uuids, peer: &mut Uuids) {
        match self {
            Fix::SelfResyncFinished => me.rotate_bitmap_into_history(),
            Fix::PeerResyncFinished => peer.rotate_bitmap_into_history(),
            Fix::PeerSyncUuidLost => peer.undo_resync_start(),
            Fix::SelfSyncUuidLost => me.undo_resync_start(),
        }
    }
}

/// What `drbd_uuid_compare` found: DRBD's number (`hg`), the rule and a UUID correction.
///
/// `hg`: 2 / -2 full sync as source / target, 1 / -1 bitmap sync as source / target, 0 no
/// sync, 100 split brain (auto recovery may try), -100 split brain (disconnect), -1000
/// unrelated data, -1091 needs protocol 91, below -0x10000 needs protocol and feature flags
/// (`-(0x10000 | proto | flags << 8)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compared {
    /// DRBD's result number.
    pub hg: i32,
    /// The rule that decided (10..=100, DRBD's numbering).
    pub rule: u32,
    /// A correction to apply to the UUIDs, if the rule made one.
    pub fix: Option<Fix>,
}

/// Inputs of the comparison besides the UUIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Agreed protocol version.
    pub agreed: u32,
    /// Agreed feature flags (`DRBD_FF_*`).
    pub features: u32,
    /// Whether this node has `RESOLVE_CONFLICTS` (exactly one node of a connection has it).
    pub resolve_conflicts: bool,
    /// Our disk state is Negotiating (attaching while connected); our [`Side::disk`] is then
    /// the state being negotiated. Only the rr-conflict check looks at it.
    pub negotiating: bool,
}

/// Compares our UUIDs (`me`, with our role) with the peer's (`peer_role`), like
/// `drbd_uuid_compare`.
pub fn uuid_compare(
    me: &Uuids,
    my_role: Role,
    peer: &Uuids,
    peer_role: Role,
    link: &Link,
) -> Compared {
    let r = |hg: i32, rule: u32| Compared {
        hg,
        rule,
        fix: None,
    };
    let fixed = |hg: i32, rule: u32, fix: Fix| Compared {
        hg,
        rule,
        fix: Some(fix),
    };
    let s = id(me.current);
    let p = id(peer.current);

    if s == UUID_JUST_CREATED && p == UUID_JUST_CREATED {
        return r(0, 10);
    }
    if (s == UUID_JUST_CREATED || s == 0) && p != UUID_JUST_CREATED {
        return r(-2, 20);
    }
    if s != UUID_JUST_CREATED && (p == UUID_JUST_CREATED || p == 0) {
        return r(2, 30);
    }

    if s == p {
        if peer.bitmap == 0 && me.bitmap != 0 {
            if link.agreed < 91 {
                return r(-1091, 30);
            }
            if id(me.bitmap) == id(peer.history[0]) && id(me.history[0]) == id(peer.history[1]) {
                return fixed(1, 34, Fix::SelfResyncFinished);
            }
            return r(1, 36);
        }
        if me.bitmap == 0 && peer.bitmap != 0 {
            if link.agreed < 91 {
                return r(-1091, 30);
            }
            if id(me.history[0]) == id(peer.bitmap) && id(me.history[1]) == id(peer.history[0]) {
                return fixed(-1, 35, Fix::PeerResyncFinished);
            }
            return r(-1, 37);
        }

        // Roles at crash time: bit 0 we, bit 1 the peer.
        let rct = u32::from(me.flags & UUID_FLAG_CRASHED_PRIMARY != 0)
            | (peer.flags & UUID_FLAG_CRASHED_PRIMARY) as u32;
        if rct == 0 {
            return r(0, 40);
        }
        if my_role == Role::Primary || peer_role == Role::Primary {
            if link.features & FF_WSAME == 0 {
                let need = 0x10000 | PRO_VERSION_MAX | (FF_WSAME << 8);
                // A small constant: the negation is exact.
                return r((need as i32).saturating_neg(), 41);
            }
            if my_role == Role::Primary && peer_role == Role::Primary {
                return r(-100, 41);
            }
            return r(if my_role == Role::Primary { 1 } else { -1 }, 41);
        }
        return match rct {
            1 => r(1, 40),
            2 => r(-1, 40),
            _ => r(if link.resolve_conflicts { -1 } else { 1 }, 40),
        };
    }

    if s == id(peer.bitmap) {
        return r(-1, 50);
    }

    if s == id(peer.history[0]) {
        let lost = if link.agreed < 96 {
            id(me.history[0]) == id(peer.history[1])
        } else {
            id(peer.history[0]).wrapping_add(UUID_NEW_BM_OFFSET) == id(peer.bitmap)
        };
        if lost {
            if link.agreed < 91 {
                return r(-1091, 51);
            }
            return fixed(-1, 51, Fix::PeerSyncUuidLost);
        }
    }

    if peer.history.iter().any(|&h| s == id(h)) {
        return r(-2, 60);
    }

    if id(me.bitmap) == p {
        return r(1, 70);
    }

    if id(me.history[0]) == p {
        let lost = if link.agreed < 96 {
            id(me.history[1]) == id(peer.history[0])
        } else {
            id(me.history[0]).wrapping_add(UUID_NEW_BM_OFFSET) == id(me.bitmap)
        };
        if lost {
            if link.agreed < 91 {
                return r(-1091, 71);
            }
            return fixed(1, 71, Fix::SelfSyncUuidLost);
        }
    }

    if me.history.iter().any(|&h| id(h) == p) {
        return r(2, 80);
    }

    if id(me.bitmap) == id(peer.bitmap) && id(me.bitmap) != 0 {
        return r(100, 90);
    }

    if me
        .history
        .iter()
        .any(|&h| peer.history.iter().any(|&g| id(h) == id(g)))
    {
        return r(-100, 100);
    }
    r(-1000, 100)
}

/// How an after-split-brain policy resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbResolution {
    /// Our data is discarded: we become sync target.
    DiscardLocal,
    /// The peer's data is discarded: we become sync source.
    DiscardRemote,
    /// No automatic decision: disconnect.
    Disconnect,
}

impl SbResolution {
    const fn hg(self) -> i32 {
        match self {
            SbResolution::DiscardLocal => -1,
            SbResolution::DiscardRemote => 1,
            SbResolution::Disconnect => -100,
        }
    }
}

/// The after-sb-0pri decision (`drbd_asb_recover_0p`): younger/older primary by the
/// "was primary" bit of the bitmap UUIDs (falling through to least changes), zero and least
/// changes by the dirty bit counts (ties: the node with `resolve_conflicts` is discarded),
/// discard-local/-remote. Policies meant for 1 or 2 primaries are a configuration error:
/// disconnect.
fn recover_0p(policy: AfterSb, me: &Uuids, peer: &Uuids, resolve_conflicts: bool) -> SbResolution {
    use SbResolution::*;
    let s = me.bitmap & 1;
    let p = peer.bitmap & 1;
    let (ch_self, ch_peer) = (me.dirty_bits, peer.dirty_bits);
    let tie = if resolve_conflicts {
        DiscardLocal
    } else {
        DiscardRemote
    };
    let least = || match ch_self.cmp(&ch_peer) {
        core::cmp::Ordering::Less => DiscardLocal,
        core::cmp::Ordering::Greater => DiscardRemote,
        core::cmp::Ordering::Equal => tie,
    };
    let zero_or_least = |only_zero: bool| {
        if ch_self == 0 && ch_peer == 0 {
            tie
        } else if ch_peer == 0 {
            DiscardRemote
        } else if ch_self == 0 {
            DiscardLocal
        } else if only_zero {
            Disconnect
        } else {
            least()
        }
    };
    let older = || match (s, p) {
        (0, 1) => DiscardRemote,
        (1, 0) => DiscardLocal,
        _ => zero_or_least(false),
    };
    match policy {
        AfterSb::Disconnect
        | AfterSb::Consensus
        | AfterSb::DiscardSecondary
        | AfterSb::CallHelper
        | AfterSb::Violently => Disconnect,
        AfterSb::DiscardYoungerPri => match (s, p) {
            (0, 1) => DiscardLocal,
            (1, 0) => DiscardRemote,
            _ => older(),
        },
        AfterSb::DiscardOlderPri => older(),
        AfterSb::DiscardZeroChg => zero_or_least(true),
        AfterSb::DiscardLeastChg => least(),
        AfterSb::DiscardLocal => DiscardLocal,
        AfterSb::DiscardRemote => DiscardRemote,
    }
}

/// Resolves a split brain by the after-sb policies (`[0pri, 1pri, 2pri]`, in our view) for
/// the number of primaries among us and the peer (`drbd_asb_recover_{0,1,2}p`).
///
/// 0 primaries: every 0-primaries policy. 1 primary: consensus, violently-as0p,
/// discard-secondary. 2 primaries: violently-as0p. `call-pri-lost-after-sb` resolves like the
/// 0-primaries policy unless that would discard a primary's data, which DRBD handles by
/// demoting it (or running the `pri-lost-after-sb` helper): we do not, and disconnect.
/// Policies invalid for the number of primaries (a configuration error in DRBD) disconnect.
pub fn resolve_split_brain(
    after_sb: [AfterSb; 3],
    my_role: Role,
    peer_role: Role,
    me: &Uuids,
    peer: &Uuids,
    resolve_conflicts: bool,
) -> SbResolution {
    use SbResolution::*;
    let as0p = || recover_0p(after_sb[0], me, peer, resolve_conflicts);
    let i_am_primary = my_role == Role::Primary;
    let primaries =
        usize::from(i_am_primary).saturating_add(usize::from(peer_role == Role::Primary));
    let call_helper = |discard_primary: bool| match as0p() {
        DiscardLocal if discard_primary => Disconnect,
        v => v,
    };
    match (primaries, after_sb[primaries.min(2)]) {
        (0, p) => recover_0p(p, me, peer, resolve_conflicts),
        (1, AfterSb::Consensus) => match as0p() {
            DiscardLocal if !i_am_primary => DiscardLocal,
            DiscardRemote if i_am_primary => DiscardRemote,
            _ => Disconnect,
        },
        (_, AfterSb::Violently) => as0p(),
        (1, AfterSb::DiscardSecondary) => {
            if i_am_primary {
                DiscardRemote
            } else {
                DiscardLocal
            }
        }
        (1, AfterSb::CallHelper) => call_helper(i_am_primary),
        (_, AfterSb::CallHelper) => call_helper(true),
        _ => Disconnect,
    }
}

/// One side of the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    /// Generation UUIDs, dirty bits and flags.
    pub uuids: Uuids,
    /// Role.
    pub role: Role,
    /// Disk state (ours: the one being negotiated if `Negotiating`, `new_state_tmp`).
    pub disk: Disk,
}

/// The configuration the handshake consults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// after-sb-0pri, after-sb-1pri, after-sb-2pri.
    pub after_sb: [AfterSb; 3],
    /// always-asbp: try the policies also when the UUIDs are ambiguous (-100), full sync then.
    pub always_asbp: bool,
    /// rr-conflict: what a Primary with good data does when it should become sync target
    /// (`Disconnect` and `CallHelper` refuse, `Violently` goes on).
    pub rr_conflict: AfterSb,
}

/// The handshake's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In sync: Connected.
    NoSync,
    /// Sync source, bitmap-based (WFBitMapS).
    SyncSourceBitmap,
    /// Sync target, bitmap-based (WFBitMapT).
    SyncTargetBitmap,
    /// Sync source after setting the whole bitmap.
    FullSyncSource,
    /// Sync target after setting the whole bitmap.
    FullSyncTarget,
    /// Split brain not resolved: disconnect (StandAlone), data untouched.
    SplitBrain,
    /// The UUIDs share nothing: disconnect.
    Unrelated,
    /// Resolving needs a newer agreed protocol (both sides must support at least it).
    NeedsProtocol(u32),
    /// Resolving needs a protocol and feature flags (rule 41).
    NeedsFeatures {
        /// Protocol version.
        protocol: u32,
        /// `DRBD_FF_*` flags.
        features: u32,
    },
    /// We should become sync source but our disk is not consistent: disconnect.
    InconsistentSource,
    /// We are Primary with good data and should become sync target; rr-conflict refuses:
    /// disconnect (with `CallHelper` DRBD also runs the `pri-lost` helper).
    PrimaryWouldBeTarget,
}

/// The handshake's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub outcome: Outcome,
    /// The UUID comparison (for the log line "uuid_compare()=%d by rule %d").
    pub compared: Compared,
    /// A split brain was detected (DRBD runs the `initial-split-brain` helper).
    pub split_brain: bool,
}

/// The decision of `drbd_sync_handshake` for our side against the peer: UUID comparison,
/// disk states, split-brain recovery (automatic by policy, manual by discard-my-data), and
/// the refusals. A dry run (`CF_DRY_RUN`) is the caller's: it logs the decision and
/// disconnects. Apply `decision.compared.fix` to the UUIDs before going on.
pub fn sync_handshake(me: &Side, peer: &Side, link: &Link, policy: &Policy) -> Decision {
    let compared = uuid_compare(&me.uuids, me.role, &peer.uuids, peer.role, link);
    let done = |outcome, split_brain| Decision {
        outcome,
        compared,
        split_brain,
    };
    let mut hg = compared.hg;
    if hg == -1000 {
        return done(Outcome::Unrelated, false);
    }
    if hg < -0x10000 {
        let need = hg.unsigned_abs();
        return done(
            Outcome::NeedsFeatures {
                protocol: need & 0xff,
                features: (need >> 8) & 0xff,
            },
            false,
        );
    }
    if hg < -1000 {
        return done(
            Outcome::NeedsProtocol(hg.unsigned_abs().saturating_sub(1000)),
            false,
        );
    }

    let (mine, theirs) = (me.disk as u32, peer.disk as u32);
    let inc = Disk::Inconsistent as u32;
    if (mine == inc && theirs > inc) || (theirs == inc && mine > inc) {
        let full = hg == -100 || hg.unsigned_abs() == 2;
        hg = match (mine > inc, full) {
            (true, false) => 1,
            (true, true) => 2,
            (false, false) => -1,
            (false, true) => -2,
        };
    }
    let split_brain = hg.unsigned_abs() == 100;

    if hg == 100 || (hg == -100 && policy.always_asbp) {
        let forced = hg == -100;
        hg = resolve_split_brain(
            policy.after_sb,
            me.role,
            peer.role,
            &me.uuids,
            &peer.uuids,
            link.resolve_conflicts,
        )
        .hg();
        if hg.unsigned_abs() < 100 && forced {
            // Below 100: exact.
            hg = hg.saturating_mul(2);
        }
    }

    if hg == -100 {
        let mine = me.uuids.flags & UUID_FLAG_DISCARD_MY_DATA != 0;
        let theirs = peer.uuids.flags & UUID_FLAG_DISCARD_MY_DATA != 0;
        if mine && !theirs {
            hg = -1;
        }
        if !mine && theirs {
            hg = 1;
        }
    }
    if hg == -100 {
        return done(Outcome::SplitBrain, split_brain);
    }
    if hg > 0 && me.disk as u32 <= inc {
        return done(Outcome::InconsistentSource, split_brain);
    }
    // DRBD tests the current disk state here, which is below Consistent while Negotiating.
    if hg < 0
        && me.role == Role::Primary
        && !link.negotiating
        && me.disk as u32 >= Disk::Consistent as u32
        && matches!(
            policy.rr_conflict,
            AfterSb::Disconnect | AfterSb::CallHelper
        )
    {
        return done(Outcome::PrimaryWouldBeTarget, split_brain);
    }
    let outcome = match hg {
        0 => Outcome::NoSync,
        1 => Outcome::SyncSourceBitmap,
        -1 => Outcome::SyncTargetBitmap,
        h if h > 0 => Outcome::FullSyncSource,
        _ => Outcome::FullSyncTarget,
    };
    done(outcome, split_brain)
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const X: u64 = 0x1111_0000_0000_1110;
    const Y: u64 = 0x2222_0000_0000_2220;
    const Z: u64 = 0x3333_0000_0000_3330;
    const W: u64 = 0x4444_0000_0000_4440;
    const V: u64 = 0x5555_0000_0000_5550;
    const Q: u64 = 0x6666_0000_0000_6660;

    fn u(current: u64, bitmap: u64, h0: u64, h1: u64) -> Uuids {
        Uuids {
            current,
            bitmap,
            history: [h0, h1],
            dirty_bits: 0,
            flags: 0,
        }
    }

    fn link(agreed: u32, resolve_conflicts: bool) -> Link {
        Link {
            agreed,
            features: 0,
            resolve_conflicts,
            negotiating: false,
        }
    }

    /// DRBD's numbers seen from the other side.
    fn mirror(hg: i32) -> i32 {
        match hg {
            -2..=2 => -hg,
            h => h,
        }
    }

    /// Compares `me` with `peer` (both Secondary) expecting `(hg, rule)`, and the swapped
    /// comparison expecting the mirrored number by `peer_rule`.
    fn check(me: Uuids, peer: Uuids, agreed: u32, want: (i32, u32), peer_rule: u32) -> Compared {
        let sec = Role::Secondary;
        let c = uuid_compare(&me, sec, &peer, sec, &link(agreed, false));
        assert_eq!((c.hg, c.rule), want, "me {me:x?} peer {peer:x?}");
        let m = uuid_compare(&peer, sec, &me, sec, &link(agreed, true));
        assert_eq!((m.hg, m.rule), (mirror(want.0), peer_rule), "mirrored");
        c
    }

    #[test]
    fn rules_10_20_30_fresh_metadata() {
        let fresh = u(UUID_JUST_CREATED, 0, 0, 0);
        // The "was primary" bit is masked: 5 is still "just created".
        check(fresh, u(UUID_JUST_CREATED | 1, 0, 0, 0), 101, (0, 10), 10);
        check(fresh, u(X, 0, 0, 0), 101, (-2, 20), 30);
        check(u(0, 0, 0, 0), u(X, 0, 0, 0), 101, (-2, 20), 30);
    }

    #[test]
    fn rules_34_to_37_missed_resync_finished() {
        // We were sync source (bitmap Y) and missed the end; the peer already rotated Y into
        // its history.
        let me = u(X | 1, Y, Z, V);
        let peer = u(X, 0, Y, Z);
        let c = check(me, peer, 101, (1, 34), 35);
        assert_eq!(c.fix, Some(Fix::SelfResyncFinished));
        let (mut m, mut p) = (me, peer);
        Fix::SelfResyncFinished.apply(&mut m, &mut p);
        assert_eq!((m, p), (u(X | 1, 0, Y, Z), peer));
        let mirrored = uuid_compare(
            &peer,
            Role::Secondary,
            &me,
            Role::Secondary,
            &link(101, true),
        );
        assert_eq!(mirrored.fix, Some(Fix::PeerResyncFinished));
        let (mut m, mut p) = (peer, me);
        Fix::PeerResyncFinished.apply(&mut m, &mut p);
        assert_eq!(p, u(X | 1, 0, Y, Z));
        // Histories that do not fit: 36 / 37, no fix.
        let c = check(me, u(X, 0, W, Z), 101, (1, 36), 37);
        assert_eq!(c.fix, None);
        // Before 91 DRBD cannot tell.
        check(me, peer, 90, (-1091, 30), 30);
    }

    #[test]
    fn rule_40_41_crashed_primary() {
        let same = u(X, 0, Y, Z);
        check(same, same, 101, (0, 40), 40);
        let mut crashed = same;
        crashed.flags = UUID_FLAG_CRASHED_PRIMARY;
        check(crashed, same, 101, (1, 40), 40);
        // Both crashed: the node with RESOLVE_CONFLICTS (here: the mirrored call) yields.
        check(crashed, crashed, 101, (1, 40), 40);
        let sec = Role::Secondary;
        let pri = Role::Primary;
        // A primary present needs DRBD_FF_WSAME: protocol 101 and flags 0x04.
        let c = uuid_compare(&crashed, pri, &same, sec, &link(101, false));
        assert_eq!((c.hg, c.rule), (-0x10465, 41));
        let mut l = link(101, false);
        l.features = FF_WSAME;
        assert_eq!(uuid_compare(&crashed, pri, &same, sec, &l).hg, 1);
        assert_eq!(uuid_compare(&same, sec, &crashed, pri, &l).hg, -1);
        assert_eq!(uuid_compare(&same, pri, &crashed, pri, &l).hg, -100);
    }

    #[test]
    fn rules_50_and_70_bitmap_of_the_other() {
        // The peer wrote while disconnected: its bitmap UUID is our current UUID.
        check(u(X, 0, Z, V), u(Y | 1, X, Z, V), 101, (-1, 50), 70);
    }

    #[test]
    fn rules_51_and_71_lost_sync_uuid() {
        // Before 96: our first history equals the peer's second.
        let me = u(X, 0, Z, V);
        let peer = u(Y, W, X, Z);
        let c = check(me, peer, 95, (-1, 51), 71);
        assert_eq!(c.fix, Some(Fix::PeerSyncUuidLost));
        let (mut m, mut p) = (me, peer);
        Fix::PeerSyncUuidLost.apply(&mut m, &mut p);
        assert_eq!(p, u(Y, X, Z, Z));
        check(me, peer, 90, (-1091, 51), 71);
        // From 96 on: the peer's bitmap UUID is its first history plus UUID_NEW_BM_OFFSET.
        let peer96 = u(Y, X + UUID_NEW_BM_OFFSET, X, Q);
        let c = check(me, peer96, 96, (-1, 51), 71);
        assert_eq!(c.fix, Some(Fix::PeerSyncUuidLost));
        let mirrored = uuid_compare(
            &peer96,
            Role::Secondary,
            &me,
            Role::Secondary,
            &link(96, true),
        );
        assert_eq!(mirrored.fix, Some(Fix::SelfSyncUuidLost));
        // Without the offset at 96 the rule does not apply: rule 60 finds X in the peer's history.
        check(me, u(Y, W, X, Z), 96, (-2, 60), 80);
    }

    #[test]
    fn rules_60_and_80_history() {
        check(u(X, 0, Q, 0), u(Y, 0, W, X | 1), 101, (-2, 60), 80);
    }

    #[test]
    fn rules_90_and_100_split_brain_and_unrelated() {
        // Both wrote after a common point: equal bitmap UUIDs.
        check(u(X, Z | 1, V, 0), u(Y, Z, V, 0), 101, (100, 90), 90);
        // Only a common history.
        check(u(X, 0, V, W), u(Y, 0, Q, V), 101, (-100, 100), 100);
        check(u(X, 0, V, W), u(Y, 0, Q, Z), 101, (-1000, 100), 100);
        // Equal zero bitmaps are no split brain.
        check(u(X, 0, 0, 0), u(Y, 0, 0, 0), 101, (-100, 100), 100);
    }

    fn side(uuids: Uuids, role: Role, disk: Disk) -> Side {
        Side { uuids, role, disk }
    }

    const DISCONNECT: Policy = Policy {
        after_sb: [AfterSb::Disconnect; 3],
        always_asbp: false,
        rr_conflict: AfterSb::Disconnect,
    };

    /// Runs the handshake from both ends (the peer with RESOLVE_CONFLICTS).
    fn both(me: &Side, peer: &Side, policy: &Policy) -> (Outcome, Outcome) {
        let a = sync_handshake(me, peer, &link(101, false), policy).outcome;
        let b = sync_handshake(peer, me, &link(101, true), policy).outcome;
        (a, b)
    }

    #[test]
    fn handshake_initial_full_sync_and_no_sync() {
        use Disk::*;
        let sec = Role::Secondary;
        let fresh = side(u(UUID_JUST_CREATED, 0, 0, 0), sec, Inconsistent);
        assert_eq!(
            both(&fresh, &fresh, &DISCONNECT),
            (Outcome::NoSync, Outcome::NoSync)
        );
        // After `primary --force` on one node.
        let forced = side(u(X | 1, 0, 0, 0), Role::Primary, UpToDate);
        assert_eq!(
            both(&forced, &fresh, &DISCONNECT),
            (Outcome::FullSyncSource, Outcome::FullSyncTarget)
        );
        // A bitmap resync becomes full when one disk is Inconsistent and the UUIDs said -100.
        let a = side(u(X, 0, V, W), sec, UpToDate);
        let b = side(u(Y, 0, Q, V), sec, Inconsistent);
        assert_eq!(
            both(&a, &b, &DISCONNECT),
            (Outcome::FullSyncSource, Outcome::FullSyncTarget)
        );
        // Bitmap-based after a disconnected primary wrote.
        let a = side(u(Y | 1, X, Z, 0), Role::Primary, UpToDate);
        let b = side(u(X, 0, Z, 0), sec, UpToDate);
        assert_eq!(
            both(&a, &b, &DISCONNECT),
            (Outcome::SyncSourceBitmap, Outcome::SyncTargetBitmap)
        );
    }

    #[test]
    fn handshake_split_brain() {
        use Disk::UpToDate;
        let sec = Role::Secondary;
        let mut a = side(u(X, Z | 1, V, 0), sec, UpToDate);
        let mut b = side(u(Y, Z, V, 0), sec, UpToDate);
        let d = sync_handshake(&a, &b, &link(101, false), &DISCONNECT);
        assert_eq!((d.outcome, d.split_brain), (Outcome::SplitBrain, true));
        assert_eq!(
            both(&a, &b, &DISCONNECT),
            (Outcome::SplitBrain, Outcome::SplitBrain)
        );
        // Automatic: discard-zero-changes, only b changed.
        b.uuids.dirty_bits = 5;
        let zero = Policy {
            after_sb: [
                AfterSb::DiscardZeroChg,
                AfterSb::Disconnect,
                AfterSb::Disconnect,
            ],
            ..DISCONNECT
        };
        assert_eq!(
            both(&a, &b, &zero),
            (Outcome::SyncTargetBitmap, Outcome::SyncSourceBitmap)
        );
        // Both changed: discard-zero-changes gives up.
        a.uuids.dirty_bits = 7;
        assert_eq!(
            both(&a, &b, &zero),
            (Outcome::SplitBrain, Outcome::SplitBrain)
        );
        // Manual: discard-my-data on a.
        a.uuids.flags = UUID_FLAG_DISCARD_MY_DATA;
        assert_eq!(
            both(&a, &b, &DISCONNECT),
            (Outcome::SyncTargetBitmap, Outcome::SyncSourceBitmap)
        );
        // Ambiguous UUIDs (-100) with always-asbp: resolved, but as a full sync.
        let a = side(u(X, 0, V, W), sec, UpToDate);
        let mut b = side(u(Y, 0, Q, V), sec, UpToDate);
        b.uuids.dirty_bits = 1;
        let least = Policy {
            after_sb: [
                AfterSb::DiscardLeastChg,
                AfterSb::Disconnect,
                AfterSb::Disconnect,
            ],
            always_asbp: true,
            ..DISCONNECT
        };
        assert_eq!(
            both(&a, &b, &least),
            (Outcome::FullSyncTarget, Outcome::FullSyncSource)
        );
        assert_eq!(
            both(
                &a,
                &b,
                &Policy {
                    always_asbp: false,
                    ..least
                }
            ),
            (Outcome::SplitBrain, Outcome::SplitBrain)
        );
    }

    #[test]
    fn handshake_refusals() {
        use Disk::*;
        let sec = Role::Secondary;
        let l = link(101, false);
        // Unrelated, needs 91, needs features.
        let a = side(u(X, 0, 0, 0), sec, UpToDate);
        let b = side(u(Y, 0, 0, 0), sec, UpToDate);
        let mut c = side(u(X, 0, Q, 0), sec, UpToDate);
        assert_eq!(
            sync_handshake(&a, &side(u(Y, 0, W, V), sec, UpToDate), &l, &DISCONNECT).outcome,
            Outcome::Unrelated
        );
        assert_eq!(
            sync_handshake(&a, &b, &l, &DISCONNECT).outcome,
            Outcome::SplitBrain
        );
        c.uuids.bitmap = Z;
        assert_eq!(
            sync_handshake(&c, &a, &link(90, false), &DISCONNECT).outcome,
            Outcome::NeedsProtocol(91)
        );
        let mut crashed = side(u(X, 0, Q, 0), Role::Primary, UpToDate);
        crashed.uuids.flags = UUID_FLAG_CRASHED_PRIMARY;
        assert_eq!(
            sync_handshake(
                &crashed,
                &side(u(X, 0, Q, 0), sec, UpToDate),
                &l,
                &DISCONNECT
            )
            .outcome,
            Outcome::NeedsFeatures {
                protocol: 101,
                features: FF_WSAME
            }
        );
        // Source, but Inconsistent (and so is the peer: no disk-state override).
        let src = side(u(Y, X, Z, 0), sec, Inconsistent);
        let tgt = side(u(X, 0, Z, 0), sec, Inconsistent);
        assert_eq!(
            sync_handshake(&src, &tgt, &l, &DISCONNECT).outcome,
            Outcome::InconsistentSource
        );
        // A Primary with good data asked to become target: rr-conflict.
        let pri = side(u(X | 1, 0, Z, 0), Role::Primary, UpToDate);
        let other = side(u(Y, X, Z, 0), sec, UpToDate);
        assert_eq!(
            sync_handshake(&pri, &other, &l, &DISCONNECT).outcome,
            Outcome::PrimaryWouldBeTarget
        );
        let violently = Policy {
            rr_conflict: AfterSb::Violently,
            ..DISCONNECT
        };
        assert_eq!(
            sync_handshake(&pri, &other, &l, &violently).outcome,
            Outcome::SyncTargetBitmap
        );
        let mut negotiating = l;
        negotiating.negotiating = true;
        assert_eq!(
            sync_handshake(&pri, &other, &negotiating, &DISCONNECT).outcome,
            Outcome::SyncTargetBitmap
        );
    }

    #[test]
    fn split_brain_policies() {
        use AfterSb::*;
        use Role::{Primary as P, Secondary as S};
        use SbResolution as Sb;
        let me = |bm: u64, dirty: u64| Uuids {
            bitmap: bm,
            dirty_bits: dirty,
            ..Uuids::default()
        };
        let sb = |p0, r: (Role, Role), a: &Uuids, b: &Uuids, rc| {
            resolve_split_brain([p0, Consensus, Disconnect], r.0, r.1, a, b, rc)
        };
        let ss = (S, S);
        // Younger primary: the node whose bitmap UUID has the "was primary" bit lost it last.
        assert_eq!(
            sb(DiscardYoungerPri, ss, &me(Z, 1), &me(Z | 1, 9), false),
            Sb::DiscardLocal
        );
        assert_eq!(
            sb(DiscardYoungerPri, ss, &me(Z | 1, 1), &me(Z, 9), false),
            Sb::DiscardRemote
        );
        assert_eq!(
            sb(DiscardOlderPri, ss, &me(Z, 1), &me(Z | 1, 9), false),
            Sb::DiscardRemote
        );
        // No primary bit difference: zero changes, then least changes.
        assert_eq!(
            sb(DiscardOlderPri, ss, &me(Z, 0), &me(Z, 9), false),
            Sb::DiscardLocal
        );
        assert_eq!(
            sb(DiscardYoungerPri, ss, &me(Z, 3), &me(Z, 9), false),
            Sb::DiscardLocal
        );
        assert_eq!(
            sb(DiscardYoungerPri, ss, &me(Z, 30), &me(Z, 9), false),
            Sb::DiscardRemote
        );
        assert_eq!(
            sb(DiscardZeroChg, ss, &me(Z, 3), &me(Z, 0), false),
            Sb::DiscardRemote
        );
        assert_eq!(
            sb(DiscardZeroChg, ss, &me(Z, 3), &me(Z, 4), false),
            Sb::Disconnect
        );
        // Ties: the node with RESOLVE_CONFLICTS is discarded.
        assert_eq!(
            sb(DiscardZeroChg, ss, &me(Z, 0), &me(Z, 0), true),
            Sb::DiscardLocal
        );
        assert_eq!(
            sb(DiscardZeroChg, ss, &me(Z, 0), &me(Z, 0), false),
            Sb::DiscardRemote
        );
        assert_eq!(
            sb(DiscardLeastChg, ss, &me(Z, 4), &me(Z, 4), true),
            Sb::DiscardLocal
        );
        assert_eq!(
            sb(DiscardLeastChg, ss, &me(Z, 4), &me(Z, 5), false),
            Sb::DiscardLocal
        );
        assert_eq!(
            sb(DiscardLocal, ss, &me(Z, 0), &me(Z, 5), false),
            Sb::DiscardLocal
        );
        assert_eq!(
            sb(DiscardRemote, ss, &me(Z, 0), &me(Z, 5), false),
            Sb::DiscardRemote
        );
        assert_eq!(
            sb(Disconnect, ss, &me(Z, 0), &me(Z, 5), false),
            Sb::Disconnect
        );
        // A 1-primary policy as after-sb-0pri is a configuration error.
        assert_eq!(
            sb(Consensus, ss, &me(Z, 0), &me(Z, 5), false),
            Sb::Disconnect
        );
        // One primary, consensus: the 0-primaries decision only if it discards the secondary.
        assert_eq!(
            sb(DiscardLeastChg, (S, P), &me(Z, 1), &me(Z, 5), false),
            Sb::DiscardLocal
        );
        assert_eq!(
            sb(DiscardLeastChg, (P, S), &me(Z, 1), &me(Z, 5), false),
            Sb::Disconnect
        );
        let one = |p1, r: (Role, Role)| {
            resolve_split_brain(
                [DiscardLeastChg, p1, Disconnect],
                r.0,
                r.1,
                &me(Z, 1),
                &me(Z, 5),
                false,
            )
        };
        assert_eq!(one(DiscardSecondary, (P, S)), Sb::DiscardRemote);
        assert_eq!(one(DiscardSecondary, (S, P)), Sb::DiscardLocal);
        assert_eq!(one(Violently, (P, S)), Sb::DiscardLocal);
        assert_eq!(one(CallHelper, (P, S)), Sb::Disconnect);
        assert_eq!(one(CallHelper, (S, P)), Sb::DiscardLocal);
        assert_eq!(one(DiscardLocal, (S, P)), Sb::Disconnect);
        let two = |p2| {
            resolve_split_brain(
                [DiscardLeastChg, Disconnect, p2],
                P,
                P,
                &me(Z, 9),
                &me(Z, 5),
                false,
            )
        };
        assert_eq!(two(Violently), Sb::DiscardRemote);
        assert_eq!(two(CallHelper), Sb::DiscardRemote);
        assert_eq!(two(DiscardSecondary), Sb::Disconnect);
        assert_eq!(
            resolve_split_brain(
                [DiscardLeastChg, Disconnect, CallHelper],
                P,
                P,
                &me(Z, 1),
                &me(Z, 5),
                false
            ),
            Sb::Disconnect
        );
    }

    /// Both nodes start from a common history and then evolve apart the way DRBD changes
    /// UUIDs (new current UUID when a disconnected primary writes, bitmap rotated into the
    /// history when a resync finishes); the two ends must then agree on who syncs whom.
    #[test]
    fn random_histories_decide_symmetrically() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let disks = [
            Disk::Inconsistent,
            Disk::Outdated,
            Disk::Consistent,
            Disk::UpToDate,
        ];
        let policies = [
            AfterSb::Disconnect,
            AfterSb::DiscardZeroChg,
            AfterSb::DiscardLeastChg,
            AfterSb::DiscardYoungerPri,
            AfterSb::DiscardOlderPri,
            AfterSb::DiscardLocal,
        ];
        let mut decided = [0u32; 4];
        for round in 0..200_000 {
            let base = u(rnd() & !1, 0, rnd() & !1, rnd() & !1);
            let mut sides = [base, base];
            for side in sides.iter_mut() {
                for _ in 0..rnd() % 3 {
                    if rnd() % 2 == 0 {
                        side.bitmap = side.current;
                        side.current = rnd();
                    } else if side.bitmap != 0 {
                        side.rotate_bitmap_into_history();
                    }
                }
                side.dirty_bits = rnd() % 3;
                side.flags = rnd() & UUID_FLAG_CRASHED_PRIMARY;
                if rnd() % 4 == 0 {
                    side.current = UUID_JUST_CREATED;
                }
            }
            if rnd() % 16 == 0 {
                // No common past at all.
                sides[1] = u(rnd(), 0, rnd(), rnd());
            }
            let agreed = [86, 91, 95, 96, 101][round % 5];
            let policy = Policy {
                after_sb: [
                    policies[(rnd() % 6) as usize],
                    AfterSb::Disconnect,
                    AfterSb::Disconnect,
                ],
                always_asbp: rnd() % 2 == 0,
                rr_conflict: AfterSb::Violently,
            };
            let a = side(sides[0], Role::Secondary, disks[(rnd() % 4) as usize]);
            let b = side(sides[1], Role::Secondary, disks[(rnd() % 4) as usize]);
            let la = Link {
                agreed,
                features: FF_WSAME,
                resolve_conflicts: round % 2 == 0,
                negotiating: false,
            };
            let lb = Link {
                resolve_conflicts: !la.resolve_conflicts,
                ..la
            };
            let ca = uuid_compare(&a.uuids, a.role, &b.uuids, b.role, &la);
            let cb = uuid_compare(&b.uuids, b.role, &a.uuids, a.role, &lb);
            assert_eq!(ca.hg, mirror(cb.hg), "{a:x?} {b:x?} {ca:?} {cb:?}");
            let da = sync_handshake(&a, &b, &la, &policy).outcome;
            // The peer's discard-local is our discard-remote (`convert_after_sb`).
            let mut peer_policy = policy;
            peer_policy.after_sb[0] = policy.after_sb[0].from_peer();
            let db = sync_handshake(&b, &a, &lb, &peer_policy).outcome;
            use Outcome::*;
            let want = match da {
                SyncSourceBitmap => SyncTargetBitmap,
                SyncTargetBitmap => SyncSourceBitmap,
                FullSyncSource => FullSyncTarget,
                FullSyncTarget => FullSyncSource,
                // A refusal on one end shows as the opposite decision or a refusal on the other.
                InconsistentSource => continue,
                o => o,
            };
            if db != InconsistentSource {
                assert_eq!(db, want, "{a:x?} {b:x?} {policy:?} agreed {agreed}");
            }
            decided[match da {
                NoSync => 0,
                SplitBrain => 1,
                Unrelated => 2,
                _ => 3,
            }] += 1;
        }
        // Every kind of outcome came up.
        assert!(decided.iter().all(|&n| n > 1000), "{decided:?}");
    }
}
