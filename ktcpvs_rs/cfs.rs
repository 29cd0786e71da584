// SPDX-License-Identifier: GPL-2.0

//! The `ktcpvs` configfs tree: services, their `servers/` and `rules/` directories, and the
//! attributes (see `Documentation/ktcpvs-config.md`).
//!
//! Every directory's data registers its object in the configuration when `mkdir` makes it and
//! unregisters it when configfs releases it. configfs releases a group synchronously at the end
//! of `rmdir` (open attribute files do not hold the group), so a name is free again as soon as
//! `rmdir` returns. The Rust configfs API does not let a parent look into a child in
//! `drop_item`, which is why removal is done by the child's `Drop`.

use crate::config::{Name, Service, Why};
use crate::ktcpvs_cfs::{self, AddrRole, RULE_ATTRS, SERVER_ATTRS, SERVICE_ATTRS};
use crate::l7_rules::Rule;
use crate::l7_sched::ServerState;
use crate::relay::Relay;
use core::fmt::Write;
use kernel::configfs::{self, Group};
use kernel::configfs_attrs;
use kernel::new_mutex;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::str::{BStr, CString, Formatter};
use kernel::sync::{Arc, Mutex};

/// `configfs_attrs!`, plus compile-time checks that the attribute files are named and numbered
/// as in the shared tables of `ktcpvs_cfs` (id `base + i` is `names[i]`).
macro_rules! checked_attrs {
    (
        names: $names:expr, base: $base:literal,
        container: $c:ty, data: $d:ty, $(child: $ch:ty,)?
        attributes: [$($n:ident: $i:literal),* $(,)?] $(,)?
    ) => {{
        $(const _: () = assert!(ktcpvs_cfs::name_eq($names[$i - $base], stringify!($n)));)*
        const _: () = assert!($names.len() == [$($i),*].len());
        configfs_attrs! {
            container: $c,
            data: $d,
            $(child: $ch,)?
            attributes: [$($n: $i),*],
        }
    }};
}

/// Implements attribute `$id` of `$data` by its `show`/`store` methods with `$which`.
macro_rules! attr_ops {
    ($data:ty, $id:literal, $which:expr) => {
        #[vtable]
        impl configfs::AttributeOperations<$id> for $data {
            type Data = $data;

            fn show(this: &$data, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
                this.show($which, page)
            }

            fn store(this: &$data, page: &[u8]) -> Result {
                this.store($which, page)
            }
        }
    };
    ($data:ty, $id:literal, $which:expr, read_only) => {
        #[vtable]
        impl configfs::AttributeOperations<$id> for $data {
            type Data = $data;

            fn show(this: &$data, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
                this.show($which, page)
            }
        }
    };
}

