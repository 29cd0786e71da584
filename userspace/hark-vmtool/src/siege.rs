// SPDX-License-Identifier: GPL-2.0
//! `hark-vmtool http-siege IDLE SLOW SAMPLES STATS`: the switch's resource use under attack,
//! measured in one run (ktcpvs-siege scenario):
//!
//! 1. unloaded: the median time of SAMPLES requests, each on a new connection (connect to
//!    the last byte of the answer), one at a time;
//! 2. IDLE keep-alive connections, each after one answered request (8 threads), left idle;
//!    the service's `mem_bytes` (from the STATS file) and `/proc/meminfo`'s `Slab` before and
//!    after, per connection;
//! 3. SLOW slowloris connections: a request line and a field line, then one more field line
//!    every 2 s on each (one thread), never ending their heads;
//! 4. loaded: SAMPLES requests as in 1 while all of them are held open; fails if the loaded
//!    median is more than twice the unloaded one, or if the idle connections were closed.

use crate::client::{connect, get, request};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);
const OPENERS: usize = 8;

/// The median of `samples` request times (ms), each on a new connection.
fn latency(samples: usize) -> Result<f64, String> {
    let mut t = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t0 = Instant::now();
        let r = get("/lat", None, TIMEOUT)?;
        if r.status != 200 {
            return Err(format!("latency probe: status {}", r.status));
        }
        t.push(t0.elapsed().as_secs_f64() * 1000.0);
        thread::sleep(Duration::from_millis(100));
    }
    t.sort_by(f64::total_cmp);
    let med = t[t.len() / 2];
    println!(
        "  {} requests: median {med:.1} ms, min {:.1} ms, max {:.1} ms",
        t.len(),
        t[0],
        t[t.len() - 1]
    );
    Ok(med)
}

/// `key=N` of a stats file.
fn stat(path: &str, key: &str) -> Result<u64, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    s.split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .ok_or_else(|| format!("{path}: no {key} in {s:?}"))
}

/// `/proc/meminfo`'s `key` in KiB.
fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// `n` connections, each after one answered keep-alive request.
fn open_idle(n: usize) -> Result<Vec<TcpStream>, String> {
    let per = n.div_ceil(OPENERS);
    let handles: Vec<_> = (0..OPENERS)
        .map(|k| {
            let count = per.min(n.saturating_sub(k * per));
            thread::spawn(move || -> Result<Vec<TcpStream>, String> {
                let mut v = Vec::with_capacity(count);
                for _ in 0..count {
                    let mut s = connect(TIMEOUT)?;
                    let r = request(&mut s, "/idle", None)?;
                    if r.status != 200 || !r.keep {
                        return Err(format!("idle opener: status {} keep {}", r.status, r.keep));
                    }
                    v.push(s);
                }
                Ok(v)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.join().map_err(|_| "opener panicked".to_owned())??);
    }
    Ok(all)
}

/// `n` slowloris connections trickling a field line each every 2 s until `stop`.
fn slowloris(n: usize, stop: Arc<AtomicBool>) -> Result<thread::JoinHandle<usize>, String> {
    let mut socks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = connect(TIMEOUT)?;
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .map_err(|e| format!("slowloris: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        socks.push(s);
    }
    Ok(thread::spawn(move || {
        let mut lines = 0;
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            for s in &mut socks {
                if s.write(b"X-Slow: 1\r\n").is_ok() {
                    lines += 1;
                }
            }
            thread::sleep(Duration::from_secs(2).saturating_sub(t0.elapsed()));
        }
        lines
    }))
}

pub fn run(idle: usize, slow: usize, samples: usize, stats: &str) -> Result<(), String> {
    println!("unloaded:");
    let base = latency(samples)?;
    let (mem0, slab0) = (stat(stats, "mem_bytes")?, meminfo("Slab"));
    let t0 = Instant::now();
    let conns = open_idle(idle)?;
    // Let the last requests end (their buffers go once their responses are sent).
    thread::sleep(Duration::from_secs(2));
    let (mem1, slab1) = (stat(stats, "mem_bytes")?, meminfo("Slab"));
    println!(
        "idle: {} keep-alive connections in {:.0} s; mem_bytes {mem0} -> {mem1}: {} bytes per \
         connection; Slab {slab0} -> {slab1} KiB: {} bytes per connection (both ends' sockets \
         included)",
        conns.len(),
        t0.elapsed().as_secs_f64(),
        mem1.saturating_sub(mem0) / idle.max(1) as u64,
        slab1.saturating_sub(slab0) * 1024 / idle.max(1) as u64
    );
    let stop = Arc::new(AtomicBool::new(false));
    let loris = slowloris(slow, stop.clone())?;
    thread::sleep(Duration::from_secs(3));
    let active = stat(stats, "active_conns")?;
    println!("held: active_conns={active}; loaded:");
    let loaded = latency(samples)?;
    stop.store(true, Ordering::Relaxed);
    let lines = loris.join().map_err(|_| "slowloris panicked".to_owned())?;
    let ratio = loaded / base;
    println!(
        "siege: unloaded median {base:.1} ms, loaded {loaded:.1} ms (x{ratio:.2}), {lines} \
         slowloris lines sent, memory {} KiB held (mem_bytes)",
        stat(stats, "mem_bytes")? / 1024
    );
    if active < (idle + slow) as u64 {
        return Err(format!("only {active} connections held of {}", idle + slow));
    }
    if ratio > 2.0 {
        return Err(format!(
            "loaded median {loaded:.1} ms > 2 x unloaded {base:.1} ms"
        ));
    }
    drop(conns);
    Ok(())
}
