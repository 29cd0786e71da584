// SPDX-License-Identifier: GPL-2.0

//! The data path: listening sockets of the enabled services, and the relay of client
//! connections to the real servers (see `Documentation/ktcpvs-relay.md`).
//!
//! Threading: one kernel thread per online CPU, no thread per connection. Every socket is
//! non-blocking; its callbacks (`ktcpvs_rs_net.c`) only queue the socket's event source on a
//! worker's ready queue and wake it. A worker owns its connections (a [`Table`], no lock): it
//! pops fired sources (a listener: accept; a connection: step it) and steps the connections
//! whose deadline passed (a timer wheel); nothing walks all connections. A step
//! ([`Conn::step`]) does what it can without blocking and returns.
//!
//! HTTP mode, per request: the request head is read (within `max_header_bytes` and
//! `client_header_timeout_ms`) and parsed, a server is chosen (rules, then the scheduler), the
//! head is forwarded with `Connection: close` on a new server connection, or with `pool_idle`
//! without it on a connection from the [`Pool`] (hop-by-hop fields removed,
//! `X-Forwarded-For` added if `xff`), then the body (Content-Length or chunked,
//! delimited by `http1::BodyRelay`); the response head is parsed and rewritten
//! (`Connection: keep-alive` or `close`), its body delimited, and when the client connection
//! is kept the next request head is read from it (keep-alive, pipelined bytes kept).
//! TCP mode splices bytes both ways, half-closes included.
//!
//! Lock order: `Service::inner` (configfs stores; `enabled` opens and closes listeners under
//! it) before [`Relay::listeners`]; `Service::sched` is taken alone. Workers hold
//! `listeners` only to accept, and take snapshots (`inner`) after dropping it. The pool's lock
//! is taken alone.

use crate::config::{SchedState, ServerCfg, ServerRt, Service, ServiceCfg, Stat};
use crate::http1::{
    self, BodyRelay, ChunkLimits, Framing, HeadScan, Header, HttpError, Limits, Method, Version,
};
use crate::ktcpvs_cfs::{Mode, MAX_NAME, MAX_SERVERS};
use crate::l7_sched::{self, SchedKind, ServerState, ServerView};
use crate::net::{self, Addr, Ev, Io, KThread, Sock, Waker};
use crate::pool::{Key, Pool};
use crate::table::Table;
use core::net::{IpAddr, SocketAddr};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{Arc, Mutex};

/// Most worker threads (one per online CPU at load, at most this many).
pub(crate) const MAX_WORKERS: usize = net::MAX_WAKERS;
/// How often worker 0 closes the pool's expired idle connections (ms).
const POOL_EXPIRE_MS: u64 = 100;
/// Fired sources a worker handles before it looks at the deadlines.
const EVENT_BUDGET: usize = 64;
/// Token bit of a listener's event source (the rest: the service id); other tokens are slots
/// of the worker's [`Table`].
const LISTENER: u64 = 1 << 63;
/// Listen backlog.
const BACKLOG: u32 = 1024;
/// Connections a worker accepts from one listener before looking at the others.
const ACCEPT_BATCH: usize = 8;
/// Relay buffer per direction (bytes); the server-bound one also holds the request head.
const BUF: usize = 16 * 1024;
/// Room for the fields the switch adds to a head (`Connection: close`, X-Forwarded-For).
const HEAD_EXTRA: usize = 128;
/// Steps of one connection before the worker looks at the others.
const STEP_BUDGET: usize = 32;
/// How long a closing connection waits for its last bytes to leave and the client to close.
const LINGER_MS: u64 = 2000;
/// Most client bytes read and dropped while closing.
const DRAIN_MAX: usize = 64 * 1024;
/// Most header fields of a request.
const MAX_FIELDS: usize = 64;
/// Most requests on one client connection (keep-alive); the last one is answered with
/// `Connection: close`.
const MAX_REQUESTS: u32 = 100;
/// Limits of a chunked response body (no size limit: the switch only delimits it).
const RESPONSE_CHUNKS: ChunkLimits = ChunkLimits {
    max_body: u64::MAX,
    ..ChunkLimits::DEFAULT
};
/// Size of the `uri-hash` Maglev table (a prime, `l7_sched::MAGLEV_SIZES`).
const MAGLEV_SIZE: usize = 1021;
/// Longest `Set-Cookie` line the switch adds to a response (persistence cookie).
const COOKIE_LINE_MAX: usize = b"Set-Cookie: ".len()
    + MAX_NAME
    + 1
    + l7_sched::COOKIE_VALUE_LEN
    + b"; Path=/; HttpOnly\r\n".len();
/// Room kept free after a response head for its rewrite (`Connection` and `Set-Cookie`).
const RESPONSE_RESERVE: usize = http1::RESPONSE_HEAD_GROWTH + COOKIE_LINE_MAX;

/// Answer to a client whose head did not arrive in time.
const RESPONSE_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A listening socket of an enabled service.
struct Listener {
    svc: Arc<Service>,
    /// Declared before `_ev`: released (and detached) first.
    sock: Sock,
    _ev: Ev,
}

/// The data path of the module.
///
/// # Invariants
///
/// `wakers` has one entry per worker thread (1..=[`MAX_WORKERS`]), and only the worker with
/// the same index pops from it; every [`Ev`] made by the relay names only them and is dropped
/// before the relay (listeners are in `listeners`; connections belong to worker threads, which
/// hold an `Arc<Relay>`).
#[pin_data]
pub(crate) struct Relay {
    wakers: KVec<Waker>,
    #[pin]
    listeners: Mutex<KVec<Listener>>,
    #[pin]
    workers: Mutex<KVec<KThread<WorkerArg>>>,
    /// Idle server connections (`pool_idle`); emptied by `stop` after the workers ended.
    pub(crate) pool: Arc<Pool>,
}

/// Owns the relay for the module: dropping it stops the relay (listeners, workers,
/// connections). The worker threads hold `Arc<Relay>` clones until they are stopped, so the
/// `Arc` alone would never go.
pub(crate) struct RelayHandle(pub(crate) Arc<Relay>);

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// What a worker thread runs on.
struct WorkerArg {
    relay: Arc<Relay>,
    idx: usize,
}

impl Relay {
    /// The relay with its worker threads running, one per online CPU (at most
    /// [`MAX_WORKERS`]).
    pub(crate) fn start() -> Result<Arc<Relay>> {
        net::init()?;
        let n = net::online_cpus().clamp(1, MAX_WORKERS);
        let mut wakers = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            wakers.push(Waker::new()?, GFP_KERNEL)?;
        }
        let relay = Arc::pin_init(
            try_pin_init!(Relay {
                wakers,
                listeners <- new_mutex!(KVec::new()),
                workers <- new_mutex!(KVec::new()),
                pool: Pool::new()?,
            }? Error),
            GFP_KERNEL,
        )?;
        for idx in 0..n {
            if let Err(e) = relay.spawn_worker(idx) {
                relay.stop();
                return Err(e);
            }
        }
        pr_info!("{} worker threads\n", n);
        Ok(relay)
    }

    /// Starts worker thread `idx` (`ktcpvs_rs/<idx>`).
    fn spawn_worker(self: &Arc<Self>, idx: usize) -> Result {
        let arg = Arc::new(
            WorkerArg {
                relay: self.clone(),
                idx,
            },
            GFP_KERNEL,
        )?;
        let name = CString::try_from_fmt(fmt!("ktcpvs_rs/{idx}"))?;
        let t = KThread::spawn(&name, arg, worker_main)?;
        self.workers.lock().push(t, GFP_KERNEL)?;
        Ok(())
    }

    /// Closes every listener, then stops the workers, which close their connections, then
    /// closes the idle server connections (no worker can add one any more).
    pub(crate) fn stop(&self) {
        let listeners = core::mem::take(&mut *self.listeners.lock());
        drop(listeners);
        let workers = core::mem::take(&mut *self.workers.lock());
        // Dropping a `KThread` waits for the thread to return.
        drop(workers);
        self.pool.clear();
    }

    /// Opens the listening socket of `svc` on `addr`. Called with `svc`'s configuration lock
    /// held (lock order: `Service::inner` before `listeners`).
    pub(crate) fn listen(&self, svc: &Arc<Service>, addr: &SocketAddr) -> Result {
        let mut g = self.listeners.lock();
        if g.iter().any(|l| l.svc.id == svc.id) {
            return Ok(());
        }
        g.reserve(1, GFP_KERNEL)?;
        let sock = Sock::listen(addr, BACKLOG)?;
        let mut wakers: [&Waker; MAX_WORKERS] = [&self.wakers[0]; MAX_WORKERS];
        for (w, r) in wakers.iter_mut().zip(self.wakers.iter()) {
            *w = r;
        }
        let n = self.wakers.len().min(MAX_WORKERS);
        // SAFETY: The wakers live as long as the relay, which outlives every listener (they
        // are dropped by `stop` or `unlisten`, and `Relay` is dropped only after `stop`).
        // Its events go to one worker at a time, in turn.
        let ev = unsafe { Ev::new(&wakers[..n], LISTENER | svc.id)? };
        // SAFETY: `ev` is stored next to `sock` in a `Listener`, which drops `sock` first.
        unsafe { sock.attach(&ev) };
        g.push(
            Listener {
                svc: svc.clone(),
                sock,
                _ev: ev,
            },
            GFP_KERNEL,
        )?;
        Ok(())
    }

    /// Closes the listening socket of service `id`, if any (its connections go on).
    pub(crate) fn unlisten(&self, id: u64) {
        let mut g = self.listeners.lock();
        if let Some(i) = g.iter().position(|l| l.svc.id == id) {
            let l = g.remove(i);
            drop(g);
            drop(l);
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections of the listener of service `id` into `out`;
    /// if there may be more, fires the listener again (for the next worker in turn).
    fn accept_some(&self, id: u64, out: &mut KVec<(Sock, Arc<Service>)>) {
        let g = self.listeners.lock();
        let Some(l) = g.iter().find(|l| l.svc.id == id) else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            let Ok(s) = l.sock.accept() else { return };
            // On allocation failure the connection is closed at once.
            let _ = out.push((s, l.svc.clone()), GFP_KERNEL);
        }
        l._ev.fire();
    }
}

