// SPDX-License-Identifier: GPL-2.0

//! IPVS schedulers whose choice is made by hark-proto's `l7_sched`, the code the layer-7
//! switch (ktcpvs_rs) uses.
//!
//! `ipvs_glue_sched.c` registers each scheduler with IPVS and calls the functions at the end
//! of this file from the scheduler callbacks (signatures in `ipvs_glue_sched.h`):
//!
//! - `init_service` (process context, under IPVS's `service_mutex`): [`ipvs_glue_rs_svc_new`]
//!   allocates a [`SvcState`], then [`ipvs_glue_rs_svc_refresh`];
//! - `add_dest`, `del_dest`, `upd_dest` (same context; the list already changed):
//!   [`ipvs_glue_rs_svc_refresh`] takes a new snapshot of the destination list;
//! - `schedule` (packet path: softirq, RCU read side): [`ipvs_glue_rs_schedule`] refreshes the
//!   live weights and overload flags of the snapshot and picks; it neither sleeps nor
//!   allocates;
//! - `done_service`: the C side frees the state ([`ipvs_glue_rs_svc_free`]) an RCU grace period
//!   later, when no `schedule` can still use it.
//!
//! Refresh and schedule run with the service's `sched_lock` held (BHs off), which makes the
//! `&mut SvcState` they get exclusive.

use crate::l7_sched::{ServerState, ServerView, SmoothWrr, MAX_SERVERS};
use core::ffi::{c_int, c_void};
use core::ptr;
use kernel::prelude::*;

mod ffi {
    use super::*;

    /// `struct ip_vs_service`, never dereferenced in Rust.
    #[repr(C)]
    pub(super) struct IpVsService {
        _opaque: [u8; 0],
    }

    /// `struct ip_vs_dest`, never dereferenced in Rust.
    #[repr(C)]
    pub(super) struct IpVsDest {
        _opaque: [u8; 0],
    }

    extern "C" {
        pub(super) fn ipvs_glue_dest_next(
            svc: *mut IpVsService,
            prev: *mut IpVsDest,
        ) -> *mut IpVsDest;
        pub(super) fn ipvs_glue_dest_weight(dest: *const IpVsDest) -> c_int;
        pub(super) fn ipvs_glue_dest_overloaded(dest: *const IpVsDest) -> bool;
        pub(super) fn ipvs_glue_dest_active(dest: *const IpVsDest) -> c_int;
        pub(super) fn ipvs_glue_register() -> c_int;
        pub(super) fn ipvs_glue_unregister();
    }
}

use ffi::{IpVsDest, IpVsService};

/// Registers the schedulers with IPVS.
pub(crate) fn register() -> Result {
    // SAFETY: Called once from module init; the scheduler structures are statics of this
    // module and stay registered until `unregister`.
    let ret = unsafe { ffi::ipvs_glue_register() };
    if ret < 0 {
        return Err(Error::from_errno(ret));
    }
    Ok(())
}

/// Unregisters them (module exit, after a successful [`register`]) and waits until no
/// scheduler code or state of this module is in use.
pub(crate) fn unregister() {
    // SAFETY: Called once from module exit, after `register` succeeded (the module object
    // exists only then); IPVS holds a module reference while a service uses a scheduler, so
    // none is bound any more.
    unsafe { ffi::ipvs_glue_unregister() }
}

/// The schedulers (the `kind` numbers of `ipvs_glue_sched.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `swrr`: nginx's smooth weighted round robin ([`SmoothWrr`]).
    Swrr,
}

impl Kind {
    fn from_raw(kind: u32) -> Option<Kind> {
        match kind {
            0 => Some(Kind::Swrr),
            _ => None,
        }
    }
}

/// A destination of a service, valid for `'a`.
///
/// # Invariants
///
/// `ptr` points to a `struct ip_vs_dest` that stays allocated for `'a`.
#[derive(Clone, Copy)]
struct Dest<'a> {
    ptr: *mut IpVsDest,
    _life: core::marker::PhantomData<&'a IpVsDest>,
}

