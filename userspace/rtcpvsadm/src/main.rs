// SPDX-License-Identifier: GPL-2.0

//! `rtcpvsadm`: administration of `ktcpvs_rs` virtual services through configfs, in the manner
//! of KTCPVS's `tcpvsadm`. Everything goes through the `ktcpvs` configfs tree (see
//! `Documentation/ktcpvs-config.md`); the kernel validates every value and logs why it refuses
//! one, and this tool reports which file failed with which errno.

mod follow;
#[cfg(test)]
#[path = "../../man_check.rs"]
mod man_check;
mod tree;

use clap::{Args, Parser, Subcommand};
use hark_proto::ktcpvs_cfs;
use rtcpvsadm::conf;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tree::Tree;

#[derive(Parser)]
#[command(
    name = "rtcpvsadm",
    version,
    about = "Administer hark's ktcpvs_rs layer-7 switch"
)]
struct Cli {
    /// Where configfs is mounted.
    #[arg(long, default_value = ktcpvs_cfs::CONFIGFS_MOUNT)]
    configfs: PathBuf,
    #[command(subcommand)]
    cmd: Command,
}

/// Service settings (each written to the attribute of the same name).
#[derive(Args, Default)]
struct ServiceOpts {
    /// Scheduler: rr, wrr, lc, wlc, sh, uri-hash.
    #[arg(long)]
    scheduler: Option<String>,
    /// http (read the request, apply rules) or tcp (relay bytes).
    #[arg(long)]
    mode: Option<String>,
    #[arg(long)]
    client_header_timeout_ms: Option<String>,
    #[arg(long)]
    idle_timeout_ms: Option<String>,
    #[arg(long)]
    connect_timeout_ms: Option<String>,
    /// Most client connections at once (0 = no limit).
    #[arg(long)]
    max_conns: Option<String>,
    /// Memory (KiB) the service's client connections may hold in the module (state, head and
    /// relay buffers); above it connections and requests are refused.
    #[arg(long)]
    max_mem_kib: Option<String>,
    #[arg(long)]
    max_header_bytes: Option<String>,
    /// Failures of a server within --fail-timeout-ms that leave it out of new choices for
    /// --fail-timeout-ms (0 = never).
    #[arg(long)]
    max_fails: Option<String>,
    #[arg(long)]
    fail_timeout_ms: Option<String>,
    /// Idle server connections kept per server for later requests (0 = none: one server
    /// connection per request).
    #[arg(long)]
    pool_idle: Option<String>,
    /// Add X-Forwarded-For (0 or 1).
    #[arg(long)]
    xff: Option<String>,
    /// Persistence cookie name ("" = none).
    #[arg(long)]
    cookie: Option<String>,
    /// Servers for requests no rule matches: names separated by commas, or * for all.
    #[arg(long)]
    default_target: Option<String>,
    /// IPVS service whose destinations `follow-ipvs` copies into the servers: "fwmark N",
    /// "tcp ADDR:PORT", or "" for none.
    #[arg(long)]
    servers_from: Option<String>,
}

impl ServiceOpts {
    /// The given settings as (attribute, value), in attribute order.
    fn pairs(&self, listen: Option<&String>) -> Vec<(&'static str, String)> {
        let all = [
            ("listen", listen),
            ("scheduler", self.scheduler.as_ref()),
            ("mode", self.mode.as_ref()),
            (
                "client_header_timeout_ms",
                self.client_header_timeout_ms.as_ref(),
            ),
            ("idle_timeout_ms", self.idle_timeout_ms.as_ref()),
            ("connect_timeout_ms", self.connect_timeout_ms.as_ref()),
            ("max_conns", self.max_conns.as_ref()),
            ("max_mem_kib", self.max_mem_kib.as_ref()),
            ("max_header_bytes", self.max_header_bytes.as_ref()),
            ("max_fails", self.max_fails.as_ref()),
            ("fail_timeout_ms", self.fail_timeout_ms.as_ref()),
            ("pool_idle", self.pool_idle.as_ref()),
            ("xff", self.xff.as_ref()),
            ("cookie", self.cookie.as_ref()),
            ("default_target", self.default_target.as_ref()),
            ("servers_from", self.servers_from.as_ref()),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.clone())))
            .collect()
    }
}

