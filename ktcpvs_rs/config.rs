// SPDX-License-Identifier: GPL-2.0

//! The configuration of the virtual services, as the configfs tree builds it and as the data
//! path (`relay.rs`) reads it.
//!
//! Each [`Service`] keeps its configuration ([`ServiceCfg`]: attributes, servers, rules) under a
//! mutex. Writers validate a new value before changing anything, so a rejected write leaves the
//! configuration as it was. Readers take [`Service::snapshot`]: an immutable `Arc<ServiceCfg>`
//! built on the first read after a change and shared until the next one, so a connection
//! works with one consistent view however the tree changes meanwhile. Each snapshot carries the
//! generation of the configuration it was taken from ([`ServiceCfg::gen`], one higher after
//! every change), which keys the scheduler state ([`SchedState`]).
//!
//! Counters live outside the configuration values, so that every snapshot's users update the
//! same atomics: the service's in [`Service::stats`], each server's in its [`ServerRt`], made
//! when the server is added and shared by every snapshot that has the server and by the
//! connections to it. A server added in the slot of a removed one gets a new [`ServerRt`]: the
//! removed server's connections still in flight update only their own.

use crate::ktcpvs_cfs::{self, CfgError, Mode, NameList, MAX_NAME, MAX_RULES, MAX_SERVERS};
use crate::l7_rules::{Rule, RuleError};
use crate::l7_sched::{CookieKey, PassiveHealth, RoundRobin, SchedKind, ServerState, SmoothWrr};
use core::fmt::Write;
use core::net::SocketAddr;
use kernel::alloc::AllocError;
use kernel::bindings;
use kernel::fmt;
use kernel::prelude::*;
use kernel::sync::atomic::{Atomic, Relaxed};
use kernel::sync::{Arc, Mutex, SpinLock};
use kernel::{new_mutex, new_spinlock};

/// A service, server, rule or cookie name.
///
/// # Invariants
///
/// `bytes[..len]` is a valid name ([`ktcpvs_cfs::valid_name`]), hence ASCII.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Name {
    bytes: [u8; MAX_NAME],
    len: u8,
}

impl Name {
    /// The name `s`, if it is a valid name.
    pub(crate) fn new(s: &[u8]) -> Option<Name> {
        if !ktcpvs_cfs::valid_name(s) {
            return None;
        }
        let mut bytes = [0; MAX_NAME];
        bytes[..s.len()].copy_from_slice(s);
        // INVARIANT: checked above; `s.len() <= MAX_NAME < 256`.
        Some(Name {
            bytes,
            len: s.len() as u8,
        })
    }

    /// The name's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The name as text.
    pub(crate) fn as_str(&self) -> &str {
        // By the type invariants the bytes are ASCII, so the fallback is never taken.
        core::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }
}

/// What the data path keeps about one server: its counters and passive health. One per server
/// for its lifetime (made by [`Service::add_server`]), shared by the snapshots that have the
/// server and the connections to it, so that nothing of a removed server reaches a server
/// added later in the same slot.
#[pin_data]
pub(crate) struct ServerRt {
    pub(crate) stats: Stats,
    /// Lock order: innermost (taken alone).
    #[pin]
    pub(crate) health: SpinLock<PassiveHealth>,
}

impl ServerRt {
    fn new() -> Result<Arc<ServerRt>> {
        Arc::pin_init(
            try_pin_init!(ServerRt {
                stats: Stats::new(),
                health <- new_spinlock!(PassiveHealth::new()),
            }? Error),
            GFP_KERNEL,
        )
    }
}

/// A real server.
#[derive(Clone)]
pub(crate) struct ServerCfg {
    /// Unique within the service for its lifetime (directory identity).
    pub(crate) id: u64,
    pub(crate) name: Name,
    /// Bit of the server in rule targets and its index in the schedulers' views. A slot is
    /// reused by a server added after this one is removed.
    pub(crate) slot: u8,
    /// `None` until written: a server without an address takes no requests.
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) weight: u16,
    pub(crate) state: ServerState,
    /// Counters and passive health of this server (not of its slot).
    pub(crate) rt: Arc<ServerRt>,
}

