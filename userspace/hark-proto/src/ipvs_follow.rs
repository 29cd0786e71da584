// SPDX-License-Identifier: GPL-2.0

//! The logic of `rtcpvsadm follow-ipvs`, which keeps a ktcpvs_rs service's servers equal to the
//! destinations of an IPVS virtual service (one that keepalived manages, for example):
//!
//! - IPVS's generic netlink family `IPVS` (what `ipvsadm` and keepalived use;
//!   `include/uapi/linux/ip_vs.h`): the request that names a service ([`put_service`]) and the
//!   decoding of a destination ([`parse_dest`]);
//! - the name of the server that stands for a destination ([`server_name`]): `ip-` followed by
//!   the address and port, so that rules can target it by address;
//! - the changes that make the servers follow the destinations ([`plan`]): a new destination
//!   is added, a gone one removed, a weight copied; IPVS weight 0 (quiesced, keepalived's
//!   `inhibit_on_failure`) becomes state `drain`. Only servers named with [`FOLLOW_PREFIX`]
//!   belong to the follower; others are left alone.

#![deny(clippy::arithmetic_side_effects)]

use super::ktcpvs_cfs::{ServersFrom, MAX_NAME};
use super::l7_sched::ServerState;
use super::nla::{self, MsgWriter, NlaError};
use core::fmt::{self, Write};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The family's name and version.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const IPVS_GENL_VERSION: u8 = 1;
/// `IPVS_CMD_GET_SERVICE`: one service (`-ESRCH` if there is none).
pub const IPVS_CMD_GET_SERVICE: u8 = 4;
/// `IPVS_CMD_GET_DEST`: dump of a service's destinations.
pub const IPVS_CMD_GET_DEST: u8 = 8;
/// `IPVS_CMD_ATTR_SERVICE` (nested `IPVS_SVC_ATTR_*`).
pub const IPVS_CMD_ATTR_SERVICE: u16 = 1;
/// `IPVS_CMD_ATTR_DEST` (nested `IPVS_DEST_ATTR_*`).
pub const IPVS_CMD_ATTR_DEST: u16 = 2;

const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_FWMARK: u16 = 5;
const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_ADDR_FAMILY: u16 = 11;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;

/// `union nf_inet_addr`: 16 bytes, IPv4 in the first 4.
fn inet_addr(ip: IpAddr) -> [u8; 16] {
    let mut a = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => a[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => a = v6.octets(),
    }
    a
}

/// The address family of the service `from` (a fwmark service is taken as IPv4).
pub fn service_af(from: &ServersFrom) -> u16 {
    match from {
        ServersFrom::Tcp(SocketAddr::V6(_)) => AF_INET6,
        _ => AF_INET,
    }
}

/// Puts the `IPVS_CMD_ATTR_SERVICE` nest that names `from` (what IPVS needs to find a service:
/// family, then fwmark or protocol, address and port).
pub fn put_service(w: &mut MsgWriter<'_>, from: &ServersFrom) -> Result<(), NlaError> {
    let nest = w.begin_nested(IPVS_CMD_ATTR_SERVICE)?;
    w.put_u16(SVC_ATTR_AF, service_af(from))?;
    match from {
        ServersFrom::Fwmark(m) => w.put_u32(SVC_ATTR_FWMARK, *m)?,
        ServersFrom::Tcp(a) => {
            w.put_u16(SVC_ATTR_PROTOCOL, IPPROTO_TCP)?;
            w.put_bytes(SVC_ATTR_ADDR, &inet_addr(a.ip()))?;
            // Network byte order.
            w.put_bytes(SVC_ATTR_PORT, &a.port().to_be_bytes())?;
        }
    }
    w.end_nested(nest)
}

/// A destination of an IPVS service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpvsDest {
    /// Its address and port.
    pub addr: SocketAddr,
    /// IPVS's weight (0 = quiesced).
    pub weight: u32,
}

/// What is wrong with a destination message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestError {
    /// Malformed attributes.
    Nla(NlaError),
    /// No address, port or weight.
    Missing,
    /// An address family other than IPv4 and IPv6, or a negative weight.
    Bad,
}

impl From<NlaError> for DestError {
    fn from(e: NlaError) -> Self {
        DestError::Nla(e)
    }
}

