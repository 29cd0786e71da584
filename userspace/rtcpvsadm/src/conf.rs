// SPDX-License-Identifier: GPL-2.0

//! The configuration of virtual services as `rtcpvsadm` handles it: the model, the
//! KTCPVS-like configuration file (`load`/`save`), the `list` text and JSON.
//!
//! File grammar (`Documentation/ktcpvs-config.md`):
//!
//! ```text
//! file     = { virtual } ;
//! virtual  = "virtual" NAME "{" { stmt } "}" ;
//! stmt     = ATTR "=" VALUE ";"
//!          | "server" "=" NAME ADDR { "weight" N | "state" STATE } ";"
//!          | "rule" "=" [ RULENAME ] "match" STRING "use" "server" NAMES ";" ;
//! ```
//!
//! `ATTR` is a settable service attribute (`listen`, `scheduler`, ..., `enabled`); `VALUE`,
//! `ADDR` and `NAMES` are each a word or a string. A word is a run of bytes other than white space, `{};="#`; a string is
//! `"..."` with `\"` and `\\` escapes; `#` starts a comment to the end of the line. An unnamed
//! rule is called `NNN-ruleK` where K is its position among the service's rules (from 1) and
//! NNN is `10 * K` on three digits.

use hark_proto::ktcpvs_cfs::{self, StatsLine, SERVICE_ATTRS};
use std::fmt::Write as _;

/// Service attributes a configuration sets (every attribute but `stats`), in the order `save`
/// writes them and `load` applies them (`default_target` after the servers, `enabled` last).
pub const SETTABLE: [&str; 17] = [
    SERVICE_ATTRS[0],
    SERVICE_ATTRS[1],
    SERVICE_ATTRS[2],
    SERVICE_ATTRS[3],
    SERVICE_ATTRS[4],
    SERVICE_ATTRS[5],
    SERVICE_ATTRS[6],
    SERVICE_ATTRS[17],
    SERVICE_ATTRS[7],
    SERVICE_ATTRS[8],
    SERVICE_ATTRS[9],
    SERVICE_ATTRS[15],
    SERVICE_ATTRS[10],
    SERVICE_ATTRS[11],
    SERVICE_ATTRS[12],
    SERVICE_ATTRS[16],
    SERVICE_ATTRS[13],
];

/// A real server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// Empty when not set.
    pub address: String,
    pub weight: Option<u16>,
    pub state: Option<String>,
    pub stats: Option<StatsLine>,
}

/// A rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub pattern: String,
    /// Comma-separated server names.
    pub target: String,
}

/// A virtual service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// Attribute values by name, in [`SETTABLE`] order (only those known).
    pub attrs: Vec<(String, String)>,
    pub servers: Vec<Server>,
    pub rules: Vec<Rule>,
    pub stats: Option<StatsLine>,
}

impl Service {
    /// The value of attribute `name`, if known.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets attribute `name`, keeping [`SETTABLE`] order.
    pub fn set_attr(&mut self, name: &str, value: &str) {
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some(kv) => kv.1 = value.to_string(),
            None => {
                self.attrs.push((name.to_string(), value.to_string()));
                let pos = |k: &str| SETTABLE.iter().position(|s| *s == k);
                self.attrs.sort_by_key(|(k, _)| pos(k));
            }
        }
    }
}

/// A configuration file error: line (from 1) and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Punct(char),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Punct(c) => format!("'{c}'"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '{' | '}' | ';' | '=' => out.push((line, Tok::Punct(c))),
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(ParseError {
                                line: start,
                                msg: "unterminated string".into(),
                            })
                        }
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\')) => s.push(e),
                            _ => {
                                return Err(ParseError {
                                    line,
                                    msg: "bad escape in string (only \\\" and \\\\)".into(),
                                })
                            }
                        },
                        Some('\n') => {
                            return Err(ParseError {
                                line,
                                msg: "newline in string".into(),
                            })
                        }
                        Some(c) => s.push(c),
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            c => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{};=\"#".contains(n) {
                        break;
                    }
                    w.push(n);
                    chars.next();
                }
                out.push((line, Tok::Word(w)));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
}

