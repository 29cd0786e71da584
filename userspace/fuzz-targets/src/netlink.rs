// SPDX-License-Identifier: GPL-2.0

//! The netlink parser of `hark_proto::nla` as `rdrbdadm` and the `drbd_rs` family use it:
//! datagrams split into messages, generic netlink headers, attributes (nested too), the
//! `drbd_rs` attribute types (`drbd_genl::Attr::kind`), error and done messages; and
//! `rdrbdadm`'s decoding of them (`genl::OwnedMsg`, `genl::Family`).

use crate::within;
use hark_proto::drbd_genl::{
    decode_addr, encode_addr, valid_resource_name, Attr, AttrKind, ADDR_SIZE, AF_INET,
};
use hark_proto::nla::{
    self, find_attr, parse_done, parse_error, AttrIter, MsgIter, MsgWriter, NlaError, GENL_HDRLEN,
    NLA_HDRLEN, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN,
};
use rdrbdadm::genl::{AttrValue, Family, OwnedMsg};

/// Decodes one attribute of the `drbd_rs` family as its kind says (the policy the kernel
/// applies and `rdrbdadm` checks again); a decoded value re-encodes to the payload.
fn drbd_attr(t: u16, p: &[u8]) {
    let Some(a) = Attr::from_u16(t) else {
        return;
    };
    match a.kind() {
        AttrKind::Flag => {}
        AttrKind::U8 => assert_eq!(nla::as_u8(p).is_ok(), p.len() == 1),
        AttrKind::U32 => {
            if let Ok(v) = nla::as_u32(p) {
                assert_eq!(v.to_ne_bytes(), p);
            }
        }
        AttrKind::U64 => {
            if let Ok(v) = nla::as_u64(p) {
                assert_eq!(v.to_ne_bytes(), p);
            }
        }
        AttrKind::String(max) => {
            if let Ok(s) = nla::as_str(p) {
                assert_eq!(s.as_bytes(), p.strip_suffix(&[0]).unwrap_or(p));
                if a == Attr::ResourceName && valid_resource_name(s.as_bytes()) {
                    assert!(s.len() <= usize::from(max) && !s.contains(['/', ' ', '\0']));
                }
            }
        }
        AttrKind::Bytes(len) => {
            assert_eq!(usize::from(len), ADDR_SIZE);
            if let Some((family, port, addr)) = decode_addr(p) {
                let n = if family == AF_INET { 4 } else { 16 };
                assert_eq!(
                    encode_addr(family, port, &addr[..n])
                        .as_ref()
                        .map(|a| &a[..]),
                    Some(p)
                );
            }
        }
    }
}

/// Walks an attribute area (and nested areas, to `depth`), checking every payload lies in the
/// area; returns the attributes of the top level.
fn walk(area: &[u8], depth: u32) -> Result<Vec<(u16, &[u8])>, NlaError> {
    let mut out = Vec::new();
    for a in AttrIter::new(area) {
        let (t, p) = a?;
        assert!(within(p, area));
        assert_eq!(t & !nla::NLA_TYPE_MASK, 0);
        drbd_attr(t, p);
        if depth > 0 {
            let _ = walk(p, depth - 1);
        }
        out.push((t, p));
    }
    Ok(out)
}

