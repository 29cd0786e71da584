// SPDX-License-Identifier: GPL-2.0

//! The `drbd_rs` generic netlink family: registration, strict attribute policy, and the
//! command handlers.
//!
//! Names and numbers come from the shared `drbd_genl` module (also used by `rdrbdadm`). Every
//! command needs `CAP_SYS_ADMIN`, joining the `events` multicast group `CAP_NET_ADMIN`;
//! attributes are validated by the kernel against the policy below before a handler runs,
//! and handlers check presence and ranges. An error is returned as a negative errno with a
//! message in the extended ack, and logged.

use crate::conn::{Connection, NetConf, HANDLER_BUF};
use crate::device::{self, Device, DEVICES};
use crate::drbd_fence::Fencing;
use crate::drbd_genl::{self as nl, Attr, AttrKind, Cmd, DiskState, EventType};
use crate::drbd_state::{self as ws, StateRv};
use crate::drbd_state_chg as chg;
use crate::events::{self, Event, PeerView};
use crate::glue;
use crate::net::Addr;
use crate::resource::{self, Resource, RESOURCES};
use core::cell::UnsafeCell;
use core::ffi::CStr;
use kernel::bindings;
use kernel::ffi::{c_int, c_void};
use kernel::prelude::*;
use kernel::sync::Arc;

const NATTR: usize = nl::Attr::MAX as usize + 1;

/// Builds the policy from the shared attribute table.
const fn policy() -> [bindings::nla_policy; NATTR] {
    // SAFETY: `nla_policy` is plain data for which all-zeroes is valid (NLA_UNSPEC, no limits).
    let mut p: [bindings::nla_policy; NATTR] = unsafe { core::mem::zeroed() };
    let mut i = 1;
    while i < NATTR {
        if let Some(a) = Attr::from_u16(i as u16) {
            let (t, len) = match a.kind() {
                AttrKind::Flag => (bindings::NLA_FLAG, 0),
                AttrKind::U8 => (bindings::NLA_U8, 0),
                AttrKind::U32 => (bindings::NLA_U32, 0),
                AttrKind::U64 => (bindings::NLA_U64, 0),
                AttrKind::String(max) => (bindings::NLA_NUL_STRING, max),
                // A maximum; handlers check the exact length.
                AttrKind::Bytes(len) => (bindings::NLA_BINARY, len),
            };
            p[i].type_ = t as u8;
            p[i].len = len;
        }
        i = i.saturating_add(1);
    }
    p
}

/// Read-only C tables that hold raw pointers (null here) and so are not `Sync` by themselves.
struct Table<T>(T);

// SAFETY: The tables are never written after compile time and hold no pointers that are
// dereferenced from Rust.
unsafe impl<T> Sync for Table<T> {}

static POLICY: Table<[bindings::nla_policy; NATTR]> = Table(policy());

const fn op(cmd: Cmd) -> bindings::genl_small_ops {
    // SAFETY: `genl_small_ops` is plain data for which all-zeroes is valid.
    let mut o: bindings::genl_small_ops = unsafe { core::mem::zeroed() };
    o.cmd = cmd as u8;
    o.flags = bindings::GENL_ADMIN_PERM as u8;
    o.doit = Some(doit);
    o
}

/// One op per command of `Cmd::ALL` except `Reply` (which only the kernel sends), so a
/// command added to the shared table is served (or refused by `handle`) without a second list.
static OPS: Table<[bindings::genl_small_ops; Cmd::ALL.len() - 1]> = Table({
    let mut ops = [op(Cmd::Status); Cmd::ALL.len() - 1];
    let mut i = 0;
    let mut n = 0;
    while i < Cmd::ALL.len() {
        if Cmd::ALL[i] as u8 != Cmd::Reply as u8 {
            ops[n] = op(Cmd::ALL[i]);
            n += 1;
        }
        i += 1;
    }
    // `Reply` appears exactly once in `Cmd::ALL`, so every slot was filled.
    assert!(n == ops.len());
    ops
});

/// The family, written by `genl_register_family` (id, group offset).
struct FamilyCell(UnsafeCell<bindings::genl_family>);

// SAFETY: The family is written only in `register` (module init, before it is visible to
// anyone) and by the genetlink core under its own locking afterwards.
unsafe impl Sync for FamilyCell {}

/// An all-zeroes family, filled in `register`.
const fn zeroed_family() -> bindings::genl_family {
    // SAFETY: `genl_family` is plain C data for which all-zeroes is a valid value.
    unsafe { core::mem::zeroed() }
}

/// An all-zeroes multicast group, filled in `register`.
const fn zeroed_group() -> bindings::genl_multicast_group {
    // SAFETY: `genl_multicast_group` is plain C data for which all-zeroes is a valid value.
    unsafe { core::mem::zeroed() }
}

