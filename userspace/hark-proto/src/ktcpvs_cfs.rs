// SPDX-License-Identifier: GPL-2.0

//! The `ktcpvs` configfs tree, shared by `ktcpvs_rs` and `rtcpvsadm`: directory and attribute
//! names, limits and defaults, and the parsers and formatters of attribute values.
//!
//! ```text
//! /sys/kernel/config/ktcpvs/            version
//!   <service>/                          listen scheduler mode ... enabled stats
//!     servers/<server>/                 address weight state stats
//!     rules/<order>-<label>/            pattern target
//! ```
//!
//! The Rust configfs API has no default groups, so `servers/` and `rules/` are made with
//! `mkdir` like everything else (`rtcpvsadm add-service` does it). The module checks at compile
//! time that its attribute files are named as in [`SERVICE_ATTRS`], [`SERVER_ATTRS`] and
//! [`RULE_ATTRS`]. See `Documentation/ktcpvs-config.md`.
//!
//! Every parser takes the bytes written to the attribute (surrounding whitespace, such as the
//! newline of `echo`, is ignored) and works without allocation. Their arithmetic is checked
//! (the values come from configfs writes; an overflow in the kernel module is an oops).

#![deny(clippy::arithmetic_side_effects)]

use super::http1::is_token;
use super::l7_sched::{SchedKind, ServerState};
use core::ffi::CStr;
use core::fmt;
use core::net::SocketAddr;

/// Name of the subsystem directory under the configfs mount point.
pub const SUBSYS: &CStr = c"ktcpvs";
/// Default configfs mount point.
pub const CONFIGFS_MOUNT: &str = "/sys/kernel/config";
/// Read-only attribute of the subsystem: module and IPVS versions, one line.
pub const ATTR_VERSION: &str = "version";

/// Directory of a service that holds its real servers.
pub const DIR_SERVERS: &str = "servers";
/// Directory of a service that holds its rules.
pub const DIR_RULES: &str = "rules";

/// Attribute files of a service directory, in the order of their configfs attribute ids.
pub const SERVICE_ATTRS: [&str; 18] = [
    "listen",
    "scheduler",
    "mode",
    "client_header_timeout_ms",
    "idle_timeout_ms",
    "connect_timeout_ms",
    "max_conns",
    "max_header_bytes",
    "max_fails",
    "fail_timeout_ms",
    "xff",
    "cookie",
    "default_target",
    "enabled",
    "stats",
    "pool_idle",
    "servers_from",
    "max_mem_kib",
];
/// Attribute files of a server directory, in the order of their configfs attribute ids.
pub const SERVER_ATTRS: [&str; 4] = ["address", "weight", "state", "stats"];
/// Attribute files of a rule directory, in the order of their configfs attribute ids.
pub const RULE_ATTRS: [&str; 2] = ["pattern", "target"];

/// Longest name of a service, server, rule directory or cookie.
pub const MAX_NAME: usize = 32;
/// Most servers per service (bits of a rule target).
pub const MAX_SERVERS: usize = super::l7_rules::MAX_SERVERS;
/// Most rules per service.
pub const MAX_RULES: usize = 128;
/// Highest `max_services` module parameter.
pub const MAX_SERVICES_LIMIT: u32 = 4096;
/// Highest rule order (the number before the `-` of a rule directory name).
pub const MAX_RULE_ORDER: u32 = 99_999;
/// Highest server weight.
pub const MAX_WEIGHT: u32 = 65_535;
/// Weight of a new server.
pub const DEFAULT_WEIGHT: u16 = 1;
/// `default_target` value meaning "every server of the service".
pub const ALL_SERVERS: &str = "*";

/// A numeric service attribute: name, accepted range and default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumAttr {
    /// Attribute file name.
    pub name: &'static str,
    /// Smallest accepted value.
    pub min: u32,
    /// Largest accepted value.
    pub max: u32,
    /// Value of a new service.
    pub default: u32,
}

