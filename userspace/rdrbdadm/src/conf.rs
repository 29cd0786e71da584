// SPDX-License-Identifier: GPL-2.0

//! The subset of DRBD 8.4's drbd.conf that `rdrbdadm` reads.
//!
//! ```text
//! global { usage-count no; }                  # ignored
//! common { net { protocol C; } }              # defaults for every resource
//! resource r0 {
//!   device /dev/rdrbd0;                       # or: device minor 0;
//!   disk /dev/vdb;
//!   meta-disk internal;                       # only internal metadata is supported
//!   net { protocol C; ... }                   # options kept as key/value pairs
//!   disk { resync-rate 100M; ... }
//!   on alpha { address 10.0.0.1:7789; }       # per host: address, device, disk, meta-disk
//!   on beta  { address ipv4 10.0.0.2:7789; }
//! }
//! ```
//!
//! Errors name the file and line: `drbd.conf:7: unknown keyword 'protocl'`.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// A configuration error, located at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name as given.
    pub file: String,
    /// 1-based line, 0 when the error concerns the whole file.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.msg)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.msg)
        }
    }
}

/// Options of a `net` or `disk` section, in file order (later ones win).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options(pub Vec<(String, String)>);

impl Options {
    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Per-host or per-resource storage settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Storage {
    /// Minor number from `device /dev/rdrbdN` or `device minor N`.
    pub minor: Option<u32>,
    /// Lower device.
    pub disk: Option<String>,
}

/// An `on HOST { ... }` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Host name.
    pub name: String,
    /// Replication address.
    pub address: Option<SocketAddr>,
    /// Overrides of the resource's storage settings.
    pub storage: Storage,
    /// Line of the section.
    pub line: usize,
}

/// A `resource NAME { ... }` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Resource name.
    pub name: String,
    /// Storage settings for every host.
    pub storage: Storage,
    /// `net` options, after the `common` ones.
    pub net: Options,
    /// `disk` options, after the `common` ones.
    pub disk_opts: Options,
    /// `handlers` (`fence-peer`, `unfence-peer`), after the `common` ones.
    pub handlers: Options,
    /// The hosts.
    pub hosts: Vec<Host>,
    /// Line of the section.
    pub line: usize,
}

impl Resource {
    /// The `on NAME` section.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The minor `host` uses.
    pub fn minor_for(&self, host: &Host) -> Result<u32, String> {
        host.storage.minor.or(self.storage.minor).ok_or_else(|| {
            format!(
                "resource {}: no device for host {} (line {})",
                self.name, host.name, host.line
            )
        })
    }

    /// The lower disk `host` uses.
    pub fn disk_for(&self, host: &Host) -> Result<String, String> {
        host.storage
            .disk
            .clone()
            .or_else(|| self.storage.disk.clone())
            .ok_or_else(|| {
                format!(
                    "resource {}: no disk for host {} (line {})",
                    self.name, host.name, host.line
                )
            })
    }
}

/// A parsed configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The resources, in file order.
    pub resources: Vec<Resource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Semi,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    file: String,
}

fn tokenize(text: &str, file: &str) -> Result<Vec<(Tok, usize)>, ConfigError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut it = text.chars().peekable();
    let err = |line, msg: &str| ConfigError {
        file: file.to_string(),
        line,
        msg: msg.to_string(),
    };
    while let Some(c) = it.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in it.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '{' => out.push((Tok::Open, line)),
            '}' => out.push((Tok::Close, line)),
            ';' => out.push((Tok::Semi, line)),
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match it.next() {
                        None => return Err(err(start, "unterminated string")),
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some('n') => s.push('\n'),
                            Some(c) => s.push(c),
                            None => return Err(err(start, "unterminated string")),
                        },
                        Some('\n') => {
                            line += 1;
                            s.push('\n');
                        }
                        Some(c) => s.push(c),
                    }
                }
                out.push((Tok::Word(s), start));
            }
            c => {
                let mut s = String::from(c);
                while let Some(&n) = it.peek() {
                    if n.is_whitespace() || "{};#\"".contains(n) {
                        break;
                    }
                    s.push(n);
                    it.next();
                }
                out.push((Tok::Word(s), line));
            }
        }
    }
    Ok(out)
}