static FAMILY: FamilyCell = FamilyCell(UnsafeCell::new(zeroed_family()));

struct GroupsCell(UnsafeCell<[bindings::genl_multicast_group; 1]>);
// SAFETY: Written only in `register`, before registration; read-only afterwards.
unsafe impl Sync for GroupsCell {}
static GROUPS: GroupsCell = GroupsCell(UnsafeCell::new([zeroed_group()]));

fn copy_name(dst: &mut [kernel::ffi::c_char], src: &str) {
    for (d, s) in dst.iter_mut().zip(src.bytes()) {
        *d = s as kernel::ffi::c_char;
    }
}

/// The registered family; unregisters on drop.
pub(crate) struct Registration(());

/// Registers the family.
pub(crate) fn register(module: &'static ThisModule) -> Result<Registration> {
    // SAFETY: Called once from module init, before the family is registered: nobody else
    // accesses `FAMILY` or `GROUPS` concurrently.
    unsafe {
        let groups = &mut *GROUPS.0.get();
        copy_name(&mut groups[0].name, nl::MCGRP_EVENTS);
        // Events name resources and show their states: only for administrators, like the
        // commands (`genl_bind()` refuses a join without the capability with `EPERM`).
        groups[0].flags = glue::genl_mcast_cap_net_admin();
        let f = &mut *FAMILY.0.get();
        copy_name(&mut f.name, nl::FAMILY_NAME);
        f.version = nl::FAMILY_VERSION.into();
        f.maxattr = nl::Attr::MAX.into();
        f.policy = POLICY.0.as_ptr();
        f.module = module.as_ptr();
        f.small_ops = OPS.0.as_ptr();
        f.n_small_ops = OPS.0.len() as u8;
        f.resv_start_op = 0;
        f.mcgrps = groups.as_ptr();
        f.n_mcgrps = 1;
    }
    // SAFETY: `FAMILY` is fully initialised and static.
    kernel::error::to_result(unsafe { bindings::genl_register_family(FAMILY.0.get()) })?;
    // Once per module load: nothing is subscribed yet.
    events::subscribe(on_event);
    Ok(Registration(()))
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: The family was registered by `register`; after this returns no handler runs.
        unsafe { bindings::genl_unregister_family(FAMILY.0.get()) };
    }
}

/// A validated incoming request.
struct Req {
    info: *mut bindings::genl_info,
}

impl Req {
    fn attr(&self, a: Attr) -> Option<*const bindings::nlattr> {
        // SAFETY: `info` is the live request; `attrs` has `maxattr + 1` entries, parsed and
        // validated against `POLICY` by the genetlink core before `doit` was called.
        let p = unsafe { *(*self.info).attrs.add(a as usize) };
        (!p.is_null()).then_some(p.cast_const())
    }

    fn payload(&self, a: Attr) -> Option<&[u8]> {
        let nla = self.attr(a)?;
        // SAFETY: A validated attribute is at least its 4-byte header long and its payload
        // lies within the message, which lives until `doit` returns.
        unsafe {
            let len = usize::from((*nla).nla_len).checked_sub(4)?;
            Some(core::slice::from_raw_parts(nla.cast::<u8>().add(4), len))
        }
    }

    fn u32(&self, a: Attr) -> Option<u32> {
        let p = self.payload(a)?;
        Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
    }

    fn flag(&self, a: Attr) -> bool {
        self.attr(a).is_some()
    }

    /// A NUL-terminated string attribute (the policy guarantees the NUL).
    fn cstr(&self, a: Attr) -> Option<&CStr> {
        CStr::from_bytes_until_nul(self.payload(a)?).ok()
    }

    /// A reply message to this request.
    fn reply_msg(&self) -> core::result::Result<Msg, c_int> {
        // SAFETY: `info` is the live request.
        let (portid, seq) = unsafe { ((*self.info).snd_portid, (*self.info).snd_seq) };
        Msg::new(portid, seq, Cmd::Reply).map_err(|e| self.fail(e, c"out of memory"))
    }

    fn fail(&self, err: Error, msg: &CStr) -> c_int {
        // Rate-limited: a (privileged) sender must not be able to flood the log.
        // SAFETY: `net_ratelimit` has no preconditions.
        if unsafe { bindings::net_ratelimit() } != 0 {
            pr_info!("netlink: {}\n", msg.to_str().unwrap_or("invalid request"));
        }
        // SAFETY: `info` is the request being handled.
        unsafe { glue::genl_set_err(self.info, msg) };
        err.to_errno()
    }
}

/// A reply or event message under construction.
///
/// # Invariants
///
/// `skb` is a message allocated with `genlmsg_new` and started with `genlmsg_put`, whose
/// header is `hdr`; it is owned by this object until sent.
struct Msg {
    skb: *mut bindings::sk_buff,
    hdr: *mut c_void,
}