/// A content rule.
///
/// # Invariants
///
/// When `rule` is `Some(r)`, `r.target == target`.
#[derive(Clone, Copy)]
pub(crate) struct RuleCfg {
    /// Unique within the service for its lifetime (directory identity).
    pub(crate) id: u64,
    /// The directory name, `<order>-<label>`.
    pub(crate) name: Name,
    pub(crate) order: u32,
    /// The parsed `pattern`, `None` until written.
    pub(crate) rule: Option<Rule>,
    /// Server slots the rule sends to, 0 until written. A rule takes part in selection only
    /// with both a pattern and a target.
    pub(crate) target: u64,
}

/// The configuration of a service.
///
/// # Invariants
///
/// `servers` has at most [`MAX_SERVERS`] entries with distinct names and slots below
/// [`MAX_SERVERS`], sorted by name; `rules` has at most [`MAX_RULES`] entries with distinct names, sorted by
/// (order, name); every rule target and `default_target` names only slots of `servers`; when
/// `enabled`, [`ktcpvs_cfs::enable_check`] holds.
pub(crate) struct ServiceCfg {
    /// In a snapshot: the generation of the configuration it was taken from (in
    /// [`Service`]'s own value: 0).
    pub(crate) gen: u64,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) scheduler: SchedKind,
    pub(crate) mode: Mode,
    pub(crate) client_header_timeout_ms: u32,
    pub(crate) idle_timeout_ms: u32,
    pub(crate) connect_timeout_ms: u32,
    pub(crate) max_conns: u32,
    /// Most memory (KiB) its client connections hold (the `MemBytes` counter).
    pub(crate) max_mem_kib: u32,
    pub(crate) max_header_bytes: u32,
    pub(crate) max_fails: u32,
    pub(crate) fail_timeout_ms: u32,
    pub(crate) xff: bool,
    pub(crate) cookie: Option<Name>,
    /// Slots of the servers for requests no rule matches; `None` = every server.
    pub(crate) default_target: Option<u64>,
    pub(crate) enabled: bool,
    /// Most idle server connections kept per server (0: no pooling).
    pub(crate) pool_idle: u32,
    /// The IPVS service `rtcpvsadm follow-ipvs` copies the servers from (not used here).
    pub(crate) servers_from: Option<ktcpvs_cfs::ServersFrom>,
    pub(crate) servers: KVVec<ServerCfg>,
    pub(crate) rules: KVVec<RuleCfg>,
}

impl ServiceCfg {
    fn new() -> Self {
        ServiceCfg {
            gen: 0,
            listen: None,
            scheduler: SchedKind::Wlc,
            mode: Mode::Http,
            client_header_timeout_ms: ktcpvs_cfs::CLIENT_HEADER_TIMEOUT_MS.default,
            idle_timeout_ms: ktcpvs_cfs::IDLE_TIMEOUT_MS.default,
            connect_timeout_ms: ktcpvs_cfs::CONNECT_TIMEOUT_MS.default,
            max_conns: ktcpvs_cfs::MAX_CONNS.default,
            max_mem_kib: ktcpvs_cfs::MAX_MEM_KIB.default,
            max_header_bytes: ktcpvs_cfs::MAX_HEADER_BYTES.default,
            max_fails: ktcpvs_cfs::MAX_FAILS.default,
            fail_timeout_ms: ktcpvs_cfs::FAIL_TIMEOUT_MS.default,
            xff: false,
            cookie: None,
            default_target: None,
            enabled: false,
            pool_idle: ktcpvs_cfs::POOL_IDLE.default,
            servers_from: None,
            servers: KVVec::new(),
            rules: KVVec::new(),
        }
    }