/// Milliseconds a client has to send a complete request header.
pub const CLIENT_HEADER_TIMEOUT_MS: NumAttr = NumAttr {
    name: SERVICE_ATTRS[3],
    min: 1,
    max: 3_600_000,
    default: 10_000,
};
/// Milliseconds without traffic after which a relayed connection is closed.
pub const IDLE_TIMEOUT_MS: NumAttr = NumAttr {
    name: SERVICE_ATTRS[4],
    min: 1,
    max: 86_400_000,
    default: 60_000,
};
/// Milliseconds a connection to a real server may take to establish.
pub const CONNECT_TIMEOUT_MS: NumAttr = NumAttr {
    name: SERVICE_ATTRS[5],
    min: 1,
    max: 600_000,
    default: 3_000,
};
/// Most client connections at once; 0 = no limit (`max_mem_kib` still applies).
pub const MAX_CONNS: NumAttr = NumAttr {
    name: SERVICE_ATTRS[6],
    min: 0,
    max: 1_000_000,
    default: 10_000,
};
/// Largest request header the switch reads before choosing a server.
pub const MAX_HEADER_BYTES: NumAttr = NumAttr {
    name: SERVICE_ATTRS[7],
    min: 256,
    max: 65_536,
    default: 8_192,
};
/// Failures (refused or timed-out connects, no valid response) of a server within
/// `fail_timeout_ms` that make it *failed*: left out of new choices for `fail_timeout_ms`
/// (nginx's `max_fails`); 0 = never.
pub const MAX_FAILS: NumAttr = NumAttr {
    name: SERVICE_ATTRS[8],
    min: 0,
    max: 1_000,
    default: 1,
};
/// The window of `max_fails`, and how long a failed server is left out (ms).
pub const FAIL_TIMEOUT_MS: NumAttr = NumAttr {
    name: SERVICE_ATTRS[9],
    min: 1,
    max: 3_600_000,
    default: 10_000,
};
/// Most idle server connections kept open per server for later requests (keep-alive pool,
/// as nginx's `keepalive`); 0 = every request opens its own server connection.
pub const POOL_IDLE: NumAttr = NumAttr {
    name: SERVICE_ATTRS[15],
    min: 0,
    max: 256,
    default: 0,
};
/// Most memory (KiB) the service's client connections hold in the module: their state and
/// their head and relay buffers (the `mem_bytes` counter).
pub const MAX_MEM_KIB: NumAttr = NumAttr {
    name: SERVICE_ATTRS[17],
    min: 64,
    max: 16 << 20,
    default: 64 << 10,
};
/// The numeric service attributes.
pub const NUM_ATTRS: [NumAttr; 9] = [
    CLIENT_HEADER_TIMEOUT_MS,
    IDLE_TIMEOUT_MS,
    CONNECT_TIMEOUT_MS,
    MAX_CONNS,
    MAX_HEADER_BYTES,
    MAX_FAILS,
    FAIL_TIMEOUT_MS,
    POOL_IDLE,
    MAX_MEM_KIB,
];

/// Whether two strings are equal, usable in constants (the module checks its attribute
/// identifiers against the tables above with it).
pub const fn name_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i = i.saturating_add(1);
    }
    true
}

/// What a service does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read the request header, apply the rules, then relay.
    Http,
    /// Relay bytes to a scheduled server without reading them.
    Tcp,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 2] = [Mode::Http, Mode::Tcp];

    /// The mode's name.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        }
    }

    /// The mode called `name`.
    pub fn from_name(name: &[u8]) -> Option<Mode> {
        Self::ALL.into_iter().find(|m| m.name().as_bytes() == name)
    }
}

/// Every server state.
pub const STATES: [ServerState; 3] = [ServerState::Up, ServerState::Down, ServerState::Drain];

/// The name of a server state (the `state` attribute).
pub const fn state_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Up => "up",
        ServerState::Down => "down",
        ServerState::Drain => "drain",
    }
}