impl Msg {
    fn new(portid: u32, seq: u32, cmd: Cmd) -> Result<Msg> {
        // SAFETY: Plain allocation.
        let skb = unsafe { bindings::genlmsg_new(1024, bindings::GFP_KERNEL) };
        if skb.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `skb` is a fresh message; `FAMILY` is registered.
        let hdr = unsafe { bindings::genlmsg_put(skb, portid, seq, FAMILY.0.get(), 0, cmd as u8) };
        if hdr.is_null() {
            // SAFETY: `skb` is ours and not sent.
            unsafe { bindings::nlmsg_free(skb) };
            return Err(EMSGSIZE);
        }
        // INVARIANT: Both were just set up as required.
        Ok(Msg { skb, hdr })
    }

    fn put(&mut self, a: Attr, data: &[u8]) -> Result {
        let len = c_int::try_from(data.len()).map_err(|_| EMSGSIZE)?;
        // SAFETY: By the type invariant `skb` is a message under construction; `data` is valid
        // for reading `len` bytes.
        let r = unsafe { bindings::nla_put(self.skb, a as c_int, len, data.as_ptr().cast()) };
        kernel::error::to_result(r)
    }

    fn put_u8(&mut self, a: Attr, v: u8) -> Result {
        self.put(a, &[v])
    }

    fn put_u32(&mut self, a: Attr, v: u32) -> Result {
        self.put(a, &v.to_ne_bytes())
    }

    fn put_u64(&mut self, a: Attr, v: u64) -> Result {
        self.put(a, &v.to_ne_bytes())
    }

    fn put_str(&mut self, a: Attr, s: &[u8]) -> Result {
        let mut buf = [0u8; 256];
        // Room for the NUL.
        let n = s.len().min(buf.len().saturating_sub(1));
        buf[..n].copy_from_slice(&s[..n]);
        self.put(a, &buf[..=n])
    }

    fn finish(self) -> *mut bindings::sk_buff {
        let Msg { skb, hdr } = self;
        core::mem::forget(self);
        // SAFETY: By the type invariant `hdr` is the header of `skb`.
        unsafe { bindings::genlmsg_end(skb, hdr) };
        skb
    }

    fn reply(self, info: *mut bindings::genl_info) -> Result {
        let skb = self.finish();
        // SAFETY: `skb` is a finished message we own; `info` is the request being handled.
        unsafe { glue::genl_reply(skb, info) }
    }

    fn multicast(self) {
        let skb = self.finish();
        // SAFETY: `skb` is a finished message we own (consumed here); group 0 is `events`.
        unsafe { bindings::genlmsg_multicast(FAMILY.0.get(), skb, 0, 0, bindings::GFP_KERNEL) };
    }
}

impl Drop for Msg {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the message is ours and was not sent.
        unsafe { bindings::nlmsg_free(self.skb) };
    }
}

/// Writes a device's status attributes into `m`.
fn put_status(m: &mut Msg, dev: &Device) -> Result {
    let (role, disk_state, size, oos) = {
        let st = dev.lock();
        let (size, oos) = st
            .backing
            .as_ref()
            .map_or((0, 0), |b| (b.md.capacity_sectors(), dev.out_of_sync_kib()));
        (st.role, st.disk_state, size, oos)
    };
    m.put_str(Attr::ResourceName, &dev.resource)?;
    m.put_u32(Attr::Minor, dev.minor)?;
    m.put_u8(Attr::Role, role as u8)?;
    m.put_u8(Attr::DiskState, disk_state as u8)?;
    m.put_u64(Attr::SizeSectors, size)?;
    m.put_u64(Attr::OutOfSyncKib, oos)?;
    if let Some(c) = resource::connection_of(&dev.resource) {
        put_connection(m, &c.view(), c.conf.protocol)?;
        if let Some((total, rate)) = c.sync_progress(oos) {
            m.put_u64(Attr::SyncTotalKib, total)?;
            m.put_u64(Attr::SyncRateKib, rate)?;
        }
    }
    Ok(())
}

/// Writes a connection's status attributes into `m`.
fn put_connection(m: &mut Msg, v: &PeerView, protocol: u32) -> Result {
    m.put_u8(Attr::ConnState, v.cstate as u8)?;
    m.put_u8(Attr::Protocol, protocol as u8)?;
    if let Some(r) = match v.role {
        crate::drbd_state::Role::Primary => Some(nl::Role::Primary),
        crate::drbd_state::Role::Secondary => Some(nl::Role::Secondary),
        crate::drbd_state::Role::Unknown => None,
    } {
        m.put_u8(Attr::PeerRole, r as u8)?;
    }
    if let Some(d) = genl_disk(v.disk) {
        m.put_u8(Attr::PeerDisk, d as u8)?;
    }
    if v.agreed != 0 {
        m.put_u32(Attr::AgreedVersion, v.agreed)?;
    }
    Ok(())
}

