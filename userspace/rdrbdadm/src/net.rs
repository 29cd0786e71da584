// SPDX-License-Identifier: GPL-2.0

//! The `connect` request of a resource: both hosts' addresses and the `net` options, checked
//! and converted to the family's attributes with DRBD's units and limits.

use crate::conf::Resource;
use hark_proto::drbd_fence::Fencing;
use hark_proto::drbd_genl::{self as nl, Attr};
use hark_proto::drbd_wire::AfterSb;
use std::net::SocketAddr;

/// One attribute of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `u8`.
    U8(u8),
    /// `u32`.
    U32(u32),
    /// String.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

/// The attributes of a `connect` request for `res` seen from host `me`.
pub fn connect_attrs(res: &Resource, me: &str) -> Result<Vec<(Attr, Value)>, String> {
    let ctx = |m: String| format!("resource {}: {m}", res.name);
    let host = res
        .host(me)
        .ok_or_else(|| ctx(format!("no 'on {me}' section")))?;
    let local = host
        .address
        .ok_or_else(|| ctx(format!("host {me} has no address")))?;
    let peers: Vec<_> = res.hosts.iter().filter(|h| h.name != me).collect();
    let peer = match peers.as_slice() {
        [p] => p
            .address
            .ok_or_else(|| ctx(format!("host {} has no address", p.name)))?,
        [] => return Err(ctx("no peer host ('on' section of the other node)".into())),
        _ => {
            return Err(ctx(
                "more than two hosts: drbd_rs connects exactly one peer".into(),
            ))
        }
    };
    if local.is_ipv4() != peer.is_ipv4() {
        return Err(ctx("the two addresses are of different families".into()));
    }
    let mut v = vec![
        (Attr::ResourceName, Value::Str(res.name.clone())),
        (Attr::LocalAddr, Value::Bytes(addr_attr(local))),
        (Attr::PeerAddr, Value::Bytes(addr_attr(peer))),
    ];
    let all = res.net.0.iter().chain(res.disk_opts.0.iter());
    for (key, val) in all.chain(res.handlers.0.iter()) {
        let bad = |why: &str| ctx(format!("option {key} '{val}': {why}"));
        let num = |lo: u32, hi: u32| -> Result<u32, String> {
            let n: u32 = val.parse().map_err(|_| bad("not a number"))?;
            if (lo..=hi).contains(&n) {
                Ok(n)
            } else {
                Err(bad(&format!("out of range {lo}..{hi}")))
            }
        };
        // KiB/s, with DRBD's suffixes (k, M, G; a bare number is KiB/s).
        let rate = |lo: u32| -> Result<u32, String> {
            let (digits, mul) = match val.char_indices().last() {
                Some((i, 'k' | 'K')) => (&val[..i], 1u64),
                Some((i, 'M')) => (&val[..i], 1024),
                Some((i, 'G')) => (&val[..i], 1024 * 1024),
                _ => (val.as_str(), 1),
            };
            let n: u64 = digits.parse().map_err(|_| bad("not a rate"))?;
            let kib = n.saturating_mul(mul);
            let hi = 4_194_304u64;
            if (u64::from(lo)..=hi).contains(&kib) {
                Ok(kib as u32)
            } else {
                Err(bad(&format!("out of range {lo}K..4G")))
            }
        };
        let name = || -> Result<Value, String> {
            if val.is_empty() || val.len() > usize::from(nl::ALG_NAME_MAX) {
                return Err(bad("empty or longer than 63 bytes"));
            }
            Ok(Value::Str(val.clone()))
        };
        let handler = || -> Result<Value, String> {
            if val.is_empty() || val.len() > usize::from(nl::HANDLER_MAX) || val.contains('\0') {
                return Err(bad("empty, longer than 255 bytes or with a NUL"));
            }
            Ok(Value::Str(val.clone()))
        };
        let after_sb = || -> Result<Value, String> {
            AfterSb::from_name(val)
                .map(|p| Value::U8(p as u8))
                .ok_or_else(|| bad("unknown policy"))
        };
        let (attr, value) = match key.as_str() {
            "protocol" => (
                Attr::Protocol,
                Value::U8(match val.as_str() {
                    "A" => 1,
                    "B" => 2,
                    "C" => 3,
                    _ => return Err(bad("want A, B or C")),
                }),
            ),
            "timeout" => (Attr::TimeoutDs, Value::U32(num(1, 600)?)),
            "connect-int" => (Attr::ConnectIntS, Value::U32(num(1, 120)?)),
            "ping-int" => (Attr::PingIntS, Value::U32(num(1, 120)?)),
            "ping-timeout" => (Attr::PingTimeoutDs, Value::U32(num(1, 300)?)),
            "ko-count" => (Attr::KoCount, Value::U32(num(0, 200)?)),
            "max-buffers" => (Attr::MaxBuffers, Value::U32(num(32, 131072)?)),
            "after-sb-0pri" => (Attr::AfterSb0p, after_sb()?),
            "after-sb-1pri" => (Attr::AfterSb1p, after_sb()?),
            "after-sb-2pri" => (Attr::AfterSb2p, after_sb()?),
            "verify-alg" => (Attr::VerifyAlg, name()?),
            "csums-alg" => (Attr::CsumsAlg, name()?),
            "cram-hmac-alg" => (Attr::CramHmacAlg, name()?),
            "shared-secret" => (Attr::SharedSecret, name()?),
            // Resync controller (DRBD keeps these in the disk section).
            "resync-rate" => (Attr::ResyncRate, Value::U32(rate(1)?)),
            "c-max-rate" => (Attr::CMaxRate, Value::U32(rate(250)?)),
            "c-plan-ahead" => (Attr::CPlanAheadDs, Value::U32(num(0, 300)?)),
            "fencing" => match Fencing::from_name(val) {
                Some(Fencing::ResourceAndStonith) => {
                    return Err(bad(
                        "not supported: drbd_rs cannot freeze I/O (use resource-only)",
                    ))
                }
                Some(f) => (Attr::Fencing, Value::U8(f as u8)),
                None => return Err(bad("want dont-care, resource-only or resource-and-stonith")),
            },
            "fence-peer" => (Attr::FencePeer, handler()?),
            "unfence-peer" => (Attr::UnfencePeer, handler()?),
            // The configuration parser refuses "yes": drbd_rs has no dual-primary mode.
            "allow-two-primaries" => match val.as_str() {
                "no" => continue,
                _ => return Err(bad("not supported: drbd_rs has no dual-primary mode")),
            },
            _ => continue,
        };
        // Later options win (the kernel takes the first of duplicates).
        v.retain(|(a, _)| *a != attr);
        v.push((attr, value));
    }
    Ok(v)
}

