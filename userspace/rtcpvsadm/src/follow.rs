// SPDX-License-Identifier: GPL-2.0

//! `rtcpvsadm follow-ipvs`: keeps the servers of every ktcpvs_rs service that has a
//! `servers_from` equal to the destinations of that IPVS virtual service, polling IPVS over
//! its generic netlink family (IPVS sends no change notifications). The decisions are
//! `hark_proto::ipvs_follow::plan`'s; this file reads both sides and applies the changes
//! through configfs, logging each one on stdout (one line each, for journald).

use crate::tree::Tree;
use hark_proto::ipvs_follow::{self as ipvs, Change, Have, IpvsDest};
use hark_proto::ktcpvs_cfs::{self, state_name, ServersFrom, DIR_SERVERS};
use hark_proto::l7_sched::ServerState;
use hark_proto::nla::MsgWriter;
use rdrbdadm::genl::{Error as GenlError, GenlSocket};
use rtcpvsadm::conf;
use std::collections::HashMap;
use std::thread;
use std::time::Duration;

/// `ESRCH`: IPVS's answer when the service does not exist.
const ESRCH: i32 = 3;

/// What the follower knows between passes.
pub struct Follower<'a> {
    tree: &'a Tree,
    sock: Option<(GenlSocket, u16)>,
    /// Per service: what was last reported about its IPVS side (logged on change only).
    seen: HashMap<String, String>,
}

impl<'a> Follower<'a> {
    /// A follower of the services in `tree`.
    pub fn new(tree: &'a Tree) -> Self {
        Follower {
            tree,
            sock: None,
            seen: HashMap::new(),
        }
    }

    /// Runs passes every `interval` for ever (or one pass with `once`).
    pub fn run(&mut self, interval: Duration, once: bool) -> Result<(), String> {
        println!(
            "follow-ipvs: polling IPVS every {} ms",
            interval.as_millis()
        );
        loop {
            self.pass();
            if once {
                return Ok(());
            }
            thread::sleep(interval);
        }
    }

    /// One pass over every service with a `servers_from`; errors are logged, not fatal.
    fn pass(&mut self) {
        let services = match self.tree.subdirs(&self.tree.root) {
            Ok(s) => s,
            Err(e) => return self.note("", format!("cannot list services: {e}")),
        };
        for svc in services {
            let from = match self.tree.read(&self.tree.service(&svc), "servers_from") {
                Ok(v) => v,
                Err(_) => continue,
            };
            match ktcpvs_cfs::parse_servers_from(from.as_bytes()) {
                Ok(Some(from)) => self.follow(&svc, &from),
                Ok(None) => {
                    self.seen.remove(&svc);
                }
                Err(e) => self.note(&svc, format!("servers_from {from:?}: {e}")),
            }
        }
    }

    /// Logs `what` about `svc` if it differs from what was logged last.
    fn note(&mut self, svc: &str, what: String) {
        if self.seen.get(svc) != Some(&what) {
            println!("service {svc}: {what}");
            self.seen.insert(svc.to_string(), what);
        }
    }

    fn follow(&mut self, svc: &str, from: &ServersFrom) {
        match self.dests(from) {
            Ok(Some(want)) => {
                self.note(svc, format!("following IPVS {from}"));
                if let Err(e) = self.apply(svc, &want) {
                    println!("service {svc}: {e}");
                }
            }
            // keepalived deletes its services when it stops and creates them when it starts:
            // the servers stay as they are until the service is back.
            Ok(None) => self.note(svc, format!("IPVS {from} absent: servers kept")),
            Err(e) => {
                // Reopen the socket next time (the ip_vs module may have been reloaded).
                self.sock = None;
                self.note(svc, format!("IPVS {from}: {e}"));
            }
        }
    }

