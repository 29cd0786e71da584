// SPDX-License-Identifier: GPL-2.0

//! `rdrbdadm`: administration of `drbd_rs` devices, in the spirit of `drbdadm`.
//!
//! Resources come from a drbd.conf-style file (`/etc/hark/drbd.conf`, or `-c FILE`); the
//! section `on <this host's name>` says which device, lower disk and minor are local. Commands
//! go to the kernel over the `drbd_rs` generic netlink family; `create-md` and `dump-md` work
//! on the lower device directly.
//!
//! Exit codes (drbdadm's spirit): 0 success, 1 usage or configuration error, 10 the kernel
//! refused the request, 11 the module is not loaded, 20 local I/O error.

// The config model and the netlink client live in the library (src/lib.rs).
#[cfg(test)]
#[path = "../../man_check.rs"]
mod man_check;
mod md;
mod net;

use clap::{Parser, Subcommand};
use hark_proto::drbd_genl::{self as nl, Attr, Cmd, DiskState, EventType, Role};
use hark_proto::drbd_state::Conn;
use rdrbdadm::{conf, genl};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "rdrbdadm",
    version,
    about = "Administer hark's drbd_rs replicated block devices"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        short = 'c',
        long = "config-file",
        default_value = "/etc/hark/drbd.conf"
    )]
    config: PathBuf,
    /// This node's name, as in the config's `on NAME` sections (default: the hostname).
    #[arg(long)]
    node: Option<String>,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write fresh DRBD 8.4 internal metadata to the resource's lower disk.
    CreateMd {
        resource: String,
        /// Overwrite valid metadata.
        #[arg(long)]
        force: bool,
    },
    /// Print the metadata of the resource's lower disk.
    DumpMd { resource: String },
    /// Create the device, attach its lower disk, and connect to the peer if the resource
    /// names one (new-resource + new-minor + attach + connect).
    Up { resource: String },
    /// Disconnect, detach and remove the device (it must be Secondary and closed).
    Down { resource: String },
    /// Connect to the peer with the resource's net options (both nodes connect and listen).
    Connect { resource: String },
    /// Drop the connection (StandAlone).
    Disconnect { resource: String },
    /// Attach the lower disk to an existing device.
    Attach { resource: String },
    /// Detach the lower disk (the device must be Secondary and closed).
    Detach { resource: String },
    /// Mark the local disk Outdated (refused while connected or Primary).
    Outdate { resource: String },
    /// Become Primary; needs UpToDate data unless --force.
    Primary {
        resource: String,
        /// Declare this node's data UpToDate (initial promotion).
        #[arg(long)]
        force: bool,
    },
    /// Become Secondary.
    Secondary { resource: String },
    /// Show the state of all devices, or of one resource.
    Status {
        resource: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Follow state changes, one line per event (like `drbdsetup events2`).
    Events {
        /// Print the current state as `exists` lines and stop.
        #[arg(long)]
        now: bool,
    },
    /// Print the parsed configuration.
    Dump { resource: Option<String> },
    /// Print the generic netlink family name, version and command numbers.
    Family,
}

/// A failure with its exit code.
struct Fail(u8, String);

impl From<genl::Error> for Fail {
    fn from(e: genl::Error) -> Fail {
        let code = match e {
            genl::Error::FamilyMissing { .. } => 11,
            genl::Error::Kernel { .. } => 10,
            _ => 20,
        };
        Fail(code, e.to_string())
    }
}

fn usage(msg: impl Into<String>) -> Fail {
    Fail(1, msg.into())
}

