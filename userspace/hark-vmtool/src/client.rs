// SPDX-License-Identifier: GPL-2.0
//! The ktcpvs-relay scenario's HTTP clients against the switch on 127.0.0.1 (each request on a
//! new connection unless said otherwise, like Python's `http.client` the scenario used before):
//!
//! - `http-routing N [CLIENTS [PER_CONN]]`: N requests per rule (`/static/…` -> a, Host
//!   `api.example` -> b, the rest -> c) from CLIENTS threads, PER_CONN requests on each client
//!   connection (default 1); every answer must name the right backend and path,
//!   `xff=127.0.0.1` and `conn=close`.
//! - `http-wrr N WA:WB:WC`: N requests to the default target; each backend's share within 5 %
//!   of its weight's.
//! - `http-survivors N`: N requests after backend a was killed: all 200, none from a, none
//!   slower than the connect timeout (1 s) plus slack.
//! - `http-load SECS`: requests one after the other for SECS seconds, failures tolerated.
//! - `http-slow N SECS`: N concurrent requests for `/slow?s=SECS`; prints their outcomes.

use crate::http;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

pub const SWITCH: u16 = 8080;

/// lib.sh's wait scale (slack for timing checks when several TCG VMs share the cores).
pub fn scale() -> f64 {
    std::env::var("HARK_WAIT_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0)
}

/// The switch's address: 127.0.0.1:8080, another port from `HARK_HTTP_PORT` (for trying the
/// clients on a development machine).
pub fn switch_addr() -> SocketAddr {
    let port = std::env::var("HARK_HTTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(SWITCH);
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub struct Reply {
    pub status: u16,
    /// The switch keeps the connection (`Connection: keep-alive`).
    pub keep: bool,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn words(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.body)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    fn show(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(120)]).into_owned();
        format!("{} {body:?}", self.status)
    }
}

/// A new connection to the switch, reads bounded by `timeout`. A plain blocking connect: on
/// loopback it is refused or accepted at once, and `connect_timeout` costs four more system
/// calls (each counts under TCG).
pub fn connect(timeout: Duration) -> Result<TcpStream, String> {
    let s = TcpStream::connect(switch_addr()).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| format!("read timeout: {e}"))?;
    Ok(s)
}

/// One GET on a new connection to the switch; the connection is closed after the answer.
pub fn get(path: &str, host: Option<&str>, timeout: Duration) -> Result<Reply, String> {
    let mut s = connect(timeout).map_err(|e| format!("GET {path}: {e}"))?;
    request(&mut s, path, host)
}

/// One GET on the connection `s` (not pipelined: nothing but the answer can arrive).
pub fn request(s: &mut TcpStream, path: &str, host: Option<&str>) -> Result<Reply, String> {
    let e = |what: &str, err: std::io::Error| format!("GET {path}: {what}: {err}");
    let host = host.unwrap_or("127.0.0.1:8080");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|x| e("send", x))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 16 * 1024];
    let mut head = None;
    loop {
        if head.is_none() {
            head = http::parse_response(&buf)
                .transpose()
                .map_err(|x| format!("GET {path}: {x}"))?;
        }
        if let Some(h) = &head {
            if h.content_length().is_some_and(|n| buf.len() >= h.len + n) {
                break;
            }
        }
        let n = s.read(&mut chunk).map_err(|x| e("read", x))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let h = head.ok_or_else(|| {
        format!(
            "GET {path}: no answer ({} bytes: {:?})",
            buf.len(),
            String::from_utf8_lossy(&buf[..buf.len().min(80)])
        )
    })?;
    let end = h.content_length().map_or(buf.len(), |n| h.len + n);
    if end != buf.len() {
        return Err(format!(
            "GET {path}: {} bytes of body, Content-Length {}",
            buf.len() - h.len,
            end - h.len
        ));
    }
    let keep =
        http::field(&h.fields, "Connection").is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"));
    Ok(Reply {
        status: h.status,
        keep,
        body: buf[h.len..end].to_vec(),
    })
}

/// Runs `job(i)` for i in 0..n from `clients` threads; stops at the first error.
fn parallel(
    n: usize,
    clients: usize,
    job: impl Fn(usize) -> Result<(), String> + Sync,
) -> Result<(), String> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first = Mutex::new(None);
    thread::scope(|sc| {
        for _ in 0..clients.max(1) {
            sc.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    if let Err(e) = job(i) {
                        failed.store(true, Ordering::Relaxed);
                        first.lock().unwrap().get_or_insert(e);
                    }
                }
            });
        }
    });
    first.into_inner().unwrap().map_or(Ok(()), Err)
}

/// The slowest of a set of timed requests, in seconds.
#[derive(Default)]
struct Slowest(Mutex<f64>);

