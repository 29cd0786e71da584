// SPDX-License-Identifier: GPL-2.0
//! The failover scenarios' durable service and its client.
//!
//! - `record-server DIR ADDR:PORT`: `POST /record/N` appends `N` and a newline to
//!   `DIR/records.log`, `fdatasync`s it, and only then answers `200` with `N` (so an answer means
//!   the record is on the replicated disk); `GET /records` returns the file. HTTP/1.0, one request
//!   per connection, a thread per connection.
//! - `record-client ADDR:PORT LOG STOPFILE`: posts records 1, 2, 3, ... one at a time until
//!   STOPFILE exists; a record is retried (after 100 ms) until it is acknowledged, so a crash
//!   of the server between the write and the answer duplicates it and never skips it. Every
//!   acknowledged record is logged to LOG as `N MS` (milliseconds since the client started),
//!   flushed at once.
//! - `record-check ADDR:PORT LOG`: fetches `/records` and checks that every record LOG lists
//!   is there; prints the count, the longest gaps between two acknowledgements, and exits 1
//!   listing the lost records if any.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(100);

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("not ADDR:PORT: {s:?}"))
}

pub fn server(dir: &str, listen: &str) -> Result<(), String> {
    let path = Path::new(dir).join("records.log");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // The file's directory entry is durable before the first answer.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{dir}: {e}"))?;
    let file = Arc::new(Mutex::new(file));
    let l = TcpListener::bind(addr(listen)?).map_err(|e| format!("bind {listen}: {e}"))?;
    for conn in l.incoming() {
        let Ok(conn) = conn else { continue };
        let (file, path) = (file.clone(), path.clone());
        thread::spawn(move || {
            let _ = serve(conn, &file, &path);
        });
    }
    Ok(())
}

/// The request line of an HTTP request; the rest of the head is read and ignored.
fn request_line(s: &TcpStream) -> std::io::Result<String> {
    let mut r = BufReader::new(s);
    let mut first = String::new();
    r.read_line(&mut first)?;
    let mut line = String::new();
    while r.read_line(&mut line)? > 2 {
        line.clear();
    }
    Ok(first)
}

fn serve(mut s: TcpStream, file: &Mutex<File>, path: &Path) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let line = request_line(&s)?;
    let mut words = line.split_whitespace();
    let (status, body) = match (words.next(), words.next()) {
        (Some("POST"), Some(p)) if p.starts_with("/record/") => {
            match p["/record/".len()..].parse::<u64>() {
                Ok(n) => {
                    let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                    f.write_all(format!("{n}\n").as_bytes())?;
                    f.sync_data()?;
                    ("200 OK", format!("{n}\n"))
                }
                Err(_) => ("400 Bad Request", String::new()),
            }
        }
        (Some("GET"), Some("/records")) => ("200 OK", std::fs::read_to_string(path)?),
        _ => ("404 Not Found", String::new()),
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())
}

/// One HTTP/1.0 request; the body of a 200 answer.
fn request(to: &SocketAddr, method: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(to, IO_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no complete answer")?;
    if !head.starts_with("HTTP/1.0 200 ") {
        return Err(head.lines().next().unwrap_or("").to_owned());
    }
    Ok(body.to_owned())
}

pub fn client(to: &str, log: &str, stop: &str) -> Result<(), String> {
    let to = addr(to)?;
    let mut out = File::create(log).map_err(|e| format!("{log}: {e}"))?;
    let t0 = Instant::now();
    let mut n: u64 = 1;
    while !Path::new(stop).exists() {
        match request(&to, "POST", &format!("/record/{n}")) {
            Ok(body) if body.trim() == n.to_string() => {
                let ms = t0.elapsed().as_millis();
                writeln!(out, "{n} {ms}").map_err(|e| format!("{log}: {e}"))?;
                n = n.saturating_add(1);
            }
            _ => thread::sleep(RETRY),
        }
    }
    Ok(())
}

/// The acknowledged records of a client log: (record, milliseconds).
fn read_log(log: &str) -> Result<Vec<(u64, u64)>, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{log}: {e}"))?;
    text.lines()
        .map(|l| {
            let (n, ms) = l.split_once(' ').ok_or(format!("{log}: bad line {l:?}"))?;
            Ok((crate::num(n)?, crate::num(ms)?))
        })
        .collect()
}

pub fn check(to: &str, log: &str) -> Result<(), String> {
    let acked = read_log(log)?;
    let on_server: HashSet<u64> = request(&addr(to)?, "GET", "/records")?
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    let lost: Vec<u64> = acked
        .iter()
        .map(|&(n, _)| n)
        .filter(|n| !on_server.contains(n))
        .collect();
    let mut gaps: Vec<(u64, u64)> = acked
        .windows(2)
        .map(|w| (w[1].1.saturating_sub(w[0].1), w[0].0))
        .collect();
    gaps.sort_unstable_by(|a, b| b.cmp(a));
    let gaps: Vec<String> = gaps
        .iter()
        .take(3)
        .map(|(ms, after)| format!("{ms} ms after record {after}"))
        .collect();
    println!(
        "records: {} acknowledged, {} on the server, {} lost; longest gaps: {}",
        acked.len(),
        on_server.len(),
        lost.len(),
        gaps.join(", ")
    );
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!("acknowledged records lost: {lost:?}"))
    }
}