/// A peer disk state for netlink.
fn genl_disk(d: ws::Disk) -> Option<DiskState> {
    Some(match d {
        ws::Disk::Diskless => DiskState::Diskless,
        ws::Disk::Attaching | ws::Disk::Negotiating => DiskState::Attaching,
        ws::Disk::Inconsistent | ws::Disk::Failed => DiskState::Inconsistent,
        ws::Disk::Outdated => DiskState::Outdated,
        ws::Disk::Consistent => DiskState::Consistent,
        ws::Disk::UpToDate => DiskState::UpToDate,
        ws::Disk::DUnknown => return None,
    })
}

/// The subscriber to [`events`]: multicasts a `change` event for each.
fn on_event(e: &Event<'_>) {
    match e {
        Event::Device(dev) => notify(dev, EventType::Change),
        Event::Connection {
            resource,
            view,
            protocol,
        } => multicast_event(EventType::Change, |m| {
            m.put_str(Attr::ResourceName, resource)?;
            put_connection(m, view, *protocol)
        }),
    }
}

/// An optional `u32` option within `lo..=hi`, or its default.
fn opt_u32(req: &Req, a: Attr, lo: u32, hi: u32, def: u32) -> core::result::Result<u32, c_int> {
    match req.u32(a) {
        None => Ok(def),
        Some(v) if (lo..=hi).contains(&v) => Ok(v),
        Some(_) => Err(req.fail(EINVAL, c"net option out of range")),
    }
}

/// An optional `u8` option within `lo..=hi`, or its default.
fn opt_u8(req: &Req, a: Attr, lo: u8, hi: u8, def: u8) -> core::result::Result<u32, c_int> {
    match req.payload(a).and_then(|p| p.first().copied()) {
        None => Ok(def.into()),
        Some(v) if (lo..=hi).contains(&v) => Ok(v.into()),
        Some(_) => Err(req.fail(EINVAL, c"net option out of range")),
    }
}

/// An optional name attribute as a NUL-padded array.
fn opt_name(req: &Req, a: Attr) -> [u8; 64] {
    let mut out = [0u8; 64];
    if let Some(s) = req.cstr(a) {
        let b = s.to_bytes();
        // The policy limits names to 63 bytes.
        let n = b.len().min(63);
        out[..n].copy_from_slice(&b[..n]);
    }
    out
}

/// The `fencing` policy of a `connect` request (default `dont-care`).
fn fencing_of(req: &Req) -> core::result::Result<Fencing, c_int> {
    let v = opt_u8(req, Attr::Fencing, 0, 2, 0)?;
    match Fencing::from_u8(v as u8) {
        Some(Fencing::ResourceAndStonith) => Err(req.fail(
            EINVAL,
            c"fencing resource-and-stonith is not supported (no I/O freezing): use resource-only",
        )),
        Some(f) => Ok(f),
        None => Err(req.fail(EINVAL, c"net option out of range")),
    }
}

/// An optional handler command line as a NUL-padded array.
fn opt_handler(req: &Req, a: Attr) -> [u8; HANDLER_BUF] {
    let mut out = [0u8; HANDLER_BUF];
    if let Some(s) = req.cstr(a) {
        let b = s.to_bytes();
        // The policy limits handlers to `HANDLER_MAX` bytes.
        let n = b.len().min(HANDLER_BUF - 1);
        out[..n].copy_from_slice(&b[..n]);
    }
    out
}

