// SPDX-License-Identifier: GPL-2.0

//! Access to the `ktcpvs` configfs tree: directories, attributes, and the whole configuration
//! read back as a [`conf::Service`] list. Errors name the file and the kernel's errno.

use crate::conf::{self, SETTABLE};
use hark_proto::ktcpvs_cfs::{self, StatsLine, DIR_RULES, DIR_SERVERS};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An operation on the tree that failed.
#[derive(Debug)]
pub struct TreeError {
    /// What was done: `write weight=70000`, `mkdir`, ...
    pub op: String,
    pub path: PathBuf,
    pub err: io::Error,
}

/// The symbolic name of an errno the tree returns.
pub fn errno_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc_errno::EPERM) => "EPERM",
        Some(libc_errno::ENOENT) => "ENOENT",
        Some(libc_errno::ENOMEM) => "ENOMEM",
        Some(libc_errno::EACCES) => "EACCES",
        Some(libc_errno::EBUSY) => "EBUSY",
        Some(libc_errno::EEXIST) => "EEXIST",
        Some(libc_errno::EINVAL) => "EINVAL",
        Some(libc_errno::ENOSPC) => "ENOSPC",
        Some(libc_errno::ENOTEMPTY) => "ENOTEMPTY",
        _ => "error",
    }
}

/// Linux errno values (x86_64 and the other common ABIs).
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const ENOTEMPTY: i32 = 39;
}

impl std::fmt::Display for TreeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {} ({})",
            self.path.display(),
            self.op,
            errno_name(&self.err),
            self.err
        )?;
        if matches!(
            self.err.raw_os_error(),
            Some(libc_errno::EINVAL | libc_errno::EBUSY | libc_errno::ENOSPC)
        ) {
            f.write_str("; the kernel log (dmesg) says why")?;
        }
        Ok(())
    }
}

impl std::error::Error for TreeError {}

/// Result of tree operations.
pub type TResult<T> = Result<T, TreeError>;

/// The `ktcpvs` directory of a configfs mount (or of a directory imitating one).
pub struct Tree {
    pub root: PathBuf,
}