    pub(crate) fn try_clone(&self) -> Result<Self> {
        let mut servers = KVVec::with_capacity(self.servers.len(), GFP_KERNEL)?;
        servers.extend_from_slice(&self.servers, GFP_KERNEL)?;
        let mut rules = KVVec::with_capacity(self.rules.len(), GFP_KERNEL)?;
        rules.extend_from_slice(&self.rules, GFP_KERNEL)?;
        Ok(ServiceCfg {
            servers,
            rules,
            ..*self
        })
    }

    /// Whether [`ktcpvs_cfs::enable_check`] allows these settings.
    pub(crate) fn check_enable(
        &self,
        mode: Mode,
        scheduler: SchedKind,
        has_cookie: bool,
    ) -> Result<(), Why> {
        Ok(ktcpvs_cfs::enable_check(
            self.listen.is_some(),
            mode,
            scheduler,
            has_cookie,
        )?)
    }

    /// The slots of the servers named in `list`.
    pub(crate) fn mask_of(&self, list: NameList<'_>) -> Result<u64, Why> {
        let mut mask = 0;
        for name in list {
            let s = self
                .servers
                .iter()
                .find(|s| s.name.as_bytes() == name)
                .ok_or_else(|| Why::NoServer(Name::new(name)))?;
            mask |= 1u64 << s.slot;
        }
        Ok(mask)
    }

    /// Writes the names of the servers in `mask`, comma-separated, in name order.
    pub(crate) fn write_names(&self, w: &mut impl Write, mask: u64) -> core::fmt::Result {
        let mut first = true;
        for s in self.servers.iter().filter(|s| mask & (1 << s.slot) != 0) {
            if !first {
                w.write_str(",")?;
            }
            first = false;
            w.write_str(s.name.as_str())?;
        }
        Ok(())
    }

    pub(crate) fn server(&self, id: u64) -> Option<&ServerCfg> {
        self.servers.iter().find(|s| s.id == id)
    }

    pub(crate) fn server_mut(&mut self, id: u64) -> Result<&mut ServerCfg, Why> {
        self.servers
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or(Why::Gone)
    }

    pub(crate) fn rule(&self, id: u64) -> Option<&RuleCfg> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub(crate) fn rule_mut(&mut self, id: u64) -> Result<&mut RuleCfg, Why> {
        self.rules.iter_mut().find(|r| r.id == id).ok_or(Why::Gone)
    }
}

/// Why a change was refused.
pub(crate) enum Why {
    /// A bad value (`EINVAL`).
    Cfg(CfgError),
    /// A bad rule pattern (`EINVAL`).
    Rule(RuleError),
    /// A server list names a server the service does not have (`EINVAL`); `None` if the name
    /// itself is not valid.
    NoServer(Option<Name>),
    /// Not while the service is enabled (`EBUSY`).
    Busy(&'static str),
    /// A limit on the number of directories (`ENOSPC`).
    Full(&'static str),
    /// The directory is being removed (`ENOENT`).
    Gone,
    /// Out of memory (`ENOMEM`).
    NoMem,
    /// The listening socket could not be opened (its errno, e.g. `EADDRINUSE`).
    Listen(Error),
}

impl Why {
    pub(crate) fn errno(&self) -> Error {
        match self {
            Why::Cfg(_) | Why::Rule(_) | Why::NoServer(_) => EINVAL,
            Why::Busy(_) => EBUSY,
            Why::Full(_) => ENOSPC,
            Why::Gone => ENOENT,
            Why::NoMem => ENOMEM,
            Why::Listen(e) => *e,
        }
    }
}

impl From<CfgError> for Why {
    fn from(e: CfgError) -> Self {
        Why::Cfg(e)
    }
}

impl From<RuleError> for Why {
    fn from(e: RuleError) -> Self {
        Why::Rule(e)
    }
}

impl From<AllocError> for Why {
    fn from(_: AllocError) -> Self {
        Why::NoMem
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Cfg(e) => f.write_str(e.message()),
            Why::Rule(e) => write!(f, "{} at byte {}", e.kind.message(), e.at),
            Why::NoServer(Some(n)) => write!(f, "no server {}", n.as_str()),
            Why::NoServer(None) => f.write_str("no such server"),
            Why::Busy(s) | Why::Full(s) => f.write_str(s),
            Why::Gone => f.write_str("being removed"),
            Why::NoMem => f.write_str("out of memory"),
            Why::Listen(e) => write!(f, "cannot listen: error {}", e.to_errno()),
        }
    }
}

/// Counters of a service or server. Only the data path changes them (relaxed atomics); a
/// reader sees each counter's recent value, not one instant across all of them.
pub(crate) struct Stats {
    values: [Atomic<u64>; 8],
}

impl Stats {
    const fn new() -> Self {
        Stats {
            values: [const { Atomic::new(0) }; 8],
        }
    }

