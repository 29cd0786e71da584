// SPDX-License-Identifier: GPL-2.0

//! Content rules of the layer-7 switch: which servers may answer a request.
//!
//! A [`Rule`] is a conjunction of matchers (path prefix, exact path, path glob, Host, header
//! presence, header value, method) and a target: a set of server indices as a 64-bit mask (at
//! most 64 servers per service). Rules are evaluated in order, the first match wins, else the
//! service's default target applies ([`select`]).
//!
//! Text syntax (the configfs `match` attribute and the config file): matchers separated by
//! spaces or tabs, each `key=value`:
//!
//! | key | value | matches when |
//! |---|---|---|
//! | `path_prefix` | `/static/` | the path (target without query) starts with the value |
//! | `path` | `/x` | the path equals the value |
//! | `path_glob` | `/img/*.png` | the path matches; `*` any run of bytes (`/` too), `?` one byte |
//! | `host` | `api.example` or `*.example` | the host without port and trailing dot equals the value, or ends with `.example` after at least one byte (ASCII case-insensitive) |
//! | `header` | `X-Debug` | a field line of that name exists (case-insensitive) |
//! | `header` | `X-Env:prod` | a field line of that name has exactly that value (case-sensitive) |
//! | `method` | `GET` | the method token is exactly the value |
//!
//! A value may be written in double quotes, with `\"` and `\\` escapes, to contain spaces (only
//! header values can use them). The text is ASCII. [`Rule`]'s `Display` writes the same syntax
//! back: parsing what it wrote gives an equal rule. Paths are compared as received (no
//! percent-decoding or dot-segment removal).

use super::http1::{host_name, is_token, Request};
use core::fmt;

/// Most matchers in one rule.
pub const MAX_MATCHERS: usize = 8;
/// Bytes of pattern storage per rule, shared by its matchers (a header-value matcher stores
/// `name:value`).
pub const PATTERN_BYTES: usize = 128;
/// Upper bound of the text [`Rule`]'s `Display` writes.
pub const MAX_TEXT: usize = MAX_MATCHERS * 15 + 2 * PATTERN_BYTES;
/// Most servers a target can name.
pub const MAX_SERVERS: usize = 64;

/// Kinds of matchers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    /// `path_prefix=`.
    PathPrefix,
    /// `path=`.
    Path,
    /// `path_glob=`.
    PathGlob,
    /// `host=`.
    Host,
    /// `header=Name`.
    Header,
    /// `header=Name:value`.
    HeaderValue,
    /// `method=`.
    Method,
}

impl MatchKind {
    /// The key of the kind in the text syntax.
    pub const fn key(self) -> &'static str {
        match self {
            MatchKind::PathPrefix => "path_prefix",
            MatchKind::Path => "path",
            MatchKind::PathGlob => "path_glob",
            MatchKind::Host => "host",
            MatchKind::Header | MatchKind::HeaderValue => "header",
            MatchKind::Method => "method",
        }
    }
}

/// What is wrong with a rule text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleErrorKind {
    /// No matcher at all.
    Empty,
    /// A key other than those of [`MatchKind::key`].
    UnknownKey,
    /// A key without `=value`.
    MissingEquals,
    /// `key=` with nothing after it.
    EmptyValue,
    /// Unterminated quotes, a bad escape, or quotes or backslashes in an unquoted value.
    BadQuote,
    /// A control or non-ASCII byte.
    BadChar,
    /// A path pattern that does not start with `/` or has bytes a path cannot have.
    BadPath,
    /// A host pattern that is not a host name (or `*.` and one), or carries a port.
    BadHost,
    /// A header name that is not a token.
    BadHeaderName,
    /// A header value with leading or trailing whitespace.
    BadHeaderValue,
    /// A method that is not a token.
    BadMethod,
    /// More than [`MAX_MATCHERS`] matchers.
    TooManyMatchers,
    /// Patterns longer than [`PATTERN_BYTES`] in all.
    PatternsTooLong,
    /// A server index of a target list that is not a number below [`MAX_SERVERS`], or a bad
    /// range.
    BadServer,
}