impl Dest<'_> {
    /// IPVS weights are `int` (ipvsadm takes 0..INT_MAX); `l7_sched` takes 0..65535: larger
    /// weights count as 65535, negative ones as 0.
    fn weight(self) -> u16 {
        // SAFETY: By the type invariant `ptr` points to a live `ip_vs_dest`; the accessor
        // only reads an atomic.
        let w = unsafe { ffi::ipvs_glue_dest_weight(self.ptr) };
        u16::try_from(w.max(0)).unwrap_or(u16::MAX)
    }

    fn overloaded(self) -> bool {
        // SAFETY: By the type invariant `ptr` points to a live `ip_vs_dest`.
        unsafe { ffi::ipvs_glue_dest_overloaded(self.ptr) }
    }

    fn active(self) -> u32 {
        // SAFETY: By the type invariant `ptr` points to a live `ip_vs_dest`.
        let a = unsafe { ffi::ipvs_glue_dest_active(self.ptr) };
        u32::try_from(a).unwrap_or(0)
    }

    /// What `l7_sched` sees: overloaded destinations are `Down` (IPVS's schedulers skip them).
    fn view(self, id: u32) -> ServerView {
        ServerView {
            id,
            weight: self.weight(),
            state: if self.overloaded() {
                ServerState::Down
            } else {
                ServerState::Up
            },
            active: self.active(),
        }
    }
}

/// The destination list of a service whose list cannot change during `'a`.
///
/// # Invariants
///
/// `svc` points to a `struct ip_vs_service` whose `service_mutex` is held for `'a`, so its
/// destination list is stable and its destinations stay allocated.
struct DestList<'a> {
    svc: *mut IpVsService,
    _life: core::marker::PhantomData<&'a IpVsService>,
}

impl<'a> Iterator for DestIter<'a> {
    type Item = Dest<'a>;

    fn next(&mut self) -> Option<Dest<'a>> {
        // SAFETY: By `DestList`'s invariant the list is stable and `prev` is null or one of
        // its entries.
        let next = unsafe { ffi::ipvs_glue_dest_next(self.list.svc, self.prev) };
        if next.is_null() {
            return None;
        }
        self.prev = next;
        // INVARIANT: an entry of the stable list stays allocated for `'a`.
        Some(Dest {
            ptr: next,
            _life: core::marker::PhantomData,
        })
    }
}

/// Walks a [`DestList`].
struct DestIter<'a> {
    list: DestList<'a>,
    prev: *mut IpVsDest,
}

impl<'a> DestList<'a> {
    fn iter(self) -> DestIter<'a> {
        DestIter {
            list: self,
            prev: ptr::null_mut(),
        }
    }
}

/// A service's scheduler state.
///
/// # Invariants
///
/// `dests[..n]` are the first `n` destinations of the service's list at the last refresh, in
/// list order; each stays allocated until an RCU grace period after the refresh that drops
/// it (IPVS frees unlinked destinations through RCU), and `schedule` runs under RCU after
/// the refresh that put it there.
pub(crate) struct SvcState {
    kind: Kind,
    n: usize,
    dests: [*mut IpVsDest; MAX_SERVERS],
    views: [ServerView; MAX_SERVERS],
    swrr: SmoothWrr,
    /// The service had more than [`MAX_SERVERS`] destinations at the last refresh (logged
    /// once per change to that).
    truncated: bool,
}

const IDLE: ServerView = ServerView {
    id: 0,
    weight: 0,
    state: ServerState::Down,
    active: 0,
};

impl SvcState {
    fn new(kind: Kind) -> Self {
        // INVARIANT: no destination yet.
        SvcState {
            kind,
            n: 0,
            dests: [ptr::null_mut(); MAX_SERVERS],
            views: [IDLE; MAX_SERVERS],
            swrr: SmoothWrr::new(),
            truncated: false,
        }
    }