fn fail(op: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> TreeError {
    let (op, path) = (op.into(), path.to_path_buf());
    move |err| TreeError { op, path, err }
}

impl Tree {
    /// The tree under configfs mount point `mount`.
    pub fn new(mount: &Path) -> Tree {
        Tree {
            root: mount.join(ktcpvs_cfs::SUBSYS.to_str().expect("ASCII name")),
        }
    }

    pub fn service(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn server(&self, svc: &str, name: &str) -> PathBuf {
        self.root.join(svc).join(DIR_SERVERS).join(name)
    }

    pub fn rule(&self, svc: &str, name: &str) -> PathBuf {
        self.root.join(svc).join(DIR_RULES).join(name)
    }

    /// Reads an attribute without its trailing newline.
    pub fn read(&self, dir: &Path, attr: &str) -> TResult<String> {
        let p = dir.join(attr);
        let mut s = fs::read_to_string(&p).map_err(fail("read", &p))?;
        if s.ends_with('\n') {
            s.pop();
        }
        Ok(s)
    }

    /// Writes `value` and a newline to an attribute in one `write`.
    pub fn write(&self, dir: &Path, attr: &str, value: &str) -> TResult<()> {
        let p = dir.join(attr);
        let op = format!("write {attr}={value:?}");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .open(&p)
            .map_err(fail(op.clone(), &p))?;
        f.write_all(format!("{value}\n").as_bytes())
            .map_err(fail(op, &p))
    }

    pub fn mkdir(&self, p: &Path) -> TResult<()> {
        fs::create_dir(p).map_err(fail("mkdir", p))
    }

    pub fn rmdir(&self, p: &Path) -> TResult<()> {
        fs::remove_dir(p).map_err(fail("rmdir", p))
    }

    /// Names of the subdirectories of `p`, sorted.
    pub fn subdirs(&self, p: &Path) -> TResult<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).map_err(fail("list", p))? {
            let e = e.map_err(fail("list", p))?;
            if e.file_type().map_err(fail("list", p))?.is_dir() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    /// Reads a `stats` attribute.
    fn stats(&self, dir: &Path) -> TResult<StatsLine> {
        let line = self.read(dir, "stats")?;
        StatsLine::parse(line.as_bytes()).map_err(|e| TreeError {
            op: format!("parse stats {line:?}"),
            path: dir.join("stats"),
            err: io::Error::new(io::ErrorKind::InvalidData, e.message()),
        })
    }

    /// Reads one service, with its servers and rules (rules in the order the kernel applies
    /// them).
    pub fn read_service(&self, name: &str, stats: bool) -> TResult<conf::Service> {
        let dir = self.service(name);
        let mut svc = conf::Service {
            name: name.to_string(),
            ..conf::Service::default()
        };
        for a in SETTABLE {
            let v = self.read(&dir, a)?;
            svc.set_attr(a, &v);
        }
        if stats {
            svc.stats = Some(self.stats(&dir)?);
        }
        let sdir = dir.join(DIR_SERVERS);
        if sdir.is_dir() {
            for s in self.subdirs(&sdir)? {
                let p = sdir.join(&s);
                let weight = self.read(&p, "weight")?;
                svc.servers.push(conf::Server {
                    address: self.read(&p, "address")?,
                    weight: Some(ktcpvs_cfs::parse_weight(weight.as_bytes()).map_err(|e| {
                        TreeError {
                            op: format!("parse weight {weight:?}"),
                            path: p.join("weight"),
                            err: io::Error::new(io::ErrorKind::InvalidData, e.message()),
                        }
                    })?),
                    state: Some(self.read(&p, "state")?),
                    stats: if stats { Some(self.stats(&p)?) } else { None },
                    name: s,
                });
            }
        }
        let rdir = dir.join(DIR_RULES);
        if rdir.is_dir() {
            let mut names = self.subdirs(&rdir)?;
            names.sort_by_key(|n| (ktcpvs_cfs::parse_rule_name(n.as_bytes()).ok(), n.clone()));
            for r in names {
                let p = rdir.join(&r);
                svc.rules.push(conf::Rule {
                    pattern: self.read(&p, "pattern")?,
                    target: self.read(&p, "target")?,
                    name: r,
                });
            }
        }
        Ok(svc)
    }

    /// Reads every service (sorted by name).
    pub fn read_all(&self, stats: bool) -> TResult<Vec<conf::Service>> {
        self.subdirs(&self.root)?
            .iter()
            .map(|n| self.read_service(n, stats))
            .collect()
    }

    /// Makes a service directory with its `servers/` and `rules/`; on failure removes what it
    /// made.
    pub fn make_service(&self, name: &str) -> TResult<()> {
        let dir = self.service(name);
        self.mkdir(&dir)?;
        let sub = self
            .mkdir(&dir.join(DIR_SERVERS))
            .and_then(|()| self.mkdir(&dir.join(DIR_RULES)));
        if sub.is_err() {
            let _ = self.remove_service(name);
        }
        sub
    }

    /// Removes a service: its rules, its servers, `rules/`, `servers/`, then itself (configfs
    /// removes only empty directories).
    pub fn remove_service(&self, name: &str) -> TResult<()> {
        let dir = self.service(name);
        for sub in [DIR_RULES, DIR_SERVERS] {
            let p = dir.join(sub);
            if p.is_dir() {
                for child in self.subdirs(&p)? {
                    self.rmdir(&p.join(child))?;
                }
                self.rmdir(&p)?;
            }
        }
        self.rmdir(&dir)
    }

    /// Applies `svc` as a new service: attributes, servers, rules, then `default_target` and
    /// `enabled`. On failure the service is removed again.
    pub fn apply(&self, svc: &conf::Service) -> TResult<()> {
        self.make_service(&svc.name)?;
        let r = self.apply_inner(svc);
        if r.is_err() {
            let _ = self.remove_service(&svc.name);
        }
        r
    }

    fn apply_inner(&self, svc: &conf::Service) -> TResult<()> {
        let dir = self.service(&svc.name);
        let late = ["default_target", "enabled"];
        for (k, v) in svc
            .attrs
            .iter()
            .filter(|(k, _)| !late.contains(&k.as_str()))
        {
            self.write(&dir, k, v)?;
        }
        for s in &svc.servers {
            self.add_server(&svc.name, s)?;
        }
        for r in &svc.rules {
            self.add_rule(&svc.name, r)?;
        }
        for k in late {
            if let Some(v) = svc.attr(k) {
                self.write(&dir, k, v)?;
            }
        }
        Ok(())
    }

    /// Makes a server and writes its attributes; on failure removes it again.
    pub fn add_server(&self, svc: &str, s: &conf::Server) -> TResult<()> {
        let p = self.server(svc, &s.name);
        self.mkdir(&p)?;
        let r = self.edit_server(&p, Some(&s.address), s.weight, s.state.as_deref());
        if r.is_err() {
            let _ = self.rmdir(&p);
        }
        r
    }

    /// Writes the given server attributes.
    pub fn edit_server(
        &self,
        p: &Path,
        address: Option<&str>,
        weight: Option<u16>,
        state: Option<&str>,
    ) -> TResult<()> {
        if let Some(a) = address.filter(|a| !a.is_empty()) {
            self.write(p, "address", a)?;
        }
        if let Some(w) = weight {
            self.write(p, "weight", &w.to_string())?;
        }
        if let Some(s) = state {
            self.write(p, "state", s)?;
        }
        Ok(())
    }

    /// Makes a rule and writes its pattern and target; on failure removes it again.
    pub fn add_rule(&self, svc: &str, r: &conf::Rule) -> TResult<()> {
        let p = self.rule(svc, &r.name);
        self.mkdir(&p)?;
        let res = self.edit_rule(&p, Some(&r.pattern), Some(&r.target));
        if res.is_err() {
            let _ = self.rmdir(&p);
        }
        res
    }

    /// Writes the given rule attributes (an empty pattern is left unset).
    pub fn edit_rule(&self, p: &Path, pattern: Option<&str>, target: Option<&str>) -> TResult<()> {
        if let Some(m) = pattern.filter(|m| !m.is_empty()) {
            self.write(p, "pattern", m)?;
        }
        if let Some(t) = target {
            self.write(p, "target", t)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rtcpvsadm-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(p.join("ktcpvs")).unwrap();
        p
    }

    /// A directory tree standing in for configfs: `apply` then `read_all` gives the same
    /// configuration back, rules in (order, name) order.
    #[test]
    fn apply_and_read_back() {
        let mount = tmp("apply");
        let tree = Tree::new(&mount);
        let mut svcs = conf::parse(
            r#"virtual web {
                listen = 10.0.0.1:80; scheduler = wrr; mode = http;
                client_header_timeout_ms = 10000; idle_timeout_ms = 60000;
                connect_timeout_ms = 3000; max_conns = 0; max_mem_kib = 4096; max_header_bytes = 8192;
                max_fails = 1; fail_timeout_ms = 10000; pool_idle = 4; xff = 0; cookie = "";
                default_target = "*"; servers_from = "fwmark 100"; enabled = 1;
                server = a 10.0.0.2:80 weight 2 state up;
                server = b 10.0.0.3:80 weight 1 state drain;
                rule = 200-z match "path=/z" use server b;
                rule = 100-y match "path=/y" use server a,b;
            }"#,
        )
        .unwrap();
        tree.apply(&svcs[0]).unwrap();
        let back = tree.read_all(false).unwrap();
        svcs[0].rules.reverse();
        assert_eq!(back, svcs);
        assert_eq!(conf::format(&back), conf::format(&svcs));
        // A failing step reports the operation and the path.
        let mut bad = svcs[0].clone();
        bad.name = "bad".into();
        bad.servers[0].name = "a/b".into();
        let e = tree.apply(&bad).unwrap_err();
        assert_eq!(e.op, "mkdir");
        assert_eq!(e.path, tree.server("bad", "a/b"));
        fs::remove_dir_all(&mount).unwrap();
    }

    #[test]
    fn error_text() {
        let e = TreeError {
            op: "write weight=\"70000\"".into(),
            path: "/k/web/servers/a/weight".into(),
            err: io::Error::from_raw_os_error(22),
        };
        let t = e.to_string();
        assert!(
            t.starts_with(
                "/k/web/servers/a/weight: write weight=\"70000\": EINVAL (Invalid argument"
            ),
            "{t}"
        );
        assert!(t.ends_with("; the kernel log (dmesg) says why"));
        let e = TreeError {
            op: "rmdir".into(),
            path: "/k/web".into(),
            err: io::Error::from_raw_os_error(39),
        };
        assert!(e.to_string().contains("ENOTEMPTY"));
        assert!(!e.to_string().contains("dmesg"));
    }
}