impl RuleErrorKind {
    /// A short description for logs and tools.
    pub const fn message(self) -> &'static str {
        match self {
            RuleErrorKind::Empty => "empty rule",
            RuleErrorKind::UnknownKey => {
                "unknown key (path_prefix, path, path_glob, host, header, method)"
            }
            RuleErrorKind::MissingEquals => "expected key=value",
            RuleErrorKind::EmptyValue => "empty value",
            RuleErrorKind::BadQuote => "bad quoting",
            RuleErrorKind::BadChar => "control or non-ASCII character",
            RuleErrorKind::BadPath => "path must start with / and contain no space, # or ?",
            RuleErrorKind::BadHost => "host must be a name without port, or *.suffix",
            RuleErrorKind::BadHeaderName => "header name must be a token",
            RuleErrorKind::BadHeaderValue => "header value must not start or end with whitespace",
            RuleErrorKind::BadMethod => "method must be a token",
            RuleErrorKind::TooManyMatchers => "too many matchers (at most 8)",
            RuleErrorKind::PatternsTooLong => "patterns too long (at most 128 bytes per rule)",
            RuleErrorKind::BadServer => "server index must be 0..63 (list: 0,2,5-7)",
        }
    }
}

/// A rule text error and the byte offset in the text where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleError {
    /// What is wrong.
    pub kind: RuleErrorKind,
    /// Offset of the offending key, value or byte.
    pub at: usize,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.message(), self.at)
    }
}

fn err<T>(kind: RuleErrorKind, at: usize) -> Result<T, RuleError> {
    Err(RuleError { kind, at })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    kind: MatchKind,
    off: u8,
    len: u8,
    /// Header-value matchers: length of the name (the value follows a `:`).
    split: u8,
}

const EMPTY_SLOT: Slot = Slot {
    kind: MatchKind::Path,
    off: 0,
    len: 0,
    split: 0,
};

/// One matcher of a rule, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matcher<'r> {
    /// The kind.
    pub kind: MatchKind,
    /// The pattern; for [`MatchKind::HeaderValue`] `name:value`.
    pub pattern: &'r [u8],
    /// For [`MatchKind::HeaderValue`], the length of the name in `pattern`; else 0.
    pub name_len: usize,
}

/// A content rule: matchers that must all hold, and the servers it sends to.
///
/// Invariants: `1 <= count <= MAX_MATCHERS`; each matcher's pattern lies in `bytes[..used]`
/// (`used <= PATTERN_BYTES`) and is valid for its kind as described in the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    slots: [Slot; MAX_MATCHERS],
    count: u8,
    bytes: [u8; PATTERN_BYTES],
    used: u8,
    /// Servers (bit `i` = server index `i`) that may answer requests matching this rule.
    pub target: u64,
}

fn valid_path(p: &[u8], glob: bool) -> bool {
    let first_ok = p.first() == Some(&b'/') || (glob && p.first() == Some(&b'*'));
    first_ok
        && p.iter()
            .all(|&b| (0x21..0x7f).contains(&b) && b != b'#' && (glob || b != b'?'))
}

fn valid_host(h: &[u8]) -> bool {
    let name = h.strip_prefix(b"*.").unwrap_or(h);
    if let Some(lit) = name.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]")) {
        return name.len() == h.len()
            && !lit.is_empty()
            && lit
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Glob match: `*` matches any run of bytes, `?` one byte, everything else itself.
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, i));
                p += 1;
            }
            Some(&c) if c == b'?' || c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*')
}