/// Runs `f` with a formatter over `page`; returns the bytes written.
fn render(
    page: &mut [u8; PAGE_SIZE],
    f: impl FnOnce(&mut Formatter<'_>) -> core::fmt::Result,
) -> Result<usize> {
    let mut w = Formatter::new(page);
    f(&mut w)?;
    Ok(w.bytes_written())
}

/// At most 64 bytes of a written value, without surrounding whitespace, for a log line.
fn shown(value: &[u8]) -> &BStr {
    let v = ktcpvs_cfs::trim(value);
    BStr::from_bytes(&v[..v.len().min(64)])
}

/// The services, for the module as a whole.
#[pin_data]
pub(crate) struct Registry {
    #[pin]
    services: Mutex<Services>,
    max: u32,
    /// The data path: listeners open and close with `enabled`.
    pub(crate) relay: Arc<Relay>,
}

struct Services {
    list: KVec<Arc<Service>>,
    next_id: u64,
}

impl Registry {
    pub(crate) fn new(max: u32, relay: Arc<Relay>) -> Result<Arc<Registry>> {
        Arc::pin_init(
            try_pin_init!(Registry {
                services <- new_mutex!(Services {
                    list: KVec::new(),
                    next_id: 1,
                }),
                max,
                relay,
            }? Error),
            GFP_KERNEL,
        )
    }

    fn add(&self, name: Name) -> Result<Arc<Service>> {
        let mut g = self.services.lock();
        if g.list.len() >= self.max as usize {
            pr_warn!(
                "service {}: not created: max_services={} reached\n",
                name.as_str(),
                self.max
            );
            return Err(ENOSPC);
        }
        let svc = Service::new(name, g.next_id)?;
        g.list.push(svc.clone(), GFP_KERNEL)?;
        // u64: never saturates.
        g.next_id = g.next_id.saturating_add(1);
        Ok(svc)
    }

    fn remove(&self, id: u64) {
        self.services.lock().list.retain(|s| s.id != id);
    }
}

/// Data behind the subsystem directory.
#[pin_data]
pub(crate) struct Root {
    /// IPVS version as reported by `ipvs_glue`, `0x010201` for 1.2.1.
    pub(crate) ipvs_version: u32,
    pub(crate) registry: Arc<Registry>,
}

#[vtable]
impl configfs::AttributeOperations<0> for Root {
    type Data = Root;

    fn show(root: &Root, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        let v = root.ipvs_version;
        render(page, |w| {
            writeln!(
                w,
                "ktcpvs_rs 0.1.0 ipvs {}.{}.{}",
                (v >> 16) & 0xff,
                (v >> 8) & 0xff,
                v & 0xff
            )
        })
    }
}

#[vtable]
impl configfs::GroupOperations for Root {
    type Child = ServiceDir;

    fn make_group(&self, name: &CStr) -> Result<impl PinInit<Group<ServiceDir>, Error>> {
        let Some(n) = Name::new(name.to_bytes()) else {
            pr_warn!(
                "mkdir {}: {}\n",
                BStr::from_bytes(name.to_bytes()),
                ktcpvs_cfs::CfgError::BadName.message()
            );
            return Err(EINVAL);
        };
        let cname: CString = name.try_into()?;
        let item_type = checked_attrs! {
            names: SERVICE_ATTRS, base: 0,
            container: Group<ServiceDir>,
            data: ServiceDir,
            child: SubDir,
            attributes: [
                listen: 0,
                scheduler: 1,
                mode: 2,
                client_header_timeout_ms: 3,
                idle_timeout_ms: 4,
                connect_timeout_ms: 5,
                max_conns: 6,
                max_header_bytes: 7,
                max_fails: 8,
                fail_timeout_ms: 9,
                xff: 10,
                cookie: 11,
                default_target: 12,
                enabled: 13,
                stats: 14,
                pool_idle: 15,
                servers_from: 16,
                max_mem_kib: 17,
            ],
        };
        let svc = self.registry.add(n)?;
        pr_info!("service {}: created\n", n.as_str());
        Ok(Group::new(
            cname,
            item_type,
            Ok::<_, Error>(ServiceDir {
                svc,
                registry: self.registry.clone(),
            }),
        ))
    }
}

/// Attributes of a service directory (the discriminant is the configfs attribute id and the
/// index in [`SERVICE_ATTRS`]).
#[derive(Clone, Copy)]
pub(crate) enum SvcAttr {
    Listen = 0,
    Scheduler,
    Mode,
    ClientHeaderTimeoutMs,
    IdleTimeoutMs,
    ConnectTimeoutMs,
    MaxConns,
    MaxHeaderBytes,
    MaxFails,
    FailTimeoutMs,
    Xff,
    Cookie,
    DefaultTarget,
    Enabled,
    Stats,
    PoolIdle,
    ServersFrom,
    MaxMemKib,
}

/// A service directory. Dropping it (when configfs releases the directory) removes the
/// service from the registry.
pub(crate) struct ServiceDir {
    svc: Arc<Service>,
    registry: Arc<Registry>,
}

impl Drop for ServiceDir {
    fn drop(&mut self) {
        self.registry.relay.unlisten(self.svc.id);
        self.registry.relay.pool.purge(self.svc.id, None);
        self.registry.remove(self.svc.id);
        pr_info!("service {}: removed\n", self.svc.name.as_str());
    }
}

attr_ops!(ServiceDir, 0, SvcAttr::Listen);
attr_ops!(ServiceDir, 1, SvcAttr::Scheduler);
attr_ops!(ServiceDir, 2, SvcAttr::Mode);
attr_ops!(ServiceDir, 3, SvcAttr::ClientHeaderTimeoutMs);
attr_ops!(ServiceDir, 4, SvcAttr::IdleTimeoutMs);
attr_ops!(ServiceDir, 5, SvcAttr::ConnectTimeoutMs);
attr_ops!(ServiceDir, 6, SvcAttr::MaxConns);
attr_ops!(ServiceDir, 7, SvcAttr::MaxHeaderBytes);
attr_ops!(ServiceDir, 8, SvcAttr::MaxFails);
attr_ops!(ServiceDir, 9, SvcAttr::FailTimeoutMs);
attr_ops!(ServiceDir, 10, SvcAttr::Xff);
attr_ops!(ServiceDir, 11, SvcAttr::Cookie);
attr_ops!(ServiceDir, 12, SvcAttr::DefaultTarget);
attr_ops!(ServiceDir, 13, SvcAttr::Enabled);
attr_ops!(ServiceDir, 14, SvcAttr::Stats, read_only);
attr_ops!(ServiceDir, 15, SvcAttr::PoolIdle);
attr_ops!(ServiceDir, 16, SvcAttr::ServersFrom);
attr_ops!(ServiceDir, 17, SvcAttr::MaxMemKib);

impl ServiceDir {
    fn show(&self, a: SvcAttr, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        let cfg = self.svc.snapshot()?;
        render(page, |w| {
            match a {
                SvcAttr::Listen => {
                    if let Some(l) = cfg.listen {
                        write!(w, "{l}")?;
                    }
                }
                SvcAttr::Scheduler => w.write_str(cfg.scheduler.name())?,
                SvcAttr::Mode => w.write_str(cfg.mode.name())?,
                SvcAttr::ClientHeaderTimeoutMs => write!(w, "{}", cfg.client_header_timeout_ms)?,
                SvcAttr::IdleTimeoutMs => write!(w, "{}", cfg.idle_timeout_ms)?,
                SvcAttr::ConnectTimeoutMs => write!(w, "{}", cfg.connect_timeout_ms)?,
                SvcAttr::MaxConns => write!(w, "{}", cfg.max_conns)?,
                SvcAttr::MaxHeaderBytes => write!(w, "{}", cfg.max_header_bytes)?,
                SvcAttr::MaxFails => write!(w, "{}", cfg.max_fails)?,
                SvcAttr::FailTimeoutMs => write!(w, "{}", cfg.fail_timeout_ms)?,
                SvcAttr::Xff => write!(w, "{}", u8::from(cfg.xff))?,
                SvcAttr::Cookie => {
                    if let Some(c) = &cfg.cookie {
                        w.write_str(c.as_str())?;
                    }
                }
                SvcAttr::DefaultTarget => match cfg.default_target {
                    None => w.write_str(ktcpvs_cfs::ALL_SERVERS)?,
                    Some(mask) => cfg.write_names(w, mask)?,
                },
                SvcAttr::Enabled => write!(w, "{}", u8::from(cfg.enabled))?,
                SvcAttr::Stats => write!(w, "{}", self.svc.stats.line())?,
                SvcAttr::PoolIdle => write!(w, "{}", cfg.pool_idle)?,
                SvcAttr::ServersFrom => {
                    if let Some(f) = &cfg.servers_from {
                        write!(w, "{f}")?;
                    }
                }
                SvcAttr::MaxMemKib => write!(w, "{}", cfg.max_mem_kib)?,
            }
            writeln!(w)
        })
    }

    fn store(&self, a: SvcAttr, value: &[u8]) -> Result {
        let v = ktcpvs_cfs::trim(value);
        let r = self.svc.update(|cfg| {
            match a {
                SvcAttr::Listen => {
                    let listen = if v.is_empty() {
                        None
                    } else {
                        Some(ktcpvs_cfs::parse_addr(v, AddrRole::Listen)?)
                    };
                    if cfg.enabled {
                        return Err(Why::Busy("stop the service before changing listen"));
                    }
                    cfg.listen = listen;
                }
                SvcAttr::Scheduler => {
                    let s = ktcpvs_cfs::parse_scheduler(v)?;
                    if cfg.enabled {
                        cfg.check_enable(cfg.mode, s, cfg.cookie.is_some())?;
                    }
                    cfg.scheduler = s;
                }
                SvcAttr::Mode => {
                    let m = ktcpvs_cfs::parse_mode(v)?;
                    if cfg.enabled {
                        cfg.check_enable(m, cfg.scheduler, cfg.cookie.is_some())?;
                    }
                    cfg.mode = m;
                }
                SvcAttr::ClientHeaderTimeoutMs => {
                    cfg.client_header_timeout_ms =
                        ktcpvs_cfs::parse_num(&ktcpvs_cfs::CLIENT_HEADER_TIMEOUT_MS, v)?
                }
                SvcAttr::IdleTimeoutMs => {
                    cfg.idle_timeout_ms = ktcpvs_cfs::parse_num(&ktcpvs_cfs::IDLE_TIMEOUT_MS, v)?
                }
                SvcAttr::ConnectTimeoutMs => {
                    cfg.connect_timeout_ms =
                        ktcpvs_cfs::parse_num(&ktcpvs_cfs::CONNECT_TIMEOUT_MS, v)?
                }
                SvcAttr::MaxConns => {
                    cfg.max_conns = ktcpvs_cfs::parse_num(&ktcpvs_cfs::MAX_CONNS, v)?
                }
                SvcAttr::MaxHeaderBytes => {
                    cfg.max_header_bytes = ktcpvs_cfs::parse_num(&ktcpvs_cfs::MAX_HEADER_BYTES, v)?
                }
                SvcAttr::MaxFails => {
                    cfg.max_fails = ktcpvs_cfs::parse_num(&ktcpvs_cfs::MAX_FAILS, v)?
                }
                SvcAttr::FailTimeoutMs => {
                    cfg.fail_timeout_ms = ktcpvs_cfs::parse_num(&ktcpvs_cfs::FAIL_TIMEOUT_MS, v)?
                }
                SvcAttr::Xff => cfg.xff = ktcpvs_cfs::parse_bool01(v)?,
                SvcAttr::Cookie => {
                    let c = ktcpvs_cfs::parse_cookie(v)?;
                    let cookie = if c.is_empty() { None } else { Name::new(c) };
                    if cfg.enabled {
                        cfg.check_enable(cfg.mode, cfg.scheduler, cookie.is_some())?;
                    }
                    cfg.cookie = cookie;
                }
                SvcAttr::DefaultTarget => {
                    cfg.default_target = if v.is_empty() || v == ktcpvs_cfs::ALL_SERVERS.as_bytes()
                    {
                        None
                    } else {
                        Some(cfg.mask_of(ktcpvs_cfs::parse_name_list(v)?)?)
                    };
                }
                SvcAttr::Enabled => {
                    let e = ktcpvs_cfs::parse_bool01(v)?;
                    if e {
                        cfg.check_enable(cfg.mode, cfg.scheduler, cfg.cookie.is_some())?;
                    }
                    // Under the service's lock, so that listeners follow `enabled` in order
                    // (lock order: `Service::inner`, then the relay's listeners).
                    let relay = &self.registry.relay;
                    match (e, cfg.listen) {
                        (true, Some(addr)) if !cfg.enabled => {
                            relay.listen(&self.svc, &addr).map_err(Why::Listen)?
                        }
                        (false, _) => relay.unlisten(self.svc.id),
                        _ => {}
                    }
                    if e != cfg.enabled {
                        pr_info!(
                            "service {}: {}\n",
                            self.svc.name.as_str(),
                            if e { "enabled" } else { "disabled" }
                        );
                    }
                    cfg.enabled = e;
                }
                // Read-only: configfs offers no store for it.
                SvcAttr::Stats => return Err(Why::Busy("read-only")),
                SvcAttr::PoolIdle => {
                    cfg.pool_idle = ktcpvs_cfs::parse_num(&ktcpvs_cfs::POOL_IDLE, v)?
                }
                // Only stored: `rtcpvsadm follow-ipvs` reads it and manages the servers.
                SvcAttr::ServersFrom => cfg.servers_from = ktcpvs_cfs::parse_servers_from(v)?,
                SvcAttr::MaxMemKib => {
                    cfg.max_mem_kib = ktcpvs_cfs::parse_num(&ktcpvs_cfs::MAX_MEM_KIB, v)?
                }
            }
            Ok(())
        });
        // Disabled or resized: the idle server connections go (after the service's lock: the
        // pool's lock is taken alone).
        let purge = match a {
            SvcAttr::PoolIdle => true,
            SvcAttr::Enabled => ktcpvs_cfs::parse_bool01(v) == Ok(false),
            _ => false,
        };
        if r.is_ok() && purge {
            self.registry.relay.pool.purge(self.svc.id, None);
        }
        r.map_err(|why| {
            pr_warn!(
                "service {}: {}: rejected \"{}\": {}\n",
                self.svc.name.as_str(),
                SERVICE_ATTRS[a as usize],
                shown(value),
                why
            );
            why.errno()
        })
    }
}

#[vtable]
impl configfs::GroupOperations for ServiceDir {
    type Child = SubDir;

    fn make_group(&self, name: &CStr) -> Result<impl PinInit<Group<SubDir>, Error>> {
        let kind = match name.to_bytes() {
            n if n == ktcpvs_cfs::DIR_SERVERS.as_bytes() => EntryKind::Server,
            n if n == ktcpvs_cfs::DIR_RULES.as_bytes() => EntryKind::Rule,
            n => {
                pr_warn!(
                    "service {}: mkdir {}: only {} and {} can be made here\n",
                    self.svc.name.as_str(),
                    BStr::from_bytes(n),
                    ktcpvs_cfs::DIR_SERVERS,
                    ktcpvs_cfs::DIR_RULES
                );
                return Err(EINVAL);
            }
        };
        let item_type = configfs_attrs! {
            container: Group<SubDir>,
            data: SubDir,
            child: Entry,
            attributes: [],
        };
        Ok(Group::new(
            name.try_into()?,
            item_type,
            Ok::<_, Error>(SubDir {
                kind,
                svc: self.svc.clone(),
                relay: self.registry.relay.clone(),
            }),
        ))
    }
}

/// What an [`Entry`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Server,
    Rule,
}