/// Decodes the payload of an `IPVS_CMD_ATTR_DEST` nest. `svc_af` is the service's family,
/// used when the kernel sends no `IPVS_DEST_ATTR_ADDR_FAMILY`.
pub fn parse_dest(nest: &[u8], svc_af: u16) -> Result<IpvsDest, DestError> {
    let get = |t| nla::find_attr(nest, t)?.ok_or(DestError::Missing);
    let af = match nla::find_attr(nest, DEST_ATTR_ADDR_FAMILY)? {
        Some(p) => nla::as_u16(p)?,
        None => svc_af,
    };
    let raw = get(DEST_ATTR_ADDR)?;
    let ip = match (af, raw.len()) {
        (AF_INET, n) if n >= 4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        (AF_INET6, 16) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(raw);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(DestError::Bad),
    };
    let port = match get(DEST_ATTR_PORT)? {
        [a, b] => u16::from_be_bytes([*a, *b]),
        _ => return Err(DestError::Nla(NlaError::BadSize)),
    };
    let weight = nla::as_u32(get(DEST_ATTR_WEIGHT)?)?;
    // IPVS weights are a signed int; a negative one is not valid.
    if i32::try_from(weight).is_err() {
        return Err(DestError::Bad);
    }
    Ok(IpvsDest {
        addr: SocketAddr::new(ip, port),
        weight,
    })
}

/// Names of the servers the follower owns start with this.
pub const FOLLOW_PREFIX: &str = "ip-";

/// A name being written into a fixed buffer.
struct NameBuf {
    buf: [u8; MAX_NAME],
    len: usize,
}

impl Write for NameBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // A ':' of an IPv6 address is not a valid name byte.
            let b = if b == b':' { b'_' } else { b };
            *self.buf.get_mut(self.len).ok_or(fmt::Error)? = b;
            self.len = self.len.checked_add(1).ok_or(fmt::Error)?;
        }
        Ok(())
    }
}

/// A server name of at most [`MAX_NAME`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerName {
    buf: [u8; MAX_NAME],
    len: usize,
}

impl ServerName {
    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written (prefix, digits, '.', '_', '-', hex).
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

/// The server name for a destination: `ip-10.0.0.3-80`, `ip-fd00__3-80` (the address in its
/// shortest form, `:` written `_`); `None` if it would be longer than [`MAX_NAME`] (a long
/// IPv6 address).
pub fn server_name(addr: &SocketAddr) -> Option<ServerName> {
    let mut n = NameBuf {
        buf: [0; MAX_NAME],
        len: 0,
    };
    write!(n, "{FOLLOW_PREFIX}{}-{}", addr.ip(), addr.port()).ok()?;
    Some(ServerName {
        buf: n.buf,
        len: n.len,
    })
}

/// A server of the ktcpvs_rs service as it is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Have<'a> {
    /// Its directory name.
    pub name: &'a str,
    /// `weight`.
    pub weight: u16,
    /// `state`.
    pub state: ServerState,
}

/// One change to the ktcpvs_rs service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// Make server `name` with these attributes.
    Add {
        /// Directory name.
        name: &'a str,
        /// `address`.
        addr: SocketAddr,
        /// `weight`.
        weight: u16,
        /// `state`.
        state: ServerState,
    },
    /// Write the attributes that are `Some`.
    Set {
        /// Directory name.
        name: &'a str,
        /// New `weight`.
        weight: Option<u16>,
        /// New `state`.
        state: Option<ServerState>,
    },
    /// Remove server `name`.
    Remove {
        /// Directory name.
        name: &'a str,
    },
    /// Destination `addr` has no valid server name (too long): left out.
    Skip {
        /// The destination.
        addr: SocketAddr,
    },
}

/// The weight and state that stand for an IPVS weight: weight 0 is `drain` with the weight
/// left as it is (`None`); above 65535 counts as 65535.
fn target(weight: u32) -> (Option<u16>, ServerState) {
    match weight {
        0 => (None, ServerState::Drain),
        w => (Some(u16::try_from(w).unwrap_or(u16::MAX)), ServerState::Up),
    }
}