/// The `net` options of a `connect` request, with DRBD 8.4's defaults and limits
/// (`drbd_limits.h`).
fn net_conf_of(req: &Req) -> core::result::Result<NetConf, c_int> {
    let addr = |a: Attr, what: &'static CStr| {
        req.payload(a)
            .and_then(Addr::from_attr)
            .ok_or_else(|| req.fail(EINVAL, what))
    };
    let local = addr(Attr::LocalAddr, c"missing or invalid local address")?;
    let peer = addr(Attr::PeerAddr, c"missing or invalid peer address")?;
    if local.family != peer.family {
        return Err(req.fail(EINVAL, c"local and peer address families differ"));
    }
    if req.flag(Attr::TwoPrimaries) {
        return Err(req.fail(
            EINVAL,
            c"allow-two-primaries is not supported: drbd_rs has no dual-primary mode",
        ));
    }
    let conf = NetConf {
        local,
        peer,
        protocol: opt_u8(req, Attr::Protocol, 1, 3, 3)?,
        timeout_ds: opt_u32(req, Attr::TimeoutDs, 1, 600, 60)?,
        connect_int_s: opt_u32(req, Attr::ConnectIntS, 1, 120, 10)?,
        ping_int_s: opt_u32(req, Attr::PingIntS, 1, 120, 10)?,
        ping_timeout_ds: opt_u32(req, Attr::PingTimeoutDs, 1, 300, 5)?,
        ko_count: opt_u32(req, Attr::KoCount, 0, 200, 7)?,
        max_buffers: opt_u32(req, Attr::MaxBuffers, 32, 131072, 2048)?,
        after_sb: [
            opt_u8(req, Attr::AfterSb0p, 0, 12, 0)?,
            opt_u8(req, Attr::AfterSb1p, 0, 12, 0)?,
            opt_u8(req, Attr::AfterSb2p, 0, 12, 0)?,
        ],
        two_primaries: false,
        verify_alg: opt_name(req, Attr::VerifyAlg),
        csums_alg: opt_name(req, Attr::CsumsAlg),
        cram_hmac_alg: opt_name(req, Attr::CramHmacAlg),
        shared_secret: opt_name(req, Attr::SharedSecret),
        resync_rate: opt_u32(req, Attr::ResyncRate, 1, 4_194_304, 250)?,
        c_max_rate: opt_u32(req, Attr::CMaxRate, 250, 4_194_304, 102_400)?,
        c_plan_ahead_ds: opt_u32(req, Attr::CPlanAheadDs, 0, 300, 20)?,
        fencing: fencing_of(req)?,
        fence_peer: opt_handler(req, Attr::FencePeer),
        unfence_peer: opt_handler(req, Attr::UnfencePeer),
    };
    if conf.timeout_ds >= conf.ping_int_s.saturating_mul(10) {
        return Err(req.fail(EINVAL, c"timeout must be below ping-int"));
    }
    Ok(conf)
}

/// Multicasts an `events2`-style event whose attributes `fill` writes after the event type.
/// Best effort: without listeners (or memory) nothing is sent.
fn multicast_event(event: EventType, fill: impl FnOnce(&mut Msg) -> Result) {
    // SAFETY: `FAMILY` is registered while any handler runs or any device exists.
    if unsafe {
        bindings::genl_has_listeners(
            FAMILY.0.get(),
            core::ptr::addr_of_mut!(bindings::init_net),
            0,
        )
    } == 0
    {
        return;
    }
    let Ok(mut m) = Msg::new(0, 0, Cmd::Reply) else {
        return;
    };
    if m.put_u8(Attr::EventType, event as u8).is_ok() && fill(&mut m).is_ok() {
        m.multicast();
    }
}

/// Multicasts an event about `dev`.
pub(crate) fn notify(dev: &Device, event: EventType) {
    multicast_event(event, |m| put_status(m, dev));
}

/// Multicasts an event about a resource (a message without a minor).
fn notify_resource(name: &CStr, event: EventType) {
    multicast_event(event, |m| m.put_str(Attr::ResourceName, name.to_bytes()));
}

fn resource_name_of(req: &Req) -> core::result::Result<&CStr, c_int> {
    let name = req
        .cstr(Attr::ResourceName)
        .ok_or_else(|| req.fail(EINVAL, c"missing attribute: resource name"))?;
    if !crate::drbd_genl::valid_resource_name(name.to_bytes()) {
        return Err(req.fail(
            EINVAL,
            c"invalid resource name (printable ASCII, no space or '/')",
        ));
    }
    Ok(name)
}

fn minor_of(req: &Req) -> core::result::Result<u32, c_int> {
    req.u32(Attr::Minor)
        .ok_or_else(|| req.fail(EINVAL, c"missing attribute: minor"))
}

fn device_of(req: &Req) -> core::result::Result<Arc<Device>, c_int> {
    let minor = minor_of(req)?;
    device::find(&DEVICES.lock(), minor).ok_or_else(|| req.fail(ENODEV, c"no such minor"))
}

/// What a command handler returns: `Err` carries the negative errno (already reported).
type HandlerResult = core::result::Result<(), c_int>;

fn handle(req: &Req, cmd: Cmd) -> HandlerResult {
    match cmd {
        Cmd::NewResource => new_resource(req),
        Cmd::DelResource => del_resource(req),
        Cmd::NewMinor => new_minor(req),
        Cmd::DelMinor => del_minor(req),
        Cmd::Attach => attach(req),
        Cmd::Detach => detach(req),
        Cmd::Primary => primary(req),
        Cmd::Secondary => secondary(req),
        Cmd::Status => status(req),
        Cmd::Connect => connect(req),
        Cmd::Disconnect => disconnect(req),
        Cmd::Outdate => outdate(req),
        Cmd::Reply => Err(req.fail(EOPNOTSUPP, c"command not supported")),
    }
}