/// The local side of a resource: minor and lower disk.
struct Local {
    name: String,
    minor: u32,
    disk: PathBuf,
    /// The `connect` request, when the resource has a peer host.
    connect: Option<Vec<(Attr, net::Value)>>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn local(cli: &Cli, resource: &str) -> Result<Local, Fail> {
    let cfg = conf::Config::load(&cli.config).map_err(|e| usage(e.to_string()))?;
    let res = cfg.resource(resource).ok_or_else(|| {
        usage(format!(
            "{}: no resource '{resource}'",
            cli.config.display()
        ))
    })?;
    let node = cli.node.clone().unwrap_or_else(hostname);
    let host = res.host(&node).ok_or_else(|| {
        usage(format!(
            "{}: resource '{resource}' has no 'on {node}' section (use --node)",
            cli.config.display()
        ))
    })?;
    let minor = res.minor_for(host).map_err(|e| usage(e.to_string()))?;
    let disk = res.disk_for(host).map_err(|e| usage(e.to_string()))?;
    let connect = if res.hosts.len() > 1 {
        Some(net::connect_attrs(res, &node).map_err(usage)?)
    } else {
        None
    };
    Ok(Local {
        name: resource.to_string(),
        minor,
        disk: PathBuf::from(disk),
        connect,
    })
}

struct Kernel {
    sock: genl::GenlSocket,
    family: genl::Family,
}

impl Kernel {
    fn open() -> Result<Kernel, Fail> {
        let mut sock = genl::GenlSocket::open()?;
        let family = sock.resolve_family(nl::FAMILY_NAME)?;
        Ok(Kernel { sock, family })
    }