/// What is wrong with an attribute value or a directory name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfgError {
    /// A name that is empty, too long, or has bytes other than `A-Za-z0-9._-`.
    BadName,
    /// A rule directory name that is not `<order>-<label>`.
    BadRuleName,
    /// Not a decimal number.
    BadNumber,
    /// A number outside the attribute's range.
    OutOfRange,
    /// Not `a.b.c.d:port` or `[v6]:port`.
    BadAddress,
    /// Port 0.
    PortZero,
    /// A real server at `0.0.0.0` or `[::]`.
    Unspecified,
    /// An unknown scheduler.
    BadScheduler,
    /// An unknown mode.
    BadMode,
    /// An unknown server state.
    BadState,
    /// Not `0` or `1`.
    BadBool,
    /// A server list with an empty element.
    BadList,
    /// A server named twice in one list.
    Duplicate,
    /// More names than [`MAX_SERVERS`].
    TooMany,
    /// Enabling a service without a listen address.
    NoListen,
    /// `mode=tcp` with a scheduler or cookie that needs HTTP.
    NeedsHttp,
    /// A stats line that is not the expected `key=value` list.
    BadStats,
    /// A `servers_from` that is not `fwmark N` or `tcp ADDR:PORT`.
    BadServersFrom,
}

impl CfgError {
    /// A short description for logs and tools.
    pub const fn message(self) -> &'static str {
        match self {
            CfgError::BadName => {
                "name must be 1..32 bytes of A-Za-z0-9._- not starting with . or -"
            }
            CfgError::BadRuleName => "rule name must be <order>-<label>, order 0..99999",
            CfgError::BadNumber => "not a decimal number",
            CfgError::OutOfRange => "number out of range",
            CfgError::BadAddress => "address must be a.b.c.d:port or [v6]:port",
            CfgError::PortZero => "port must not be 0",
            CfgError::Unspecified => "a server address must not be 0.0.0.0 or [::]",
            CfgError::BadScheduler => "unknown scheduler (rr, wrr, lc, wlc, sh, uri-hash)",
            CfgError::BadMode => "unknown mode (http, tcp)",
            CfgError::BadState => "unknown state (up, down, drain)",
            CfgError::BadBool => "value must be 0 or 1",
            CfgError::BadList => "server list must be names separated by commas",
            CfgError::Duplicate => "server named twice",
            CfgError::TooMany => "too many servers",
            CfgError::NoListen => "set listen before enabling",
            CfgError::NeedsHttp => "mode tcp cannot use scheduler uri-hash or a cookie",
            CfgError::BadStats => "malformed stats line",
            CfgError::BadServersFrom => {
                "servers_from must be fwmark 1..4294967295 or tcp ADDR:PORT"
            }
        }
    }
}

impl fmt::Display for CfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// The value without surrounding ASCII whitespace (the newline `echo` adds).
pub fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e.saturating_add(1));
    &value[start..end]
}

/// Whether `name` is a valid service, server or cookie name: 1 to [`MAX_NAME`] bytes of
/// `A-Za-z0-9._-`, not starting with `.` or `-`.
pub fn valid_name(name: &[u8]) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && !name.starts_with(b".")
        && !name.starts_with(b"-")
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The order of a rule directory name `<order>-<label>`: 1 to 5 digits (0..=[`MAX_RULE_ORDER`]),
/// a `-`, a label; the whole name is a valid name. Rules apply in ascending (order, name).
pub fn parse_rule_name(name: &[u8]) -> Result<u32, CfgError> {
    let digits = name.iter().take_while(|b| b.is_ascii_digit()).count();
    if !valid_name(name) || !(1..=5).contains(&digits) {
        return Err(CfgError::BadRuleName);
    }
    // A `-` then a label of at least one byte.
    let (order, rest) = name.split_at(digits);
    if rest.len() < 2 || rest[0] != b'-' {
        return Err(CfgError::BadRuleName);
    }
    parse_u32(order).map_err(|_| CfgError::BadRuleName)
}