/// `new-resource`: creates a resource (it keeps the module loaded until `del-resource`).
fn new_resource(req: &Req) -> HandlerResult {
    let name = resource_name_of(req)?;
    let mut res = RESOURCES.lock();
    if res.iter().any(|r| r.name.as_slice() == name.to_bytes()) {
        return Err(req.fail(EEXIST, c"resource exists"));
    }
    let mut owned = KVec::with_capacity(name.to_bytes().len(), GFP_KERNEL)
        .map_err(|_| req.fail(ENOMEM, c"out of memory"))?;
    owned
        .extend_from_slice(name.to_bytes(), GFP_KERNEL)
        .map_err(|_| req.fail(ENOMEM, c"out of memory"))?;
    res.push(
        Resource {
            name: owned,
            conn: None,
            stopped: None,
        },
        GFP_KERNEL,
    )
    .map_err(|_| req.fail(ENOMEM, c"out of memory"))?;
    drop(res);
    // Like a minor, a resource keeps the module loaded until `del-resource`.
    glue::module_get();
    pr_info!("resource {}: created\n", name.to_str().unwrap_or("?"));
    notify_resource(name, EventType::Create);
    Ok(())
}

/// Whether resource `name` has minors.
fn has_minors(name: &CStr) -> bool {
    DEVICES
        .lock()
        .iter()
        .any(|d| d.resource.as_slice() == name.to_bytes())
}

/// `del-resource`: removes a resource without connection and minors.
fn del_resource(req: &Req) -> HandlerResult {
    let name = resource_name_of(req)?;
    let mut res = RESOURCES.lock();
    let idx = res
        .iter()
        .position(|r| r.name.as_slice() == name.to_bytes())
        .ok_or_else(|| req.fail(ENOENT, c"no such resource"))?;
    if res[idx].conn.is_some() {
        return Err(req.fail(EBUSY, c"resource is connected (disconnect first)"));
    }
    if has_minors(name) {
        return Err(req.fail(EBUSY, c"resource still has minors (del-minor first)"));
    }
    res.remove(idx)
        .map_err(|_| req.fail(ENOENT, c"no such resource"))?;
    drop(res);
    glue::module_put();
    pr_info!("resource {}: destroyed\n", name.to_str().unwrap_or("?"));
    notify_resource(name, EventType::Destroy);
    Ok(())
}

/// `new-minor`: creates `/dev/rdrbd<minor>` in an existing resource.
fn new_minor(req: &Req) -> HandlerResult {
    let minor = minor_of(req)?;
    if minor >= crate::minor_limit() {
        return Err(req.fail(EINVAL, c"minor out of range (module parameter minor_count)"));
    }
    let name = resource_name_of(req)?;
    let res = RESOURCES.lock();
    if !res.iter().any(|r| r.name.as_slice() == name.to_bytes()) {
        return Err(req.fail(ENOENT, c"no such resource (new-resource first)"));
    }
    let mut devs = DEVICES.lock();
    if device::find(&devs, minor).is_some() {
        return Err(req.fail(EEXIST, c"minor exists"));
    }
    devs.reserve(1, GFP_KERNEL)
        .map_err(|_| req.fail(ENOMEM, c"out of memory"))?;
    let dev = Device::create(minor, name.to_bytes())
        .map_err(|e| req.fail(e, c"cannot create the block device"))?;
    devs.push_within_capacity(dev.clone())
        .map_err(|_| req.fail(ENOMEM, c"out of memory"))?;
    if let Some(r) = res.iter().find(|r| r.name.as_slice() == name.to_bytes()) {
        dev.set_connection(r.conn.as_ref().map(|h| resource::replication(&h.conn)));
    }
    drop(devs);
    drop(res);
    glue::module_get();
    pr_info!(
        "rdrbd{}: created (resource {})\n",
        minor,
        name.to_str().unwrap_or("?")
    );
    notify(&dev, EventType::Create);
    Ok(())
}

/// `del-minor`: removes a minor that is neither open nor attached.
fn del_minor(req: &Req) -> HandlerResult {
    let minor = minor_of(req)?;
    let mut devs = DEVICES.lock();
    let idx = devs
        .iter()
        .position(|d| d.minor == minor)
        .ok_or_else(|| req.fail(ENODEV, c"no such minor"))?;
    devs[idx]
        .destroy()
        .map_err(|e| req.fail(e, c"device is open or attached"))?;
    let dev = devs
        .remove(idx)
        .map_err(|_| req.fail(ENODEV, c"no such minor"))?;
    drop(devs);
    notify(&dev, EventType::Destroy);
    let (writes, errors) = dev.stats();
    drop(dev);
    glue::module_put();
    pr_info!(
        "rdrbd{}: destroyed ({} writes, {} I/O errors)\n",
        minor,
        writes,
        errors
    );
    Ok(())
}