    /// The counters now, in the order of [`ktcpvs_cfs::STATS_KEYS`].
    pub(crate) fn line(&self) -> ktcpvs_cfs::StatsLine {
        let mut line = ktcpvs_cfs::StatsLine::default();
        for (v, a) in line.values.iter_mut().zip(&self.values) {
            *v = a.load(Relaxed);
        }
        line
    }

    /// Adds `n` to counter `s`.
    pub(crate) fn add(&self, s: Stat, n: u64) {
        self.values[s as usize].add(n, Relaxed);
    }

    /// Adds `n` to counter `s`; returns the value before.
    pub(crate) fn fetch_add(&self, s: Stat, n: u64) -> u64 {
        self.values[s as usize].fetch_add(n, Relaxed)
    }

    /// Takes one from [`Stat::ActiveConns`] (paired with an earlier `add(ActiveConns, 1)`).
    pub(crate) fn dec_active(&self) {
        self.values[Stat::ActiveConns as usize].fetch_sub(1u64, Relaxed);
    }

    /// Takes `n` from [`Stat::MemBytes`] (paired with an earlier `fetch_add(MemBytes, n)`).
    pub(crate) fn sub_mem(&self, n: u64) {
        self.values[Stat::MemBytes as usize].fetch_sub(n, Relaxed);
    }

    /// Counter `s` now.
    pub(crate) fn get(&self, s: Stat) -> u64 {
        self.values[s as usize].load(Relaxed)
    }
}

/// The counters of [`Stats`], in the order of [`ktcpvs_cfs::STATS_KEYS`].
#[derive(Clone, Copy)]
pub(crate) enum Stat {
    /// Client connections open now (service), connections to the server in use now (server;
    /// idle connections in the pool are not counted).
    ActiveConns = 0,
    /// Client connections accepted (service), TCP connections made to the server (server; a
    /// pooled connection reused is not counted again).
    TotalConns,
    /// Requests parsed (service, http mode) or connections relayed (tcp mode); requests or
    /// connections sent to the server (server; a request sent again after a pooled
    /// connection broke counts once).
    Requests,
    /// Bytes in the client-to-server direction: read from clients (service), sent to the
    /// server (server).
    BytesIn,
    /// Bytes in the server-to-client direction: sent to clients (service), read from the
    /// server (server).
    BytesOut,
    /// Connections closed because of an error (service); failed connects, timeouts and
    /// broken connections (server).
    Errors,
    /// Connections and requests refused because `max_conns` or `max_mem_kib` was reached
    /// (service; 0 for a server).
    Refused,
    /// Bytes the service's client connections hold in the module now: their state and their
    /// head and relay buffers (service; 0 for a server).
    MemBytes,
}

/// Scheduler state shared by the connections of a service (round-robin positions, the
/// smooth-wrr scores and the Maglev table of `uri-hash`).
pub(crate) struct SchedState {
    /// Generation of the configuration the state was computed for (0: none).
    pub(crate) gen: u64,
    pub(crate) rr: RoundRobin,
    pub(crate) wrr: SmoothWrr,
    /// Empty until `uri-hash` first needs it.
    pub(crate) maglev: KVec<u16>,
}

impl SchedState {
    pub(crate) fn new() -> Self {
        SchedState {
            gen: 0,
            rr: RoundRobin::new(),
            wrr: SmoothWrr::new(),
            maglev: KVec::new(),
        }
    }