impl Parser {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(1, |t| t.0)
    }

    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line(),
            msg: msg.into(),
        })
    }

    fn next(&mut self, what: &str) -> Result<Tok, ParseError> {
        match self.toks.get(self.pos) {
            Some((_, t)) => {
                self.pos += 1;
                Ok(t.clone())
            }
            None => self.err(format!("expected {what}, found end of file")),
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn word(&mut self, what: &str) -> Result<String, ParseError> {
        match self.next(what)? {
            Tok::Word(w) => Ok(w),
            t => {
                self.pos -= 1;
                self.err(format!("expected {what}, found {}", t.describe()))
            }
        }
    }

    fn value(&mut self, what: &str) -> Result<String, ParseError> {
        match self.next(what)? {
            Tok::Word(w) | Tok::Str(w) => Ok(w),
            t => {
                self.pos -= 1;
                self.err(format!("expected {what}, found {}", t.describe()))
            }
        }
    }

    fn punct(&mut self, c: char) -> Result<(), ParseError> {
        match self.next(&format!("'{c}'"))? {
            Tok::Punct(p) if p == c => Ok(()),
            t => {
                self.pos -= 1;
                self.err(format!("expected '{c}', found {}", t.describe()))
            }
        }
    }

    fn keyword(&mut self, k: &str) -> Result<(), ParseError> {
        let w = self.word(&format!("'{k}'"))?;
        if w == k {
            Ok(())
        } else {
            self.pos -= 1;
            self.err(format!("expected '{k}', found '{w}'"))
        }
    }

    fn name(&mut self, what: &str) -> Result<String, ParseError> {
        let n = self.word(what)?;
        if ktcpvs_cfs::valid_name(n.as_bytes()) {
            Ok(n)
        } else {
            self.pos -= 1;
            self.err(format!(
                "bad {what} '{n}': {}",
                ktcpvs_cfs::CfgError::BadName.message()
            ))
        }
    }

    fn server(&mut self) -> Result<Server, ParseError> {
        let mut s = Server {
            name: self.name("server name")?,
            // A word or a string: `format` quotes an empty or unusual address.
            address: self.value("server address")?,
            ..Server::default()
        };
        loop {
            match self.peek() {
                Some(Tok::Punct(';')) => break,
                Some(Tok::Word(w)) if w == "weight" => {
                    self.pos += 1;
                    let n = self.word("weight")?;
                    match ktcpvs_cfs::parse_weight(n.as_bytes()) {
                        Ok(w) => s.weight = Some(w),
                        Err(e) => return self.err(format!("weight '{n}': {e}")),
                    }
                }
                Some(Tok::Word(w)) if w == "state" => {
                    self.pos += 1;
                    let st = self.word("state")?;
                    if ktcpvs_cfs::parse_state(st.as_bytes()).is_err() {
                        return self
                            .err(format!("state '{st}': {}", ktcpvs_cfs::CfgError::BadState));
                    }
                    s.state = Some(st);
                }
                _ => {
                    let t = self.next("';'")?;
                    self.pos -= 1;
                    return self.err(format!(
                        "expected 'weight', 'state' or ';', found {}",
                        t.describe()
                    ));
                }
            }
        }
        Ok(s)
    }

    fn rule(&mut self, index: usize) -> Result<Rule, ParseError> {
        let name = match self.peek() {
            Some(Tok::Word(w)) if w != "match" => {
                let n = self.word("rule name")?;
                if let Err(e) = ktcpvs_cfs::parse_rule_name(n.as_bytes()) {
                    self.pos -= 1;
                    return self.err(format!("rule name '{n}': {e}"));
                }
                n
            }
            _ => format!("{:03}-rule{index}", 10 * index),
        };
        self.keyword("match")?;
        let pattern = match self.next("a quoted pattern")? {
            Tok::Str(s) => s,
            t => {
                self.pos -= 1;
                return self.err(format!("expected a quoted pattern, found {}", t.describe()));
            }
        };
        self.keyword("use")?;
        self.keyword("server")?;
        // A word or a string: `format` writes an empty list as `""`.
        let target = self.value("server names")?;
        if let Err(e) = ktcpvs_cfs::parse_name_list(target.as_bytes()) {
            self.pos -= 1;
            return self.err(format!("server names '{target}': {e}"));
        }
        Ok(Rule {
            name,
            pattern,
            target,
        })
    }

    fn virtual_service(&mut self) -> Result<Service, ParseError> {
        self.keyword("virtual")?;
        let mut svc = Service {
            name: self.name("service name")?,
            ..Service::default()
        };
        self.punct('{')?;
        loop {
            if self.peek() == Some(&Tok::Punct('}')) {
                self.pos += 1;
                return Ok(svc);
            }
            let key = self.word("an attribute, 'server', 'rule' or '}'")?;
            self.punct('=')?;
            match key.as_str() {
                "server" => {
                    let s = self.server()?;
                    if svc.servers.iter().any(|o| o.name == s.name) {
                        return self.err(format!("server '{}' defined twice", s.name));
                    }
                    svc.servers.push(s);
                }
                "rule" => {
                    let r = self.rule(svc.rules.len() + 1)?;
                    if svc.rules.iter().any(|o| o.name == r.name) {
                        return self.err(format!("rule '{}' defined twice", r.name));
                    }
                    svc.rules.push(r);
                }
                k if SETTABLE.contains(&k) => {
                    let v = self.value(&format!("a value for {k}"))?;
                    if svc.attr(k).is_some() {
                        return self.err(format!("'{k}' set twice"));
                    }
                    svc.set_attr(k, &v);
                }
                k => {
                    self.pos -= 2;
                    return self.err(format!(
                        "unknown key '{k}' (attributes: {}; server; rule)",
                        SETTABLE.join(", ")
                    ));
                }
            }
            self.punct(';')?;
        }
    }
}

/// Parses a configuration file.
pub fn parse(text: &str) -> Result<Vec<Service>, ParseError> {
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
    };
    let mut out: Vec<Service> = Vec::new();
    while p.peek().is_some() {
        let s = p.virtual_service()?;
        if out.iter().any(|o| o.name == s.name) {
            return p.err(format!("virtual '{}' defined twice", s.name));
        }
        out.push(s);
    }
    Ok(out)
}