#[derive(Subcommand)]
enum Command {
    /// Report whether the ktcpvs configfs tree is present (exit 0 if it is, 3 if not).
    Probe,
    /// Create a virtual service (disabled; `start` enables it).
    AddService {
        name: String,
        /// ADDR:PORT to listen on (1.2.3.4:80, [::1]:80, 0.0.0.0:80).
        #[arg(long)]
        listen: String,
        #[command(flatten)]
        opts: ServiceOpts,
    },
    /// Change settings of a virtual service.
    EditService {
        name: String,
        #[arg(long)]
        listen: Option<String>,
        #[command(flatten)]
        opts: ServiceOpts,
    },
    /// Delete a virtual service with its rules and servers.
    DeleteService { name: String },
    /// Add a real server to a service.
    AddServer {
        service: String,
        name: String,
        /// ADDR:PORT of the server.
        address: String,
        /// 0..65535 (0 = no new requests).
        #[arg(long)]
        weight: Option<u16>,
        /// up, down or drain.
        #[arg(long)]
        state: Option<String>,
    },
    /// Change a real server.
    EditServer {
        service: String,
        name: String,
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        weight: Option<u16>,
        #[arg(long)]
        state: Option<String>,
    },
    /// Delete a real server (refused while rules or default_target name it, unless --force).
    DeleteServer {
        service: String,
        name: String,
        /// Delete even if targets name it (the kernel takes it out of them).
        #[arg(long)]
        force: bool,
    },
    /// Add a content rule; NAME is <order>-<label>, rules apply in ascending order.
    AddRule {
        service: String,
        name: String,
        /// Matchers, e.g. 'path_prefix=/static/ method=GET'.
        #[arg(long = "match")]
        pattern: String,
        /// Server names separated by commas.
        #[arg(long)]
        target: String,
    },
    /// Change a content rule.
    EditRule {
        service: String,
        name: String,
        #[arg(long = "match")]
        pattern: Option<String>,
        #[arg(long)]
        target: Option<String>,
    },
    /// Delete a content rule.
    DeleteRule { service: String, name: String },
    /// Enable a service (it needs a listen address).
    Start { service: String },
    /// Disable a service.
    Stop { service: String },
    /// Show services, servers and rules.
    List {
        /// Only this service.
        service: Option<String>,
        /// Numeric output (accepted for tcpvsadm compatibility: addresses are always numeric).
        #[arg(short = 'n', long)]
        numeric: bool,
        /// Include the counters.
        #[arg(long)]
        stats: bool,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Create the services of a configuration file ("-" = standard input).
    Load { file: PathBuf },
    /// Print every service as a configuration file (`save | load` recreates it).
    Save,
    /// Check a configuration file and print its services (needs no module).
    Check { file: PathBuf },
    /// Delete the services a configuration file names (those that exist).
    Unload { file: PathBuf },
    /// Exit 0 if every service of a file exists and is enabled, 3 if none exists, else 1.
    Status { file: PathBuf },
    /// Keep the servers of every service with a servers_from equal to that IPVS service's
    /// destinations (runs in the foreground, logging each change).
    FollowIpvs {
        /// Milliseconds between two reads of IPVS (100..60000).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(100..=60000))]
        interval_ms: u64,
        /// One pass, then exit.
        #[arg(long)]
        once: bool,
    },
}

fn die(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("rtcpvsadm: {msg}");
    ExitCode::FAILURE
}

fn run(tree: &Tree, cmd: Command) -> Result<(), String> {
    let e = |x: tree::TreeError| x.to_string();
    match cmd {
        Command::AddService { name, listen, opts } => {
            let mut svc = conf::Service {
                name,
                ..conf::Service::default()
            };
            for (k, v) in opts.pairs(Some(&listen)) {
                svc.set_attr(k, &v);
            }
            tree.apply(&svc).map_err(e)
        }
        Command::EditService { name, listen, opts } => {
            let dir = tree.service(&name);
            if !dir.is_dir() {
                return Err(format!("no service {name}"));
            }
            opts.pairs(listen.as_ref())
                .iter()
                .try_for_each(|(k, v)| tree.write(&dir, k, v))
                .map_err(e)
        }
        Command::DeleteService { name } => {
            if !tree.service(&name).is_dir() {
                return Err(format!("no service {name}"));
            }
            tree.remove_service(&name).map_err(e)
        }
        Command::AddServer {
            service,
            name,
            address,
            weight,
            state,
        } => tree
            .add_server(
                &service,
                &conf::Server {
                    name,
                    address,
                    weight,
                    state,
                    stats: None,
                },
            )
            .map_err(e),
        Command::EditServer {
            service,
            name,
            address,
            weight,
            state,
        } => {
            let p = tree.server(&service, &name);
            if !p.is_dir() {
                return Err(format!("no server {name} in service {service}"));
            }
            tree.edit_server(&p, address.as_deref(), weight, state.as_deref())
                .map_err(e)
        }
        Command::DeleteServer {
            service,
            name,
            force,
        } => {
            let p = tree.server(&service, &name);
            if !p.is_dir() {
                return Err(format!("no server {name} in service {service}"));
            }
            let svc = tree.read_service(&service, false).map_err(e)?;
            let users = users_of(&svc, &name);
            if !users.is_empty() && !force {
                return Err(format!(
                    "server {name} is named by {} (change them first, or --force)",
                    users.join(", ")
                ));
            }
            tree.rmdir(&p).map_err(e)
        }
        Command::AddRule {
            service,
            name,
            pattern,
            target,
        } => tree
            .add_rule(
                &service,
                &conf::Rule {
                    name,
                    pattern,
                    target,
                },
            )
            .map_err(e),
        Command::EditRule {
            service,
            name,
            pattern,
            target,
        } => {
            let p = tree.rule(&service, &name);
            if !p.is_dir() {
                return Err(format!("no rule {name} in service {service}"));
            }
            tree.edit_rule(&p, pattern.as_deref(), target.as_deref())
                .map_err(e)
        }
        Command::DeleteRule { service, name } => {
            let p = tree.rule(&service, &name);
            if !p.is_dir() {
                return Err(format!("no rule {name} in service {service}"));
            }
            tree.rmdir(&p).map_err(e)
        }
        Command::Start { service } => set_enabled(tree, &service, true),
        Command::Stop { service } => set_enabled(tree, &service, false),
        Command::List {
            service,
            numeric: _,
            stats,
            json,
        } => {
            let svcs = match service {
                Some(s) => {
                    if !tree.service(&s).is_dir() {
                        return Err(format!("no service {s}"));
                    }
                    vec![tree.read_service(&s, stats).map_err(e)?]
                }
                None => tree.read_all(stats).map_err(e)?,
            };
            if json {
                print!("{}", conf::to_json(&svcs));
            } else {
                print!("{}", conf::to_text(&svcs));
            }
            Ok(())
        }
        Command::Load { file } => {
            let svcs = read_file(&file)?;
            for s in &svcs {
                if tree.service(&s.name).exists() {
                    return Err(format!(
                        "service {} exists already (delete-service it first)",
                        s.name
                    ));
                }
            }
            svcs.iter()
                .try_for_each(|s| tree.apply(s))
                .map_err(|x| format!("{x} (the service being loaded was removed again)"))
        }
        Command::Save => {
            print!("{}", conf::format(&tree.read_all(false).map_err(e)?));
            Ok(())
        }
        Command::Unload { file } => read_file(&file)?
            .iter()
            .filter(|s| tree.service(&s.name).is_dir())
            .try_for_each(|s| tree.remove_service(&s.name))
            .map_err(e),
        Command::Probe | Command::Check { .. } | Command::Status { .. } => {
            unreachable!("handled in main")
        }
        Command::FollowIpvs { interval_ms, once } => {
            follow::Follower::new(tree).run(Duration::from_millis(interval_ms), once)
        }
    }
}

/// The services of configuration file `file` ("-" = standard input).
fn read_file(file: &std::path::Path) -> Result<Vec<conf::Service>, String> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|x| format!("stdin: {x}"))?
    } else {
        std::fs::read_to_string(file).map_err(|x| format!("{}: {x}", file.display()))?
    };
    conf::parse(&text).map_err(|x| format!("{}: {x}", file.display()))
}