    /// Takes the destinations of `list` (the first [`MAX_SERVERS`]) and restarts the
    /// scheduler's rotation.
    fn refresh(&mut self, list: DestList<'_>) {
        let mut n = 0usize;
        let mut more = false;
        for d in list.iter() {
            if n == MAX_SERVERS {
                more = true;
                break;
            }
            self.dests[n] = d.ptr;
            // Below MAX_SERVERS (64).
            self.views[n] = d.view(n as u32);
            n = n.saturating_add(1);
        }
        // INVARIANT: `dests[..n]` are the list's first `n` entries, taken now.
        self.n = n;
        if more && !self.truncated {
            pr_warn!("an IPVS service has more than {MAX_SERVERS} destinations: the rest get no connections\n");
        }
        self.truncated = more;
        self.swrr.reset();
    }

    /// The destination for a new connection, or null when none is eligible.
    fn schedule(&mut self) -> *mut IpVsDest {
        let n = self.n;
        for i in 0..n {
            // INVARIANT of `Dest`: by `SvcState`'s invariant `dests[i]` stays allocated while
            // this RCU read side lasts.
            let d = Dest {
                ptr: self.dests[i],
                _life: core::marker::PhantomData,
            };
            self.views[i] = d.view(i as u32);
        }
        let mask = if n >= 64 {
            u64::MAX
        } else {
            (1u64 << n).wrapping_sub(1)
        };
        let pick = match self.kind {
            Kind::Swrr => self.swrr.pick(&self.views[..n], mask),
        };
        pick.map_or(ptr::null_mut(), |i| self.dests[i])
    }
}

/// Allocates a service's state for scheduler `kind`; null on allocation failure or an unknown
/// kind. Process context (may sleep).
#[no_mangle]
extern "C" fn ipvs_glue_rs_svc_new(kind: u32) -> *mut c_void {
    let Some(kind) = Kind::from_raw(kind) else {
        return ptr::null_mut();
    };
    match KBox::new(SvcState::new(kind), GFP_KERNEL) {
        Ok(b) => KBox::into_raw(b).cast(),
        Err(_) => ptr::null_mut(),
    }
}

/// Frees a state from [`ipvs_glue_rs_svc_new`].
///
/// # Safety
///
/// `state` came from [`ipvs_glue_rs_svc_new`], is not null, and nothing uses it any more (the
/// C side calls this an RCU grace period after `done_service`).
#[no_mangle]
unsafe extern "C" fn ipvs_glue_rs_svc_free(state: *mut c_void) {
    // SAFETY: By the function's safety requirements `state` is an unused pointer from
    // `KBox::into_raw` of a `SvcState`.
    drop(unsafe { KBox::from_raw(state.cast::<SvcState>()) });
}

/// Re-reads the destinations of `svc` into `state`.
///
/// # Safety
///
/// `state` is live and the caller holds `svc`'s `sched_lock` (exclusive access) and IPVS's
/// `service_mutex` (the destination list is stable).
#[no_mangle]
unsafe extern "C" fn ipvs_glue_rs_svc_refresh(state: *mut c_void, svc: *mut IpVsService) {
    // SAFETY: By the function's safety requirements `state` is a live `SvcState` and the
    // `sched_lock` makes this the only reference.
    let st = unsafe { &mut *state.cast::<SvcState>() };
    // INVARIANT: the caller holds `service_mutex` for this call.
    st.refresh(DestList {
        svc,
        _life: core::marker::PhantomData,
    });
}

/// Picks a destination for a new connection; null if none.
///
/// # Safety
///
/// `state` is live, and the caller holds the service's `sched_lock` and is inside an RCU
/// read-side critical section.
#[no_mangle]
unsafe extern "C" fn ipvs_glue_rs_schedule(state: *mut c_void) -> *mut IpVsDest {
    // SAFETY: By the function's safety requirements `state` is a live `SvcState` and the
    // `sched_lock` makes this the only reference.
    let st = unsafe { &mut *state.cast::<SvcState>() };
    st.schedule()
}