/// `s` as a file word if it can be one, else as a string.
fn quote_value(s: &str) -> String {
    if !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || "{};=\"#\\".contains(c))
    {
        s.to_string()
    } else {
        quote(s)
    }
}

/// `s` as a file string.
fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Writes services as a configuration file; [`parse`] reads it back equal.
pub fn format(services: &[Service]) -> String {
    let mut out = String::new();
    for (i, s) in services.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "virtual {} {{", s.name);
        for (k, v) in &s.attrs {
            let _ = writeln!(out, "    {k} = {};", quote_value(v));
        }
        for sv in &s.servers {
            let _ = write!(out, "    server = {} {}", sv.name, quote_value(&sv.address));
            if let Some(w) = sv.weight {
                let _ = write!(out, " weight {w}");
            }
            if let Some(st) = &sv.state {
                let _ = write!(out, " state {st}");
            }
            out.push_str(";\n");
        }
        for r in &s.rules {
            let _ = writeln!(
                out,
                "    rule = {} match {} use server {};",
                r.name,
                quote(&r.pattern),
                quote_value(&r.target)
            );
        }
        out.push_str("}\n");
    }
    out
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_stats(s: &StatsLine) -> String {
    let fields: Vec<String> = ktcpvs_cfs::STATS_KEYS
        .iter()
        .zip(s.values)
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A JSON value for attribute `k`: numbers and 0/1 flags as numbers and booleans.
fn json_attr(k: &str, v: &str) -> String {
    let numeric = ktcpvs_cfs::NUM_ATTRS.iter().any(|a| a.name == k);
    match (k, v) {
        ("xff" | "enabled", "0") => "false".into(),
        ("xff" | "enabled", "1") => "true".into(),
        // A JSON number: `u32::from_str` also takes `+5` and `007`, which JSON does not.
        _ if numeric
            && v.parse::<u32>().is_ok()
            && v.bytes().all(|b| b.is_ascii_digit())
            && (v == "0" || !v.starts_with('0')) =>
        {
            v.into()
        }
        _ => json_str(v),
    }
}

/// The services as one JSON object `{"services": [...]}`.
pub fn to_json(services: &[Service]) -> String {
    let mut out = String::from("{\"services\":[");
    for (i, s) in services.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"name\":{}", json_str(&s.name));
        for (k, v) in &s.attrs {
            let _ = write!(out, ",{}:{}", json_str(k), json_attr(k, v));
        }
        if let Some(st) = &s.stats {
            let _ = write!(out, ",\"stats\":{}", json_stats(st));
        }
        out.push_str(",\"servers\":[");
        for (j, sv) in s.servers.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"name\":{},\"address\":{}",
                json_str(&sv.name),
                json_str(&sv.address)
            );
            if let Some(w) = sv.weight {
                let _ = write!(out, ",\"weight\":{w}");
            }
            if let Some(st) = &sv.state {
                let _ = write!(out, ",\"state\":{}", json_str(st));
            }
            if let Some(st) = &sv.stats {
                let _ = write!(out, ",\"stats\":{}", json_stats(st));
            }
            out.push('}');
        }
        out.push_str("],\"rules\":[");
        for (j, r) in s.rules.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let targets: Vec<String> = r
                .target
                .split(',')
                .filter(|t| !t.is_empty())
                .map(json_str)
                .collect();
            let _ = write!(
                out,
                "{{\"name\":{},\"match\":{},\"target\":[{}]}}",
                json_str(&r.name),
                json_str(&r.pattern),
                targets.join(",")
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

/// The services as `list` text.
pub fn to_text(services: &[Service]) -> String {
    let mut out = String::new();
    for s in services {
        let a = |k: &str| s.attr(k).unwrap_or("").to_string();
        let listen = a("listen");
        // Server connection pooling is shown when on.
        let pool = match s.attr("pool_idle") {
            Some(n) if n != "0" => format!("  pool_idle {n}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "Virtual {}  listen {}  scheduler {}  mode {}{}  {}",
            s.name,
            if listen.is_empty() { "-" } else { &listen },
            a("scheduler"),
            a("mode"),
            pool,
            if a("enabled") == "1" {
                "enabled"
            } else {
                "disabled"
            }
        );
        if let Some(st) = &s.stats {
            let _ = writeln!(out, "  stats {st}");
        }
        for sv in &s.servers {
            let _ = writeln!(
                out,
                "  -> server {:<16} {:<24} weight {:<5} {}",
                sv.name,
                if sv.address.is_empty() {
                    "-"
                } else {
                    &sv.address
                },
                sv.weight.map_or("-".into(), |w| w.to_string()),
                sv.state.as_deref().unwrap_or("-")
            );
            if let Some(st) = &sv.stats {
                let _ = writeln!(out, "     stats {st}");
            }
        }
        for r in &s.rules {
            let _ = writeln!(
                out,
                "  rule {:<16} match {} use {}",
                r.name,
                quote(&r.pattern),
                if r.target.is_empty() { "-" } else { &r.target }
            );
        }
        let _ = writeln!(out, "  default -> {}", a("default_target"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
# two services
virtual web {
    listen = 10.0.0.1:80;
    scheduler = wrr;
    server = a 10.0.0.2:80 weight 2;
    server = b [2001:db8::2]:8080 weight 1 state drain;
    rule = match "path_prefix=/static" use server a,b;
    rule = 050-api match "host=api.example header=\"X-A:a b\"" use server b;
    default_target = a;
    enabled = 1;
}
virtual empty { }
"#;

    #[test]
    fn parses_the_example() {
        let svcs = parse(EXAMPLE).unwrap();
        assert_eq!(svcs.len(), 2);
        let web = &svcs[0];
        assert_eq!(web.name, "web");
        assert_eq!(
            web.attrs,
            [
                ("listen".to_string(), "10.0.0.1:80".to_string()),
                ("scheduler".into(), "wrr".into()),
                ("default_target".into(), "a".into()),
                ("enabled".into(), "1".into()),
            ]
        );
        assert_eq!(
            web.servers[1],
            Server {
                name: "b".into(),
                address: "[2001:db8::2]:8080".into(),
                weight: Some(1),
                state: Some("drain".into()),
                stats: None
            }
        );
        assert_eq!(web.rules[0].name, "010-rule1");
        assert_eq!(web.rules[0].pattern, "path_prefix=/static");
        assert_eq!(web.rules[0].target, "a,b");
        assert_eq!(web.rules[1].name, "050-api");
        assert_eq!(web.rules[1].pattern, r#"host=api.example header="X-A:a b""#);
        assert_eq!(
            svcs[1],
            Service {
                name: "empty".into(),
                ..Service::default()
            }
        );
    }

    #[test]
    fn round_trips() {
        let svcs = parse(EXAMPLE).unwrap();
        let text = format(&svcs);
        assert_eq!(parse(&text).unwrap(), svcs);
        assert_eq!(format(&parse(&text).unwrap()), text);
        assert!(
            text.contains("    rule = 010-rule1 match \"path_prefix=/static\" use server a,b;\n")
        );
        assert!(text.contains(r#"match "host=api.example header=\"X-A:a b\"" use server b;"#));
        // Empty values and odd characters survive as strings.
        let mut s = Service {
            name: "x".into(),
            ..Service::default()
        };
        s.set_attr("cookie", "");
        s.set_attr("listen", "");
        let t = format(&[s.clone()]);
        assert!(t.contains("listen = \"\";\n    cookie = \"\";"), "{t}");
        assert_eq!(parse(&t).unwrap(), [s]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = |t: &str| parse(t).unwrap_err();
        assert_eq!(e("virtual a {\n listen 1.2.3.4:80; }").line, 2);
        assert!(e("virtual a {\n listen 1.2.3.4:80; }")
            .msg
            .contains("expected '='"));
        assert!(e("virtual a { nosuch = 1; }")
            .msg
            .contains("unknown key 'nosuch'"));
        assert!(e("virtual a { listen = 1; listen = 2; }")
            .msg
            .contains("set twice"));
        assert!(e("virtual a {} virtual a {}").msg.contains("defined twice"));
        assert!(e("virtual a { server = s 1.2.3.4:80 weight 70000; }")
            .msg
            .contains("out of range"));
        assert!(e("virtual a { server = s 1.2.3.4:80 state asleep; }")
            .msg
            .contains("unknown state"));
        assert!(e("virtual a { server = s 1.2.3.4:80 heavy; }")
            .msg
            .contains("expected 'weight', 'state' or ';'"));
        assert!(e("virtual a { rule = match path=/x use server s; }")
            .msg
            .contains("quoted pattern"));
        assert!(
            e("virtual a { rule = static match \"path=/x\" use server s; }")
                .msg
                .contains("rule name 'static'")
        );
        assert!(e("virtual a { rule = match \"path=/x\" use server s,,t; }")
            .msg
            .contains("server names"));
        assert!(e("virtual a { rule = match \"path=/x\" use s; }")
            .msg
            .contains("expected 'server'"));
        assert!(e("virtual .a { }").msg.contains("bad service name"));
        assert!(e("virtual a { listen = \"1.2.3.4:80; }")
            .msg
            .contains("unterminated"));
        assert!(e("virtual a { listen = 1.2.3.4:80;")
            .msg
            .contains("end of file"));
        assert_eq!(e("virtual a {\n\n\n server = x;\n}").line, 4);
    }

    #[test]
    fn pool_idle() {
        let text = "virtual p { enabled = 1; pool_idle = 32; xff = 1; max_header_bytes = 512; }";
        let svcs = parse(text).unwrap();
        assert_eq!(svcs[0].attr("pool_idle"), Some("32"));
        let saved = format(&svcs);
        // Saved in attribute order: after max_header_bytes, before xff, enabled last.
        assert!(
            saved.contains("max_header_bytes = 512;\n    pool_idle = 32;\n    xff = 1;\n"),
            "{saved}"
        );
        assert_eq!(parse(&saved).unwrap(), svcs);
        assert!(to_json(&svcs).contains("\"pool_idle\":32,"));
        assert!(to_text(&svcs)
            .starts_with("Virtual p  listen -  scheduler   mode   pool_idle 32  enabled\n"));
        let mut off = svcs[0].clone();
        off.set_attr("pool_idle", "0");
        assert!(!to_text(&[off]).contains("pool_idle"));
    }

    #[test]
    fn max_mem_kib() {
        let text = "virtual m { max_header_bytes = 512; max_mem_kib = 1024; max_conns = 7; }";
        let svcs = parse(text).unwrap();
        assert_eq!(svcs[0].attr("max_mem_kib"), Some("1024"));
        let saved = format(&svcs);
        // Saved in attribute order: after max_conns, before max_header_bytes.
        assert!(
            saved
                .contains("max_conns = 7;\n    max_mem_kib = 1024;\n    max_header_bytes = 512;\n"),
            "{saved}"
        );
        assert_eq!(parse(&saved).unwrap(), svcs);
        assert!(to_json(&svcs).contains("\"max_conns\":7,\"max_mem_kib\":1024,"));
        assert!(parse("virtual m { max_mem_kib = 1; max_mem_kib = 2; }").is_err());
    }

    #[test]
    fn json_and_text() {
        let mut svcs = parse(EXAMPLE).unwrap();
        svcs[0].set_attr("max_conns", "0");
        svcs[0].stats = Some(StatsLine {
            values: [1, 2, 3, 4, 5, 6, 7, 8],
        });
        let j = to_json(&svcs);
        assert!(j.starts_with("{\"services\":[{\"name\":\"web\",\"listen\":\"10.0.0.1:80\""));
        assert!(j.contains("\"max_conns\":0"));
        assert!(j.contains("\"enabled\":true"));
        assert!(j.contains(
            "\"stats\":{\"active_conns\":1,\"total_conns\":2,\"requests\":3,\"bytes_in\":4,\"bytes_out\":5,\"errors\":6,\"refused\":7,\"mem_bytes\":8}"
        ));
        assert!(j.contains(r#""match":"host=api.example header=\"X-A:a b\"","target":["b"]"#));
        assert!(j.contains(r#"{"name":"empty","servers":[],"rules":[]}"#));
        assert_eq!(json_str("a\u{1}\n"), "\"a\\u0001\\u000a\"");
        let t = to_text(&svcs);
        assert!(t.starts_with("Virtual web  listen 10.0.0.1:80  scheduler wrr  mode   enabled\n"));
        assert!(t.contains("  rule 050-api"));
        assert!(t.contains("  default -> a\n"));
    }
}