/// What a worker thread keeps between wake-ups.
struct Worker<'a> {
    relay: &'a Relay,
    waker: &'a Waker,
    conns: KBox<Table<Conn>>,
    fresh: KVec<(Sock, Arc<Service>)>,
}

impl Worker<'_> {
    /// Handles one fired source: a listener (accept, and step the new connections) or a
    /// connection (step it).
    fn event(&mut self, token: u64, now: u64) {
        if token & LISTENER == 0 {
            // Slots are below `u32::MAX` (`Table`).
            self.step(token as u32, now);
            return;
        }
        self.relay.accept_some(token & !LISTENER, &mut self.fresh);
        let mut fresh = core::mem::take(&mut self.fresh);
        for (sock, svc) in fresh.drain_all() {
            let (waker, pool) = (self.waker, &self.relay.pool);
            let slot = self
                .conns
                .insert(|slot| Conn::new(sock, svc, waker, u64::from(slot), pool, now));
            if let Some(slot) = slot {
                self.step(slot, now);
            }
        }
        // The (empty) vector keeps its memory for the next accepts.
        self.fresh = fresh;
    }

    /// Steps the connection in `slot`: frees it when it is finished, else arms its deadline.
    fn step(&mut self, slot: u32, now: u64) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.step(now) {
            let at = c.deadline;
            self.conns.arm(slot, at);
        } else {
            drop(self.conns.remove(slot));
        }
    }
}

/// A worker thread: handles the sources that fired (listeners, its connections), at most
/// [`EVENT_BUDGET`] at a time, then the connections whose deadline passed; the work per event
/// does not depend on how many connections it holds. On stop closes them all.
fn worker_main(arg: &Arc<WorkerArg>) {
    let relay = &arg.relay;
    let Ok(conns) = Table::new(net::now_ms()) else {
        pr_err!("worker {}: out of memory\n", arg.idx);
        return;
    };
    let mut w = Worker {
        relay,
        waker: &relay.wakers[arg.idx],
        conns,
        fresh: KVec::new(),
    };
    let mut next_expire = net::now_ms();
    let mut busy = false;
    while !net::thread_should_stop() {
        if !busy {
            let wait = w.conns.ms_to_next_tick(net::now_ms());
            w.waker.wait(u32::try_from(wait).unwrap_or(u32::MAX));
        }
        let now = net::now_ms();
        busy = false;
        for _ in 0..EVENT_BUDGET {
            // SAFETY: This thread is the only one popping from its waker (`Relay` invariant).
            let Some(token) = (unsafe { w.waker.next() }) else {
                break;
            };
            // A fresh time for each: a long batch must not start deadlines in the past.
            w.event(token, net::now_ms());
            busy = true;
        }
        while let Some(slot) = w.conns.pop_expired(now) {
            w.step(slot, now);
        }
        if arg.idx == 0 && now >= next_expire {
            next_expire = now.saturating_add(POOL_EXPIRE_MS);
            relay.pool.expire(now);
        }
    }
    // Closes every connection (their counters go back with them).
    drop(w);
}

/// Memory counted in a service's `MemBytes` while it is held.
///
/// # Invariants
///
/// `svc.stats` counts `n` bytes in `MemBytes` for it; `Drop` takes them back.
struct Charge {
    svc: Arc<Service>,
    n: u64,
}

impl Charge {
    /// Counts `n` bytes of `svc`, whatever its limit (error answers, a refused connection
    /// about to be closed).
    fn force(svc: &Arc<Service>, n: usize) -> Charge {
        let n = n as u64;
        svc.stats.add(Stat::MemBytes, n);
        // INVARIANT: counted just above.
        Charge {
            svc: svc.clone(),
            n,
        }
    }

    /// Counts `n` bytes of `svc` unless that passes `limit_kib`: then `None`, and the
    /// service's `Refused` counts one. Counted and compared in one step, so that workers on
    /// other CPUs cannot pass the limit together.
    fn within(svc: &Arc<Service>, n: usize, limit_kib: u32) -> Option<Charge> {
        let c = Charge::force(svc, n);
        let total = svc.stats.get(Stat::MemBytes);
        if total > u64::from(limit_kib).saturating_mul(1024) {
            svc.stats.add(Stat::Refused, 1);
            return None;
        }
        Some(c)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.svc.stats.sub_mem(self.n);
    }
}

/// A buffer with a pending region `data[start..end]`, counted in its service's `MemBytes`
/// (an empty one, holding no memory, is not).
struct Buf {
    data: KVVec<u8>,
    start: usize,
    end: usize,
    _charge: Option<Charge>,
}

impl Buf {
    /// A buffer of no bytes (no memory).
    fn empty() -> Buf {
        Buf {
            data: KVVec::new(),
            start: 0,
            end: 0,
            _charge: None,
        }
    }

    /// A buffer of `size` bytes counted in `svc`'s memory; `limit_kib`: refused (`ENOSPC`,
    /// counted in `Refused`) if that passes this limit.
    fn new(size: usize, svc: &Arc<Service>, limit_kib: Option<u32>) -> Result<Buf> {
        let charge = match limit_kib {
            Some(l) => Charge::within(svc, size, l).ok_or(ENOSPC)?,
            None => Charge::force(svc, size),
        };
        let mut data = KVVec::with_capacity(size, GFP_KERNEL)?;
        data.resize(size, 0, GFP_KERNEL)?;
        Ok(Buf {
            data,
            start: 0,
            end: 0,
            _charge: Some(charge),
        })
    }

    fn pending(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or(&[])
    }

    fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Marks `n` more bytes as gone.
    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
    }

    /// Replaces the content with `bytes` (truncated to the capacity).
    fn set(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.data.len());
        self.data[..n].copy_from_slice(&bytes[..n]);
        self.start = 0;
        self.end = n;
    }
}

/// Appends slices to a buffer, failing when it is full.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, b: &[u8]) -> Result<(), HttpError> {
        let end = self
            .len
            .checked_add(b.len())
            .ok_or(HttpError::HeadTooLarge)?;
        let dst = self
            .buf
            .get_mut(self.len..end)
            .ok_or(HttpError::HeadTooLarge)?;
        dst.copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

impl core::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}