/// `attach`: opens the lower device and reads its metadata.
fn attach(req: &Req) -> HandlerResult {
    let dev = device_of(req)?;
    let path = req
        .cstr(Attr::LowerDev)
        .ok_or_else(|| req.fail(EINVAL, c"missing attribute: lower device"))?;
    dev.attach(path).map_err(|e| {
        req.fail(
            e,
            c"attach failed (no valid metadata, device busy, or not a block device)",
        )
    })?;
    pr_info!(
        "rdrbd{}: attached {}\n",
        dev.minor,
        path.to_str().unwrap_or("?")
    );
    notify(&dev, EventType::Change);
    Ok(())
}

/// `detach`: writes the metadata back and closes the lower device.
fn detach(req: &Req) -> HandlerResult {
    let dev = device_of(req)?;
    dev.detach()
        .map_err(|e| req.fail(e, c"detach failed (device open, Primary, or diskless)"))?;
    pr_info!("rdrbd{}: detached\n", dev.minor);
    notify(&dev, EventType::Change);
    Ok(())
}

/// `primary`: becomes Primary (`force`: with data made UpToDate). While connected the peer
/// is asked first (a cluster-wide state change); a second Primary is refused.
fn primary(req: &Req) -> HandlerResult {
    let dev = device_of(req)?;
    let force = req.flag(Attr::Force);
    let promote_err = |e: Error| {
        let msg = if e == EROFS {
            c"refusing to become Primary without UpToDate data (use --force)"
        } else {
            c"cannot become Primary (no lower device attached?)"
        };
        req.fail(e, msg)
    };
    if dev.check_primary(force).map_err(promote_err)? {
        if let Some(c) = resource::connection_of(&dev.resource) {
            // Without the peer, with fencing: `fence-peer` first (no lock held).
            c.fence_for_promotion(&dev, force)
                .map_err(|_| state_change_failed(req, StateRv::PrimaryNop))?;
            c.request_role(&dev, nl::Role::Primary, force)
                .map_err(|rv| state_change_failed(req, rv))?;
        }
    }
    if let Err(e) = dev.primary(force) {
        // The peer may have agreed already: it learns our actual state.
        resource::state_changed(&dev);
        return Err(promote_err(e));
    }
    pr_info!(
        "rdrbd{}: Primary{}\n",
        dev.minor,
        if force { " (forced)" } else { "" }
    );
    notify(&dev, EventType::Change);
    resource::state_changed(&dev);
    Ok(())
}

/// A refused state change: DRBD's name and text of the reason, e.g. `SS_TWO_PRIMARIES:
/// Multiple primaries not allowed by config` (the longest fits the extended ack's 79 bytes).
fn state_change_failed(req: &Req, rv: StateRv) -> c_int {
    let e = match rv {
        StateRv::NoUpToDateDisk => EROFS,
        StateRv::ConcurrentStChg | StateRv::InTransientState => EAGAIN,
        _ => EBUSY,
    };
    match kernel::str::CString::try_from_fmt(fmt!("{}: {}", chg::ss_name(rv), rv.name())) {
        Ok(msg) => req.fail(e, &msg),
        Err(_) => req.fail(e, c"state change refused"),
    }
}

/// `secondary`: becomes Secondary unless held open for writing.
fn secondary(req: &Req) -> HandlerResult {
    let dev = device_of(req)?;
    let changed = dev
        .secondary()
        .map_err(|e| req.fail(e, c"device is held open for writing"))?;
    if changed {
        pr_info!("rdrbd{}: Secondary\n", dev.minor);
        notify(&dev, EventType::Change);
        resource::state_changed(&dev);
    }
    Ok(())
}

/// `status`: one reply per resource (without `minor`), then one per device; with `minor`,
/// that device's only.
fn status(req: &Req) -> HandlerResult {
    let only = req.u32(Attr::Minor);
    let devs: KVec<Arc<Device>> = {
        let all = DEVICES.lock();
        let mut v = KVec::with_capacity(all.len(), GFP_KERNEL)
            .map_err(|_| req.fail(ENOMEM, c"out of memory"))?;
        for d in all.iter().filter(|d| only.is_none_or(|m| m == d.minor)) {
            v.push_within_capacity(d.clone())
                .map_err(|_| req.fail(ENOMEM, c"out of memory"))?;
        }
        v
    };
    if only.is_some() && devs.is_empty() {
        return Err(req.fail(ENODEV, c"no such minor"));
    }
    if only.is_none() {
        // Resources first (a message without a minor), as events2 lists them.
        status_resources(req)?;
    }
    for d in devs.iter() {
        let mut m = req.reply_msg()?;
        put_status(&mut m, d).map_err(|e| req.fail(e, c"reply too large"))?;
        m.reply(req.info)
            .map_err(|e| req.fail(e, c"cannot send reply"))?;
    }
    Ok(())
}