impl Parser {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |t| t.1)
    }

    fn err(&self, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line(),
            msg: msg.into(),
        }
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.0.clone());
        self.pos += 1;
        t
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    fn word(&mut self, what: &str) -> Result<String, ConfigError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            _ => {
                self.pos -= 1;
                Err(self.err(format!("expected {what}")))
            }
        }
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), ConfigError> {
        if self.next() == Some(t) {
            Ok(())
        } else {
            self.pos -= 1;
            Err(self.err(format!("expected '{what}'")))
        }
    }

    /// Words up to `;`.
    fn values(&mut self) -> Result<Vec<String>, ConfigError> {
        let mut v = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Word(w)) => v.push(w),
                Some(Tok::Semi) => return Ok(v),
                _ => {
                    self.pos -= 1;
                    return Err(self.err("missing ';'"));
                }
            }
        }
    }

    /// `{ key value...; ... }` of a net/disk section.
    fn options(&mut self, into: &mut Options, section: &str) -> Result<(), ConfigError> {
        self.expect(Tok::Open, "{")?;
        loop {
            match self.peek() {
                Some(Tok::Close) => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(self.err(format!("unterminated {section} section"))),
                _ => {}
            }
            let key = self.word("an option name")?;
            if !KNOWN.iter().any(|(s, k)| *s == section && *k == key) {
                self.pos -= 1;
                return Err(self.err(format!("unknown keyword '{key}' in {section} section")));
            }
            let vals = self.values()?;
            if vals.len() != 1 {
                self.pos -= 1;
                return Err(self.err(format!("{key} takes exactly one value")));
            }
            if key == "protocol" && !matches!(vals[0].as_str(), "A" | "B" | "C") {
                self.pos -= 1;
                return Err(self.err(format!("protocol must be A, B or C, not '{}'", vals[0])));
            }
            if key == "fencing" && vals[0] == "resource-and-stonith" {
                self.pos -= 1;
                return Err(self.err(
                    "fencing resource-and-stonith is not supported: drbd_rs cannot freeze I/O \
                     while fence-peer runs (use resource-only)",
                ));
            }
            if key == "allow-two-primaries" && vals[0] != "no" {
                self.pos -= 1;
                return Err(self.err(format!(
                    "allow-two-primaries '{}' is not supported: drbd_rs has no dual-primary \
                     mode (use 'no' or leave it out)",
                    vals[0]
                )));
            }
            into.0.push((key, vals[0].clone()));
        }
    }

    /// A storage keyword (device, disk, meta-disk) whose name was just read.
    fn storage(&mut self, key: &str, into: &mut Storage) -> Result<(), ConfigError> {
        let vals = self.values()?;
        self.pos -= 1; // Point errors at the statement.
        let r = match (key, vals.as_slice()) {
            ("device", [path]) => match path.strip_prefix("/dev/rdrbd").map(str::parse::<u32>) {
                Some(Ok(m)) => {
                    into.minor = Some(m);
                    Ok(())
                }
                _ => Err(self.err(format!("device '{path}' is not /dev/rdrbdN"))),
            },
            ("device", [m, n]) if m == "minor" => match n.parse::<u32>() {
                Ok(m) => {
                    into.minor = Some(m);
                    Ok(())
                }
                Err(_) => Err(self.err(format!("bad minor number '{n}'"))),
            },
            ("device", [path, m, n]) if m == "minor" => {
                match (path.strip_prefix("/dev/rdrbd"), n.parse::<u32>()) {
                    (Some(_), Ok(m)) => {
                        into.minor = Some(m);
                        Ok(())
                    }
                    _ => Err(self.err("bad device statement")),
                }
            }
            ("disk", [path]) => {
                into.disk = Some(path.clone());
                Ok(())
            }
            ("meta-disk", [v]) if v == "internal" => Ok(()),
            ("meta-disk", [v, ..]) => {
                Err(self.err(format!("meta-disk '{v}' is not supported (only internal)")))
            }
            _ => Err(self.err(format!("bad {key} statement (missing ';'?)"))),
        };
        self.pos += 1;
        r
    }

    fn host(&mut self, res: &mut Resource) -> Result<(), ConfigError> {
        let line = self.line();
        let name = self.word("a host name")?;
        if res.hosts.iter().any(|h| h.name == name) {
            self.pos -= 1;
            return Err(self.err(format!("host '{name}' appears twice")));
        }
        self.expect(Tok::Open, "{")?;
        let mut host = Host {
            name,
            address: None,
            storage: Storage::default(),
            line,
        };
        while let Some(key) = self.section_key("unterminated 'on' section")? {
            match key.as_str() {
                "address" => {
                    let vals = self.values()?;
                    let a = match vals.as_slice() {
                        [a] => a,
                        [fam, a] if fam == "ipv4" || fam == "ipv6" => a,
                        _ => {
                            self.pos -= 1;
                            return Err(self.err("bad address statement"));
                        }
                    };
                    host.address = Some(a.parse().map_err(|_| {
                        self.pos -= 1;
                        self.err(format!("bad address '{a}' (want IP:PORT)"))
                    })?);
                }
                "device" | "disk" | "meta-disk" => self.storage(&key, &mut host.storage)?,
                _ => {
                    self.pos -= 1;
                    return Err(self.err(format!("unknown keyword '{key}' in 'on' section")));
                }
            }
        }
        if host.address.is_none() {
            return Err(ConfigError {
                file: self.file.clone(),
                line,
                msg: format!("host '{}' has no address", host.name),
            });
        }
        res.hosts.push(host);
        Ok(())
    }

    /// The next key of a `{ ... }` section, `None` at its closing brace; anything else is an
    /// error `msg` pointing at that token.
    fn section_key(&mut self, msg: &str) -> Result<Option<String>, ConfigError> {
        match self.next() {
            Some(Tok::Close) => Ok(None),
            Some(Tok::Word(w)) => Ok(Some(w)),
            _ => {
                self.pos -= 1;
                Err(self.err(msg))
            }
        }
    }

    fn resource(&mut self, common: &Common) -> Result<Resource, ConfigError> {
        let line = self.line();
        let name = self.word("a resource name")?;
        if !hark_proto::drbd_genl::valid_resource_name(name.as_bytes()) {
            return Err(self.err(format!(
                "invalid resource name {name:?}: 1..63 printable ASCII characters, no '/'"
            )));
        }
        self.expect(Tok::Open, "{")?;
        let mut res = Resource {
            name,
            storage: Storage::default(),
            net: common.0.clone(),
            disk_opts: common.1.clone(),
            handlers: common.2.clone(),
            hosts: Vec::new(),
            line,
        };
        while let Some(key) = self.section_key("unterminated resource section")? {
            match key.as_str() {
                "net" => self.options(&mut res.net, "net")?,
                "handlers" => self.options(&mut res.handlers, "handlers")?,
                "disk" if self.peek() == Some(&Tok::Open) => {
                    self.options(&mut res.disk_opts, "disk")?
                }
                "device" | "disk" | "meta-disk" => self.storage(&key, &mut res.storage)?,
                "on" => self.host(&mut res)?,
                _ => {
                    self.pos -= 1;
                    return Err(self.err(format!("unknown keyword '{key}' in resource section")));
                }
            }
        }
        // One host: a resource without a peer (`up` does not connect); two: replicated.
        if !(1..=2).contains(&res.hosts.len()) {
            return Err(ConfigError {
                file: self.file.clone(),
                line,
                msg: format!(
                    "resource '{}' needs one or two 'on' sections, has {}",
                    res.name,
                    res.hosts.len()
                ),
            });
        }
        Ok(res)
    }

    fn skip_section(&mut self) -> Result<(), ConfigError> {
        self.expect(Tok::Open, "{")?;
        let mut depth = 1;
        while depth > 0 {
            match self.next() {
                Some(Tok::Open) => depth += 1,
                Some(Tok::Close) => depth -= 1,
                Some(_) => {}
                None => return Err(self.err("unterminated section")),
            }
        }
        Ok(())
    }
}