/// Writes the request head to send to a server: the request line, the fields but the
/// hop-by-hop ones, `Connection: close` if `close` (else nothing: an HTTP/1.1 request keeps
/// the server connection open for the pool), the empty line.
fn rewrite_head(
    line: &[u8],
    headers: &[Header<'_>],
    out: &mut [u8],
    close: bool,
) -> Result<usize, HttpError> {
    let mut o = Out { buf: out, len: 0 };
    o.put(line)?;
    for h in headers.iter().filter(|h| !http1::is_hop_by_hop(h.name)) {
        o.put(h.name)?;
        o.put(b": ")?;
        o.put(h.value)?;
        o.put(b"\r\n")?;
    }
    if close {
        o.put(b"Connection: close\r\n")?;
    }
    o.put(b"\r\n")?;
    Ok(o.len)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the request head (http).
    Head,
    /// Connecting to a server.
    Connect,
    /// Relaying.
    Relay,
    /// Sending the last bytes (an error response), then draining the client until it closes.
    Closing,
    /// To be freed.
    Done,
}

/// Where the response to the current request is (http).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resp {
    /// Reading its head (interim 1xx heads are relayed as they come).
    Head,
    /// Relaying its body (delimited by `Response::body`).
    Body,
    /// Read completely (bytes may still wait in `down`).
    Done,
}

/// What a phase step did.
#[derive(PartialEq, Eq)]
enum Step {
    /// Something changed: step again.
    Again,
    /// Nothing can move until an event or a timeout.
    Wait,
}

/// What a part of a relay step did.
enum Flow {
    /// Bytes moved.
    Moved,
    /// Nothing could move.
    Idle,
    /// The connection changed phase (failed, retried, finished): step again.
    Stop,
}

/// Where the bytes of `down` the client may have end: in http mode a response head is held
/// back until it is complete (then rewritten), the bytes before it may go.
fn sendable(down: &Buf, http: bool, resp: &Response) -> usize {
    if http && resp.state == Resp::Head {
        resp.hold.min(down.end)
    } else {
        down.end
    }
}

/// A client connection and, once chosen, its server connection.
///
/// # Invariants
///
/// `client` and `server` are attached to `ev` and declared before it, so they are released
/// (and detached) before `ev` is freed; a server connection leaving for the pool is detached
/// by [`Pool::put`]. `svc.stats` counts this connection in `ActiveConns` (taken back by
/// `Drop`). When `req.srv.reused` is true, `server` came from the pool and `req.srv.key`
/// names its server.
pub(crate) struct Conn {
    client: Sock,
    server: Option<Sock>,
    ev: Ev,
    svc: Arc<Service>,
    /// The configuration of the current request (a new snapshot for each request head).
    cfg: Arc<ServiceCfg>,
    peer: Addr,
    phase: Phase,
    /// When the current phase times out (ms).
    deadline: u64,
    /// The request head as read, then the body bytes read with it (`start..end`); holds
    /// no memory while no request is being read (an idle keep-alive connection).
    head: Buf,
    /// Size of `head` when it holds memory (`max_header_bytes` at the accept).
    head_size: usize,
    /// Bytes to send to the server (head, then body); allocated when a server is chosen.
    up: Option<Buf>,
    /// Bytes to send to the client.
    down: Option<Buf>,
    client_eof: bool,
    client_wr_shut: bool,
    /// Client bytes read and dropped while closing.
    drained: usize,
    /// Requests parsed on this client connection.
    nreq: u32,
    /// Where idle server connections go (`pool_idle`).
    pool: Arc<Pool>,
    /// The current request (http; tcp mode: the one relayed connection).
    req: Request,
    /// This structure, its event source and its worker's slot, in `MemBytes`.
    _mem: Charge,
}

/// Bytes of a connection that holds no buffer (an idle keep-alive connection): its
/// structure, its event source, its slot in the worker's table.
fn conn_bytes() -> usize {
    size_of::<Conn>()
        .saturating_add(net::ev_size())
        .saturating_add(Table::<Conn>::SLOT_BYTES)
}

/// The state of one request, from its head to the end of its response; a kept-alive client
/// connection starts each request with a new one.
struct Request {
    /// When to parse the head being read.
    scan: HeadScan,
    /// Length of the head in `Conn::head` once parsed.
    head_len: usize,
    /// Delimits the client-to-server bytes.
    body: BodyRelay,
    /// The request (head and body) was read completely.
    done: bool,
    /// The request is a HEAD (its response has no body).
    is_head: bool,
    /// The client connection carries another request after this one.
    keep: bool,
    /// The request is sent without `Connection: close`: its server connection may be pooled.
    pool_req: bool,
    /// `up.data[..up.end]` still holds everything sent to the server for this request (its
    /// body was not streamed): the request can be sent again.
    replayable: bool,
    /// The request was sent again once, on a new connection, after a pooled one broke.
    retried: bool,
    /// Servers that may take the request; those already tried.
    target: u64,
    tried: u64,
    /// Slots of the servers whose `requests` counts the request (a request sent again to the
    /// same server counts once).
    counted: u64,
    /// The server a valid persistence cookie of the request names, if it may take it.
    cookie_slot: Option<u8>,
    /// The path, for `uri-hash` (a range of `Conn::head`).
    path: (usize, usize),
    /// The server connection of the request (a new one for each attempt).
    srv: Upstream,
    /// The response.
    resp: Response,
}

impl Request {
    fn new() -> Self {
        Request {
            scan: HeadScan::new(),
            head_len: 0,
            body: BodyRelay::UntilClose,
            done: false,
            is_head: false,
            keep: false,
            pool_req: false,
            replayable: false,
            retried: false,
            target: 0,
            tried: 0,
            counted: 0,
            cookie_slot: None,
            path: (0, 0),
            srv: Upstream::new(),
            resp: Response::new(),
        }
    }
}

/// The server side of a request: the server chosen, and the state of the connection to it
/// (the socket itself is `Conn::server`).
struct Upstream {
    /// The server connected to, counted in its `ActiveConns` while held.
    active: Option<Active>,
    /// The server being connected to (phase `Connect`).
    pending: Option<Chosen>,
    /// The server (as of the connect) of the server connection.
    key: Option<Key>,
    /// The server connection came from the pool.
    reused: bool,
    /// A byte of a response came on the server connection.
    got_resp: bool,
    eof: bool,
    wr_shut: bool,
    /// The server connection can go to the pool once the response is complete: the response
    /// is framed, the server did not ask to close and sent nothing after it.
    keep: bool,
}

impl Upstream {
    fn new() -> Self {
        Upstream {
            active: None,
            pending: None,
            key: None,
            reused: false,
            got_resp: false,
            eof: false,
            wr_shut: false,
            keep: false,
        }
    }
}

/// The response to a request (http).
struct Response {
    state: Resp,
    /// Delimits the response body.
    body: BodyRelay,
    /// With `state == Head`: `down.data[hold..end]` is the response head being read (not sent
    /// yet); `down.data[start..hold]` may go to the client.
    hold: usize,
    /// Bytes of the response sent to the client so far.
    sent: u64,
}

impl Response {
    fn new() -> Self {
        Response {
            state: Resp::Head,
            body: BodyRelay::UntilClose,
            hold: 0,
            sent: 0,
        }
    }
}

/// A server chosen for the current request: its slot in the request's snapshot, and its
/// counters and passive health (those of this server even if it is removed meanwhile and its
/// slot reused).
struct Chosen {
    slot: u8,
    rt: Arc<ServerRt>,
}

/// A server connection counted in its server's `ActiveConns`.
///
/// # Invariants
///
/// `self.0.rt.stats` counts it in `ActiveConns`; `Drop` takes it back.
struct Active(Chosen);

impl Active {
    /// Counts a connection to `c`.
    fn new(c: Chosen) -> Self {
        c.rt.stats.add(Stat::ActiveConns, 1);
        // INVARIANT: counted just above.
        Active(c)
    }

    fn slot(&self) -> u8 {
        self.0.slot
    }

    fn rt(&self) -> &ServerRt {
        &self.0.rt
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.rt.stats.dec_active();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The server connection's count goes with `req.srv.active`.
        self.svc.stats.dec_active();
    }
}

/// The servers of `cfg` as the schedulers see them, by slot. With `now`, the servers that
/// passive health has failed at `now` are shown `Down` (unless `max_fails` is 0: passive
/// health off).
fn views(cfg: &ServiceCfg, now: Option<u64>) -> [ServerView; MAX_SERVERS] {
    let mut v = [ServerView {
        id: 0,
        weight: 0,
        state: ServerState::Down,
        active: 0,
    }; MAX_SERVERS];
    let now = now.filter(|_| cfg.max_fails != 0);
    for s in cfg.servers.iter() {
        let i = usize::from(s.slot);
        if i < MAX_SERVERS && s.addr.is_some() {
            let failed = now.is_some_and(|now| !s.rt.health.lock().available(now));
            v[i] = ServerView {
                id: s.id as u32,
                weight: s.weight,
                state: if failed { ServerState::Down } else { s.state },
                // Saturating: a count that ever went wrong must not make the server look idle.
                active: u32::try_from(s.rt.stats.get(Stat::ActiveConns)).unwrap_or(u32::MAX),
            };
        }
    }
    v
}