impl Slowest {
    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        let dt = t.elapsed().as_secs_f64();
        let mut w = self.0.lock().unwrap();
        *w = w.max(dt);
        r
    }

    fn get(&self) -> f64 {
        *self.0.lock().unwrap()
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Request `j` of the routing check: path, Host and the backend that must answer.
fn route(j: usize) -> (String, Option<&'static str>, &'static str) {
    let i = j / 3;
    match j % 3 {
        0 => (format!("/static/f{i}.css"), None, "a"),
        1 => (format!("/x{i}"), Some("api.example"), "b"),
        _ => (format!("/y{i}"), Some("www.example"), "c"),
    }
}

/// `per_conn` requests on each client connection (1: a new connection for every request; more:
/// keep-alive, each request routed anew, the rules taking turns on the connection).
pub fn routing(per_rule: usize, clients: usize, per_conn: usize) -> Result<(), String> {
    let t = Instant::now();
    let slowest = Slowest::default();
    let total = 3 * per_rule;
    let per_conn = per_conn.max(1);
    parallel(total.div_ceil(per_conn), clients, |k| {
        let mut s = connect(TIMEOUT)?;
        let last = total.min((k + 1) * per_conn);
        for j in k * per_conn..last {
            let (path, host, want) = route(j);
            let r = slowest.time(|| request(&mut s, &path, host))?;
            let w = r.words();
            let ok = r.status == 200
                && w.len() == 4
                && w[0] == want
                && w[1] == path
                && w[2] == "xff=127.0.0.1"
                && w[3] == "conn=close";
            if !ok {
                return Err(format!(
                    "routing: {path} host={host:?}: expected {want} {path} xff=127.0.0.1 conn=close, got {}",
                    r.show()
                ));
            }
            if !r.keep && j + 1 < last {
                return Err(format!("routing: {path}: the switch did not keep the connection (request {} of {per_conn} on it)", j - k * per_conn + 1));
            }
        }
        Ok(())
    })?;
    println!(
        "routing: {total} requests ok ({per_rule} each to a, b, c), {clients} clients, {per_conn} requests a connection, {:.1} s, slowest {:.2} s",
        t.elapsed().as_secs_f64(),
        slowest.get()
    );
    Ok(())
}

fn count_backends(
    n: usize,
    prefix: &str,
    slowest: &Slowest,
) -> Result<BTreeMap<String, usize>, String> {
    let counts = Mutex::new(BTreeMap::new());
    parallel(n, 4, |i| {
        let r = slowest.time(|| get(&format!("/{prefix}{i}"), None, TIMEOUT))?;
        if r.status != 200 {
            return Err(format!("{prefix}{i}: {}", r.show()));
        }
        let who = r.words().into_iter().next().unwrap_or_default();
        *counts.lock().unwrap().entry(who).or_insert(0) += 1;
        Ok(())
    })?;
    Ok(counts.into_inner().unwrap())
}

pub fn wrr(n: usize, weights: &str) -> Result<(), String> {
    let w: Vec<usize> = weights
        .split(':')
        .map(|x| x.parse().map_err(|_| format!("bad weights {weights:?}")))
        .collect::<Result<_, _>>()?;
    let counts = count_backends(n, "w", &Slowest::default())?;
    println!("wrr counts {counts:?}");
    let total: usize = w.iter().sum();
    for (name, w) in ["a", "b", "c"].iter().zip(&w) {
        let want = (n * w) as f64 / total as f64;
        let got = counts.get(*name).copied().unwrap_or(0);
        if (got as f64 - want).abs() > 0.05 * want {
            return Err(format!("wrr: {name} got {got}, expected {want} +-5%"));
        }
    }
    if counts
        .keys()
        .any(|k| !["a", "b", "c"].contains(&k.as_str()))
    {
        return Err(format!("wrr: unknown backends in {counts:?}"));
    }
    Ok(())
}

pub fn survivors(n: usize) -> Result<(), String> {
    let slowest = Slowest::default();
    let counts = count_backends(n, "k", &slowest)?;
    let worst = slowest.get();
    println!("after the kill: {n} requests ok, served by {counts:?}, slowest {worst:.2} s");
    if counts.contains_key("a") {
        return Err("a killed backend answered".to_owned());
    }
    if worst > 1.0 + 2.0 * scale() {
        return Err(format!(
            "a request took {worst:.2} s: more than the connect timeout (1 s) plus slack"
        ));
    }
    Ok(())
}

pub fn load(secs: f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (mut ok, mut failed) = (0, 0);
    while Instant::now() < end {
        match get(&format!("/l{ok}"), None, Duration::from_secs(10)) {
            Ok(_) => ok += 1,
            Err(_) => {
                failed += 1;
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    println!("load generator: {ok} requests, {failed} failed");
}

pub fn slow(n: usize, secs: f64) {
    let outcomes: Vec<String> = thread::scope(|sc| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                sc.spawn(move || {
                    match get(&format!("/slow?s={secs}"), None, Duration::from_secs(120)) {
                        Ok(r) => r.status.to_string(),
                        Err(_) => "error".to_owned(),
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| "panic".to_owned()))
            .collect()
    });
    let mut seen: Vec<_> = outcomes
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    seen.dedup();
    println!("slow clients ended: {}", seen.join(" "));
}