impl EntryKind {
    fn name(self) -> &'static str {
        match self {
            EntryKind::Server => "server",
            EntryKind::Rule => "rule",
        }
    }
}

/// The `servers/` or `rules/` directory of a service.
pub(crate) struct SubDir {
    kind: EntryKind,
    svc: Arc<Service>,
    /// For closing a server's idle pooled connections.
    relay: Arc<Relay>,
}

#[vtable]
impl configfs::GroupOperations for SubDir {
    type Child = Entry;

    fn make_group(&self, name: &CStr) -> Result<impl PinInit<Group<Entry>, Error>> {
        let svc_name = self.svc.name.as_str();
        let bytes = name.to_bytes();
        let cname: CString = name.try_into()?;
        let (added, item_type) = match self.kind {
            EntryKind::Server => {
                let item_type = checked_attrs! {
                    names: SERVER_ATTRS, base: 0,
                    container: Group<Entry>,
                    data: Entry,
                    attributes: [
                        address: 0,
                        weight: 1,
                        state: 2,
                        stats: 3,
                    ],
                };
                let added = Name::new(bytes)
                    .ok_or(Why::Cfg(ktcpvs_cfs::CfgError::BadName))
                    .and_then(|n| Ok((n, self.svc.add_server(n)?)));
                (added, item_type)
            }
            EntryKind::Rule => {
                let item_type = checked_attrs! {
                    names: RULE_ATTRS, base: 4,
                    container: Group<Entry>,
                    data: Entry,
                    attributes: [
                        pattern: 4,
                        target: 5,
                    ],
                };
                let added = ktcpvs_cfs::parse_rule_name(bytes)
                    .map_err(Why::Cfg)
                    .and_then(|order| {
                        let n = Name::new(bytes).ok_or(Why::Cfg(ktcpvs_cfs::CfgError::BadName))?;
                        Ok((n, self.svc.add_rule(n, order)?))
                    });
                (added, item_type)
            }
        };
        let what = self.kind.name();
        let (n, id) = added.map_err(|why| {
            pr_warn!(
                "service {}: {} {}: not created: {}\n",
                svc_name,
                what,
                BStr::from_bytes(bytes),
                why
            );
            why.errno()
        })?;
        Ok(Group::new(
            cname,
            item_type,
            Ok::<_, Error>(Entry {
                kind: self.kind,
                id,
                name: n,
                svc: self.svc.clone(),
                relay: self.relay.clone(),
            }),
        ))
    }
}