/// All server slots of `cfg`.
fn all_slots(cfg: &ServiceCfg) -> u64 {
    cfg.servers.iter().fold(0, |m, s| m | 1u64 << (s.slot & 63))
}

fn server_by_slot(cfg: &ServiceCfg, slot: usize) -> Option<&ServerCfg> {
    cfg.servers.iter().find(|s| usize::from(s.slot) == slot)
}

/// The servers that may take `req` (the target of the first rule with a pattern and a target
/// that matches, else the default), and the one a valid persistence cookie of the request
/// names, if it may take it.
fn route(
    cfg: &ServiceCfg,
    svc: &Service,
    req: &http1::Request<'_, '_>,
    now: u64,
) -> (u64, Option<u8>) {
    let target = cfg
        .rules
        .iter()
        .find_map(|r| match &r.rule {
            Some(rule) if r.target != 0 && rule.matches(req) => Some(r.target),
            _ => None,
        })
        .unwrap_or_else(|| cfg.default_target.unwrap_or_else(|| all_slots(cfg)));
    let cookie_slot = cfg.cookie.as_ref().and_then(|name| {
        let value = l7_sched::find_cookie(req.headers, name.as_bytes())?;
        let id = l7_sched::cookie_decode(&svc.cookie_key, value)?;
        let v = views(cfg, Some(now));
        // A slot is below 64.
        l7_sched::cookie_pick(&v, target, id).map(|s| s as u8)
    });
    (target, cookie_slot)
}

/// Writes into `line` the `Set-Cookie` line of the persistence cookie for the server of `req`,
/// unless the service has none or the request's cookie named this server already; returns its
/// length (0: none).
fn cookie_line(cfg: &ServiceCfg, svc: &Service, req: &Request, line: &mut [u8]) -> usize {
    let (Some(name), Some(slot)) = (&cfg.cookie, req.srv.active.as_ref().map(Active::slot)) else {
        return 0;
    };
    if req.cookie_slot == Some(slot) {
        return 0;
    }
    let Some(s) = server_by_slot(cfg, usize::from(slot)) else {
        return 0;
    };
    l7_sched::set_cookie_header(
        line,
        name.as_bytes(),
        &svc.cookie_key,
        s.id as u32,
        b"/",
        None,
    )
    .unwrap_or(0)
}

/// Where `part` (a part of `buf`) lies in `buf`; `(0, 0)` if it is not in it.
fn range_in(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let base = buf.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    p.checked_sub(base)
        .and_then(|s| Some((s, s.checked_add(part.len())?)))
        .filter(|&(_, e)| e <= buf.len())
        .unwrap_or((0, 0))
}