/// `check FILE`: one line per service of the file, nothing written anywhere.
fn check(file: &std::path::Path) -> Result<(), String> {
    for s in read_file(file)? {
        let listen = s.attr("listen").unwrap_or("");
        let mode = s.attr("mode").unwrap_or("http");
        println!("service {} listen {listen} mode {mode}", s.name);
    }
    Ok(())
}

/// `status FILE` as an LSB status: 0 every service of the file exists and is enabled, 3 none
/// of them exists (or the module is not loaded), 1 anything in between (said on stdout).
fn status(tree: &Tree, file: &std::path::Path) -> Result<u8, String> {
    let svcs = read_file(file)?;
    let (mut running, mut missing) = (Vec::new(), Vec::new());
    let mut disabled = Vec::new();
    for s in &svcs {
        let dir = tree.service(&s.name);
        if !tree.exists() || !dir.is_dir() {
            missing.push(s.name.as_str());
        } else if tree.read(&dir, "enabled").map_err(|x| x.to_string())? == "1" {
            running.push(s.name.as_str());
        } else {
            disabled.push(s.name.as_str());
        }
    }
    let show = |what: &str, v: &[&str]| {
        if !v.is_empty() {
            println!("{what}: {}", v.join(" "));
        }
    };
    show("running", &running);
    show("disabled", &disabled);
    show("missing", &missing);
    Ok(if running.len() == svcs.len() {
        0
    } else if missing.len() == svcs.len() {
        3
    } else {
        1
    })
}

/// Rules and `default_target` of `svc` that name server `name`.
fn users_of(svc: &conf::Service, name: &str) -> Vec<String> {
    let names = |list: &str| list.split(',').any(|n| n == name);
    let mut users: Vec<String> = svc
        .rules
        .iter()
        .filter(|r| names(&r.target))
        .map(|r| format!("rule {}", r.name))
        .collect();
    if svc.attr("default_target").is_some_and(names) {
        users.push("default_target".into());
    }
    users
}

