// SPDX-License-Identifier: GPL-2.0
//! `hark-vmtool http-backend NAME PORT [--keepalive]`: the ktcpvs-relay scenario's test
//! backend on 127.0.0.1:PORT, a thread per connection (from a pool). It answers like the Python
//! `BaseHTTPRequestHandler` it replaces: `HTTP/1.0` and a close after every answer (with
//! `--keepalive`, clients that ask for it get `HTTP/1.1` answers and the connection kept).
//!
//! - GET, HEAD: `NAME PATH xff=X conn=C` (the request's X-Forwarded-For and Connection values,
//!   `-` when absent); `/blob` is Python's `random.Random(7).randbytes(8 << 20)`; a path starting
//!   with `/slow` and ending in `=SECS` is answered after SECS seconds.
//! - POST (Content-Length or chunked): `NAME NBYTES SHA256HEX` of the body.

use crate::http::{self, field, Request};
use crate::mt::Mt;
use crate::sha256::Sha256;
use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// Larger heads are refused (Python's limit is 64 KiB a line, 100 fields).
const MAX_HEAD: usize = 64 * 1024;
/// A kept connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(60);

static BLOB: OnceLock<Vec<u8>> = OnceLock::new();

fn blob() -> &'static [u8] {
    BLOB.get_or_init(|| Mt::python(7).randbytes(8 << 20))
}

/// Threads waiting in accept at the start; a thread taking the last idle place starts another,
/// so slow requests never hold up others (a thread per connection, without a thread start per
/// connection: that costs milliseconds in a TCG guest with a debug kernel).
const SPARE: usize = 8;

pub fn run(name: &str, addr: &str, port: u16, keepalive: bool) -> Result<(), String> {
    let l = TcpListener::bind((addr, port)).map_err(|e| format!("bind {addr}:{port}: {e}"))?;
    let b: &'static Backend = Box::leak(Box::new(Backend {
        name: name.to_owned(),
        keepalive,
        l,
        idle: AtomicUsize::new(0),
    }));
    for _ in 0..SPARE {
        b.spawn()?;
    }
    // The workers never end.
    loop {
        thread::park();
    }
}

struct Backend {
    name: String,
    keepalive: bool,
    l: TcpListener,
    /// Workers waiting in accept (or about to).
    idle: AtomicUsize,
}

impl Backend {
    fn spawn(&'static self) -> Result<(), String> {
        self.idle.fetch_add(1, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || self.work());
        spawned.map(drop).map_err(|e| {
            self.idle.fetch_sub(1, Ordering::SeqCst);
            format!("http-backend {}: no thread: {e}", self.name)
        })
    }

    fn work(&'static self) {
        loop {
            let Ok((s, _)) = self.l.accept() else {
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            if self.idle.fetch_sub(1, Ordering::SeqCst) == 1 {
                if let Err(e) = self.spawn() {
                    eprintln!("{e}");
                }
            }
            serve(&self.name, s, self.keepalive);
            self.idle.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Reads a head line by line; `Ok(None)` at a clean end of the connection.
fn read_head(r: &mut impl BufRead) -> Result<Option<Vec<u8>>, u16> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let left = (MAX_HEAD - start) as u64;
        match Read::take(&mut *r, left).read_until(b'\n', &mut head) {
            Ok(0) if start == 0 => return Ok(None),
            Ok(_) if head.ends_with(b"\n") => {}
            Ok(_) if head.len() >= MAX_HEAD => return Err(431),
            _ => return Err(400),
        }
        // Python skips nothing: an empty first line is a bad request line, like here.
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(head));
        }
    }
}

fn serve(name: &str, s: TcpStream, keepalive: bool) {
    let _ = s.set_read_timeout(Some(IDLE));
    // Both halves through shared references: no dup(2) (every system call counts under TCG).
    let mut r = BufReader::new(&s);
    let mut w = std::io::BufWriter::new(&s);
    loop {
        let req =
            match read_head(&mut r).and_then(|h| h.map(|h| http::parse_request(&h)).transpose()) {
                Ok(Some(req)) => req,
                Ok(None) => return,
                Err(code) => {
                    let _ = reply(&mut w, code, b"bad request", false, false);
                    return;
                }
            };
        let keep = keepalive && req.wants_keepalive();
        let (code, body) = answer(name, &req, &mut r);
        let head_only = req.method == "HEAD";
        if reply(&mut w, code, &body, head_only, keep).is_err() || !keep || code != 200 {
            return;
        }
    }
}

fn answer(name: &str, req: &Request, r: &mut impl BufRead) -> (u16, Cow<'static, [u8]>) {
    let path = req.target.as_str();
    match req.method.as_str() {
        "GET" | "HEAD" if path == "/blob" => (200, Cow::Borrowed(blob())),
        "GET" | "HEAD" => {
            if path.starts_with("/slow") {
                let secs = path.rsplit('=').next().and_then(|v| v.parse::<f64>().ok());
                match secs {
                    Some(secs) if (0.0..1e6).contains(&secs) => {
                        thread::sleep(Duration::from_secs_f64(secs))
                    }
                    _ => return (400, Cow::Borrowed(b"bad /slow")),
                }
            }
            let xff = field(&req.fields, "X-Forwarded-For").unwrap_or("-");
            let conn = field(&req.fields, "Connection").unwrap_or("-");
            let body = format!("{name} {path} xff={xff} conn={conn}");
            (200, Cow::Owned(body.into_bytes()))
        }
        "POST" => {
            let mut h = Sha256::default();
            let mut n = 0usize;
            let mut sink = |d: &[u8]| {
                h.update(d);
                n += d.len();
            };
            let got = if field(&req.fields, "Transfer-Encoding") == Some("chunked") {
                http::read_chunked(r, &mut sink)
            } else {
                match field(&req.fields, "Content-Length").and_then(|v| v.parse().ok()) {
                    Some(len) => http::read_body(r, len, &mut sink),
                    None => return (411, Cow::Borrowed(b"no length")),
                }
            };
            if got.is_err() {
                return (400, Cow::Borrowed(b"body cut"));
            }
            (
                200,
                Cow::Owned(format!("{name} {n} {}", h.hex()).into_bytes()),
            )
        }
        _ => (501, Cow::Borrowed(b"unsupported method")),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        411 => "Length Required",
        431 => "Request Header Fields Too Large",
        _ => "Not Implemented",
    }
}

fn reply(
    w: &mut impl Write,
    code: u16,
    body: &[u8],
    head_only: bool,
    keep: bool,
) -> std::io::Result<()> {
    let (version, conn) = if keep {
        ("1.1", "Connection: keep-alive\r\n")
    } else {
        ("1.0", "")
    };
    let head = format!(
        "HTTP/{version} {code} {}\r\nServer: hark-vmtool\r\nContent-Length: {}\r\n{conn}\r\n",
        reason(code),
        body.len()
    );
    w.write_all(head.as_bytes())?;
    if !head_only {
        w.write_all(body)?;
    }
    w.flush()
}