    /// Makes the state follow the configuration `cfg` (a snapshot) is about to pick with: a
    /// newer generation resets the wrr scores and drops the Maglev table (rebuilt by the next
    /// `uri-hash` pick); an older one (a request that chose its servers before the change)
    /// uses the state as it is. Keyed by the generation, not by the snapshot's address, which
    /// the allocator gives again to a later snapshot once the old one is freed.
    pub(crate) fn follow(&mut self, cfg: &ServiceCfg) {
        if cfg.gen > self.gen {
            self.gen = cfg.gen;
            self.wrr.reset();
            self.maglev.clear();
        }
    }
}

struct Inner {
    cfg: ServiceCfg,
    /// The snapshot of `cfg`, if one was taken since its last change.
    snapshot: Option<Arc<ServiceCfg>>,
    /// Generation of `cfg`: starts at 1, one higher after every change.
    gen: u64,
    next_id: u64,
}

impl Inner {
    /// `cfg` changed: the next snapshot is a new one, of the next generation.
    fn changed(&mut self) {
        self.snapshot = None;
        // u64: never saturates (one change a nanosecond would take 584 years).
        self.gen = self.gen.saturating_add(1);
    }
}

/// A virtual service.
#[pin_data]
pub(crate) struct Service {
    pub(crate) name: Name,
    /// Unique among the services for the module's lifetime.
    pub(crate) id: u64,
    #[pin]
    inner: Mutex<Inner>,
    pub(crate) stats: Stats,
    /// Scheduler state of the data path. Lock order: taken alone (never with `inner`).
    #[pin]
    pub(crate) sched: Mutex<SchedState>,
    /// Key of the persistence cookies, random for each service, so that a client cannot
    /// forge a cookie naming a server of its choice.
    pub(crate) cookie_key: CookieKey,
}

impl Service {
    pub(crate) fn new(name: Name, id: u64) -> Result<Arc<Service>> {
        // SAFETY: `get_random_u64` has no preconditions (it may be called in any context).
        let (k0, k1) = unsafe { (bindings::get_random_u64(), bindings::get_random_u64()) };
        let cookie_key = CookieKey { k0, k1 };
        Arc::pin_init(
            try_pin_init!(Service {
                name,
                id,
                inner <- new_mutex!(Inner {
                    cfg: ServiceCfg::new(),
                    snapshot: None,
                    gen: 1,
                    next_id: 1,
                }),
                stats: Stats::new(),
                sched <- new_mutex!(SchedState::new()),
                cookie_key,
            }? Error),
            GFP_KERNEL,
        )
    }

    /// A consistent, immutable view of the configuration (shared until the next change).
    pub(crate) fn snapshot(&self) -> Result<Arc<ServiceCfg>> {
        let mut g = self.inner.lock();
        if let Some(s) = &g.snapshot {
            return Ok(s.clone());
        }
        let mut cfg = g.cfg.try_clone()?;
        cfg.gen = g.gen;
        let s = Arc::new(cfg, GFP_KERNEL)?;
        g.snapshot = Some(s.clone());
        Ok(s)
    }

    /// Runs `f` on the configuration under the lock. `f` must check everything before it
    /// changes anything, so that an error leaves the configuration as it was.
    pub(crate) fn update<R>(
        &self,
        f: impl FnOnce(&mut ServiceCfg) -> Result<R, Why>,
    ) -> Result<R, Why> {
        let mut g = self.inner.lock();
        let r = f(&mut g.cfg)?;
        g.changed();
        Ok(r)
    }