/// A decimal `u32` without sign or leading `+` (whitespace around it is ignored).
pub fn parse_u32(value: &[u8]) -> Result<u32, CfgError> {
    let v = trim(value);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(CfgError::BadNumber);
    }
    v.iter().try_fold(0u32, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|a| a.checked_add((d as char).to_digit(10)?))
            .ok_or(CfgError::OutOfRange)
    })
}

/// A value of a numeric attribute, within its range.
pub fn parse_num(attr: &NumAttr, value: &[u8]) -> Result<u32, CfgError> {
    let n = parse_u32(value)?;
    if (attr.min..=attr.max).contains(&n) {
        Ok(n)
    } else {
        Err(CfgError::OutOfRange)
    }
}

/// A server weight, 0..=[`MAX_WEIGHT`] (0 = quiescent).
pub fn parse_weight(value: &[u8]) -> Result<u16, CfgError> {
    u16::try_from(parse_u32(value)?).map_err(|_| CfgError::OutOfRange)
}

/// `0` or `1`.
pub fn parse_bool01(value: &[u8]) -> Result<bool, CfgError> {
    match trim(value) {
        b"0" => Ok(false),
        b"1" => Ok(true),
        _ => Err(CfgError::BadBool),
    }
}

/// A scheduler name (`l7_sched`'s names).
pub fn parse_scheduler(value: &[u8]) -> Result<SchedKind, CfgError> {
    SchedKind::from_name(trim(value)).ok_or(CfgError::BadScheduler)
}

/// A mode name.
pub fn parse_mode(value: &[u8]) -> Result<Mode, CfgError> {
    Mode::from_name(trim(value)).ok_or(CfgError::BadMode)
}

/// A server state name.
pub fn parse_state(value: &[u8]) -> Result<ServerState, CfgError> {
    let v = trim(value);
    STATES
        .into_iter()
        .find(|&s| state_name(s).as_bytes() == v)
        .ok_or(CfgError::BadState)
}

/// A persistence cookie name: empty (no cookie) or a valid name (which is also an HTTP token).
pub fn parse_cookie(value: &[u8]) -> Result<&[u8], CfgError> {
    let v = trim(value);
    if v.is_empty() || (valid_name(v) && is_token(v)) {
        Ok(v)
    } else {
        Err(CfgError::BadName)
    }
}

/// Who an address is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrRole {
    /// A service's `listen`: the unspecified address (`0.0.0.0`, `[::]`) is allowed.
    Listen,
    /// A real server's `address`: a concrete address.
    Server,
}

/// `a.b.c.d:port` or `[v6]:port` (no IPv6 scope or flow label), port 1..65535.
pub fn parse_addr(value: &[u8], role: AddrRole) -> Result<SocketAddr, CfgError> {
    let text = core::str::from_utf8(trim(value)).map_err(|_| CfgError::BadAddress)?;
    let addr: SocketAddr = text.parse().map_err(|_| CfgError::BadAddress)?;
    if let SocketAddr::V6(v6) = addr {
        if v6.scope_id() != 0 || v6.flowinfo() != 0 || text.contains('%') {
            return Err(CfgError::BadAddress);
        }
    }
    if addr.port() == 0 {
        return Err(CfgError::PortZero);
    }
    if role == AddrRole::Server && addr.ip().is_unspecified() {
        return Err(CfgError::Unspecified);
    }
    Ok(addr)
}

/// A service's `servers_from`: the IPVS virtual service whose destinations
/// `rtcpvsadm follow-ipvs` copies into the service's servers (the kernel only stores it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServersFrom {
    /// `fwmark N`: IPVS's firewall-mark service `N` (IPv4).
    Fwmark(u32),
    /// `tcp ADDR:PORT`: IPVS's TCP service at that address.
    Tcp(SocketAddr),
}

impl fmt::Display for ServersFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServersFrom::Fwmark(m) => write!(f, "fwmark {m}"),
            ServersFrom::Tcp(a) => write!(f, "tcp {a}"),
        }
    }
}

