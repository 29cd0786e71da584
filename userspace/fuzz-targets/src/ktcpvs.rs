// SPDX-License-Identifier: GPL-2.0

//! The configfs attribute parsers of `ktcpvs_rs` (`hark_proto::ktcpvs_cfs`): what a write to
//! an attribute file or a `mkdir` of a rule directory goes through in the kernel.

use crate::Input;
use hark_proto::ktcpvs_cfs::{
    parse_addr, parse_bool01, parse_cookie, parse_mode, parse_name_list, parse_num,
    parse_rule_name, parse_scheduler, parse_state, parse_u32, parse_weight, state_name, trim,
    valid_name, AddrRole, CfgError, StatsLine, MAX_RULE_ORDER, MAX_SERVERS, NUM_ATTRS,
};

/// The value `parse_u32` must give: a decimal without sign, surrounded by ASCII whitespace.
fn model_u32(v: &[u8]) -> Result<u32, CfgError> {
    let t = v.trim_ascii();
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return Err(CfgError::BadNumber);
    }
    let digits = &t[t.iter().position(|&b| b != b'0').unwrap_or(t.len())..];
    if digits.len() > 10 {
        return Err(CfgError::OutOfRange);
    }
    let n = digits
        .iter()
        .fold(0u64, |a, &d| a * 10 + u64::from(d - b'0'));
    u32::try_from(n).map_err(|_| CfgError::OutOfRange)
}

/// One parser chosen by the first byte, on the rest of the input as the written value;
/// each answer is compared with a model or read back from its canonical text.
pub fn ktcpvs_cfs(data: &[u8]) {
    let mut inp = Input::new(data);
    let sel = inp.byte();
    let v = inp.rest();
    let t = trim(v);
    assert_eq!(t, v.trim_ascii());
    match sel % 12 {
        0 => assert_eq!(parse_u32(v), model_u32(v)),
        1 => {
            let a = &NUM_ATTRS[usize::from(sel / 12) % NUM_ATTRS.len()];
            let range = a.min..=a.max;
            match (parse_num(a, v), model_u32(v)) {
                (Ok(n), m) => assert!(range.contains(&n) && m == Ok(n)),
                (Err(e), Ok(n)) => assert!(e == CfgError::OutOfRange && !range.contains(&n)),
                (Err(e), Err(m)) => assert_eq!(e, m),
            }
        }
        2 => match parse_weight(v) {
            Ok(w) => assert_eq!(Ok(u32::from(w)), model_u32(v)),
            Err(_) => assert!(!matches!(model_u32(v), Ok(n) if n <= 0xffff)),
        },
        3 => assert_eq!(
            parse_bool01(v).ok(),
            match t {
                b"0" => Some(false),
                b"1" => Some(true),
                _ => None,
            }
        ),
        4 => {
            if let Ok(s) = parse_scheduler(v) {
                assert_eq!(s.name().as_bytes(), t);
            }
            if let Ok(m) = parse_mode(v) {
                assert_eq!(m.name().as_bytes(), t);
            }
            if let Ok(s) = parse_state(v) {
                assert_eq!(state_name(s).as_bytes(), t);
            }
        }
        5 => {
            if let Ok(c) = parse_cookie(v) {
                assert_eq!(c, t);
                assert!(c.is_empty() || valid_name(c));
            }
        }
        6 | 7 => {
            let role = if sel % 12 == 6 {
                AddrRole::Listen
            } else {
                AddrRole::Server
            };
            if let Ok(a) = parse_addr(v, role) {
                assert_ne!(a.port(), 0);
                assert!(role == AddrRole::Listen || !a.ip().is_unspecified());
                assert_eq!(parse_addr(a.to_string().as_bytes(), role), Ok(a));
            }
        }
        8 => {
            if let Ok(list) = parse_name_list(v) {
                let names: Vec<&[u8]> = list.collect();
                assert!(names.len() <= MAX_SERVERS);
                for (i, n) in names.iter().enumerate() {
                    assert!(valid_name(n));
                    assert!(!names[..i].contains(n), "duplicate accepted");
                }
                assert_eq!(names.join(&b','), t);
            }
        }
        9 => {
            if let Ok(order) = parse_rule_name(v) {
                assert!(order <= MAX_RULE_ORDER);
                assert!(valid_name(v));
                let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
                assert_eq!(v[digits], b'-');
                assert_eq!(Ok(order), model_u32(&v[..digits]));
            }
        }
        10 => {
            if let Ok(s) = StatsLine::parse(v) {
                assert_eq!(StatsLine::parse(s.to_string().as_bytes()), Ok(s));
            }
        }
        _ => {
            if valid_name(v) {
                assert!((1..=32).contains(&v.len()) && v.is_ascii());
            }
        }
    }
}