/// Calls `out` with each change that makes the servers `have` follow the destinations `want`:
/// removals first (so that the service's 64 server slots free up), then additions and
/// updates in `want`'s order. Servers whose names do not start with [`FOLLOW_PREFIX`] are not
/// touched. Nothing is emitted when they already match.
///
/// A service without destinations drains the followed servers instead of removing them:
/// keepalived (and `ipvsadm`) create a service before adding its destinations, and removing
/// the servers in between would take them out of every rule target for good.
pub fn plan(have: &[Have<'_>], want: &[IpvsDest], out: &mut dyn FnMut(Change<'_>)) {
    let followed = have.iter().filter(|h| h.name.starts_with(FOLLOW_PREFIX));
    if want.is_empty() {
        for h in followed.filter(|h| h.state != ServerState::Drain) {
            out(Change::Set {
                name: h.name,
                weight: None,
                state: Some(ServerState::Drain),
            });
        }
        return;
    }
    for h in followed {
        let wanted = want
            .iter()
            .filter_map(|d| server_name(&d.addr))
            .any(|n| n.as_str() == h.name);
        if !wanted {
            out(Change::Remove { name: h.name });
        }
    }
    for d in want {
        let Some(name) = server_name(&d.addr) else {
            out(Change::Skip { addr: d.addr });
            continue;
        };
        let (weight, state) = target(d.weight);
        match have.iter().find(|h| h.name == name.as_str()) {
            None => out(Change::Add {
                name: name.as_str(),
                addr: d.addr,
                weight: weight.unwrap_or(0),
                state,
            }),
            Some(h) => {
                let weight = weight.filter(|w| *w != h.weight);
                let state = Some(state).filter(|s| *s != h.state);
                if weight.is_some() || state.is_some() {
                    out(Change::Set {
                        name: name.as_str(),
                        weight,
                        state,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::nla::{AttrIter, MsgIter};
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn d(s: &str, weight: u32) -> IpvsDest {
        IpvsDest {
            addr: sa(s),
            weight,
        }
    }

    fn up(name: &str, weight: u16) -> Have<'_> {
        Have {
            name,
            weight,
            state: ServerState::Up,
        }
    }

    /// The plan as text, one change a line.
    fn run(have: &[Have<'_>], want: &[IpvsDest]) -> Vec<String> {
        let mut v = Vec::new();
        plan(have, want, &mut |c| v.push(std::format!("{c:?}")));
        v
    }

    #[test]
    fn names() {
        let n = |s| server_name(&sa(s)).map(|n| n.as_str().to_string());
        assert_eq!(n("10.0.0.3:80").as_deref(), Some("ip-10.0.0.3-80"));
        assert_eq!(n("[fd00::3]:8080").as_deref(), Some("ip-fd00__3-8080"));
        // 3 + 39 + 6 bytes: too long for a configfs name.
        assert_eq!(n("[fd00:1111:2222:3333:4444:5555:6666:7777]:65535"), None);
        for a in ["10.0.0.3:80", "[fd00::3]:8080", "255.255.255.255:65535"] {
            let s = n(a).unwrap();
            assert!(crate::ktcpvs_cfs::valid_name(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn nothing_to_do() {
        let want = [d("10.0.0.3:80", 1), d("10.0.0.4:80", 3)];
        let have = [up("ip-10.0.0.3-80", 1), up("ip-10.0.0.4-80", 3)];
        assert!(run(&have, &want).is_empty());
        assert!(run(&[], &[]).is_empty());
    }

    #[test]
    fn add_remove_weight_drain() {
        let have = [
            up("ip-10.0.0.3-80", 1),
            up("ip-10.0.0.4-80", 3),
            up("ip-10.0.0.5-80", 1),
            up("static", 1),
        ];
        let want = [
            d("10.0.0.3:80", 0),
            d("10.0.0.4:80", 5),
            d("10.0.0.6:80", 2),
            d("10.0.0.7:80", 0),
        ];
        assert_eq!(
            run(&have, &want),
            [
                "Remove { name: \"ip-10.0.0.5-80\" }",
                "Set { name: \"ip-10.0.0.3-80\", weight: None, state: Some(Drain) }",
                "Set { name: \"ip-10.0.0.4-80\", weight: Some(5), state: None }",
                "Add { name: \"ip-10.0.0.6-80\", addr: 10.0.0.6:80, weight: 2, state: Up }",
                "Add { name: \"ip-10.0.0.7-80\", addr: 10.0.0.7:80, weight: 0, state: Drain }",
            ]
        );
    }

    #[test]
    fn undrain_and_clamp() {
        let have = [Have {
            name: "ip-10.0.0.3-80",
            weight: 4,
            state: ServerState::Drain,
        }];
        // Back from weight 0 with the same weight: only the state changes.
        assert_eq!(
            run(&have, &[d("10.0.0.3:80", 4)]),
            ["Set { name: \"ip-10.0.0.3-80\", weight: None, state: Some(Up) }"]
        );
        // Still drained: nothing. A huge IPVS weight is 65535.
        assert!(run(&have, &[d("10.0.0.3:80", 0)]).is_empty());
        assert_eq!(
            run(&have, &[d("10.0.0.3:80", 1_000_000)]),
            ["Set { name: \"ip-10.0.0.3-80\", weight: Some(65535), state: Some(Up) }"]
        );
        // A `down` server of the follower is brought up again.
        let down = [Have {
            state: ServerState::Down,
            ..have[0]
        }];
        assert_eq!(
            run(&down, &[d("10.0.0.3:80", 4)]),
            ["Set { name: \"ip-10.0.0.3-80\", weight: None, state: Some(Up) }"]
        );
    }

    #[test]
    fn empty_service_drains_only_followed() {
        let have = [up("ip-10.0.0.3-80", 1), up("a", 1)];
        assert_eq!(
            run(&have, &[]),
            ["Set { name: \"ip-10.0.0.3-80\", weight: None, state: Some(Drain) }"]
        );
        let drained = [Have {
            state: ServerState::Drain,
            ..have[0]
        }];
        assert!(run(&drained, &[]).is_empty());
        // A destination back: the server is up again with its weight.
        assert_eq!(
            run(&drained, &[d("10.0.0.3:80", 1)]),
            ["Set { name: \"ip-10.0.0.3-80\", weight: None, state: Some(Up) }"]
        );
        let long = d("[fd00:1111:2222:3333:4444:5555:6666:7777]:80", 1);
        assert_eq!(
            run(&[], &[long]),
            ["Skip { addr: [fd00:1111:2222:3333:4444:5555:6666:7777]:80 }"]
        );
    }

    /// Applying a plan to a model of the servers reaches the wanted state, whatever the
    /// starting point, and a second plan is empty.
    #[test]
    fn plan_converges() {
        let pool = ["10.0.0.1:80", "10.0.0.2:80", "[fd00::2]:80", "10.0.0.3:81"];
        let mut seed = 1u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            seed >> 16
        };
        for _ in 0..500 {
            let mut model: Vec<(String, u16, ServerState)> = Vec::new();
            for a in pool {
                if next() % 2 == 0 {
                    let st = [ServerState::Up, ServerState::Down, ServerState::Drain];
                    let n = server_name(&sa(a)).unwrap().as_str().to_string();
                    model.push((n, (next() % 4) as u16, st[(next() % 3) as usize]));
                }
            }
            let mut want = Vec::new();
            for a in pool {
                if next() % 2 == 0 {
                    want.push(d(a, next() % 4));
                }
            }
            for _ in 0..2 {
                let names: Vec<String> = model.iter().map(|m| m.0.clone()).collect();
                let have: Vec<Have<'_>> = model
                    .iter()
                    .zip(&names)
                    .map(|(m, n)| Have {
                        name: n,
                        weight: m.1,
                        state: m.2,
                    })
                    .collect();
                let mut changes: Vec<(String, Option<u16>, Option<ServerState>, bool)> = Vec::new();
                plan(&have, &want, &mut |c| match c {
                    Change::Add {
                        name,
                        weight,
                        state,
                        ..
                    } => changes.push((name.to_string(), Some(weight), Some(state), true)),
                    Change::Set {
                        name,
                        weight,
                        state,
                    } => changes.push((name.to_string(), weight, state, true)),
                    Change::Remove { name } => changes.push((name.to_string(), None, None, false)),
                    Change::Skip { .. } => unreachable!(),
                });
                drop(have);
                for (n, w, s, keep) in changes {
                    let i = model.iter().position(|m| m.0 == n);
                    match (i, keep) {
                        (Some(i), false) => {
                            model.remove(i);
                        }
                        (Some(i), true) => {
                            model[i].1 = w.unwrap_or(model[i].1);
                            model[i].2 = s.unwrap_or(model[i].2);
                        }
                        (None, true) => model.push((n, w.unwrap(), s.unwrap())),
                        (None, false) => panic!("removal of a missing server"),
                    }
                }
            }
            if want.is_empty() {
                assert!(model.iter().all(|m| m.2 == ServerState::Drain));
                continue;
            }
            assert_eq!(model.len(), want.len());
            for w in &want {
                let n = server_name(&w.addr).unwrap();
                let m = model.iter().find(|m| m.0 == n.as_str()).unwrap();
                assert_eq!(m.2, target(w.weight).1);
                if w.weight > 0 {
                    assert_eq!(u32::from(m.1), w.weight);
                }
            }
        }
    }

    /// The request encodes what IPVS parses; a destination as the kernel sends it decodes.
    #[test]
    fn codec() {
        let mut buf = [0u8; 256];
        let mut w = MsgWriter::new_genl(&mut buf, 0x20, 0, 1, IPVS_CMD_GET_SERVICE, 1).unwrap();
        put_service(&mut w, &ServersFrom::Tcp(sa("10.0.0.10:80"))).unwrap();
        let msg = w.finish().unwrap().to_vec();
        let m = MsgIter::new(&msg).next().unwrap().unwrap();
        let g = m.genl().unwrap();
        let (t, nest) = g.attrs().next().unwrap().unwrap();
        assert_eq!(t & 0x3fff, IPVS_CMD_ATTR_SERVICE);
        let inner: Vec<(u16, Vec<u8>)> = AttrIter::new(nest)
            .map(|a| a.map(|(t, p)| (t, p.to_vec())).unwrap())
            .collect();
        assert_eq!(
            inner,
            [
                (SVC_ATTR_AF, 2u16.to_ne_bytes().to_vec()),
                (SVC_ATTR_PROTOCOL, 6u16.to_ne_bytes().to_vec()),
                (
                    SVC_ATTR_ADDR,
                    [10, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].to_vec()
                ),
                (SVC_ATTR_PORT, [0, 80].to_vec()),
            ]
        );

        let mut buf = [0u8; 256];
        let mut w = MsgWriter::new_genl(&mut buf, 0x20, 0, 1, IPVS_CMD_GET_DEST, 1).unwrap();
        w.put_bytes(DEST_ATTR_ADDR, &inet_addr(sa("[fd00::3]:1").ip()))
            .unwrap();
        w.put_bytes(DEST_ATTR_PORT, &8080u16.to_be_bytes()).unwrap();
        w.put_u32(DEST_ATTR_WEIGHT, 7).unwrap();
        w.put_u16(DEST_ATTR_ADDR_FAMILY, AF_INET6).unwrap();
        let msg = w.finish().unwrap().to_vec();
        let m = MsgIter::new(&msg).next().unwrap().unwrap();
        let area = m.genl().unwrap().attrs;
        assert_eq!(parse_dest(area, AF_INET), Ok(d("[fd00::3]:8080", 7)));
        // Without the family attribute the service's is used; a missing weight is refused.
        let v4: Vec<u8> = [
            attr(
                DEST_ATTR_ADDR,
                &[10, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            attr(DEST_ATTR_PORT, &[0, 80]),
            attr(DEST_ATTR_WEIGHT, &0u32.to_ne_bytes()),
        ]
        .concat();
        assert_eq!(parse_dest(&v4, AF_INET), Ok(d("10.0.0.3:80", 0)));
        assert_eq!(
            parse_dest(&v4[..v4.len() - 8], AF_INET),
            Err(DestError::Missing)
        );
        assert_eq!(parse_dest(&v4, 99), Err(DestError::Bad));
        let neg = [
            &v4[..v4.len() - 8],
            &attr(DEST_ATTR_WEIGHT, &u32::MAX.to_ne_bytes()),
        ]
        .concat();
        assert_eq!(parse_dest(&neg, AF_INET), Err(DestError::Bad));
    }

    /// One attribute: header and payload padded to 4 bytes.
    fn attr(t: u16, p: &[u8]) -> Vec<u8> {
        let len = p.len().checked_add(4).unwrap();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u16).to_ne_bytes());
        v.extend_from_slice(&t.to_ne_bytes());
        v.extend_from_slice(p);
        v.resize(len.next_multiple_of(4), 0);
        v
    }
}