/// Reads the value starting at `i` (quoted or bare); returns its unescaped bytes in `out`, the
/// count, and the offset after it.
fn read_value(text: &[u8], mut i: usize, out: &mut [u8]) -> Result<(usize, usize), RuleError> {
    let mut n = 0;
    let mut push = |b: u8, at: usize| -> Result<(), RuleError> {
        if !(0x20..0x7f).contains(&b) && b != b'\t' {
            return err(RuleErrorKind::BadChar, at);
        }
        *out.get_mut(n).ok_or(RuleError {
            kind: RuleErrorKind::PatternsTooLong,
            at,
        })? = b;
        n += 1;
        Ok(())
    };
    if text.get(i) == Some(&b'"') {
        let open = i;
        i += 1;
        loop {
            match text.get(i) {
                None => return err(RuleErrorKind::BadQuote, open),
                Some(b'"') => break,
                Some(b'\\') => match text.get(i + 1) {
                    Some(&e @ (b'"' | b'\\')) => {
                        push(e, i)?;
                        i += 2;
                    }
                    _ => return err(RuleErrorKind::BadQuote, i),
                },
                Some(&b) => {
                    push(b, i)?;
                    i += 1;
                }
            }
        }
        i += 1;
        if text.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
            return err(RuleErrorKind::BadQuote, i);
        }
    } else {
        while let Some(&b) = text.get(i) {
            if b.is_ascii_whitespace() {
                break;
            }
            if b == b'"' || b == b'\\' {
                return err(RuleErrorKind::BadQuote, i);
            }
            push(b, i)?;
            i += 1;
        }
    }
    Ok((n, i))
}

impl Rule {
    /// Parses a rule text (see the module docs) with the given target.
    pub fn parse(text: &[u8], target: u64) -> Result<Rule, RuleError> {
        let mut rule = Rule {
            slots: [EMPTY_SLOT; MAX_MATCHERS],
            count: 0,
            bytes: [0; PATTERN_BYTES],
            used: 0,
            target,
        };
        let mut i = 0;
        loop {
            while text.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            if i == text.len() {
                break;
            }
            let key_at = i;
            let Some(eq) = text[i..]
                .iter()
                .position(|&b| b == b'=' || b.is_ascii_whitespace())
                .filter(|&k| text[i + k] == b'=')
            else {
                return err(RuleErrorKind::MissingEquals, key_at);
            };
            let key = &text[i..i + eq];
            let kind = [
                MatchKind::PathPrefix,
                MatchKind::Path,
                MatchKind::PathGlob,
                MatchKind::Host,
                MatchKind::Header,
                MatchKind::Method,
            ]
            .into_iter()
            .find(|k| k.key().as_bytes() == key);
            let Some(mut kind) = kind else {
                return err(RuleErrorKind::UnknownKey, key_at);
            };
            let at = i + eq + 1;
            if usize::from(rule.count) == MAX_MATCHERS {
                return err(RuleErrorKind::TooManyMatchers, key_at);
            }
            let off = usize::from(rule.used);
            let (n, next) = read_value(text, at, &mut rule.bytes[off..])?;
            i = next;
            let v = &rule.bytes[off..off + n];
            if n == 0 {
                return err(RuleErrorKind::EmptyValue, at);
            }
            let mut split = 0;
            let bad = match kind {
                MatchKind::PathPrefix | MatchKind::Path => {
                    (!valid_path(v, false)).then_some(RuleErrorKind::BadPath)
                }
                MatchKind::PathGlob => (!valid_path(v, true)).then_some(RuleErrorKind::BadPath),
                MatchKind::Host => (!valid_host(v)).then_some(RuleErrorKind::BadHost),
                MatchKind::Method => (!is_token(v)).then_some(RuleErrorKind::BadMethod),
                MatchKind::Header | MatchKind::HeaderValue => {
                    let c = v.iter().position(|&b| b == b':').unwrap_or(n);
                    let ws = |b: Option<&u8>| b.is_some_and(|&b| b == b' ' || b == b'\t');
                    if c < n {
                        kind = MatchKind::HeaderValue;
                        split = c;
                    }
                    if !is_token(&v[..c]) {
                        Some(RuleErrorKind::BadHeaderName)
                    } else if c < n && (ws(v.get(c + 1)) || ws(v.last())) {
                        Some(RuleErrorKind::BadHeaderValue)
                    } else {
                        None
                    }
                }
            };
            if let Some(k) = bad {
                return err(k, at);
            }
            rule.slots[usize::from(rule.count)] = Slot {
                kind,
                off: off as u8,
                len: n as u8,
                split: split as u8,
            };
            rule.count += 1;
            rule.used += n as u8;
        }
        if rule.count == 0 {
            return err(RuleErrorKind::Empty, 0);
        }
        Ok(rule)
    }