/// Attributes of servers and rules (the discriminant is the configfs attribute id; servers
/// use [`SERVER_ATTRS`], rules [`RULE_ATTRS`] from id 4).
#[derive(Clone, Copy)]
pub(crate) enum EntryAttr {
    Address = 0,
    Weight,
    State,
    Stats,
    Pattern,
    Target,
}

impl EntryAttr {
    fn name(self) -> &'static str {
        let i = self as usize;
        SERVER_ATTRS
            .get(i)
            .or_else(|| RULE_ATTRS.get(i.checked_sub(SERVER_ATTRS.len())?))
            .copied()
            .unwrap_or("?")
    }
}

/// A server or rule directory. Dropping it (when configfs releases the directory) removes the
/// server or rule from its service.
pub(crate) struct Entry {
    kind: EntryKind,
    id: u64,
    name: Name,
    svc: Arc<Service>,
    /// For closing the server's idle pooled connections.
    relay: Arc<Relay>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        match self.kind {
            EntryKind::Server => {
                self.svc.remove_server(self.id);
                self.relay.pool.purge(self.svc.id, Some(self.id));
            }
            EntryKind::Rule => self.svc.remove_rule(self.id),
        }
    }
}

attr_ops!(Entry, 0, EntryAttr::Address);
attr_ops!(Entry, 1, EntryAttr::Weight);
attr_ops!(Entry, 2, EntryAttr::State);
attr_ops!(Entry, 3, EntryAttr::Stats, read_only);
attr_ops!(Entry, 4, EntryAttr::Pattern);
attr_ops!(Entry, 5, EntryAttr::Target);