    /// Adds a server (weight [`ktcpvs_cfs::DEFAULT_WEIGHT`], up, no address); returns its id.
    pub(crate) fn add_server(&self, name: Name) -> Result<u64, Why> {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let used = inner.cfg.servers.iter().fold(0u64, |m, s| m | 1 << s.slot);
        if used == u64::MAX || inner.cfg.servers.len() >= MAX_SERVERS {
            return Err(Why::Full("at most 64 servers per service"));
        }
        // A free slot exists: `used` has a zero bit.
        let slot = used.trailing_ones() as u8;
        let id = inner.next_id;
        // New counters and passive health: nothing of a server that had the slot before.
        let rt = ServerRt::new().map_err(|_| Why::NoMem)?;
        let servers = &mut inner.cfg.servers;
        // Sorted by name, so that server lists read back in the same order however the servers
        // were made (`rtcpvsadm save | load` gives the same text).
        let at = servers
            .iter()
            .position(|s| s.name.as_bytes() > name.as_bytes())
            .unwrap_or(servers.len());
        servers.reserve(1, GFP_KERNEL)?;
        servers
            .insert_within_capacity(
                at,
                ServerCfg {
                    id,
                    name,
                    slot,
                    addr: None,
                    weight: ktcpvs_cfs::DEFAULT_WEIGHT,
                    state: ServerState::Up,
                    rt,
                },
            )
            .map_err(|_| Why::NoMem)?;
        // u64: never saturates.
        inner.next_id = inner.next_id.saturating_add(1);
        inner.changed();
        Ok(id)
    }

    /// Removes the server `id` and takes it out of every target that names it.
    pub(crate) fn remove_server(&self, id: u64) {
        let mut g = self.inner.lock();
        let cfg = &mut g.cfg;
        let Some(i) = cfg.servers.iter().position(|s| s.id == id) else {
            return;
        };
        let Ok(s) = cfg.servers.remove(i) else {
            return;
        };
        let bit = 1u64 << s.slot;
        for r in cfg.rules.iter_mut().filter(|r| r.target & bit != 0) {
            r.target &= !bit;
            if let Some(rule) = &mut r.rule {
                rule.target = r.target;
            }
            let note = if r.target == 0 {
                " (no target left: the rule is inactive)"
            } else {
                ""
            };
            pr_warn!(
                "service {}: rule {} loses server {}{}\n",
                self.name.as_str(),
                r.name.as_str(),
                s.name.as_str(),
                note
            );
        }
        if let Some(t) = cfg.default_target.as_mut().filter(|t| **t & bit != 0) {
            *t &= !bit;
            pr_warn!(
                "service {}: default_target loses server {}\n",
                self.name.as_str(),
                s.name.as_str()
            );
        }
        g.changed();
    }

    /// Adds a rule (no pattern, no target) in (order, name) order; returns its id.
    pub(crate) fn add_rule(&self, name: Name, order: u32) -> Result<u64, Why> {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let rules = &mut inner.cfg.rules;
        if rules.len() >= MAX_RULES {
            return Err(Why::Full("at most 128 rules per service"));
        }
        let key = (order, name.as_bytes());
        let at = rules
            .iter()
            .position(|r| (r.order, r.name.as_bytes()) > key)
            .unwrap_or(rules.len());
        let id = inner.next_id;
        rules.reserve(1, GFP_KERNEL)?;
        rules
            .insert_within_capacity(
                at,
                RuleCfg {
                    id,
                    name,
                    order,
                    rule: None,
                    target: 0,
                },
            )
            .map_err(|_| Why::NoMem)?;
        // u64: never saturates.
        inner.next_id = inner.next_id.saturating_add(1);
        inner.changed();
        Ok(id)
    }

    /// Removes the rule `id`.
    pub(crate) fn remove_rule(&self, id: u64) {
        let mut g = self.inner.lock();
        if let Some(i) = g.cfg.rules.iter().position(|r| r.id == id) {
            let _ = g.cfg.rules.remove(i);
            g.changed();
        }
    }
}