/// Option names accepted per section.
const KNOWN: &[(&str, &str)] = &[
    ("net", "protocol"),
    ("net", "timeout"),
    ("net", "connect-int"),
    ("net", "ping-int"),
    ("net", "ping-timeout"),
    ("net", "ko-count"),
    ("net", "max-buffers"),
    ("net", "after-sb-0pri"),
    ("net", "after-sb-1pri"),
    ("net", "after-sb-2pri"),
    ("net", "verify-alg"),
    ("net", "csums-alg"),
    ("net", "shared-secret"),
    ("net", "cram-hmac-alg"),
    ("net", "allow-two-primaries"),
    ("disk", "resync-rate"),
    ("disk", "c-max-rate"),
    ("disk", "c-plan-ahead"),
    ("disk", "al-extents"),
    // DRBD 8.4 keeps `fencing` in the disk section, DRBD 9 in net: both are accepted.
    ("disk", "fencing"),
    ("net", "fencing"),
    ("handlers", "fence-peer"),
    ("handlers", "unfence-peer"),
];

/// The `common` section: net, disk and handlers defaults.
type Common = (Options, Options, Options);

impl Config {
    /// Parses `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut p = Parser {
            toks: tokenize(text, file)?,
            pos: 0,
            file: file.to_string(),
        };
        let mut common: Common = Default::default();
        let mut cfg = Config::default();
        while let Some(t) = p.next() {
            let Tok::Word(w) = t else {
                p.pos -= 1;
                return Err(p.err("expected 'global', 'common' or 'resource'"));
            };
            match w.as_str() {
                "global" => p.skip_section()?,
                "common" => {
                    p.expect(Tok::Open, "{")?;
                    loop {
                        match p.next() {
                            Some(Tok::Close) => break,
                            Some(Tok::Word(k)) if k == "net" => p.options(&mut common.0, "net")?,
                            Some(Tok::Word(k)) if k == "disk" => {
                                p.options(&mut common.1, "disk")?
                            }
                            Some(Tok::Word(k)) if k == "handlers" => {
                                p.options(&mut common.2, "handlers")?
                            }
                            _ => {
                                p.pos -= 1;
                                return Err(
                                    p.err("only net, disk and handlers sections may be in common")
                                );
                            }
                        }
                    }
                }
                "resource" => {
                    let r = p.resource(&common)?;
                    if cfg.resources.iter().any(|o| o.name == r.name) {
                        return Err(ConfigError {
                            file: p.file.clone(),
                            line: r.line,
                            msg: format!("resource '{}' defined twice", r.name),
                        });
                    }
                    cfg.resources.push(r);
                }
                _ => {
                    p.pos -= 1;
                    return Err(p.err(format!("unknown keyword '{w}' at top level")));
                }
            }
        }
        Ok(cfg)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            msg: e.to_string(),
        })?;
        Config::parse(&text, &file)
    }

    /// The resource called `name`.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