/// `servers_from`: empty (`None`), `fwmark N` (N 1..4294967295) or `tcp ADDR:PORT` (a
/// concrete address, as a server's), one space or more between the words.
pub fn parse_servers_from(value: &[u8]) -> Result<Option<ServersFrom>, CfgError> {
    let v = trim(value);
    if v.is_empty() {
        return Ok(None);
    }
    let sp = v
        .iter()
        .position(|b| *b == b' ')
        .ok_or(CfgError::BadServersFrom)?;
    let (kind, rest) = (&v[..sp], trim(&v[sp..]));
    match kind {
        b"fwmark" => match parse_u32(rest) {
            Ok(0) | Err(_) => Err(CfgError::BadServersFrom),
            Ok(m) => Ok(Some(ServersFrom::Fwmark(m))),
        },
        b"tcp" => Ok(Some(ServersFrom::Tcp(parse_addr(rest, AddrRole::Server)?))),
        _ => Err(CfgError::BadServersFrom),
    }
}

/// The names of a comma-separated server list (`target`, `default_target`), checked.
#[derive(Clone, Debug)]
pub struct NameList<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NameList<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self
            .rest
            .iter()
            .position(|&b| b == b',')
            .unwrap_or(self.rest.len());
        let name = &self.rest[..end];
        self.rest = self.rest.get(end..).and_then(|r| r.get(1..)).unwrap_or(&[]);
        Some(name)
    }
}

/// Checks a comma-separated list of server names (`a,b,c`, no spaces; empty = no names): every
/// name valid, none twice, at most [`MAX_SERVERS`].
pub fn parse_name_list(value: &[u8]) -> Result<NameList<'_>, CfgError> {
    let v = trim(value);
    let list = NameList { rest: v };
    if v.is_empty() {
        return Ok(list);
    }
    if v.ends_with(b",") {
        return Err(CfgError::BadList);
    }
    for (i, name) in list.clone().enumerate() {
        if name.is_empty() {
            return Err(CfgError::BadList);
        }
        if !valid_name(name) {
            return Err(CfgError::BadName);
        }
        if i >= MAX_SERVERS {
            return Err(CfgError::TooMany);
        }
        if list.clone().take(i).any(|n| n == name) {
            return Err(CfgError::Duplicate);
        }
    }
    Ok(list)
}

/// Whether a service with this configuration may be enabled.
pub fn enable_check(
    has_listen: bool,
    mode: Mode,
    sched: SchedKind,
    has_cookie: bool,
) -> Result<(), CfgError> {
    if !has_listen {
        Err(CfgError::NoListen)
    } else if mode == Mode::Tcp && (sched == SchedKind::UriHash || has_cookie) {
        Err(CfgError::NeedsHttp)
    } else {
        Ok(())
    }
}

/// Keys of a `stats` line, in order.
pub const STATS_KEYS: [&str; 8] = [
    "active_conns",
    "total_conns",
    "requests",
    "bytes_in",
    "bytes_out",
    "errors",
    "refused",
    "mem_bytes",
];

/// The counters of a service or server, as in its `stats` attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsLine {
    /// Values in the order of [`STATS_KEYS`].
    pub values: [u64; 8],
}