    /// The rule's matchers in order.
    pub fn matchers(&self) -> impl Iterator<Item = Matcher<'_>> + '_ {
        self.slots[..usize::from(self.count)].iter().map(|s| {
            let (off, len) = (usize::from(s.off), usize::from(s.len));
            Matcher {
                kind: s.kind,
                pattern: &self.bytes[off..off + len],
                name_len: usize::from(s.split),
            }
        })
    }

    /// Whether all matchers hold for `req`.
    pub fn matches(&self, req: &Request<'_, '_>) -> bool {
        self.matchers().all(|m| {
            let p = m.pattern;
            match m.kind {
                MatchKind::PathPrefix => req.path().starts_with(p),
                MatchKind::Path => req.path() == p,
                MatchKind::PathGlob => glob_match(p, req.path()),
                MatchKind::Host => req.host.is_some_and(|h| host_matches(p, host_name(h))),
                MatchKind::Header => req.headers.iter().any(|h| h.name.eq_ignore_ascii_case(p)),
                MatchKind::HeaderValue => {
                    let (name, value) = (&p[..m.name_len], &p[m.name_len + 1..]);
                    req.headers
                        .iter()
                        .any(|h| h.name.eq_ignore_ascii_case(name) && h.value == value)
                }
                MatchKind::Method => req.method.as_bytes() == p,
            }
        })
    }

    /// Writes the rule text into `out`; returns its length (at most [`MAX_TEXT`]).
    pub fn write_text(&self, out: &mut [u8]) -> Result<usize, fmt::Error> {
        let mut w = SliceWriter { out, len: 0 };
        fmt::write(&mut w, format_args!("{self}"))?;
        Ok(w.len)
    }
}

/// Host pattern match: exact, or `*.suffix` with at least one byte before `.suffix`.
fn host_matches(pattern: &[u8], host: &[u8]) -> bool {
    match pattern.strip_prefix(b"*") {
        Some(suffix) => {
            host.len() > suffix.len()
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, m) in self.matchers().enumerate() {
            if k > 0 {
                f.write_str(" ")?;
            }
            f.write_str(m.kind.key())?;
            f.write_str("=")?;
            let quote = m.pattern.iter().any(|&b| b" \t\"\\".contains(&b));
            if quote {
                f.write_str("\"")?;
            }
            for &b in m.pattern {
                if quote && (b == b'"' || b == b'\\') {
                    f.write_str("\\")?;
                }
                // Patterns are ASCII (checked when parsed).
                fmt::Write::write_char(f, char::from(b))?;
            }
            if quote {
                f.write_str("\"")?;
            }
        }
        Ok(())
    }
}

struct SliceWriter<'o> {
    out: &'o mut [u8],
    len: usize,
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let dst = self
            .out
            .get_mut(self.len..self.len + s.len())
            .ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// The outcome of rule evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Index of the first matching rule, `None` when the default applied.
    pub rule: Option<usize>,
    /// The servers that may answer.
    pub target: u64,
}

/// Evaluates `rules` in order: the first that matches gives the target, else `default`.
pub fn select(rules: &[Rule], default: u64, req: &Request<'_, '_>) -> Selection {
    match rules.iter().position(|r| r.matches(req)) {
        Some(i) => Selection {
            rule: Some(i),
            target: rules[i].target,
        },
        None => Selection {
            rule: None,
            target: default,
        },
    }
}