global { usage-count no; }
common { net { protocol B; } }
resource r0 {
  device /dev/rdrbd0;
  disk /dev/vda;
  meta-disk internal;
  net { protocol C; shared-secret "s e\"cret"; }
  disk { resync-rate 100M; }
  on alpha { address 10.77.0.1:7789; }
  on beta { address ipv4 10.77.0.2:7789; disk /dev/vdb; device minor 3; }
}
"#;

    #[test]
    fn parses_and_inherits() {
        let c = Config::parse(GOOD, "t.conf").unwrap();
        let r = c.resource("r0").unwrap();
        assert_eq!(r.net.get("protocol"), Some("C"));
        assert_eq!(r.net.get("shared-secret"), Some("s e\"cret"));
        assert_eq!(r.disk_opts.get("resync-rate"), Some("100M"));
        let a = r.host("alpha").unwrap();
        let b = r.host("beta").unwrap();
        assert_eq!(r.minor_for(a), Ok(0));
        assert_eq!(r.disk_for(a).unwrap(), "/dev/vda");
        assert_eq!(r.minor_for(b), Ok(3));
        assert_eq!(r.disk_for(b).unwrap(), "/dev/vdb");
        assert_eq!(b.address.unwrap().to_string(), "10.77.0.2:7789");
    }

    fn err_of(text: &str) -> ConfigError {
        Config::parse(text, "t.conf").unwrap_err()
    }

    #[test]
    fn resource_names_are_checked() {
        let e = err_of("resource a/b { }");
        assert!(e.to_string().contains("invalid resource name"), "{e}");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn errors_name_the_line() {
        let bad_kw = GOOD.replace("protocol C;", "protocl C;");
        assert_eq!(
            err_of(&bad_kw).to_string(),
            "t.conf:8: unknown keyword 'protocl' in net section"
        );
        let meta = GOOD.replace("meta-disk internal;", "meta-disk flexible;");
        assert_eq!(err_of(&meta).line, 7);
        assert!(err_of(&meta).msg.contains("only internal"));
        let semi = GOOD.replace("disk /dev/vda;", "disk /dev/vda");
        assert_eq!(err_of(&semi).msg, "bad disk statement (missing ';'?)");
        assert_eq!(err_of("resource r0 { \"abc").msg, "unterminated string");
        let three_hosts = GOOD.replace(
            "on alpha { address 10.77.0.1:7789; }",
            "on alpha { address 10.77.0.1:7789; } on gamma { address 10.77.0.3:7789; }",
        );
        assert_eq!(err_of(&three_hosts).line, 4);
        let one_host = GOOD.replace("on alpha { address 10.77.0.1:7789; }", "");
        assert!(Config::parse(&one_host, "t.conf").is_ok());
        let addr = GOOD.replace("10.77.0.1:7789", "10.77.0.1");
        assert_eq!(err_of(&addr).line, 10);
        let proto = GOOD.replace("protocol C;", "protocol D;");
        assert!(err_of(&proto).msg.contains("A, B or C"));
        let twice = format!("{GOOD}{}", GOOD.replace("global { usage-count no; }", ""));
        assert!(err_of(&twice).msg.contains("defined twice"));
        assert!(err_of("resource r0 {").msg.contains("unterminated"));
        assert!(err_of("bogus;").msg.contains("unknown keyword"));
        let two = GOOD.replace("protocol C;", "protocol C; allow-two-primaries yes;");
        let e = err_of(&two);
        assert_eq!(e.line, 8);
        assert!(
            e.msg.contains("not supported: drbd_rs has no dual-primary"),
            "{e}"
        );
        let no = GOOD.replace("protocol C;", "protocol C; allow-two-primaries no;");
        assert!(Config::parse(&no, "t.conf").is_ok());
    }

    #[test]
    fn never_panics_on_mutations() {
        let base = GOOD.as_bytes();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut t = base.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % t.len().max(1);
                match next() % 3 {
                    0 if !t.is_empty() => {
                        t.remove(i);
                    }
                    1 => t.insert(i, b"{};\"# \nax/"[(next() % 10) as usize]),
                    _ if !t.is_empty() => t[i] = (next() % 128) as u8,
                    _ => {}
                }
            }
            let _ = Config::parse(&String::from_utf8_lossy(&t), "f");
        }
    }
}