impl fmt::Display for StatsLine {
    /// `active_conns=N total_conns=N requests=N bytes_in=N bytes_out=N errors=N refused=N
    /// mem_bytes=N` (no newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in STATS_KEYS.iter().zip(self.values).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl StatsLine {
    /// Parses what `Display` writes (keys in any order, each exactly once).
    pub fn parse(line: &[u8]) -> Result<StatsLine, CfgError> {
        let mut out = StatsLine::default();
        let mut seen = 0u8;
        for field in trim(line)
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty())
        {
            let eq = field
                .iter()
                .position(|&b| b == b'=')
                .ok_or(CfgError::BadStats)?;
            let (key, eq_digits) = field.split_at(eq);
            let k = STATS_KEYS
                .iter()
                .position(|k| k.as_bytes() == key)
                .ok_or(CfgError::BadStats)?;
            let digits = &eq_digits[1..];
            if seen & (1 << k) != 0 || digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(CfgError::BadStats);
            }
            seen |= 1 << k;
            out.values[k] = digits.iter().try_fold(0u64, |a, &d| {
                a.checked_mul(10)
                    .and_then(|a| a.checked_add(u64::from((d as char).to_digit(10)?)))
                    .ok_or(CfgError::BadStats)
            })?;
        }
        if seen == 0b1111_1111 {
            Ok(out)
        } else {
            Err(CfgError::BadStats)
        }
    }
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn servers_from() {
        let p = |v: &[u8]| parse_servers_from(v);
        assert_eq!(p(b""), Ok(None));
        assert_eq!(p(b" \n"), Ok(None));
        assert_eq!(p(b"fwmark 100\n"), Ok(Some(ServersFrom::Fwmark(100))));
        let tcp = ServersFrom::Tcp("10.0.0.10:80".parse().unwrap());
        assert_eq!(p(b"tcp  10.0.0.10:80"), Ok(Some(tcp)));
        let v6 = p(b"tcp [fd00::10]:443").unwrap().unwrap();
        extern crate std;
        use std::string::ToString;
        assert_eq!(v6.to_string(), "tcp [fd00::10]:443");
        assert_eq!(tcp.to_string(), "tcp 10.0.0.10:80");
        assert_eq!(ServersFrom::Fwmark(7).to_string(), "fwmark 7");
        for bad in [
            &b"fwmark"[..],
            b"fwmark 0",
            b"fwmark 4294967296",
            b"fwmark x",
            b"udp 10.0.0.1:53",
            b"tcp10.0.0.1:80",
        ] {
            assert_eq!(p(bad), Err(CfgError::BadServersFrom), "{bad:?}");
        }
        assert_eq!(p(b"tcp 0.0.0.0:80"), Err(CfgError::Unspecified));
        assert_eq!(p(b"tcp 10.0.0.1:0"), Err(CfgError::PortZero));
    }
    use std::format;
    use std::vec::Vec;

    #[test]
    fn names() {
        assert!(valid_name(b"web"));
        assert!(valid_name(b"a.b_c-9"));
        assert!(valid_name(&[b'x'; 32]));
        assert!(!valid_name(&[b'x'; 33]));
        for bad in [
            &b""[..],
            b".x",
            b"-x",
            b"a b",
            b"a/b",
            b"a,b",
            b"caf\xc3\xa9",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(parse_rule_name(b"010-static"), Ok(10));
        assert_eq!(parse_rule_name(b"0-a"), Ok(0));
        assert_eq!(parse_rule_name(b"99999-x"), Ok(99_999));
        for bad in [
            &b"static"[..],
            b"010static",
            b"010-",
            b"100000-x",
            b"-1-x",
            b"1-a b",
        ] {
            assert_eq!(parse_rule_name(bad), Err(CfgError::BadRuleName), "{bad:?}");
        }
        assert!(name_eq("listen", "listen"));
        assert!(!name_eq("listen", "listen2"));
        assert!(!name_eq("listen", "lis7en"));
    }

    #[test]
    fn numbers() {
        assert_eq!(trim(b"  12\n"), b"12");
        assert_eq!(trim(b" \n"), b"");
        assert_eq!(parse_u32(b"0\n"), Ok(0));
        assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), Err(CfgError::OutOfRange));
        for bad in [&b""[..], b"+1", b"-1", b"1 2", b"0x10", b"1e3"] {
            assert_eq!(parse_u32(bad), Err(CfgError::BadNumber), "{bad:?}");
        }
        assert_eq!(parse_num(&MAX_HEADER_BYTES, b"256"), Ok(256));
        assert_eq!(
            parse_num(&MAX_HEADER_BYTES, b"255"),
            Err(CfgError::OutOfRange)
        );
        assert_eq!(
            parse_num(&MAX_HEADER_BYTES, b"65537"),
            Err(CfgError::OutOfRange)
        );
        assert_eq!(parse_num(&POOL_IDLE, b"0\n"), Ok(0));
        assert_eq!(parse_num(&POOL_IDLE, b"256"), Ok(256));
        assert_eq!(parse_num(&POOL_IDLE, b"257"), Err(CfgError::OutOfRange));
        assert_eq!(parse_num(&POOL_IDLE, b"-1"), Err(CfgError::BadNumber));
        assert_eq!(POOL_IDLE.default, 0);
        for a in NUM_ATTRS {
            assert!((a.min..=a.max).contains(&a.default), "{}", a.name);
            assert!(SERVICE_ATTRS.contains(&a.name));
        }
        assert_eq!(parse_weight(b"65535\n"), Ok(65_535));
        assert_eq!(parse_weight(b"0"), Ok(0));
        assert_eq!(parse_weight(b"70000"), Err(CfgError::OutOfRange));
        assert_eq!(parse_bool01(b"1\n"), Ok(true));
        assert_eq!(parse_bool01(b"0"), Ok(false));
        assert_eq!(parse_bool01(b"yes"), Err(CfgError::BadBool));
        assert_eq!(parse_bool01(b"2"), Err(CfgError::BadBool));
    }

    #[test]
    fn words() {
        assert_eq!(parse_scheduler(b"uri-hash\n"), Ok(SchedKind::UriHash));
        assert_eq!(parse_scheduler(b"wrr"), Ok(SchedKind::Wrr));
        assert_eq!(parse_scheduler(b"cookie"), Err(CfgError::BadScheduler));
        assert_eq!(parse_scheduler(b"WRR"), Err(CfgError::BadScheduler));
        assert_eq!(parse_mode(b"tcp\n"), Ok(Mode::Tcp));
        assert_eq!(parse_mode(b"udp"), Err(CfgError::BadMode));
        for s in STATES {
            assert_eq!(parse_state(state_name(s).as_bytes()), Ok(s));
        }
        assert_eq!(parse_state(b"UP"), Err(CfgError::BadState));
        assert_eq!(parse_cookie(b"\n"), Ok(&b""[..]));
        assert_eq!(parse_cookie(b"KTCPVS_SID\n"), Ok(&b"KTCPVS_SID"[..]));
        assert_eq!(parse_cookie(b"a=b"), Err(CfgError::BadName));
        assert_eq!(parse_cookie(b"a b"), Err(CfgError::BadName));
    }

    #[test]
    fn addresses() {
        use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let v4 = parse_addr(b"10.0.0.1:80\n", AddrRole::Server).unwrap();
        assert_eq!(v4.ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(v4.port(), 80);
        assert_eq!(format!("{v4}"), "10.0.0.1:80");
        let v6 = parse_addr(b"[::1]:8080", AddrRole::Server).unwrap();
        assert_eq!(v6.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(format!("{v6}"), "[::1]:8080");
        let long = parse_addr(b"[2001:db8:0:0:0:0:0:1]:443", AddrRole::Server).unwrap();
        assert_eq!(format!("{long}"), "[2001:db8::1]:443");
        assert!(parse_addr(b"0.0.0.0:80", AddrRole::Listen).is_ok());
        assert!(parse_addr(b"[::]:80", AddrRole::Listen).is_ok());
        assert_eq!(
            parse_addr(b"0.0.0.0:80", AddrRole::Server),
            Err(CfgError::Unspecified)
        );
        assert_eq!(
            parse_addr(b"1.2.3.4:0", AddrRole::Listen),
            Err(CfgError::PortZero)
        );
        for bad in [
            &b""[..],
            b"1.2.3.4",
            b"1.2.3.4:",
            b"1.2.3.4:65536",
            b"1.2.3:80",
            b"256.1.1.1:80",
            b"::1:80",
            b"[::1]",
            b"[fe80::1%2]:80",
            b"host:80",
            b"1.2.3.4:80 x",
            b"1.2.3.4:+80",
            b"\xff:80",
        ] {
            assert_eq!(
                parse_addr(bad, AddrRole::Listen),
                Err(CfgError::BadAddress),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn name_lists() {
        let l: Vec<&[u8]> = parse_name_list(b"a,b,c\n").unwrap().collect();
        assert_eq!(l, [&b"a"[..], b"b", b"c"]);
        assert_eq!(parse_name_list(b"\n").unwrap().count(), 0);
        assert_eq!(parse_name_list(b"a").unwrap().count(), 1);
        assert_eq!(parse_name_list(b"a,,b").unwrap_err(), CfgError::BadList);
        assert_eq!(parse_name_list(b"a,").unwrap_err(), CfgError::BadList);
        assert_eq!(parse_name_list(b",a").unwrap_err(), CfgError::BadList);
        assert_eq!(parse_name_list(b"a, b").unwrap_err(), CfgError::BadName);
        assert_eq!(parse_name_list(b"a,b,a").unwrap_err(), CfgError::Duplicate);
        let mut many = Vec::new();
        for i in 0..=MAX_SERVERS {
            if i > 0 {
                many.push(b',');
            }
            many.extend_from_slice(format!("s{i}").as_bytes());
        }
        assert_eq!(parse_name_list(&many).unwrap_err(), CfgError::TooMany);
        let cut = many.iter().rposition(|&b| b == b',').unwrap();
        assert_eq!(parse_name_list(&many[..cut]).unwrap().count(), MAX_SERVERS);
    }

    #[test]
    fn enabling() {
        assert_eq!(
            enable_check(false, Mode::Http, SchedKind::Rr, false),
            Err(CfgError::NoListen)
        );
        assert_eq!(
            enable_check(true, Mode::Http, SchedKind::UriHash, true),
            Ok(())
        );
        assert_eq!(enable_check(true, Mode::Tcp, SchedKind::Wlc, false), Ok(()));
        assert_eq!(
            enable_check(true, Mode::Tcp, SchedKind::UriHash, false),
            Err(CfgError::NeedsHttp)
        );
        assert_eq!(
            enable_check(true, Mode::Tcp, SchedKind::Rr, true),
            Err(CfgError::NeedsHttp)
        );
    }

    #[test]
    fn stats() {
        let s = StatsLine {
            values: [1, 2, 3, 4, 5, u64::MAX, 6, 7],
        };
        let text = format!("{s}");
        assert_eq!(
            text,
            "active_conns=1 total_conns=2 requests=3 bytes_in=4 bytes_out=5 \
             errors=18446744073709551615 refused=6 mem_bytes=7"
        );
        assert_eq!(StatsLine::parse(text.as_bytes()), Ok(s));
        assert_eq!(
            StatsLine::parse(
                b"mem_bytes=0 refused=0 errors=0 bytes_out=0 bytes_in=0 requests=0 total_conns=0 \
                  active_conns=7\n"
            ),
            Ok(StatsLine {
                values: [7, 0, 0, 0, 0, 0, 0, 0]
            })
        );
        for bad in [
            &b""[..],
            b"active_conns=1",
            b"active_conns=1 total_conns=2 requests=3 bytes_in=4 bytes_out=5 errors=x",
            b"active_conns=1 total_conns=2 requests=3 bytes_in=4 bytes_out=5 errors=",
            b"active_conns=1 active_conns=2 requests=3 bytes_in=4 bytes_out=5 errors=6",
            b"active_conns=1 total_conns=2 requests=3 bytes_in=4 bytes_out=5 errors=6 refused=0 mem_bytes=0 x=1",
            b"active_conns=1 total_conns=2 requests=3 bytes_in=4 bytes_out=5 errors=99999999999999999999",
        ] {
            assert_eq!(StatsLine::parse(bad), Err(CfgError::BadStats), "{bad:?}");
        }
    }
}