/// Parses a target list such as `0,2,5-7` (server indices below [`MAX_SERVERS`], ranges
/// inclusive, surrounding whitespace ignored) into a mask. An empty list is the empty set.
pub fn parse_target(text: &[u8]) -> Result<u64, RuleError> {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    if start == end {
        return Ok(0);
    }
    let num = |s: &[u8], at: usize| -> Result<u32, RuleError> {
        // At most two digits: the value is computed only then (any longer run, or other bytes,
        // could overflow it).
        let ok = !s.is_empty() && s.len() <= 2 && s.iter().all(u8::is_ascii_digit);
        let v = if ok {
            s.iter().fold(0u32, |a, &b| a * 10 + u32::from(b - b'0'))
        } else {
            u32::MAX
        };
        if (v as usize) < MAX_SERVERS {
            Ok(v)
        } else {
            err(RuleErrorKind::BadServer, at)
        }
    };
    let mut mask = 0u64;
    let mut at = start;
    for item in text[start..end].split(|&b| b == b',') {
        let (lo, hi) = match item.iter().position(|&b| b == b'-') {
            Some(d) => (num(&item[..d], at)?, num(&item[d + 1..], at + d + 1)?),
            None => {
                let v = num(item, at)?;
                (v, v)
            }
        };
        if lo > hi {
            return err(RuleErrorKind::BadServer, at);
        }
        for s in lo..=hi {
            mask |= 1 << s;
        }
        at += item.len() + 1;
    }
    Ok(mask)
}

/// A target mask written as [`parse_target`] reads it (ascending, runs of three or more as
/// ranges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetText(pub u64);