impl Entry {
    fn show(&self, a: EntryAttr, page: &mut [u8; PAGE_SIZE]) -> Result<usize> {
        let cfg = self.svc.snapshot()?;
        if self.kind == EntryKind::Server {
            let s = cfg.server(self.id).ok_or(ENOENT)?;
            return render(page, |w| match a {
                EntryAttr::Address => match s.addr {
                    Some(addr) => writeln!(w, "{addr}"),
                    None => writeln!(w),
                },
                EntryAttr::Weight => writeln!(w, "{}", s.weight),
                EntryAttr::State => writeln!(w, "{}", ktcpvs_cfs::state_name(s.state)),
                EntryAttr::Stats => {
                    writeln!(w, "{}", s.rt.stats.line())
                }
                EntryAttr::Pattern | EntryAttr::Target => Err(core::fmt::Error),
            });
        }
        let r = cfg.rule(self.id).ok_or(ENOENT)?;
        render(page, |w| {
            match a {
                EntryAttr::Pattern => {
                    if let Some(rule) = &r.rule {
                        write!(w, "{rule}")?;
                    }
                }
                EntryAttr::Target => cfg.write_names(w, r.target)?,
                _ => return Err(core::fmt::Error),
            }
            writeln!(w)
        })
    }

    fn store(&self, a: EntryAttr, value: &[u8]) -> Result {
        let v = ktcpvs_cfs::trim(value);
        let id = self.id;
        let r = self.svc.update(|cfg| {
            match a {
                EntryAttr::Address => {
                    let addr = ktcpvs_cfs::parse_addr(v, AddrRole::Server)?;
                    cfg.server_mut(id)?.addr = Some(addr);
                }
                EntryAttr::Weight => {
                    let weight = ktcpvs_cfs::parse_weight(v)?;
                    cfg.server_mut(id)?.weight = weight;
                }
                EntryAttr::State => {
                    let state = ktcpvs_cfs::parse_state(v)?;
                    cfg.server_mut(id)?.state = state;
                }
                EntryAttr::Pattern => {
                    let target = cfg.rule_mut(id)?.target;
                    let rule = Rule::parse(v, target)?;
                    // INVARIANT: the rule carries the entry's target.
                    cfg.rule_mut(id)?.rule = Some(rule);
                }
                EntryAttr::Target => {
                    let mask = cfg.mask_of(ktcpvs_cfs::parse_name_list(v)?)?;
                    let r = cfg.rule_mut(id)?;
                    r.target = mask;
                    // INVARIANT: the rule carries the entry's target.
                    if let Some(rule) = &mut r.rule {
                        rule.target = mask;
                    }
                }
                // Read-only: configfs offers no store for it.
                EntryAttr::Stats => return Err(Why::Busy("read-only")),
            }
            Ok(())
        });
        // A server moved, down or draining keeps no idle connections.
        let moved = match a {
            EntryAttr::Address => true,
            EntryAttr::State => ktcpvs_cfs::parse_state(v).is_ok_and(|st| st != ServerState::Up),
            _ => false,
        };
        if r.is_ok() && moved {
            self.relay.pool.purge(self.svc.id, Some(id));
        }
        r.map_err(|why| {
            pr_warn!(
                "service {}: {} {}: {}: rejected \"{}\": {}\n",
                self.svc.name.as_str(),
                self.kind.name(),
                self.name.as_str(),
                a.name(),
                shown(value),
                why
            );
            why.errno()
        })
    }
}