/// One `status` reply per resource: its name and connection.
fn status_resources(req: &Req) -> HandlerResult {
    let res = RESOURCES.lock();
    for r in res.iter() {
        let mut m = req.reply_msg()?;
        m.put_str(Attr::ResourceName, &r.name)
            .and_then(|()| match (&r.conn, &r.stopped) {
                (Some(h), _) => put_connection(&mut m, &h.conn.view(), h.conn.conf.protocol),
                (None, Some(c)) => put_connection(&mut m, &c.view(), c.conf.protocol),
                (None, None) => Ok(()),
            })
            .map_err(|e| req.fail(e, c"reply too large"))?;
        m.reply(req.info)
            .map_err(|e| req.fail(e, c"cannot send reply"))?;
    }
    Ok(())
}

/// `connect`: starts the resource's connection with the `net` options.
fn connect(req: &Req) -> HandlerResult {
    let name = resource_name_of(req)?;
    let conf = net_conf_of(req)?;
    let mut res = RESOURCES.lock();
    let r = res
        .iter_mut()
        .find(|r| r.name.as_slice() == name.to_bytes())
        .ok_or_else(|| req.fail(ENOENT, c"no such resource"))?;
    if r.conn.is_some() {
        return Err(req.fail(EALREADY, c"resource is already connected"));
    }
    if !has_minors(name) {
        return Err(req.fail(ENODEV, c"resource has no minor (new-minor first)"));
    }
    let h = Connection::start(name.to_bytes(), conf)
        .map_err(|e| req.fail(e, c"cannot start the connection"))?;
    resource::set_device_connections(name.to_bytes(), Some(&h.conn));
    r.conn = Some(h);
    r.stopped = None;
    Ok(())
}

/// `disconnect`: stops the connection (keeps it for status as `StandAlone`).
fn disconnect(req: &Req) -> HandlerResult {
    let name = resource_name_of(req)?;
    let h = {
        let mut res = RESOURCES.lock();
        let r = res
            .iter_mut()
            .find(|r| r.name.as_slice() == name.to_bytes())
            .ok_or_else(|| req.fail(ENOENT, c"no such resource"))?;
        r.conn.take()
    };
    let Some(h) = h else {
        return Ok(());
    };
    resource::set_device_connections(name.to_bytes(), None);
    // Joins the connection's threads, without holding the registry.
    let conn = h.conn.clone();
    drop(h);
    if let Some(r) = RESOURCES
        .lock()
        .iter_mut()
        .find(|r| r.name.as_slice() == name.to_bytes())
    {
        r.stopped = Some(conn);
    }
    Ok(())
}

/// `outdate`: marks the local disk Outdated (8.4's `drbdsetup outdate`). Refused while
/// connected (`SS_CONNECTED_OUTDATES`), while Primary (`SS_NO_UP_TO_DATE_DISK`: the peer is
/// not known UpToDate then) and below Outdated (`SS_LOWER_THAN_OUTDATED`).
fn outdate(req: &Req) -> HandlerResult {
    let dev = device_of(req)?;
    if resource::connection_of(&dev.resource).is_some_and(|c| c.is_connected()) {
        return Err(state_change_failed(req, StateRv::ConnectedOutdates));
    }
    {
        let mut st = dev.lock();
        if st.role == nl::Role::Primary {
            return Err(state_change_failed(req, StateRv::NoUpToDateDisk));
        }
        match st.disk_state {
            DiskState::Outdated => return Ok(()),
            DiskState::Consistent | DiskState::UpToDate => {}
            _ => return Err(state_change_failed(req, StateRv::LowerThanOutdated)),
        }
        let b = st
            .backing
            .as_mut()
            .ok_or_else(|| req.fail(ENODEV, c"no lower device"))?;
        b.md.set_disk_state(DiskState::Outdated);
        b.md.store(&b.lower)
            .map_err(|e| req.fail(e, c"writing the metadata failed"))?;
        st.disk_state = DiskState::Outdated;
    }
    pr_info!("rdrbd{}: disk Outdated\n", dev.minor);
    notify(&dev, EventType::Change);
    Ok(())
}

/// The `doit` of every command.
///
/// # Safety
///
/// Only the genetlink core calls this, with a valid request whose attributes were validated
/// against [`POLICY`].
unsafe extern "C" fn doit(_skb: *mut bindings::sk_buff, info: *mut bindings::genl_info) -> c_int {
    let req = Req { info };
    // SAFETY: `capable` only inspects the current task's credentials.
    if !unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as c_int) } {
        return req.fail(EPERM, c"CAP_SYS_ADMIN required");
    }
    // SAFETY: The genetlink core passes a valid request with its header.
    let cmd_nr = unsafe { (*(*info).genlhdr).cmd };
    let Some(cmd) = Cmd::from_u8(cmd_nr) else {
        return req.fail(EOPNOTSUPP, c"unknown command");
    };
    match handle(&req, cmd) {
        Ok(()) => 0,
        Err(e) => e,
    }
}