fn addr_attr(a: SocketAddr) -> Vec<u8> {
    let enc = match a {
        SocketAddr::V4(v4) => nl::encode_addr(nl::AF_INET, v4.port(), &v4.ip().octets()),
        SocketAddr::V6(v6) => nl::encode_addr(nl::AF_INET6, v6.port(), &v6.ip().octets()),
    };
    // Ports of 0 were refused by the config parser; an encoding exists for every other.
    enc.map(|b| b.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::Config;

    fn res(net: &str) -> Resource {
        let text = format!(
            "resource r0 {{ device minor 0; disk /dev/vda; meta-disk internal;\n\
             net {{ {net} }}\n\
             on a {{ address 10.0.0.1:7789; }}\n on b {{ address 10.0.0.2:7789; }} }}"
        );
        Config::parse(&text, "t.conf").unwrap().resources.remove(0)
    }

    #[test]
    fn host_count() {
        let one = "resource r0 { device minor 0; disk /dev/vda; meta-disk internal;\n\
                   on a { address 10.0.0.1:7789; } }";
        let r = Config::parse(one, "t.conf").unwrap().resources.remove(0);
        assert!(connect_attrs(&r, "a").unwrap_err().contains("no peer host"));
        let three = one.replace(
            " } }",
            " }\n on b { address 10.0.0.2:7789; }\n on c { address 10.0.0.3:7789; } }",
        );
        let err = Config::parse(&three, "t.conf").unwrap_err().to_string();
        assert!(
            err.contains("needs one or two 'on' sections, has 3"),
            "{err}"
        );
        let none = "resource r0 { device minor 0; disk /dev/vda; meta-disk internal; }";
        assert!(Config::parse(none, "t.conf").is_err());
    }

    #[test]
    fn addresses_and_defaults() {
        let v = connect_attrs(&res(""), "b").unwrap();
        assert_eq!(v[0], (Attr::ResourceName, Value::Str("r0".into())));
        let local = nl::decode_addr(match &v[1].1 {
            Value::Bytes(b) => b,
            _ => panic!(),
        })
        .unwrap();
        assert_eq!(
            (local.0, local.1, &local.2[..4]),
            (nl::AF_INET, 7789, &[10u8, 0, 0, 2][..])
        );
        assert_eq!(v.len(), 3, "no options: the kernel's defaults apply");
        assert!(connect_attrs(&res(""), "c").is_err());
    }

    #[test]
    fn options_convert_and_are_checked() {
        let v = connect_attrs(
            &res("protocol A; timeout 50; after-sb-0pri discard-zero-changes; protocol B; allow-two-primaries no;"),
            "a",
        )
        .unwrap();
        assert!(v.contains(&(Attr::Protocol, Value::U8(2))));
        assert_eq!(v.iter().filter(|(a, _)| *a == Attr::Protocol).count(), 1);
        assert!(v.contains(&(Attr::TimeoutDs, Value::U32(50))));
        assert!(!v.iter().any(|(a, _)| *a == Attr::TwoPrimaries));
        assert!(v.contains(&(Attr::AfterSb0p, Value::U8(AfterSb::DiscardZeroChg as u8))));
        for bad in [
            "timeout 0;",
            "ping-int 1000;",
            "after-sb-1pri whatever;",
            "max-buffers x;",
        ] {
            assert!(connect_attrs(&res(bad), "a").is_err(), "{bad}");
        }
    }

    #[test]
    fn fencing_and_handlers_from_common_disk_net_and_handlers() {
        let text = "common { handlers { unfence-peer \"/u.sh\"; } }\n\
                    resource r0 { device minor 0; disk /dev/vda; meta-disk internal;\n\
                    disk { fencing resource-only; }\n\
                    handlers { fence-peer \"/usr/lib/drbd_rs/drbd-fence-peer.sh -t 5\"; }\n\
                    on a { address 10.0.0.1:7789; }\n on b { address 10.0.0.2:7789; } }";
        let r = Config::parse(text, "t.conf").unwrap().resources.remove(0);
        let v = connect_attrs(&r, "a").unwrap();
        assert!(v.contains(&(Attr::Fencing, Value::U8(1))));
        let fp = "/usr/lib/drbd_rs/drbd-fence-peer.sh -t 5";
        assert!(v.contains(&(Attr::FencePeer, Value::Str(fp.into()))));
        assert!(v.contains(&(Attr::UnfencePeer, Value::Str("/u.sh".into()))));
        // DRBD 9 keeps it in net; resource-and-stonith is refused with a reason.
        let v = connect_attrs(&res("fencing dont-care;"), "a").unwrap();
        assert!(v.contains(&(Attr::Fencing, Value::U8(0))));
        assert!(connect_attrs(&res("fencing sometimes;"), "a").is_err());
        let stonith = text.replace("resource-only", "resource-and-stonith");
        let err = Config::parse(&stonith, "t.conf").unwrap_err().to_string();
        assert!(
            err.contains("resource-and-stonith is not supported"),
            "{err}"
        );
        let other = text.replace("fence-peer \"", "split-brain \"");
        assert!(Config::parse(&other, "t.conf").is_err());
    }

    #[test]
    fn resync_options_come_from_the_disk_section() {
        let text = "resource r0 { device minor 0; disk /dev/vda; meta-disk internal;\n\
                    disk { resync-rate 10M; c-max-rate 4096; c-plan-ahead 0; }\n\
                    on a { address 10.0.0.1:7789; }\n on b { address 10.0.0.2:7789; } }";
        let r = Config::parse(text, "t.conf").unwrap().resources.remove(0);
        let v = connect_attrs(&r, "a").unwrap();
        assert!(v.contains(&(Attr::ResyncRate, Value::U32(10240))));
        assert!(v.contains(&(Attr::CMaxRate, Value::U32(4096))));
        assert!(v.contains(&(Attr::CPlanAheadDs, Value::U32(0))));
        for bad in [
            "resync-rate 0;",
            "resync-rate 5G;",
            "c-max-rate 100;",
            "c-plan-ahead 301;",
            "resync-rate fast;",
        ] {
            let text = format!(
                "resource r0 {{ device minor 0; disk /dev/vda; meta-disk internal;\n\
                 disk {{ {bad} }}\n\
                 on a {{ address 10.0.0.1:7789; }}\n on b {{ address 10.0.0.2:7789; }} }}"
            );
            let r = Config::parse(&text, "t.conf").unwrap().resources.remove(0);
            assert!(connect_attrs(&r, "a").is_err(), "{bad}");
        }
    }
}