    /// The destinations of `from`; `None` if IPVS has no such service.
    fn dests(&mut self, from: &ServersFrom) -> Result<Option<Vec<IpvsDest>>, GenlError> {
        if self.sock.is_none() {
            let mut s = GenlSocket::open()?;
            s.set_recv_timeout(Some(Duration::from_secs(5)))?;
            let fam = s.resolve_family(ipvs::IPVS_GENL_NAME)?;
            self.sock = Some((s, fam.id));
        }
        let Some((sock, fam)) = self.sock.as_mut() else {
            return Ok(None);
        };
        let ver = ipvs::IPVS_GENL_VERSION;
        let put = |w: &mut MsgWriter<'_>| ipvs::put_service(w, from);
        match sock.request(*fam, ipvs::IPVS_CMD_GET_SERVICE, ver, put) {
            Err(GenlError::Kernel { errno: ESRCH, .. }) => return Ok(None),
            r => r?,
        };
        let msgs = sock.dump(*fam, ipvs::IPVS_CMD_GET_DEST, ver, put)?;
        let af = ipvs::service_af(from);
        let mut want = Vec::new();
        for m in &msgs {
            for (_, nest) in m.attrs.iter().filter(|a| a.0 == ipvs::IPVS_CMD_ATTR_DEST) {
                let d = ipvs::parse_dest(nest, af)
                    .map_err(|e| GenlError::Protocol(format!("bad destination: {e:?}")))?;
                want.push(d);
            }
        }
        Ok(Some(want))
    }

    /// The service's servers now: (name, weight, state).
    fn have(&self, svc: &str) -> Result<Vec<(String, u16, ServerState)>, String> {
        let dir = self.tree.service(svc).join(DIR_SERVERS);
        let mut v = Vec::new();
        for name in self.tree.subdirs(&dir).map_err(|e| e.to_string())? {
            let p = dir.join(&name);
            let w = self.tree.read(&p, "weight").map_err(|e| e.to_string())?;
            let s = self.tree.read(&p, "state").map_err(|e| e.to_string())?;
            let w = ktcpvs_cfs::parse_weight(w.as_bytes()).map_err(|e| e.to_string())?;
            let s = ktcpvs_cfs::parse_state(s.as_bytes()).map_err(|e| e.to_string())?;
            v.push((name, w, s));
        }
        Ok(v)
    }

    /// Makes the servers of `svc` follow `want`.
    fn apply(&self, svc: &str, want: &[IpvsDest]) -> Result<(), String> {
        let now = self.have(svc)?;
        let have: Vec<Have<'_>> = now
            .iter()
            .map(|(name, weight, state)| Have {
                name,
                weight: *weight,
                state: *state,
            })
            .collect();
        let mut errors = Vec::new();
        ipvs::plan(&have, want, &mut |c| {
            if let Err(e) = self.change(svc, &c) {
                errors.push(e);
            }
        });
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors.join("; ")),
        }
    }

    /// Applies one change and logs it.
    fn change(&self, svc: &str, c: &Change<'_>) -> Result<(), String> {
        let t = self.tree;
        let r = match *c {
            Change::Add {
                name,
                addr,
                weight,
                state,
            } => {
                println!(
                    "service {svc}: add server {name} {addr} weight {weight} {}",
                    state_name(state)
                );
                let s = conf::Server {
                    name: name.to_string(),
                    address: addr.to_string(),
                    weight: Some(weight),
                    state: Some(state_name(state).to_string()),
                    stats: None,
                };
                t.add_server(svc, &s)
            }
            Change::Set {
                name,
                weight,
                state,
            } => {
                let w = weight.map(|w| format!(" weight {w}")).unwrap_or_default();
                let s = state.map(|s| format!(" {}", state_name(s)));
                println!("service {svc}: server {name}{w}{}", s.unwrap_or_default());
                let p = t.server(svc, name);
                t.edit_server(&p, None, weight, state.map(state_name))
            }
            Change::Remove { name } => {
                println!("service {svc}: remove server {name}");
                t.rmdir(&t.server(svc, name))
            }
            Change::Skip { addr } => {
                println!("service {svc}: destination {addr}: name too long, skipped");
                Ok(())
            }
        };
        r.map_err(|e| e.to_string())
    }
}
