// SPDX-License-Identifier: GPL-2.0
//! Helpers for the scenario scripts inside hark's test VMs.
//!
//! Under TCG with a debug kernel, starting Python costs 3-15 s per call; this binary starts in
//! well under a second. Only the scenario's internal test network is used (addresses from the
//! `HARK_*` environment the guest's `run.sh` exports).
//!
//! - `hark-vmtool barrier NAME`: VM 0 waits until every other VM checked in with NAME, then
//!   releases them all (TCP port 7799 on VM 0).
//! - `hark-vmtool exchange LINE`: two VMs swap one line each; prints the peer's line (TCP port
//!   7001 on VM 0).
//! - `hark-vmtool http-backend NAME [ADDR:]PORT [--keepalive]` and the `http-*` clients: the
//!   ktcpvs-relay scenario's backends and clients on 127.0.0.1 (see `backend.rs`, `client.rs`,
//!   `hostile.rs`).
//! - `hark-vmtool record-server|record-client|record-check`: the failover scenarios' durable
//!   service (answers after `fdatasync`) and its client (see `records.rs`).

mod backend;
mod client;
mod hostile;
mod http;
mod mt;
mod records;
mod sha256;
mod siege;

use std::env;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

const BARRIER_PORT: u16 = 7799;
const EXCHANGE_PORT: u16 = 7001;
/// Generous: a peer may be in a long step (a full sync under TCG with other VMs on the same
/// cores); the scenario timeout still bounds the whole run.
const TIMEOUT: Duration = Duration::from_secs(600);

fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set (run inside a hark test VM)"))
}

fn addr(ip: &str, port: u16) -> Result<SocketAddr, String> {
    format!("{ip}:{port}")
        .parse()
        .map_err(|e| format!("bad address {ip}: {e}"))
}

fn leader() -> Result<String, String> {
    var("HARK_PEER_IPS")?
        .split([' ', ','])
        .find(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "HARK_PEER_IPS is empty".to_owned())
}

/// Listens on our address; returns the listener with a blocking accept bounded by `TIMEOUT`.
fn listen(port: u16) -> Result<TcpListener, String> {
    let me = addr(&var("HARK_IP")?, port)?;
    TcpListener::bind(me).map_err(|e| format!("bind {me}: {e}"))
}

fn accept(l: &TcpListener, deadline: Instant) -> Result<TcpStream, String> {
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(TIMEOUT))
                    .map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(format!("no peer within {} s", TIMEOUT.as_secs()));
                }
                sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
}

/// Connects to the leader, retrying until it listens.
fn connect(port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let to = addr(&leader()?, port)?;
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Ok(s) => {
                s.set_read_timeout(Some(TIMEOUT))
                    .map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) => {
                if Instant::now() > deadline {
                    return Err(format!("{to} unreachable: {e}"));
                }
                sleep(Duration::from_millis(100));
            }
        }
    }
}

fn read_line(s: &TcpStream) -> Result<String, String> {
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn send_line(mut s: &TcpStream, line: &str) -> Result<(), String> {
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))
}

fn barrier(name: &str) -> Result<(), String> {
    let nvm: usize = var("HARK_NVM")?.parse().map_err(|_| "bad HARK_NVM")?;
    if nvm <= 1 {
        return Ok(());
    }
    let deadline = Instant::now() + TIMEOUT;
    if var("HARK_VM")? == "0" {
        let l = listen(BARRIER_PORT)?;
        let mut peers = Vec::new();
        while peers.len() < nvm - 1 {
            let s = accept(&l, deadline)?;
            let got = read_line(&s)?;
            if got != name {
                return Err(format!("expected {name:?}, a peer arrived at {got:?}"));
            }
            peers.push(s);
        }
        for s in &peers {
            send_line(s, "go")?;
        }
        Ok(())
    } else {
        let s = connect(BARRIER_PORT, deadline)?;
        send_line(&s, name)?;
        match read_line(&s)?.as_str() {
            "go" => Ok(()),
            other => Err(format!("no release (got {other:?})")),
        }
    }
}

fn exchange(mine: &str) -> Result<String, String> {
    let deadline = Instant::now() + TIMEOUT;
    let s = if var("HARK_VM")? == "0" {
        accept(&listen(EXCHANGE_PORT)?, deadline)?
    } else {
        connect(EXCHANGE_PORT, deadline)?
    };
    send_line(&s, mine)?;
    read_line(&s)
}

const USAGE: &str = "usage: hark-vmtool barrier NAME | exchange LINE | \
    http-backend NAME [ADDR:]PORT [--keepalive] | http-routing PER_RULE [CLIENTS [PER_CONN]] | \
    http-wrr N WA:WB:WC | http-survivors N | http-load SECS | http-slow N SECS | \
    http-hostile N | http-siege IDLE SLOW SAMPLES STATS | record-server DIR ADDR:PORT | \
    record-client ADDR:PORT LOG STOPFILE | record-check ADDR:PORT LOG";

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let res = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["barrier", name] => barrier(name).map_err(|e| format!("barrier {name}: {e}")),
        ["exchange", line] => exchange(line)
            .map(|theirs| println!("{theirs}"))
            .map_err(|e| format!("exchange: {e}")),
        ["http-backend", name, port, rest @ ..] if rest.len() <= 1 => {
            // PORT, or ADDR:PORT to listen elsewhere than 127.0.0.1 (e.g. 0.0.0.0:80).
            let (addr, port) = port.rsplit_once(':').unwrap_or(("127.0.0.1", port));
            let keepalive = match rest {
                [] => Ok(false),
                ["--keepalive"] => Ok(true),
                _ => Err(format!("unknown option {rest:?}")),
            };
            keepalive.and_then(|k| backend::run(name, addr, num(port)?, k))
        }
        ["http-routing", n, rest @ ..] if rest.len() <= 2 => {
            let opt = |i: usize, default| rest.get(i).map_or(Ok(default), |v| num(v));
            num(n).and_then(|n| client::routing(n, opt(0, 4)?, opt(1, 1)?))
        }
        ["http-wrr", n, weights] => num(n).and_then(|n| client::wrr(n, weights)),
        ["http-survivors", n] => num(n).and_then(client::survivors),
        ["http-load", secs] => num(secs).map(client::load),
        ["http-slow", n, secs] => num(n).and_then(|n| num(secs).map(|s| client::slow(n, s))),
        ["http-hostile", n] => num(n).and_then(hostile::run),
        ["http-siege", idle, slow, samples, stats] => num(idle).and_then(|i| {
            num(slow).and_then(|s| num(samples).and_then(|n| siege::run(i, s, n, stats)))
        }),
        ["record-server", dir, listen] => records::server(dir, listen),
        ["record-client", to, log, stop] => records::client(to, log, stop),
        ["record-check", to, log] => records::check(to, log),
        _ => Err(USAGE.to_owned()),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hark-vmtool: {e}");
            ExitCode::FAILURE
        }
    }
}