impl fmt::Display for TargetText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        let mut first = true;
        let mut s = 0u32;
        while s < 64 {
            if m & (1 << s) == 0 {
                s += 1;
                continue;
            }
            let mut e = s;
            while e < 63 && m & (1 << (e + 1)) != 0 {
                e += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match e - s {
                0 => write!(f, "{s}")?,
                1 => write!(f, "{s},{e}")?,
                _ => write!(f, "{s}-{e}")?,
            }
            s = e + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::http1::{parse_request, Header, Limits, Status};
    use super::*;

    fn with_req(head: &[u8], f: impl FnOnce(&Request<'_, '_>)) {
        let mut h = [Header::EMPTY; 16];
        match parse_request(head, &mut h, &Limits::DEFAULT) {
            Ok(Status::Complete(r)) => f(&r),
            x => panic!("{x:?}"),
        }
    }

    fn m(rule: &str, head: &str) -> bool {
        let r = Rule::parse(rule.as_bytes(), 1).unwrap();
        let mut res = false;
        with_req(head.as_bytes(), |q| res = r.matches(q));
        res
    }

    fn e(rule: &str) -> RuleError {
        Rule::parse(rule.as_bytes(), 1).unwrap_err()
    }

    const GET_STATIC: &str = "GET /static/img/a.png?v=1 HTTP/1.1\r\nHost: API.Example:8080\r\nX-Env: prod\r\nX-Debug: 1\r\n\r\n";

    #[test]
    fn matchers() {
        assert!(m("path_prefix=/static/", GET_STATIC));
        assert!(!m("path_prefix=/static/x", GET_STATIC));
        assert!(m("path=/static/img/a.png", GET_STATIC));
        assert!(!m("path=/static/img/a.pn", GET_STATIC));
        assert!(m("path_glob=/static/*.png", GET_STATIC));
        assert!(m("path_glob=*/a.???", GET_STATIC));
        assert!(!m("path_glob=/static/*.jpg", GET_STATIC));
        assert!(!m("path_glob=/static/*.png?v=1", GET_STATIC));
        assert!(m("host=api.example", GET_STATIC));
        assert!(m("host=*.EXAMPLE", GET_STATIC));
        assert!(!m("host=*.api.example", GET_STATIC));
        assert!(!m("host=example", GET_STATIC));
        assert!(m("header=x-debug", GET_STATIC));
        assert!(!m("header=X-Other", GET_STATIC));
        assert!(m("header=x-env:prod", GET_STATIC));
        assert!(!m("header=X-Env:Prod", GET_STATIC));
        assert!(m("method=GET", GET_STATIC));
        assert!(!m("method=get", GET_STATIC));
        assert!(!m("method=POST", GET_STATIC));
        // Conjunction.
        assert!(m(
            "method=GET\tpath_prefix=/static host=api.example\n",
            GET_STATIC
        ));
        assert!(!m(
            "method=GET path_prefix=/dyn host=api.example",
            GET_STATIC
        ));
        // Host from an absolute-form target; trailing dot; IPv6; absent host.
        assert!(m(
            "host=b.example",
            "GET http://b.example./x HTTP/1.1\r\nHost: a\r\n\r\n"
        ));
        assert!(m("host=[::1]", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"));
        assert!(!m("host=a", "GET / HTTP/1.0\r\n\r\n"));
        assert!(m(
            r#"header="X-A:x  \"y\" \\z""#,
            "GET / HTTP/1.0\r\nX-A: x  \"y\" \\z\r\n\r\n"
        ));
    }

    #[test]
    fn glob() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXXbYYc"));
        assert!(!glob_match(b"a*b*c", b"aXXbYY"));
        assert!(glob_match(b"a**", b"a"));
        assert!(!glob_match(b"?", b""));
        assert!(glob_match(b"*a*a*a*b", b"aaaaaaaaaaaaaaab"));
        assert!(!glob_match(b"*a*a*a*b", b"aaaaaaaaaaaaaaaa"));
        assert!(glob_match(b"/x/?", b"/x/y"));
        assert!(!glob_match(b"/x", b"/x/"));
    }

    #[test]
    fn errors() {
        use RuleErrorKind::*;
        assert_eq!(e(""), RuleError { kind: Empty, at: 0 });
        assert_eq!(e("  \n"), RuleError { kind: Empty, at: 0 });
        assert_eq!(
            e("path=/a pth=/b"),
            RuleError {
                kind: UnknownKey,
                at: 8
            }
        );
        assert_eq!(
            e("path /a"),
            RuleError {
                kind: MissingEquals,
                at: 0
            }
        );
        assert_eq!(
            e("path"),
            RuleError {
                kind: MissingEquals,
                at: 0
            }
        );
        assert_eq!(
            e("path="),
            RuleError {
                kind: EmptyValue,
                at: 5
            }
        );
        assert_eq!(
            e("path=a"),
            RuleError {
                kind: BadPath,
                at: 5
            }
        );
        assert_eq!(
            e("path=/a?b"),
            RuleError {
                kind: BadPath,
                at: 5
            }
        );
        assert_eq!(
            e("path_prefix=\"/a b\""),
            RuleError {
                kind: BadPath,
                at: 12
            }
        );
        assert!(Rule::parse(b"path_glob=/a?b", 0).is_ok());
        assert_eq!(e("host=a:80").kind, BadHost);
        assert_eq!(e("host=*").kind, BadHost);
        assert_eq!(e("host=*.").kind, BadHost);
        assert_eq!(e("host=a*b").kind, BadHost);
        assert_eq!(e("header=X Y").kind, MissingEquals);
        assert_eq!(e("header=\"X Y\"").kind, BadHeaderName);
        assert_eq!(e("header=:v").kind, BadHeaderName);
        assert_eq!(e("header=\"X: v\"").kind, BadHeaderValue);
        assert_eq!(e("method=G(T").kind, BadMethod);
        assert_eq!(e("header=\"X:a").kind, BadQuote);
        assert_eq!(e("header=\"X:a\\n\"").kind, BadQuote);
        assert_eq!(e("header=\"X:a\"b").kind, BadQuote);
        assert_eq!(e("header=X:a\"b").kind, BadQuote);
        assert_eq!(e("header=X:caf\u{e9}").kind, BadChar);
        assert_eq!(e("header=\"X:a\x01\"").kind, BadChar);
        assert_eq!(
            e("method=A method=B method=C method=D method=E method=F method=G method=H method=I"),
            RuleError {
                kind: TooManyMatchers,
                at: 72
            }
        );
        let mut long = [b'/'; 140];
        long[..5].copy_from_slice(b"path=");
        assert_eq!(Rule::parse(&long[..133], 0).map(|r| r.target), Ok(0));
        assert_eq!(
            Rule::parse(&long[..134], 0).unwrap_err().kind,
            PatternsTooLong
        );
        assert_eq!(
            std::format!("{}", e("pth=/")),
            "unknown key (path_prefix, path, path_glob, host, header, method) at byte 0"
        );
    }
    extern crate std;

    #[test]
    fn round_trip() {
        let texts = [
            "path_prefix=/static/",
            "path=/x host=*.example.org method=PUT",
            "path_glob=/img/*.png header=X-Debug header=X-Env:prod",
            r#"header="X-A:a b" header="X-B:\"q\" \\""#,
            "header=X-Empty:",
        ];
        for t in texts {
            let r = Rule::parse(t.as_bytes(), 5).unwrap();
            let mut out = [0u8; MAX_TEXT];
            let n = r.write_text(&mut out).unwrap();
            assert_eq!(&out[..n], t.as_bytes());
            assert_eq!(Rule::parse(&out[..n], 5), Ok(r));
        }
        // Quotes that are not needed disappear; extra whitespace too.
        let r = Rule::parse(b"  path=\"/a\"   method=GET \n", 0).unwrap();
        assert_eq!(std::format!("{r}"), "path=/a method=GET");
        let hr = Rule::parse(b"header=A:b host=h", 0).unwrap();
        let ms: std::vec::Vec<_> = hr.matchers().collect();
        assert_eq!(
            ms[0],
            Matcher {
                kind: MatchKind::HeaderValue,
                pattern: b"A:b",
                name_len: 1
            }
        );
        assert_eq!(
            ms[1],
            Matcher {
                kind: MatchKind::Host,
                pattern: b"h",
                name_len: 0
            }
        );
        // The longest text fits MAX_TEXT.
        let mut worst = std::vec::Vec::from(&b"header=\"X:"[..]);
        for _ in 0..126 {
            worst.extend_from_slice(b"\\\\");
        }
        worst.push(b'"');
        let worst = &worst[..];
        let r = Rule::parse(worst, 0).unwrap();
        assert_eq!(r.matchers().next().unwrap().pattern.len(), 128);
        let mut out = [0u8; MAX_TEXT];
        let n = r.write_text(&mut out).unwrap();
        assert_eq!(&out[..n], worst);
        assert!(r.write_text(&mut out[..n - 1]).is_err());
    }

    #[test]
    fn selection_and_targets() {
        let rules = [
            Rule::parse(b"path_prefix=/static/", 0b001).unwrap(),
            Rule::parse(b"host=api.example", 0b010).unwrap(),
            Rule::parse(b"path_prefix=/", 0b110).unwrap(),
        ];
        with_req(GET_STATIC.as_bytes(), |q| {
            assert_eq!(
                select(&rules, 0b100, q),
                Selection {
                    rule: Some(0),
                    target: 1
                }
            );
            assert_eq!(
                select(&rules[1..], 0b100, q),
                Selection {
                    rule: Some(0),
                    target: 2
                }
            );
        });
        with_req(b"GET /x HTTP/1.1\r\nHost: www\r\n\r\n", |q| {
            assert_eq!(
                select(&rules[..2], 0b100, q),
                Selection {
                    rule: None,
                    target: 4
                }
            );
        });
        assert_eq!(parse_target(b"0,2,5-7\n"), Ok(0b1110_0101));
        assert_eq!(parse_target(b"63"), Ok(1 << 63));
        assert_eq!(parse_target(b"  "), Ok(0));
        assert_eq!(parse_target(b"0-63"), Ok(u64::MAX));
        assert_eq!(
            parse_target(b"64").unwrap_err().kind,
            RuleErrorKind::BadServer
        );
        assert_eq!(
            parse_target(b"1,,2").unwrap_err(),
            RuleError {
                kind: RuleErrorKind::BadServer,
                at: 2
            }
        );
        assert_eq!(
            parse_target(b"3-1").unwrap_err().kind,
            RuleErrorKind::BadServer
        );
        assert_eq!(
            parse_target(b"1 ,2").unwrap_err().kind,
            RuleErrorKind::BadServer
        );
        for (m, t) in [
            (0b1110_0101u64, "0,2,5-7"),
            (0b11, "0,1"),
            (0, ""),
            (u64::MAX, "0-63"),
            (1 << 63, "63"),
        ] {
            assert_eq!(std::format!("{}", TargetText(m)), t);
            assert_eq!(parse_target(t.as_bytes()), Ok(m));
        }
    }
}