/// Writes the request head to forward into `up` (see [`rewrite_head`]), with
/// `X-Forwarded-For: <xff>` added if `xff` is given (then the head is rewritten into `down`,
/// which must be empty, first). Returns its length.
fn forward_head(
    line: &[u8],
    headers: &[Header<'_>],
    close: bool,
    xff: Option<IpAddr>,
    up: &mut Buf,
    down: &mut Buf,
) -> Result<usize, HttpError> {
    let Some(ip) = xff else {
        return rewrite_head(line, headers, &mut up.data, close);
    };
    let mut client = [0u8; 48];
    let mut o = Out {
        buf: &mut client,
        len: 0,
    };
    match ip {
        IpAddr::V4(a) => core::fmt::write(&mut o, format_args!("{a}")),
        IpAddr::V6(a) => core::fmt::write(&mut o, format_args!("{a}")),
    }
    .map_err(|_| HttpError::HeadTooLarge)?;
    let clen = o.len;
    let n = rewrite_head(line, headers, &mut down.data, close)?;
    let client = client.get(..clen).unwrap_or(&[]);
    let head = down.data.get(..n).unwrap_or(&[]);
    http1::add_forwarded_for(head, client, &mut up.data)
}

/// What a parsed response head says.
struct RespHead {
    /// A 1xx head (not 101): the final head follows.
    interim: bool,
    framing: Framing,
    head_len: usize,
    /// The server keeps the connection.
    server_keep: bool,
}

/// What a parsed request head says that the rest of the request needs.
struct HeadFacts {
    keep_alive: bool,
    pool_req: bool,
    is_head: bool,
    /// The servers that may take it, and the one its cookie names (see [`route`]).
    route: (u64, Option<u8>),
    /// The path (a range of the head buffer).
    path: (usize, usize),
    framing: Framing,
    head_len: usize,
}

/// The relay buffers of a request (`size` bytes each, within `limit_kib` of `svc`), with the
/// head to forward in the first: 503 when the memory is refused, else the status of a head
/// that cannot be forwarded.
fn upstream_bufs(
    svc: &Arc<Service>,
    limit_kib: u32,
    size: usize,
    req: &http1::Request<'_, '_>,
    buf: &[u8],
    close: bool,
    xff: Option<IpAddr>,
) -> Result<(Buf, Buf), u16> {
    let head_len = req.head_len;
    let line_end = buf
        .get(req.start..head_len)
        .and_then(|h| h.windows(2).position(|w| w == b"\r\n"))
        .map(|i| req.start.saturating_add(i).saturating_add(2))
        .unwrap_or(head_len);
    let (mut up, mut down) = match (
        Buf::new(size, svc, Some(limit_kib)),
        Buf::new(size, svc, Some(limit_kib)),
    ) {
        (Ok(u), Ok(d)) => (u, d),
        _ => return Err(503),
    };
    let line = buf.get(req.start..line_end).unwrap_or(&[]);
    let n =
        forward_head(line, req.headers, close, xff, &mut up, &mut down).map_err(|e| e.status())?;
    up.start = 0;
    up.end = n;
    down.clear();
    Ok((up, down))
}

impl Conn {
    /// Sets up an accepted connection whose event source has `token` (its slot in the
    /// worker's table); `None` if it had to be closed at once. It holds no buffer yet.
    fn new(
        client: Sock,
        svc: Arc<Service>,
        waker: &Waker,
        token: u64,
        pool: &Arc<Pool>,
        now: u64,
    ) -> Option<KBox<Conn>> {
        svc.stats.add(Stat::TotalConns, 1);
        let Ok(cfg) = svc.snapshot() else {
            svc.stats.add(Stat::Errors, 1);
            return None;
        };
        let peer = client.peer().ok()?;
        // SAFETY: The worker's waker lives as long as the relay, which outlives the worker
        // threads and so every connection.
        let ev = unsafe { Ev::new(&[waker], token) }.ok()?;
        // SAFETY: `ev` is moved into the same `Conn` as `client`, declared after it (type
        // invariant), with nothing that can fail in between: `client` is released first.
        unsafe { client.attach(&ev) };
        // Counted and compared in one step: workers accept at once, and a check before the
        // count would let each of them past the limit.
        let before = svc.stats.fetch_add(Stat::ActiveConns, 1);
        let mem = Charge::within(&svc, conn_bytes(), cfg.max_mem_kib);
        let over = (cfg.max_conns != 0 && before >= u64::from(cfg.max_conns)) || mem.is_none();
        if over && mem.is_some() {
            svc.stats.add(Stat::Refused, 1);
        }
        let mem = mem.unwrap_or_else(|| Charge::force(&svc, conn_bytes()));
        let mode = cfg.mode;
        let head_size = if mode == Mode::Http {
            cfg.max_header_bytes as usize
        } else {
            0
        };
        let deadline = now.saturating_add(u64::from(cfg.client_header_timeout_ms));
        let mut c = KBox::new(
            Conn {
                client,
                server: None,
                ev,
                svc,
                cfg,
                peer,
                phase: Phase::Head,
                deadline,
                head: Buf::empty(),
                head_size,
                up: None,
                down: None,
                client_eof: false,
                client_wr_shut: false,
                drained: 0,
                nreq: 0,
                pool: pool.clone(),
                req: Request::new(),
                _mem: mem,
            },
            GFP_KERNEL,
        )
        .ok()?;
        if over {
            c.fail(Some(503), now);
        } else if mode == Mode::Tcp {
            c.start_tcp(now)?;
        }
        Some(c)
    }

    /// tcp mode: buffers, then a connect to a server of the default target.
    fn start_tcp(&mut self, now: u64) -> Option<()> {
        let limit = Some(self.cfg.max_mem_kib);
        self.up = Some(Buf::new(BUF, &self.svc, limit).ok()?);
        self.down = Some(Buf::new(BUF, &self.svc, limit).ok()?);
        self.req.target = self
            .cfg
            .default_target
            .unwrap_or_else(|| all_slots(&self.cfg));
        self.phase = Phase::Connect;
        self.connect_next(now);
        Some(())
    }

    fn http(&self) -> bool {
        self.cfg.mode == Mode::Http
    }

    /// Steps the connection as far as it goes without blocking. Returns `false` when it is
    /// finished (the caller frees it).
    fn step(&mut self, now: u64) -> bool {
        for _ in 0..STEP_BUDGET {
            let r = match self.phase {
                Phase::Head => self.head_step(now),
                Phase::Connect => self.connect_step(now),
                Phase::Relay => self.relay_step(now),
                Phase::Closing => self.closing_step(now),
                Phase::Done => return false,
            };
            if r == Step::Wait {
                return self.phase != Phase::Done;
            }
        }
        // Budget spent: come back after the others.
        self.ev.fire();
        self.phase != Phase::Done
    }

    /// Ends the connection with an error: answers `status` (http, if nothing was sent to the
    /// client yet), then closes.
    fn fail(&mut self, status: Option<u16>, now: u64) {
        self.svc.stats.add(Stat::Errors, 1);
        self.server = None;
        let response = match status {
            Some(408) => Some(RESPONSE_408),
            Some(s) => Some(http1::error_response(s)),
            None => None,
        };
        match response {
            Some(r) if self.http() && self.req.resp.sent == 0 => {
                if self.down.is_none() {
                    match Buf::new(r.len(), &self.svc, None) {
                        Ok(b) => self.down = Some(b),
                        Err(_) => {
                            self.phase = Phase::Done;
                            return;
                        }
                    }
                }
                if let Some(d) = &mut self.down {
                    d.set(r);
                }
                self.phase = Phase::Closing;
                self.deadline = now.saturating_add(LINGER_MS);
            }
            _ => self.phase = Phase::Done,
        }
    }

    fn server_failed(&mut self, now: u64) {
        self.server_failed_status(502, now);
    }

    /// Reads and parses the request head. The header timeout is checked when nothing is left
    /// to read, not before: a request that arrived before the deadline but is read after it
    /// (a late worker) is served, and a kept-alive connection is never closed with a request
    /// unread (which would reset it). A client that trickles bytes still times out: between
    /// its bytes there is nothing to read.
    fn head_step(&mut self, now: u64) -> Step {
        if self.head.data.is_empty() {
            // The head buffer is taken when bytes may have come, and given back while none
            // did (an idle connection holds none).
            match Buf::new(self.head_size, &self.svc, Some(self.cfg.max_mem_kib)) {
                Ok(b) => self.head = b,
                Err(_) => {
                    self.fail(Some(503), now);
                    return Step::Again;
                }
            }
        }
        let end = self.head.end;
        let r = match self.head.data.get_mut(end..) {
            Some(free) if !free.is_empty() => self.client.recv(free),
            _ => {
                self.fail(Some(431), now);
                return Step::Again;
            }
        };
        match r {
            Ok(Io::Done(n)) => {
                self.head.end = end.saturating_add(n).min(self.head.data.len());
                self.svc.stats.add(Stat::BytesIn, n as u64);
            }
            Ok(Io::Again) if now >= self.deadline => {
                if self.nreq > 0 && self.head.end == 0 {
                    // An idle keep-alive connection: closed without an answer.
                    self.phase = Phase::Done;
                } else {
                    self.fail(Some(408), now);
                }
                return Step::Again;
            }
            Ok(Io::Again) => {
                if self.head.end == 0 {
                    self.head = Buf::empty();
                }
                return Step::Wait;
            }
            Ok(Io::Eof) => {
                // A client closing before sending anything is not an error.
                if self.head.end == 0 {
                    self.phase = Phase::Done;
                } else {
                    self.fail(Some(400), now);
                }
                return Step::Again;
            }
            Err(_) => {
                self.svc.stats.add(Stat::Errors, 1);
                self.phase = Phase::Done;
                return Step::Again;
            }
        }
        self.parse_head(now);
        Step::Again
    }

    /// Parses the head read so far (when [`HeadScan`] says a parse may answer); when
    /// complete, takes a configuration snapshot, chooses the servers and builds the head to
    /// forward.
    fn parse_head(&mut self, now: u64) {
        // The head buffer was sized with `max_header_bytes` as the connection was accepted.
        let max_head = (self.cfg.max_header_bytes as usize).min(self.head.data.len());
        let limits = Limits {
            max_head,
            max_headers: MAX_FIELDS,
            max_target: Limits::DEFAULT.max_target.min(max_head),
            max_body: Limits::DEFAULT.max_body,
        };
        let buf = self.head.data.get(..self.head.end).unwrap_or(&[]);
        if !self.req.scan.should_parse(buf, max_head) {
            return;
        }
        let mut fields = [Header::EMPTY; MAX_FIELDS];
        let req = match http1::parse_request(buf, &mut fields, &limits) {
            Ok(http1::Status::Partial) => {
                if self.head.end >= self.head.data.len() {
                    self.fail(Some(431), now);
                }
                return;
            }
            Ok(http1::Status::Complete(r)) => r,
            Err(e) => return self.fail(Some(e.status()), now),
        };
        // The request is routed with the configuration as it is now (servers deleted, moved
        // or added since the accept or the connection's previous request), in the mode the
        // connection was accepted in.
        match self.svc.snapshot() {
            Ok(cfg) if cfg.mode == self.cfg.mode => self.cfg = cfg,
            // Out of memory, or the service changed mode: the connection ends.
            _ => return self.phase = Phase::Done,
        }
        if req.method == Method::Connect {
            return self.fail(Some(501), now);
        }
        let pool_req = self.cfg.pool_idle > 0 && req.version == Version::Http11;
        let head = HeadFacts {
            keep_alive: req.keep_alive,
            pool_req,
            is_head: req.method == Method::Head,
            route: route(&self.cfg, &self.svc, &req, now),
            path: range_in(buf, req.path()),
            framing: req.framing,
            head_len: req.head_len,
        };
        // HTTP/1.0 requests keep `Connection: close` (their client may not read chunked).
        let xff = self.cfg.xff.then(|| self.peer.ip());
        let size = BUF.max(max_head.saturating_add(HEAD_EXTRA));
        let limit = self.cfg.max_mem_kib;
        match upstream_bufs(&self.svc, limit, size, &req, buf, !pool_req, xff) {
            Ok((up, down)) => self.begin_request(head, up, down, now),
            Err(status) => self.fail(Some(status), now),
        }
    }

    /// The head of a request is parsed and forwarded into `up`: counts it, then connects.
    fn begin_request(&mut self, h: HeadFacts, up: Buf, down: Buf, now: u64) {
        self.svc.stats.add(Stat::Requests, 1);
        self.nreq = self.nreq.saturating_add(1);
        self.req.keep = h.keep_alive && self.nreq < MAX_REQUESTS;
        self.req.pool_req = h.pool_req;
        self.req.is_head = h.is_head;
        self.up = Some(up);
        self.down = Some(down);
        self.req.head_len = h.head_len;
        self.head.start = h.head_len;
        self.req.path = h.path;
        (self.req.target, self.req.cookie_slot) = h.route;
        self.req.body = BodyRelay::new(h.framing, ChunkLimits::DEFAULT);
        self.req.done = self.req.body.is_done();
        self.req.replayable = true;
        self.phase = Phase::Connect;
        self.connect_next(now);
    }

    /// Picks a server of `mask` with the service's scheduler, leaving out the servers failed
    /// by passive health unless they are all that is left.
    fn pick(&self, mask: u64, now: u64) -> Option<usize> {
        let healthy = views(&self.cfg, Some(now));
        self.pick_in(&healthy, mask).or_else(|| {
            // Without passive health the views are the same: nothing else to try.
            (self.cfg.max_fails != 0)
                .then(|| self.pick_in(&views(&self.cfg, None), mask))
                .flatten()
        })
    }

    /// Picks a server of `mask` among `v` with the service's scheduler.
    fn pick_in(&self, v: &[ServerView], mask: u64) -> Option<usize> {
        match self.cfg.scheduler {
            SchedKind::Lc => l7_sched::least_conn(v, mask),
            SchedKind::Wlc => l7_sched::weighted_least_conn(v, mask),
            SchedKind::Sh => l7_sched::source_hash(v, mask, &self.peer.ip()),
            SchedKind::Rr | SchedKind::Wrr | SchedKind::UriHash => {
                let mut g = self.svc.sched.lock();
                let st: &mut SchedState = &mut g;
                st.follow(&self.cfg);
                match self.cfg.scheduler {
                    SchedKind::Rr => st.rr.pick(v, mask),
                    SchedKind::Wrr => st.wrr.pick(v, mask),
                    _ => {
                        if st.maglev.is_empty() {
                            if st.maglev.resize(MAGLEV_SIZE, 0, GFP_KERNEL).is_err() {
                                return None;
                            }
                            // Built from the servers regardless of passive health, so that
                            // a failed server's return moves no other path.
                            let all = views(&self.cfg, None);
                            let slots = all_slots(&self.cfg);
                            if l7_sched::maglev_build(&all, slots, &mut st.maglev).is_err() {
                                st.maglev.clear();
                                return None;
                            }
                        }
                        let path = self
                            .head
                            .data
                            .get(self.req.path.0..self.req.path.1)
                            .unwrap_or(b"/");
                        l7_sched::maglev_lookup(&st.maglev, v, mask, path)
                    }
                }
            }
        }
    }

    /// Starts connecting to the next server the scheduler gives; answers 503 (no server at
    /// all) or 502 (every one failed) when there is none.
    fn connect_next(&mut self, now: u64) {
        loop {
            let mask = self.req.target & !self.req.tried;
            // The cookie's server first, then the scheduler's choice.
            let slot = match self.req.cookie_slot.map(usize::from) {
                Some(s) if mask & (1u64 << (s & 63)) != 0 => Some(s),
                _ => self.pick(mask, now),
            };
            let Some(slot) = slot else {
                self.fail(Some(if self.req.tried == 0 { 503 } else { 502 }), now);
                return;
            };
            self.req.tried |= 1u64 << (slot & 63);
            if self.open(slot & 63, now) {
                return;
            }
        }
    }

    /// Counts a failure of the server in `slot` for passive health; logs when that makes it
    /// failed.
    fn passive_failure(&self, slot: usize, now: u64) {
        let timeout = self.cfg.fail_timeout_ms;
        let Some(s) = server_by_slot(&self.cfg, slot) else {
            return;
        };
        let marked =
            s.rt.health
                .lock()
                .failed(now, self.cfg.max_fails, u64::from(timeout));
        if marked {
            pr_warn!(
                "service {}: server {} failed {} time(s): no new requests for {} ms\n",
                self.svc.name.as_str(),
                s.name.as_str(),
                self.cfg.max_fails,
                timeout
            );
        }
    }

    /// Gets a connection to the server in `slot` for the request: an idle one from the pool
    /// (unless the request is sent again after a pooled connection broke), else a new one
    /// (connecting). Returns `false` if the server has no address or the connect failed at
    /// once (a passive failure).
    fn open(&mut self, slot: usize, now: u64) -> bool {
        let Some(srv) = server_by_slot(&self.cfg, slot) else {
            return false;
        };
        let Some(addr) = srv.addr else {
            return false;
        };
        // `slot < 64` fits a u8.
        self.req.srv.pending = Some(Chosen {
            slot: slot as u8,
            rt: srv.rt.clone(),
        });
        let key = Key {
            svc: self.svc.id,
            server: srv.id,
            addr,
        };
        self.req.srv.key = Some(key);
        if self.req.pool_req && !self.req.retried {
            while let Some(sock) = self.pool.take(&key) {
                // SAFETY: `sock` goes to `self.server`, declared before `self.ev`, or is
                // released below, before this function returns.
                unsafe { sock.attach(&self.ev) };
                // A pooled connection must have nothing to read: data or an end of stream
                // (the server closed it meanwhile) or an error: closed, the next one is tried.
                let mut probe = [0u8; 1];
                if let Ok(Io::Again) = sock.recv(&mut probe) {
                    self.server = Some(sock);
                    self.req.srv.reused = true;
                    self.connected(false, now);
                    return true;
                }
            }
        }
        let stats = &srv.rt.stats;
        let sock = match Sock::new_for(&addr) {
            Ok(s) => s,
            Err(_) => {
                stats.add(Stat::Errors, 1);
                self.passive_failure(slot, now);
                return false;
            }
        };
        // SAFETY: `sock` goes to `self.server`, declared before `self.ev`.
        unsafe { sock.attach(&self.ev) };
        match sock.connect(&addr) {
            Ok(done) => {
                self.server = Some(sock);
                self.req.srv.reused = false;
                self.deadline = now.saturating_add(u64::from(self.cfg.connect_timeout_ms));
                if done {
                    self.connected(true, now);
                }
                true
            }
            Err(_) => {
                stats.add(Stat::Errors, 1);
                self.passive_failure(slot, now);
                false
            }
        }
    }

    /// The server connection is established (`fresh`) or taken from the pool: count it, start
    /// relaying. The server's `total_conns` counts TCP connections, its `requests` requests
    /// (a request sent again after a pooled connection broke counts once).
    fn connected(&mut self, fresh: bool, now: u64) {
        let Some(c) = self.req.srv.pending.take() else {
            self.phase = Phase::Done;
            return;
        };
        let slot = c.slot;
        // Counted in the server's `ActiveConns` until `req.srv.active` lets it go.
        let active = Active::new(c);
        let st = &active.rt().stats;
        if fresh {
            st.add(Stat::TotalConns, 1);
        }
        let bit = 1u64 << (slot & 63);
        if self.req.counted & bit == 0 {
            self.req.counted |= bit;
            st.add(Stat::Requests, 1);
        }
        self.req.srv.active = Some(active);
        if !self.http() {
            self.svc.stats.add(Stat::Requests, 1);
        }
        self.phase = Phase::Relay;
        self.deadline = now.saturating_add(u64::from(self.cfg.idle_timeout_ms));
    }

    fn connect_step(&mut self, now: u64) -> Step {
        let r = match &self.server {
            Some(s) => s.connected(),
            None => Err(ENOTCONN),
        };
        match r {
            Ok(true) => self.connected(true, now),
            Ok(false) if now < self.deadline => return Step::Wait,
            // Refused, unreachable or timed out: a passive failure; try the next server.
            _ => {
                if let Some(c) = self.req.srv.pending.take() {
                    c.rt.stats.add(Stat::Errors, 1);
                    self.passive_failure(usize::from(c.slot), now);
                }
                self.server = None;
                self.connect_next(now);
            }
        }
        Step::Again
    }

    /// Moves what can move in both directions, then ends the request (or the connection)
    /// when both are done.
    fn relay_step(&mut self, now: u64) -> Step {
        let ready = self.server.is_some()
            && self.up.is_some()
            && self.down.is_some()
            && self.req.srv.active.is_some();
        if !ready {
            self.phase = Phase::Done;
            return Step::Again;
        }
        let parts: [fn(&mut Self, u64) -> Flow; 5] = [
            Self::send_up,
            Self::fill_up,
            Self::half_close_server,
            Self::send_down,
            Self::fill_down,
        ];
        let mut moved = false;
        for part in parts {
            match part(self, now) {
                Flow::Moved => moved = true,
                Flow::Idle => {}
                Flow::Stop => return Step::Again,
            }
        }
        self.relay_end(moved, now)
    }

    /// Sends what `up` holds to the server.
    fn send_up(&mut self, now: u64) -> Flow {
        let (Some(server), Some(up), Some(active)) =
            (&self.server, &mut self.up, &self.req.srv.active)
        else {
            return Flow::Idle;
        };
        if up.is_empty() {
            return Flow::Idle;
        }
        match server.send(up.pending()) {
            Ok(Io::Done(n)) => {
                up.consume(n);
                active.rt().stats.add(Stat::BytesIn, n as u64);
                Flow::Moved
            }
            Ok(_) => Flow::Idle,
            Err(_) => {
                self.server_broke(now);
                Flow::Stop
            }
        }
    }

    /// Once `up` is empty and the request body goes on: its next bytes, those that came with
    /// the head first, then from the client.
    fn fill_up(&mut self, now: u64) -> Flow {
        let Some(up) = &mut self.up else {
            return Flow::Idle;
        };
        if !up.is_empty() || self.req.done || self.client_eof {
            return Flow::Idle;
        }
        up.clear();
        // The body streams through `up`: what was sent cannot be sent again.
        self.req.replayable = false;
        let from_head = !self.head.is_empty();
        let r = if from_head {
            // Body bytes that came with the head.
            let rest = self.head.pending();
            let n = rest.len().min(up.data.len());
            up.data[..n].copy_from_slice(&rest[..n]);
            self.head.consume(n);
            Ok(Io::Done(n))
        } else {
            let r = self.client.recv(&mut up.data);
            if let Ok(Io::Done(n)) = r {
                self.svc.stats.add(Stat::BytesIn, n as u64);
            }
            r
        };
        match r {
            Ok(Io::Done(n)) => self.feed_body(n, from_head, now),
            Ok(Io::Eof) => {
                self.client_eof = true;
                if self.http() {
                    // The client gave up in the middle of its request body.
                    self.fail(None, now);
                    return Flow::Stop;
                }
                Flow::Moved
            }
            Ok(Io::Again) => Flow::Idle,
            Err(_) => {
                self.fail(None, now);
                Flow::Stop
            }
        }
    }

    /// Delimits the `n` bytes just put in `up` (`from_head`: taken from `head`) as the request
    /// body; bytes after the body, the next (pipelined) request, are kept in `head`.
    fn feed_body(&mut self, n: usize, from_head: bool, now: u64) -> Flow {
        let Some(up) = &mut self.up else {
            return Flow::Idle;
        };
        let n = n.min(up.data.len());
        let p = match self.req.body.feed(&up.data[..n]) {
            Ok(p) => p,
            Err(e) => {
                self.fail(Some(e.status()), now);
                return Flow::Stop;
            }
        };
        let used = p.consumed.min(n);
        up.end = used;
        self.req.done = p.done;
        let extra = n.saturating_sub(used);
        if extra == 0 {
            return Flow::Moved;
        }
        if from_head {
            // They are still in `head`: give them back.
            self.head.start = self.head.start.saturating_sub(extra);
        } else if extra <= self.head.data.len() {
            // `head` is empty (read from first): they go there.
            self.head.data[..extra].copy_from_slice(&up.data[used..n]);
            self.head.start = 0;
            self.head.end = extra;
        } else {
            // More than a head can hold: dropped, and the connection ends after this response.
            self.req.keep = false;
        }
        Flow::Moved
    }

    /// TCP mode: once the client ended its side and all its bytes were sent, ends the
    /// server-bound side too (half-close).
    fn half_close_server(&mut self, _now: u64) -> Flow {
        let sent = self.up.as_ref().is_some_and(|u| u.is_empty());
        if !self.http() && self.client_eof && sent && !self.req.srv.wr_shut {
            if let Some(server) = &self.server {
                server.shutdown_write();
            }
            self.req.srv.wr_shut = true;
        }
        Flow::Idle
    }

    /// Sends the client what it may have of `down` (see [`sendable`]).
    fn send_down(&mut self, now: u64) -> Flow {
        let http = self.http();
        let Some(down) = &mut self.down else {
            return Flow::Idle;
        };
        let end = sendable(down, http, &self.req.resp);
        if down.start >= end {
            return Flow::Idle;
        }
        let out = down.data.get(down.start..end).unwrap_or(&[]);
        match self.client.send(out) {
            Ok(Io::Done(n)) => {
                down.consume(n);
                self.svc.stats.add(Stat::BytesOut, n as u64);
                self.req.resp.sent = self.req.resp.sent.saturating_add(n as u64);
                Flow::Moved
            }
            Ok(_) => Flow::Idle,
            Err(_) => {
                self.fail(None, now);
                Flow::Stop
            }
        }
    }

    /// Once the client has all it may have of `down`: reads from the server, in http mode
    /// the response head (held back after what may go, with room kept for its rewrite) or
    /// the response body, in tcp mode anything.
    fn fill_down(&mut self, now: u64) -> Flow {
        let http = self.http();
        let (Some(server), Some(down), Some(active)) =
            (&self.server, &mut self.down, &self.req.srv.active)
        else {
            return Flow::Idle;
        };
        let resp = &mut self.req.resp;
        let busy = down.start < sendable(down, http, resp);
        if busy || self.req.srv.eof || (http && resp.state == Resp::Done) {
            return Flow::Idle;
        }
        let in_head = http && resp.state == Resp::Head;
        let r = if in_head {
            // The held bytes go to the front; room is kept for the rewrite.
            let (h, e) = (resp.hold.min(down.end), down.end);
            down.data.copy_within(h..e, 0);
            down.start = 0;
            down.end = e.saturating_sub(h);
            resp.hold = 0;
            let cap = down.data.len().saturating_sub(RESPONSE_RESERVE);
            match down.data.get_mut(down.end..cap) {
                Some(free) if !free.is_empty() => server.recv(free),
                // A response head larger than the buffer.
                _ => Err(EMSGSIZE),
            }
        } else {
            down.clear();
            server.recv(&mut down.data)
        };
        match r {
            Ok(Io::Done(n)) => {
                active.rt().stats.add(Stat::BytesOut, n as u64);
                self.req.srv.got_resp = true;
                self.took_down(n, in_head, now)
            }
            Ok(Io::Eof) => {
                self.req.srv.eof = true;
                if in_head {
                    // No (complete) response: 502 if nothing reached the client yet.
                    self.server_broke(now);
                    return Flow::Stop;
                }
                Flow::Moved
            }
            Ok(Io::Again) => Flow::Idle,
            Err(_) => {
                self.server_broke(now);
                Flow::Stop
            }
        }
    }

    /// Takes the `n` bytes just read from the server into `down` (`in_head`: after the held
    /// part of a response head).
    fn took_down(&mut self, n: usize, in_head: bool, now: u64) -> Flow {
        let http = self.http();
        let Some(down) = &mut self.down else {
            return Flow::Idle;
        };
        if !http {
            down.end = n.min(down.data.len());
        } else if in_head {
            down.end = down.end.saturating_add(n).min(down.data.len());
            if !self.response_head() {
                self.server_failed(now);
                return Flow::Stop;
            }
        } else {
            let n = n.min(down.data.len());
            match self.req.resp.body.feed(&down.data[..n]) {
                Ok(p) => {
                    // Bytes after the response (the server was asked to close) are dropped;
                    // the connection is not pooled.
                    down.end = p.consumed.min(n);
                    self.req.srv.keep &= p.consumed >= n;
                    if p.done {
                        self.req.resp.state = Resp::Done;
                    }
                }
                Err(_) => {
                    // A broken chunked response: the client can only be closed.
                    self.req.keep = false;
                    self.server_failed(now);
                    return Flow::Stop;
                }
            }
        }
        Flow::Moved
    }

    /// After a relay step (`moved`: bytes moved): ends the request or the connection when
    /// both directions are done, else restarts or enforces the idle timeout.
    fn relay_end(&mut self, moved: bool, now: u64) -> Step {
        let http = self.http();
        let ended = if http {
            self.response_end(now)
        } else {
            self.tcp_end()
        };
        if ended || moved {
            if !ended {
                self.deadline = now.saturating_add(u64::from(self.cfg.idle_timeout_ms));
            }
            return Step::Again;
        }
        if now < self.deadline {
            return Step::Wait;
        }
        // Idle: 504 if the server never answered, else just close.
        if http && self.req.resp.sent == 0 {
            self.server_failed_status(504, now);
        } else {
            self.phase = Phase::Done;
        }
        Step::Again
    }

    /// http: once the response is complete and sent, the server connection goes to the pool
    /// (if it can) and the client connection to its next request or to closing. Returns
    /// whether the phase changed.
    fn response_end(&mut self, now: u64) -> bool {
        let Some(down) = &self.down else {
            self.phase = Phase::Done;
            return true;
        };
        let drained = down.is_empty();
        if drained && self.req.resp.state == Resp::Done {
            self.pool_server(now);
            if self.req.keep && self.req.done {
                // The response is complete: the next request.
                self.next_request(now);
                return true;
            }
            self.req.srv.eof = true;
        }
        if self.req.srv.eof && drained {
            // The response is complete (or cut by the server): close, lingering (see
            // `closing_step`).
            self.release_server();
            self.phase = Phase::Closing;
            self.deadline = now.saturating_add(LINGER_MS);
            return true;
        }
        false
    }

    /// tcp: once the server ended its side and all its bytes were sent, ends the client's
    /// side; once both ended, the connection is done. Returns whether the phase changed.
    fn tcp_end(&mut self) -> bool {
        if !self.req.srv.eof || !self.down.as_ref().is_none_or(|d| d.is_empty()) {
            return false;
        }
        if !self.client_wr_shut {
            self.client.shutdown_write();
            self.client_wr_shut = true;
        }
        if self.client_eof && self.up.as_ref().is_none_or(|u| u.is_empty()) {
            self.phase = Phase::Done;
            return true;
        }
        false
    }

    /// Parses the response head held in `down` from `hold`: interim (1xx) heads are relayed as
    /// they are; the final one is rewritten for the client (see [`Conn::final_response`]).
    /// Returns `false` when the response is not valid HTTP or its head does not fit.
    #[inline(never)]
    fn response_head(&mut self) -> bool {
        let Some(down) = &mut self.down else {
            return false;
        };
        let limits = Limits {
            max_head: down.data.len().saturating_sub(RESPONSE_RESERVE),
            max_headers: MAX_FIELDS,
            max_target: 0,
            max_body: u64::MAX,
        };
        let method = if self.req.is_head {
            Method::Head
        } else {
            Method::Get
        };
        loop {
            let (hold, end) = (self.req.resp.hold.min(down.end), down.end);
            let mut fields = [Header::EMPTY; MAX_FIELDS];
            let buf = down.data.get(hold..end).unwrap_or(&[]);
            let head = match http1::parse_response(buf, &mut fields, &limits, method) {
                Ok(http1::Status::Partial) => return true,
                Ok(http1::Status::Complete(r)) => RespHead {
                    interim: r.is_interim(),
                    framing: r.framing,
                    head_len: r.head_len,
                    server_keep: r.keep_alive,
                },
                Err(_) => return false,
            };
            if !head.interim {
                return self.final_response(hold, end, head);
            }
            // Relayed as it is (`100 Continue`); the final head follows.
            self.req.resp.hold = hold.saturating_add(head.head_len);
        }
    }

    /// The final response head `h`, held in `down[hold..end]`: rewritten in place
    /// (`Connection: keep-alive` if the client connection goes on, which needs a framed
    /// body, else `close`; the persistence cookie), its body delimited.
    fn final_response(&mut self, hold: usize, end: usize, h: RespHead) -> bool {
        let framed = matches!(
            h.framing,
            Framing::None | Framing::ContentLength(_) | Framing::Chunked
        );
        self.req.keep = self.req.keep && self.req.done && framed;
        self.req.srv.keep = self.req.pool_req && h.server_keep && framed;
        // A response: the server works.
        if let Some(a) = &self.req.srv.active {
            a.rt().health.lock().succeeded();
        }
        let mut line = [0u8; COOKIE_LINE_MAX];
        let cookie_len = cookie_line(&self.cfg, &self.svc, &self.req, &mut line);
        let extra = line.get(..cookie_len).unwrap_or(&[]);
        let Some(down) = &mut self.down else {
            return false;
        };
        let Some(buf) = down.data.get_mut(hold..) else {
            return false;
        };
        let held = end.saturating_sub(hold);
        let Ok(new_head) =
            http1::rewrite_response_head(buf, held, h.head_len, self.req.keep, extra)
        else {
            return false;
        };
        // `hold` <= `end`, and the head (`head_len` bytes) lay within them.
        let body_start = hold.saturating_add(new_head);
        let body_end = body_start.saturating_add(held.saturating_sub(h.head_len));
        self.req.resp.body = BodyRelay::new(h.framing, RESPONSE_CHUNKS);
        let rest = down.data.get(body_start..body_end).unwrap_or(&[]);
        let Ok(p) = self.req.resp.body.feed(rest) else {
            return false;
        };
        // Bytes after the response are dropped (the server was asked to close); the
        // connection is not pooled.
        down.end = body_start.saturating_add(p.consumed.min(rest.len()));
        self.req.srv.keep &= p.consumed >= rest.len();
        self.req.resp.state = if p.done { Resp::Done } else { Resp::Body };
        self.req.resp.hold = down.end;
        true
    }

    /// Closes the server connection of the request, if any, and takes it out of the server's
    /// `active_conns`.
    fn release_server(&mut self) {
        self.server = None;
        self.req.srv.key = None;
        // Taken out of the server's `ActiveConns`.
        self.req.srv.active = None;
    }

    /// The response is complete: the server connection goes to the pool if it can carry
    /// another request (see `Upstream::keep`; the request was sent completely and the server did
    /// not end its side), taken out of the server's `active_conns`.
    fn pool_server(&mut self, now: u64) {
        let idle = self.req.done
            && self.req.srv.keep
            && !self.req.srv.eof
            && self.up.as_ref().is_some_and(|u| u.is_empty());
        if !idle {
            return;
        }
        if let (Some(sock), Some(key)) = (self.server.take(), self.req.srv.key) {
            let expires = now.saturating_add(u64::from(self.cfg.idle_timeout_ms));
            // Detaches `sock` from `self.ev` (type invariant).
            self.pool.put(key, sock, self.cfg.pool_idle, expires);
        }
        self.release_server();
    }

    /// The server connection broke (or ended) before a complete response head. If it came
    /// from the pool, no response byte arrived and the request can be sent again, it is sent
    /// again once on a new connection to the same server (the server may have closed the
    /// idle connection just as the request went out, as nginx assumes); else 502.
    fn server_broke(&mut self, now: u64) {
        let slot = self.req.srv.active.as_ref().map(Active::slot);
        let retry = self.req.srv.reused
            && !self.req.srv.got_resp
            && self.req.replayable
            && !self.req.retried;
        let (Some(slot), true) = (slot, retry) else {
            self.server_failed(now);
            return;
        };
        self.req.retried = true;
        self.release_server();
        if let Some(up) = &mut self.up {
            up.start = 0;
        }
        if let Some(down) = &mut self.down {
            down.clear();
        }
        // A new server connection, no response yet (none of it reached the client: nothing
        // came from the server).
        self.req.srv = Upstream::new();
        self.req.resp = Response::new();
        self.phase = Phase::Connect;
        // A failed connect was counted by `open`.
        if !self.open(usize::from(slot), now) {
            self.connect_next(now);
        }
    }

    /// The response is complete and the client keeps its connection: back to reading a
    /// request head (idle for at most `client_header_timeout_ms`), starting with the bytes
    /// already read after the previous request (pipelined).
    fn next_request(&mut self, now: u64) {
        self.release_server();
        let (s, e) = (self.head.start.min(self.head.end), self.head.end);
        self.head.data.copy_within(s..e, 0);
        self.head.start = 0;
        self.head.end = e.saturating_sub(s);
        // An idle connection holds no buffer: the relay buffers go, the head buffer too
        // unless pipelined bytes wait in it.
        self.up = None;
        self.down = None;
        if self.head.end == 0 {
            self.head = Buf::empty();
        }
        self.req = Request::new();
        self.phase = Phase::Head;
        self.deadline = now.saturating_add(u64::from(self.cfg.client_header_timeout_ms));
        if self.head.end > 0 {
            self.parse_head(now);
        }
    }

    fn server_failed_status(&mut self, status: u16, now: u64) {
        if let Some(a) = &self.req.srv.active {
            a.rt().stats.add(Stat::Errors, 1);
            let s = a.slot();
            if self.req.resp.state == Resp::Head {
                // No valid response: a passive failure.
                self.passive_failure(usize::from(s), now);
            }
        }
        self.fail(Some(status), now);
    }

    /// Sends what is left for the client, shuts its sending side, then reads and drops what
    /// the client still sends until it closes (so that the stack does not answer unread data
    /// with a reset that could destroy the response), within [`LINGER_MS`] and [`DRAIN_MAX`].
    fn closing_step(&mut self, now: u64) -> Step {
        if now >= self.deadline {
            self.phase = Phase::Done;
            return Step::Again;
        }
        if let Some(down) = &mut self.down {
            if !down.is_empty() {
                return match self.client.send(down.pending()) {
                    Ok(Io::Done(n)) => {
                        down.consume(n);
                        self.svc.stats.add(Stat::BytesOut, n as u64);
                        self.req.resp.sent = self.req.resp.sent.saturating_add(n as u64);
                        Step::Again
                    }
                    Ok(_) => Step::Wait,
                    Err(_) => {
                        self.phase = Phase::Done;
                        Step::Again
                    }
                };
            }
        }
        if !self.client_wr_shut {
            self.client.shutdown_write();
            self.client_wr_shut = true;
        }
        let mut sink = [0u8; 512];
        match self.client.recv(&mut sink) {
            Ok(Io::Done(n)) => {
                self.drained = self.drained.saturating_add(n);
                if self.drained > DRAIN_MAX {
                    self.phase = Phase::Done;
                }
                Step::Again
            }
            Ok(Io::Again) => Step::Wait,
            Ok(Io::Eof) | Err(_) => {
                self.phase = Phase::Done;
                Step::Again
            }
        }
    }
}