/// A datagram of netlink messages. Every message lies in the datagram; error and done
/// payloads decode or fail without panicking; a generic netlink message's attributes, written
/// again with `MsgWriter`, read back identical, and `find_attr` agrees with the iteration.
pub fn netlink(data: &[u8]) {
    for m in MsgIter::new(data) {
        let Ok(m) = m else {
            break;
        };
        assert!(within(m.payload, data));
        assert_eq!(m.len as usize, NLMSG_HDRLEN + m.payload.len());
        let e = parse_error(m.flags, m.payload);
        let d = parse_done(m.flags, m.payload);
        if m.nlmsg_type == NLMSG_ERROR {
            assert_eq!(m.error(), e);
        }
        if m.nlmsg_type == NLMSG_DONE {
            assert_eq!(m.done(), d);
        }
        if let Ok((_, Some(s))) = e {
            assert!(within(s.as_bytes(), m.payload));
        }
        let Ok(g) = m.genl() else {
            assert!(m.payload.len() < GENL_HDRLEN);
            continue;
        };
        let Ok(attrs) = walk(g.attrs, 2) else {
            assert!(find_attr(g.attrs, 1).is_err());
            continue;
        };
        for (t, _) in attrs.iter().take(16) {
            let first = attrs.iter().find(|(u, _)| u == t).map(|(_, q)| *q);
            assert_eq!(find_attr(g.attrs, *t), Ok(first));
        }

        let size = NLMSG_HDRLEN + GENL_HDRLEN + attrs.len() * NLA_HDRLEN + g.attrs.len() + 8;
        let mut buf = vec![0u8; size];
        let mut w = MsgWriter::new_genl(&mut buf, m.nlmsg_type, m.flags, m.seq, g.cmd, g.version)
            .expect("header fits");
        for (t, p) in &attrs {
            w.put_bytes(*t, p).expect("attribute fits");
        }
        let out = w.finish().expect("message fits");
        let mut again = MsgIter::new(out);
        let m2 = again
            .next()
            .expect("one message")
            .expect("own message parses");
        assert!(again.next().is_none());
        assert_eq!(
            (m2.nlmsg_type, m2.flags, m2.seq),
            (m.nlmsg_type, m.flags, m.seq)
        );
        let g2 = m2.genl().expect("own genl header");
        assert_eq!((g2.cmd, g2.version), (g.cmd, g.version));
        let attrs2 = walk(g2.attrs, 0).expect("own attributes parse");
        assert_eq!(attrs, attrs2);

        let owned = OwnedMsg::parse(&m).expect("attributes parsed above");
        assert_eq!((owned.cmd, owned.attrs.len()), (g.cmd, attrs.len()));
        rdrbdadm_view(&owned);
    }
}

/// `rdrbdadm`'s view of a message: each attribute decoded as its kind says agrees with the
/// payload, and a controller message decodes to a family or an error.
fn rdrbdadm_view(m: &OwnedMsg) {
    for a in Attr::ALL {
        let p = m.get(a as u16);
        match m.value(a) {
            Ok(None) => assert!(p.is_none()),
            Ok(Some(v)) => {
                let p = p.expect("a value without payload");
                match (a.kind(), v) {
                    (AttrKind::Flag, AttrValue::Flag) => assert!(p.is_empty()),
                    (AttrKind::U8, AttrValue::U8(x)) => assert_eq!([x], p),
                    (AttrKind::U32, AttrValue::U32(x)) => assert_eq!(x.to_ne_bytes(), p),
                    (AttrKind::U64, AttrValue::U64(x)) => assert_eq!(x.to_ne_bytes(), p),
                    (AttrKind::String(max), AttrValue::Str(s)) => {
                        assert!(s.len() <= usize::from(max) && within(s.as_bytes(), p))
                    }
                    (AttrKind::Bytes(n), AttrValue::Bytes(b)) => {
                        assert!(b.len() == usize::from(n) && b == p)
                    }
                    (k, v) => panic!("{a:?} is a {k:?} but decoded as {v:?}"),
                }
            }
            Err(e) => assert!(p.is_some() && !e.to_string().is_empty()),
        }
    }
    let _ = (m.role(), m.disk_state(), m.event_type());
    if let Ok(f) = Family::from_ctrl_msg(m) {
        assert_eq!(
            m.get(hark_proto::nla::CTRL_ATTR_FAMILY_ID),
            Some(&f.id.to_ne_bytes()[..])
        );
        for (name, _) in &f.mcast_groups {
            assert!(f.mcast_group(name).is_some());
        }
    }
}