    fn call(
        &mut self,
        cmd: Cmd,
        build: impl FnOnce(&mut hark_proto::nla::MsgWriter<'_>) -> Result<(), hark_proto::nla::NlaError>,
    ) -> Result<Vec<genl::OwnedMsg>, Fail> {
        Ok(self
            .sock
            .request(self.family.id, cmd as u8, nl::FAMILY_VERSION, build)?)
    }

    fn minor_cmd(&mut self, cmd: Cmd, minor: u32) -> Result<(), Fail> {
        self.call(cmd, |w| w.put_u32(Attr::Minor as u16, minor))?;
        Ok(())
    }
}

/// One device's status as the kernel reports it.
struct Status {
    resource: String,
    minor: u32,
    role: Role,
    disk: DiskState,
    size_sectors: u64,
    oos_kib: u64,
    /// The connection, when configured.
    conn: Option<ConnStatus>,
}

/// A connection's status.
struct ConnStatus {
    cstate: String,
    peer_role: String,
    peer_disk: String,
    protocol: char,
    /// A running resync: its total and average rate (KiB, KiB/s).
    sync: Option<(u64, u64)>,
}

fn conn_status_of(m: &genl::OwnedMsg) -> Result<Option<ConnStatus>, Fail> {
    let Some(c) = m.get_u8(Attr::ConnState)? else {
        return Ok(None);
    };
    let cstate = Conn::from_u32(c.into()).map_or_else(|| format!("?{c}"), |c| c.name().into());
    let peer_role = match m.get_u8(Attr::PeerRole)?.and_then(Role::from_u8) {
        Some(r) => r.name(),
        None => "Unknown",
    };
    let peer_disk = match m.get_u8(Attr::PeerDisk)?.and_then(DiskState::from_u8) {
        Some(d) => d.name(),
        None => "DUnknown",
    };
    let protocol = match m.get_u8(Attr::Protocol)? {
        Some(1) => 'A',
        Some(2) => 'B',
        _ => 'C',
    };
    Ok(Some(ConnStatus {
        cstate,
        peer_role: peer_role.into(),
        peer_disk: peer_disk.into(),
        protocol,
        sync: match (
            m.get_u64(Attr::SyncTotalKib)?,
            m.get_u64(Attr::SyncRateKib)?,
        ) {
            (Some(t), Some(r)) => Some((t, r)),
            _ => None,
        },
    }))
}

fn status_of(m: &genl::OwnedMsg) -> Result<Status, Fail> {
    let missing = |what: &str| Fail(20, format!("kernel reply without {what}"));
    Ok(Status {
        resource: m
            .get_str(Attr::ResourceName)?
            .ok_or_else(|| missing("resource"))?
            .to_string(),
        minor: m.get_u32(Attr::Minor)?.ok_or_else(|| missing("minor"))?,
        role: m.role()?.ok_or_else(|| missing("role"))?,
        disk: m.disk_state()?.ok_or_else(|| missing("disk state"))?,
        size_sectors: m.get_u64(Attr::SizeSectors)?.unwrap_or(0),
        oos_kib: m.get_u64(Attr::OutOfSyncKib)?.unwrap_or(0),
        conn: conn_status_of(m)?,
    })
}

fn json_status(s: &Status) -> String {
    let conn = s.conn.as_ref().map_or(String::new(), |c| {
        format!(
            ",\"connection\":\"{}\",\"peer-role\":\"{}\",\"peer-disk\":\"{}\",\"protocol\":\"{}\"{}",
            c.cstate,
            c.peer_role,
            c.peer_disk,
            c.protocol,
            c.sync.map_or(String::new(), |(total, rate)| format!(
                ",\"sync-total-kib\":{total},\"sync-rate-kib\":{rate}"
            ))
        )
    });
    format!(
        "{{\"name\":\"{}\",\"minor\":{},\"role\":\"{}\",\"disk-state\":\"{}\",\"size-kib\":{},\"out-of-sync-kib\":{}{}}}",
        s.resource.replace('\\', "\\\\").replace('"', "\\\""),
        s.minor,
        s.role.name(),
        s.disk.name(),
        s.size_sectors / 2,
        s.oos_kib,
        conn
    )
}

fn print_status(s: &Status) {
    println!("{} role:{}", s.resource, s.role.name());
    println!(
        "  volume:0 minor:{} disk:{} size:{}KiB out-of-sync:{}KiB",
        s.minor,
        s.disk.name(),
        s.size_sectors / 2,
        s.oos_kib
    );
    if let Some(c) = &s.conn {
        println!(
            "  connection:{} protocol:{} peer-role:{} peer-disk:{}",
            c.cstate, c.protocol, c.peer_role, c.peer_disk
        );
        if let Some((total, rate)) = c.sync {
            println!("  {}", sync_line(total, s.oos_kib, rate));
        }
    }
}

/// The progress line of a running resync (`done:` like drbdadm's `done:`, then the amounts).
fn sync_line(total_kib: u64, left_kib: u64, rate_kib: u64) -> String {
    let left = left_kib.min(total_kib);
    let permille = (total_kib - left)
        .saturating_mul(1000)
        .checked_div(total_kib)
        .unwrap_or(1000);
    let eta = if rate_kib > 0 {
        format!("{}s", left.div_ceil(rate_kib))
    } else {
        "?".into()
    };
    format!(
        "sync: done:{}.{}% total:{}KiB left:{}KiB rate:{}KiB/s eta:{}",
        permille / 10,
        permille % 10,
        total_kib,
        left,
        rate_kib,
        eta
    )
}

/// Whether a status message describes a device (resource messages have no minor).
fn is_device(m: &genl::OwnedMsg) -> bool {
    matches!(m.get_u32(Attr::Minor), Ok(Some(_)))
}

/// The events2 line of a status or event message: a resource or a device.
fn any_event_line(kind: EventType, m: &genl::OwnedMsg) -> Result<String, Fail> {
    if is_device(m) {
        return Ok(event_line(kind, &status_of(m)?));
    }
    let name = m
        .get_str(Attr::ResourceName)?
        .ok_or_else(|| Fail(20, "kernel event without a resource name".into()))?;
    if let Some(c) = conn_status_of(m)? {
        return Ok(format!(
            "{} connection name:{} connection:{} role:{} peer-disk:{}",
            kind.name(),
            name,
            c.cstate,
            c.peer_role,
            c.peer_disk
        ));
    }
    Ok(format!("{} resource name:{}", kind.name(), name))
}

fn event_line(kind: EventType, s: &Status) -> String {
    format!(
        "{} device name:{} volume:0 minor:{} role:{} disk:{} size:{} out-of-sync:{}",
        kind.name(),
        s.resource,
        s.minor,
        s.role.name(),
        s.disk.name(),
        s.size_sectors / 2,
        s.oos_kib
    )
}

fn resource_cmd(k: &mut Kernel, cmd: Cmd, name: &str) -> Result<(), Fail> {
    k.call(cmd, |w| w.put_str(Attr::ResourceName as u16, name))?;
    Ok(())
}

fn up(k: &mut Kernel, l: &Local) -> Result<(), Fail> {
    // An existing resource is fine (another volume, or a previous partial `up`).
    let created = match resource_cmd(k, Cmd::NewResource, &l.name) {
        Ok(()) => true,
        Err(Fail(_, msg)) if msg.contains("File exists") => false,
        Err(e) => return Err(e),
    };
    let undo_resource = |k: &mut Kernel| {
        if created {
            let _ = resource_cmd(k, Cmd::DelResource, &l.name);
        }
    };
    k.call(Cmd::NewMinor, |w| {
        w.put_str(Attr::ResourceName as u16, &l.name)?;
        w.put_u32(Attr::Minor as u16, l.minor)
    })
    .inspect_err(|_| undo_resource(k))?;
    attach(k, l).inspect_err(|_| {
        let _ = k.minor_cmd(Cmd::DelMinor, l.minor);
        undo_resource(k);
    })?;
    if l.connect.is_some() {
        connect(k, l)?;
    }
    Ok(())
}

fn connect(k: &mut Kernel, l: &Local) -> Result<(), Fail> {
    let attrs = l
        .connect
        .as_ref()
        .ok_or_else(|| usage(format!("resource {}: no peer host to connect to", l.name)))?;
    k.call(Cmd::Connect, |w| {
        for (a, v) in attrs {
            let t = *a as u16;
            match v {
                net::Value::U8(x) => w.put_u8(t, *x)?,
                net::Value::U32(x) => w.put_u32(t, *x)?,
                net::Value::Str(x) => w.put_str(t, x)?,
                net::Value::Bytes(x) => w.put_bytes(t, x)?,
            }
        }
        Ok(())
    })?;
    Ok(())
}

fn attach(k: &mut Kernel, l: &Local) -> Result<(), Fail> {
    let disk = l
        .disk
        .to_str()
        .ok_or_else(|| usage("disk path is not UTF-8"))?
        .to_string();
    k.call(Cmd::Attach, |w| {
        w.put_u32(Attr::Minor as u16, l.minor)?;
        w.put_str(Attr::LowerDev as u16, &disk)
    })?;
    Ok(())
}

fn run(cli: &Cli) -> Result<(), Fail> {
    match &cli.cmd {
        Command::Family => {
            println!(
                "family {} version {} mcast-group {}",
                nl::FAMILY_NAME,
                nl::FAMILY_VERSION,
                nl::MCGRP_EVENTS
            );
            for c in nl::Cmd::ALL {
                println!("  {:3} {}", c as u8, c.name());
            }
        }
        Command::CreateMd { resource, force } => {
            let l = local(cli, resource)?;
            let geo = md::create(&l.disk, *force).map_err(|e| Fail(20, e))?;
            println!(
                "{}: new v08 internal metadata written; usable size {} KiB",
                l.disk.display(),
                geo.max_capacity / 2
            );
        }
        Command::DumpMd { resource } => {
            let l = local(cli, resource)?;
            print!("{}", md::dump(&l.disk).map_err(|e| Fail(20, e))?);
        }
        Command::Up { resource } => up(&mut Kernel::open()?, &local(cli, resource)?)?,
        Command::Down { resource } => {
            let l = local(cli, resource)?;
            let mut k = Kernel::open()?;
            resource_cmd(&mut k, Cmd::Disconnect, &l.name)?;
            k.minor_cmd(Cmd::Secondary, l.minor)?;
            // A diskless device has nothing to detach.
            if let Err(Fail(code, msg)) = k.minor_cmd(Cmd::Detach, l.minor) {
                if !msg.contains("No such device") {
                    return Err(Fail(code, msg));
                }
            }
            k.minor_cmd(Cmd::DelMinor, l.minor)?;
            resource_cmd(&mut k, Cmd::DelResource, &l.name)?;
        }
        Command::Connect { resource } => connect(&mut Kernel::open()?, &local(cli, resource)?)?,
        Command::Disconnect { resource } => {
            resource_cmd(&mut Kernel::open()?, Cmd::Disconnect, resource)?;
        }
        Command::Attach { resource } => attach(&mut Kernel::open()?, &local(cli, resource)?)?,
        Command::Detach { resource } => {
            let l = local(cli, resource)?;
            Kernel::open()?.minor_cmd(Cmd::Detach, l.minor)?;
        }
        Command::Outdate { resource } => {
            let l = local(cli, resource)?;
            Kernel::open()?.minor_cmd(Cmd::Outdate, l.minor)?;
        }
        Command::Primary { resource, force } => {
            let l = local(cli, resource)?;
            Kernel::open()?.call(Cmd::Primary, |w| {
                w.put_u32(Attr::Minor as u16, l.minor)?;
                if *force {
                    w.put_flag(Attr::Force as u16)?;
                }
                Ok(())
            })?;
        }
        Command::Secondary { resource } => {
            let l = local(cli, resource)?;
            Kernel::open()?.minor_cmd(Cmd::Secondary, l.minor)?;
        }
        Command::Status { resource, json } => {
            let mut k = Kernel::open()?;
            let replies = k.call(Cmd::Status, |_| Ok(()))?;
            let mut all = replies
                .iter()
                .filter(|m| is_device(m))
                .map(status_of)
                .collect::<Result<Vec<_>, _>>()?;
            all.sort_by_key(|s| s.minor);
            if let Some(r) = resource {
                all.retain(|s| &s.resource == r);
                if all.is_empty() {
                    return Err(Fail(10, format!("{r}: no such resource in the kernel")));
                }
            }
            if *json {
                let items: Vec<String> = all.iter().map(json_status).collect();
                println!("[{}]", items.join(","));
            } else {
                all.iter().for_each(print_status);
            }
        }
        Command::Events { now } => {
            let mut k = Kernel::open()?;
            let group = k
                .family
                .mcast_group(nl::MCGRP_EVENTS)
                .ok_or_else(|| Fail(20, "the family has no events group".into()))?;
            if !*now {
                k.sock.subscribe(group)?;
            }
            for m in k.call(Cmd::Status, |_| Ok(()))? {
                println!("{}", any_event_line(EventType::Exists, &m)?);
            }
            println!("exists -");
            if *now {
                return Ok(());
            }
            loop {
                let m = k.sock.recv_event()?;
                let kind = m.event_type()?.unwrap_or(EventType::Change);
                println!("{}", any_event_line(kind, &m)?);
            }
        }
        Command::Dump { resource } => {
            let cfg = conf::Config::load(&cli.config).map_err(|e| usage(e.to_string()))?;
            for r in &cfg.resources {
                if resource.as_ref().is_none_or(|n| n == &r.name) {
                    println!("{r:#?}");
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("rdrbdadm: {msg}");
            ExitCode::from(code)
        }
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
    fn json_escapes_names() {
        let s = Status {
            resource: "a\"b".into(),
            minor: 1,
            role: Role::Secondary,
            disk: DiskState::Diskless,
            size_sectors: 0,
            oos_kib: 0,
            conn: None,
        };
        assert_eq!(
            json_status(&s),
            r#"{"name":"a\"b","minor":1,"role":"Secondary","disk-state":"Diskless","size-kib":0,"out-of-sync-kib":0}"#
        );
    }

    #[test]
    fn event_lines_look_like_events2() {
        let s = Status {
            resource: "r0".into(),
            minor: 3,
            role: Role::Primary,
            disk: DiskState::UpToDate,
            size_sectors: 2048,
            oos_kib: 8,
            conn: None,
        };
        assert_eq!(
            event_line(EventType::Change, &s),
            "change device name:r0 volume:0 minor:3 role:Primary disk:UpToDate size:1024 out-of-sync:8"
        );
    }

    #[test]
    fn sync_progress_line() {
        assert_eq!(
            sync_line(65536, 16384, 1024),
            "sync: done:75.0% total:65536KiB left:16384KiB rate:1024KiB/s eta:16s"
        );
        assert_eq!(
            sync_line(1000, 999, 0),
            "sync: done:0.1% total:1000KiB left:999KiB rate:0KiB/s eta:?"
        );
        assert_eq!(
            sync_line(0, 0, 0),
            "sync: done:100.0% total:0KiB left:0KiB rate:0KiB/s eta:?"
        );
    }

    #[test]
    fn man_page_documents_every_command_and_option() {
        use clap::CommandFactory;
        let page = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../Documentation/man/rdrbdadm.8"
        );
        let roff = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{page}: {e}"));
        let problems = man_check::check(&Cli::command(), &roff);
        assert!(problems.is_empty(), "{page} is stale: {problems:#?}");
        // The check notices a command whose entry is gone.
        let renamed = roff.replace("create\\-md", "renamed");
        assert!(!man_check::check(&Cli::command(), &renamed).is_empty());
    }
}