fn set_enabled(tree: &Tree, service: &str, on: bool) -> Result<(), String> {
    let dir = tree.service(service);
    if !dir.is_dir() {
        return Err(format!("no service {service}"));
    }
    tree.write(&dir, "enabled", if on { "1" } else { "0" })
        .map_err(|x| x.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tree = Tree::new(&cli.configfs);
    match &cli.cmd {
        Command::Check { file } => return check(file).map_or_else(die, |()| ExitCode::SUCCESS),
        Command::Status { file } => return status(&tree, file).map_or_else(die, ExitCode::from),
        _ => {}
    }
    if let Command::Probe = cli.cmd {
        let dir = &tree.root;
        if tree.exists() {
            println!("ktcpvs: {} present", dir.display());
            return ExitCode::SUCCESS;
        }
        println!(
            "ktcpvs: {} missing (mount configfs and insmod ktcpvs_rs.ko)",
            dir.display()
        );
        return ExitCode::from(3);
    }
    if !tree.exists() {
        return die(format!(
            "{} missing (mount configfs and insmod ktcpvs_rs.ko)",
            tree.root.display()
        ));
    }
    match run(&tree, cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => die(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn users_of_a_server() {
        let svcs = conf::parse(
            r#"virtual w { default_target = a,bb;
                rule = 1-x match "path=/x" use server bb;
                rule = 2-y match "path=/y" use server a; }"#,
        )
        .unwrap();
        assert_eq!(users_of(&svcs[0], "bb"), ["rule 1-x", "default_target"]);
        assert_eq!(users_of(&svcs[0], "a"), ["rule 2-y", "default_target"]);
        assert!(users_of(&svcs[0], "b").is_empty());
    }

    #[test]
    fn options_become_attributes() {
        let o = ServiceOpts {
            scheduler: Some("wrr".into()),
            cookie: Some(String::new()),
            ..ServiceOpts::default()
        };
        assert_eq!(
            o.pairs(Some(&"1.2.3.4:80".to_string())),
            [
                ("listen", "1.2.3.4:80".to_string()),
                ("scheduler", "wrr".into()),
                ("cookie", String::new())
            ]
        );
        let v = || Some(String::new());
        let all = ServiceOpts {
            scheduler: v(),
            mode: v(),
            client_header_timeout_ms: v(),
            idle_timeout_ms: v(),
            connect_timeout_ms: v(),
            max_conns: v(),
            max_mem_kib: v(),
            max_header_bytes: v(),
            max_fails: v(),
            fail_timeout_ms: v(),
            pool_idle: v(),
            xff: v(),
            cookie: v(),
            default_target: v(),
            servers_from: v(),
        };
        let names: Vec<&str> = all.pairs(v().as_ref()).iter().map(|p| p.0).collect();
        assert_eq!(names, conf::SETTABLE[..16]);
    }

    #[test]
    fn status_of_a_file_is_lsb() {
        let dir = std::env::temp_dir().join(format!("rtcpvsadm-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("web.conf");
        let tree = Tree::new(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = "virtual a { listen = 10.0.0.1:80; }\nvirtual b { listen = 10.0.0.1:81; }\n";
        std::fs::write(&file, text).unwrap();
        assert_eq!(status(&tree, &file), Ok(3), "module absent: not running");
        for (name, on) in [("a", "1"), ("b", "0")] {
            std::fs::create_dir_all(tree.service(name)).unwrap();
            std::fs::write(tree.service(name).join("enabled"), format!("{on}\n")).unwrap();
        }
        assert_eq!(status(&tree, &file), Ok(1), "b disabled");
        std::fs::write(tree.service("b").join("enabled"), "1\n").unwrap();
        assert_eq!(status(&tree, &file), Ok(0));
        std::fs::remove_dir_all(tree.service("a")).unwrap();
        assert_eq!(status(&tree, &file), Ok(1), "a missing");
        std::fs::write(&file, "virtual a { listen = ; }").unwrap();
        assert!(status(&tree, &file).unwrap_err().contains("web.conf"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn man_page_documents_every_command_and_option() {
        use clap::CommandFactory;
        let page = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../Documentation/man/rtcpvsadm.8"
        );
        let roff = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{page}: {e}"));
        let problems = man_check::check(&Cli::command(), &roff);
        assert!(problems.is_empty(), "{page} is stale: {problems:#?}");
        // The check notices a command whose entry is gone.
        let renamed = roff.replace("add\\-rule", "renamed");
        assert!(!man_check::check(&Cli::command(), &renamed).is_empty());
    }
}
