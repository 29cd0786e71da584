// SPDX-License-Identifier: GPL-2.0

//! The connection of a resource to its peer, DRBD 8.4 style.
//!
//! One receiver thread per connected resource runs DRBD's `conn_connect()` loop: listen on
//! the local address (accepting only the peer's address) and connect to the peer until both
//! of DRBD's sockets exist (data and meta, told apart by `P_INITIAL_DATA`/`P_INITIAL_META`),
//! then the feature handshake, then
//! `P_PROTOCOL` and per volume `P_SYNC_PARAM89`, `P_SIZES`, `P_UUIDS`, `P_STATE`, and then it
//! receives on the data socket. While a session lasts an asender thread serves the meta socket
//! (ping / ping-ack, acks, state-change replies). Any error, protocol violation or missed ping
//! ends the session: both sockets are shut down, the threads notice, and the receiver starts
//! over (`WFConnection`). A dialect or configuration mismatch is fatal: `StandAlone` until
//! `disconnect`.
//!
//! This file holds the connection's shared state and packet I/O; the concerns live in
//! submodules, as the C driver separates them (each uses only the ones listed before it):
//! - [`state`]: state words and UUIDs on the wire;
//! - [`state_chg`]: cluster-wide state changes, ours and the peer's (`drbd_state.c`);
//! - [`request`]: the write path to the peer, transfer log and epochs, write acks
//!   (`drbd_req.c`);
//! - [`resync`]: the resync worker, serving and applying resync blocks (`drbd_worker.c`);
//! - [`bitmap`]: the bitmap exchange (`drbd_bitmap.c` / `receive_bitmap`);
//! - [`handshake`]: sockets, feature handshake, CRAM-HMAC, `P_PROTOCOL` (`conn_connect()`);
//! - [`sync_handshake`]: `P_STATE` and the UUID-based sync handshake;
//! - [`asender`]: the meta socket;
//! - [`receiver`]: the receiver thread and the data socket's dispatch.
//!
//! State changes reach netlink only as [`crate::events`].
//!
//! Locking: [`Connection::info`] is a spinlock over small state (never held across I/O).
//! Senders serialise per socket with [`Connection::data_tx`] / [`Connection::meta_tx`]. The
//! device state mutex may be taken before `info`, never the other way round.

mod asender;
mod bitmap;
mod fence;
mod handshake;
mod receiver;
mod request;
mod resync;
mod state;
mod state_chg;
mod sync_handshake;

use crate::device::{Device, DEVICES};
use crate::drbd_resync::{self as rs, RsBlock};
use crate::drbd_state::{self as ws, Conn};
use crate::drbd_wire::{self as w, Packet, WireError};
use crate::events::{self, Event, PeerView};
use crate::glue::RqRef;
use crate::net::{self, Addr, KThread, Socket};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::alloc::KVVec;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex, SpinLock};

/// Largest payload of a packet other than data (`DRBD_SOCKET_BUFFER_SIZE`).
const MAX_CONTROL_PAYLOAD: u32 = 4096;
/// Transfer-log entries: a write stays in it until the `P_BARRIER_ACK` of its epoch (with
/// protocol A its request completed when it was sent). At most 128 of them hold a request
/// (the queue depth of `/dev/rdrbdN`, `drbd_rs_glue.c`); the rest wait for their epoch's ack.
const TL_CAPACITY: usize = 512;
/// An epoch is closed with a `P_BARRIER` after this many writes at the latest (earlier when the
/// writers go idle or a write has FUA). Well below `TL_CAPACITY`, so a full log means the peer
/// is not acking barriers.
const MAX_EPOCH_WRITES: u32 = 64;
/// Number of the first epoch of a connection (any value; DRBD starts at 4711 too).
const FIRST_EPOCH: u32 = 4711;
/// Largest bio we accept from the peer (the queue's `max_hw_sectors`, see the C glue).
const MAX_BIO_SIZE: u32 = 512 * 1024;
/// Largest resync request we send (bytes; the peer's max bio size may lower it).
const RS_REQUEST_MAX: u32 = 256 * 1024;
/// Resync requests in flight at most.
const RS_INFLIGHT_MAX: u32 = 8;
/// Resync replies the sync source keeps track of until the target acknowledges them (C DRBD's
/// target has at most `max-buffers / 2` blocks in flight, 1024 by default). When full, serving
/// waits for acks.
const RS_SERVED_MAX: usize = 4096;

/// The `net` options of a resource (DRBD's units).
#[derive(Clone)]
pub(crate) struct NetConf {
    /// Our address: we listen here and connect from here.
    pub(crate) local: Addr,
    /// The peer's address.
    pub(crate) peer: Addr,
    /// Replication protocol, 1..=3 (A, B, C).
    pub(crate) protocol: u32,
    /// Peer response timeout, tenths of a second.
    pub(crate) timeout_ds: u32,
    /// Seconds between connection attempts.
    pub(crate) connect_int_s: u32,
    /// Seconds of silence on the meta socket before a ping.
    pub(crate) ping_int_s: u32,
    /// Tenths of a second to wait for a ping-ack.
    pub(crate) ping_timeout_ds: u32,
    /// Timeouts before the peer is considered dead (kept for the write path).
    #[expect(dead_code, reason = "used by the replication write path")]
    pub(crate) ko_count: u32,
    /// Receive buffers (kept for the write path).
    #[expect(dead_code, reason = "used by the replication write path")]
    pub(crate) max_buffers: u32,
    /// After-split-brain policies with 0, 1, 2 primaries (DRBD numbers).
    pub(crate) after_sb: [u32; 3],
    /// Allow two primaries.
    pub(crate) two_primaries: bool,
    /// Online-verify digest name (NUL-padded).
    pub(crate) verify_alg: [u8; 64],
    /// Checksum-resync digest name (NUL-padded).
    pub(crate) csums_alg: [u8; 64],
    /// CRAM-HMAC digest name (NUL-padded); empty: no authentication.
    pub(crate) cram_hmac_alg: [u8; 64],
    /// The shared secret (NUL-padded).
    pub(crate) shared_secret: [u8; 64],
    /// Resync rate with a fixed-rate controller (`c-plan-ahead 0`), KiB/s.
    pub(crate) resync_rate: u32,
    /// Resync rate limit with the dynamic controller, KiB/s.
    pub(crate) c_max_rate: u32,
    /// `c-plan-ahead`, tenths of a second (0: fixed rate `resync-rate`).
    pub(crate) c_plan_ahead_ds: u32,
    /// `fencing` policy.
    pub(crate) fencing: crate::drbd_fence::Fencing,
    /// `fence-peer` handler command line (NUL-padded; empty: none).
    pub(crate) fence_peer: [u8; HANDLER_BUF],
    /// `unfence-peer` handler command line (NUL-padded; empty: none).
    pub(crate) unfence_peer: [u8; HANDLER_BUF],
}

/// Room for a handler command line and its NUL.
pub(crate) const HANDLER_BUF: usize = crate::drbd_genl::HANDLER_MAX as usize + 1;

impl NetConf {
    // The times are bounded by the netlink policy (`genl::net_conf`); the conversions
    // saturate all the same.
    fn ping_timeout_ms(&self) -> u32 {
        self.ping_timeout_ds.saturating_mul(100)
    }

    fn ping_int_ms(&self) -> u32 {
        self.ping_int_s.saturating_mul(1000)
    }

    fn timeout_ms(&self) -> u32 {
        self.timeout_ds.saturating_mul(100)
    }

    fn connect_int_ms(&self) -> u32 {
        self.connect_int_s.saturating_mul(1000)
    }

    /// The rate the sync target paces its requests at, KiB/s. DRBD's dynamic controller
    /// (`c-plan-ahead` > 0) aims at a fill level in flight and never exceeds `c-max-rate`; we
    /// bound the requests in flight and pace at `c-max-rate`.
    fn rs_rate_kib(&self) -> u32 {
        if self.c_plan_ahead_ds == 0 {
            self.resync_rate
        } else {
            self.c_max_rate
        }
    }
}

/// Small shared state of a connection.
struct Info {
    view: PeerView,
    /// The sockets of the current session, for senders and for `stop`.
    data: Option<Arc<Socket>>,
    meta: Option<Arc<Socket>>,
    /// The peer's generation UUIDs, as last received (`p_uuid`).
    peer_uuids: Option<w::Uuids>,
    /// The peer's largest bio (from `P_SIZES`).
    peer_max_bio: u32,
    /// The peer's disk size in sectors (from `P_SIZES`).
    peer_sectors: u64,
    /// Sessions that reached `WFReportParams` (C DRBD's `connect_cnt`): a fence-peer result
    /// is ignored if a session came and went while the handler ran.
    connects: u32,
}

/// A running resync's figures.
struct ResyncStats {
    /// Out-of-sync bits when it began.
    total_bits: AtomicU64,
    /// When it began (ms, monotonic).
    start_ms: AtomicU64,
    /// Blocks the source could not read (`rs_failed`).
    failed_bits: AtomicU64,
    /// The sync target told us it is done (sync source).
    peer_done: AtomicBool,
}

/// The connection of one resource.
#[pin_data]
pub(crate) struct Connection {
    /// Resource name.
    resource: KVec<u8>,
    /// Configuration, fixed for the connection's lifetime.
    pub(crate) conf: NetConf,
    #[pin]
    info: SpinLock<Info>,
    /// Serialises whole packets on the data socket, and guards our current write epoch (the
    /// order of `P_DATA` and `P_BARRIER` on the socket is what defines the epochs).
    #[pin]
    data_tx: Mutex<Epoch>,
    /// Writers inside [`Connection::send_data`] that have not sent their write yet: the last
    /// one to finish closes the epoch.
    writers: AtomicU32,
    /// Serialises whole packets on the meta socket.
    #[pin]
    meta_tx: Mutex<()>,
    /// `disconnect` was requested.
    stop: AtomicBool,
    /// Transfer log: our writes waiting for the peer's ack, by block id.
    #[pin]
    tl: Mutex<KVec<TlEntry>>,
    /// Next block id (never 0 or DRBD's `ID_SYNCER`).
    next_id: AtomicU64,
    /// The current session's sockets were shut down (set before they are dropped).
    down: AtomicBool,
    /// The session reached a state in which the peer had our data (`Connected` or a sync).
    had_peer: AtomicBool,
    /// Resync figures.
    rs: ResyncStats,
    /// Sequence numbers of our acks.
    ack_seq: AtomicU32,
    /// Sync target: our resync requests awaiting their reply (at most `RS_INFLIGHT_MAX`).
    #[pin]
    requested: SpinLock<Outstanding>,
    /// Sync source: our resync replies awaiting the target's `P_RS_WRITE_ACK`.
    #[pin]
    served: SpinLock<Outstanding>,
    /// Sync source: the block whose reply is being sent (read, not yet all on the socket).
    /// An application write to it waits before its `P_DATA`, see [`serve_rs_request`].
    #[pin]
    serving: SpinLock<Option<RsBlock>>,
    /// One of our cluster-wide state changes is being decided (DRBD's state mutex is held):
    /// owned by its request, see `state_chg.rs`.
    st_chg_pending: AtomicBool,
    /// The peer's `P_STATE_CHG_REPLY` to it, once it arrived.
    #[pin]
    st_chg_reply: SpinLock<Option<ws::StateRv>>,
}

/// Resync blocks outstanding with the peer (storage allocated once per connection).
type Outstanding = rs::Outstanding<KVVec<RsBlock>>;

/// A table of `n` outstanding resync blocks.
fn outstanding(n: usize) -> Result<Outstanding> {
    let mut v = KVVec::with_capacity(n, GFP_KERNEL)?;
    v.resize(n, RsBlock::default(), GFP_KERNEL)?;
    Ok(rs::Outstanding::new(v))
}

/// Our current write epoch (DRBD's transfer-log epoch).
struct Epoch {
    /// Number of the epoch: the `P_BARRIER` that closes it carries it, its ack echoes it.
    number: u32,
    /// Writes sent in it so far.
    writes: u32,
}

/// A write in the transfer log: sent to the peer, its epoch not yet acknowledged by a
/// `P_BARRIER_ACK`. If the session ends first, its blocks are marked out of sync (the peer
/// may not have written them, whatever the protocol said).
struct TlEntry {
    /// Our block id.
    id: u64,
    /// First sector.
    sector: u64,
    /// Length in sectors.
    sectors: u64,
    /// The epoch it was sent in.
    epoch: u32,
    /// Keeps the request from completing until the protocol's ack (B: received, C: written)
    /// arrived; `None` once it did, and from the start with protocol A.
    held: Option<RqRef>,
}

/// A running connection: dropping it stops the receiver thread.
pub(crate) struct ConnHandle {
    /// The connection.
    pub(crate) conn: Arc<Connection>,
    thread: Option<KThread<Connection>>,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.conn.stop.store(true, Ordering::SeqCst);
        self.conn.shutdown_sockets();
        // Joins the receiver, which joins its asender.
        drop(self.thread.take());
    }
}

/// Why a session ended.
enum End {
    /// Try again (network error, peer went away, protocol violation).
    Retry,
    /// Give up until `disconnect` (incompatible dialect or configuration, split brain).
    StandAlone,
}

impl From<Error> for End {
    fn from(_: Error) -> End {
        End::Retry
    }
}

impl Connection {
    /// The peer as the receiver currently sees it.
    pub(crate) fn view(&self) -> PeerView {
        self.info.lock().view
    }

    fn name(&self) -> &str {
        core::str::from_utf8(&self.resource).unwrap_or("?")
    }

    /// The sequence number of our next ack. DRBD's sequence numbers wrap (the C driver
    /// compares them with `seq_greater`): so do ours, after 2^32 acks.
    fn next_ack_seq(&self) -> u32 {
        self.ack_seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || net::thread_should_stop()
    }

    fn set_cstate(&self, cstate: Conn) {
        if cstate == Conn::Connected || is_sync(cstate) {
            self.had_peer.store(true, Ordering::SeqCst);
        }
        let changed = {
            let mut i = self.info.lock();
            let old = i.view.cstate;
            i.view.cstate = cstate;
            if reached(cstate, Conn::WFReportParams) && !reached(old, Conn::WFReportParams) {
                i.connects = i.connects.wrapping_add(1);
            }
            // The peer becomes unknown when the session ends; a fence-peer result recorded
            // afterwards (an Outdated peer disk) stays until the next session.
            if !reached(cstate, Conn::WFReportParams) && reached(old, Conn::WFReportParams) {
                i.view.role = ws::Role::Unknown;
                i.view.disk = ws::Disk::DUnknown;
            }
            old != cstate
        };
        if changed {
            pr_info!("resource {}: connection {}\n", self.name(), cstate.name());
            self.publish();
        }
    }

    /// Shuts down the session's sockets: every thread blocked on them wakes up and fails.
    fn shutdown_sockets(&self) {
        self.down.store(true, Ordering::SeqCst);
        let (d, m) = {
            let i = self.info.lock();
            (i.data.clone(), i.meta.clone())
        };
        if let Some(s) = d {
            s.shutdown();
        }
        if let Some(s) = m {
            s.shutdown();
        }
    }

    /// Publishes the connection's current state (an [`Event::Connection`]).
    fn publish(&self) {
        events::publish(&Event::Connection {
            resource: &self.resource,
            view: self.view(),
            protocol: self.conf.protocol,
        });
    }

    /// The data (`meta == false`) or meta socket of the current session, and the agreed
    /// protocol version.
    fn session_socket(&self, meta: bool) -> (Option<Arc<Socket>>, u32) {
        let i = self.info.lock();
        (
            if meta { i.meta.clone() } else { i.data.clone() },
            i.view.agreed,
        )
    }

    /// Sends one packet on the data (`meta == false`) or meta socket of the current session.
    fn send(&self, meta: bool, cmd: Packet, payload: &[u8]) -> Result {
        self.send_parts(meta, cmd, &[payload])
    }

    /// Like [`Self::send`] with the payload in pieces.
    fn send_parts(&self, meta: bool, cmd: Packet, parts: &[&[u8]]) -> Result {
        let (sock, agreed) = self.session_socket(meta);
        let sock = sock.ok_or(ENOTCONN)?;
        if meta {
            let _guard = self.meta_tx.lock();
            send_packet(&sock, agreed, cmd, parts)
        } else {
            let _guard = self.data_tx.lock();
            send_packet(&sock, agreed, cmd, parts)
        }
    }

    /// Whether the handshake is done (`Connected` or beyond).
    pub(crate) fn is_connected(&self) -> bool {
        reached(self.view().cstate, Conn::Connected)
    }

    /// The running resync's amount at its start (KiB) and average rate (KiB/s) so far.
    pub(crate) fn sync_progress(&self, left_kib: u64) -> Option<(u64, u64)> {
        if !is_sync(self.view().cstate) {
            return None;
        }
        let total = self.rs.total_bits.load(Ordering::Relaxed).saturating_mul(4);
        let elapsed = now_ms().saturating_sub(self.rs.start_ms.load(Ordering::Relaxed));
        let p = rs::progress(total, left_kib, elapsed);
        Some((total, p.rate_kib))
    }
}

/// Whether connection state `c` is at least `min` in DRBD's order.
fn reached(c: Conn, min: Conn) -> bool {
    c as u32 >= min as u32
}

/// Whether disk state `d` is at least `min` in DRBD's order.
fn reached_disk(d: ws::Disk, min: ws::Disk) -> bool {
    d as u32 >= min as u32
}

/// A resync runs (or is paused) in state `c`.
fn is_sync(c: Conn) -> bool {
    matches!(
        c,
        Conn::SyncSource | Conn::SyncTarget | Conn::PausedSyncS | Conn::PausedSyncT
    )
}

/// Monotonic milliseconds.
fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// The monotonic clock in nanoseconds.
fn now_ns() -> u64 {
    // SAFETY: `ktime_get` has no preconditions.
    let ns = unsafe { kernel::bindings::ktime_get() };
    // Nanoseconds since boot: not negative.
    ns as u64
}

/// Sends one packet whose payload is the concatenation of `parts`.
fn send_packet(sock: &Socket, agreed: u32, cmd: Packet, parts: &[&[u8]]) -> Result {
    let mut h = [0u8; 16];
    let total = parts
        .iter()
        .try_fold(0usize, |n, p| n.checked_add(p.len()))
        .ok_or(EINVAL)?;
    let len = u32::try_from(total).map_err(|_| EINVAL)?;
    let n = w::encode_header(agreed, cmd as u16, 0, len, &mut h).map_err(|_| EINVAL)?;
    sock.send(&h[..n], total != 0)?;
    let mut left = total;
    for p in parts.iter().filter(|p| !p.is_empty()) {
        // `left` is the sum of the lengths not sent yet.
        left = left.saturating_sub(p.len());
        sock.send(p, left != 0)?;
    }
    Ok(())
}

/// Receives one header; the payload is left on the socket.
fn recv_header(sock: &Socket, agreed: u32) -> Result<w::Header> {
    let mut h = [0u8; 16];
    let n = w::header_size(agreed);
    sock.recv(&mut h[..n])?;
    w::decode_header(agreed, &h[..n]).map_err(|e| {
        pr_warn!("bad packet header: {:?}\n", e);
        EPROTO
    })
}

/// Receives the payload of a control packet whose header `h` was read.
fn recv_payload(sock: &Socket, h: &w::Header, buf: &mut [u8]) -> Result<usize> {
    if h.length > MAX_CONTROL_PAYLOAD || h.length as usize > buf.len() {
        pr_warn!(
            "oversized packet: {} bytes of {} (0x{:04x})\n",
            h.length,
            packet_name(h.command),
            h.command
        );
        return Err(EPROTO);
    }
    let n = h.length as usize;
    sock.recv(&mut buf[..n])?;
    Ok(n)
}

fn packet_name(cmd: u16) -> &'static str {
    Packet::from_u16(cmd).map_or("unknown", |p| p.name())
}

/// The first device (volume 0) of the resource, if any.
fn volume0(c: &Connection) -> Option<Arc<Device>> {
    DEVICES
        .lock()
        .iter()
        .filter(|d| d.resource.as_slice() == c.resource.as_slice())
        .min_by_key(|d| d.minor)
        .cloned()
}

/// Chunk size for applying a peer's write (kmalloc'd once per session).
const RX_CHUNK: usize = 64 * 1024;

/// State of the receiving side of a session.
struct Receiving {
    /// Bounce buffer for the lower device.
    chunk: KVec<u8>,
    /// Writes applied since the last `P_BARRIER` (the barrier ack's `set_size`).
    epoch_writes: u32,
    /// Receiving the peer's bitmap: next bit (`P_COMPRESSED_BITMAP`) and word (`P_BITMAP`).
    bm_bit: u64,
    bm_word: u64,
    /// Bitmap packets received so far, when the first came (ns), and the longest hold of the
    /// bitmap lock merging one (ns).
    bm_packets: u32,
    bm_started_ns: u64,
    bm_slice_max_ns: u64,
    /// The session's resync worker, while a resync runs.
    worker: Option<KThread<Connection>>,
    /// Sync source: a resync reply's data (`MAX_BIO_SIZE`, allocated at the first request).
    reply: KVVec<u8>,
}

impl Receiving {
    fn new() -> Result<Receiving> {
        let mut chunk = KVec::with_capacity(RX_CHUNK, GFP_KERNEL)?;
        chunk.resize(RX_CHUNK, 0, GFP_KERNEL)?;
        Ok(Receiving {
            chunk,
            epoch_writes: 0,
            bm_bit: 0,
            bm_word: 0,
            bm_packets: 0,
            bm_started_ns: 0,
            bm_slice_max_ns: 0,
            worker: None,
            reply: KVVec::new(),
        })
    }

    /// Allocates the reply buffer if it is not yet.
    fn reply_buf(&mut self) -> core::result::Result<(), End> {
        if self.reply.is_empty() {
            self.reply
                .resize(MAX_BIO_SIZE as usize, 0, GFP_KERNEL)
                .map_err(|_| End::Retry)?;
        }
        Ok(())
    }
}

/// Receives the [`w::DataHeader`] of a packet with data (`P_DATA`, `P_RS_DATA_REPLY`).
fn recv_data_header(c: &Connection, sock: &Socket, h: &w::Header) -> Result<w::DataHeader> {
    let mut hb = [0u8; w::DataHeader::SIZE];
    if (h.length as usize) < hb.len() {
        pr_err!(
            "resource {}: {} of {} bytes refused\n",
            c.name(),
            packet_name(h.command),
            h.length
        );
        return Err(EPROTO);
    }
    sock.recv(&mut hb)?;
    w::DataHeader::decode(&hb).map_err(|_| EPROTO)
}

/// Receives `len` bytes of data and writes them through (FUA) at `sector`, in chunks.
fn write_payload(
    c: &Connection,
    sock: &Socket,
    dev: &Device,
    rx: &mut Receiving,
    sector: u64,
    len: u32,
) -> Result {
    let mut off = 0u32;
    while off < len {
        let n = len.saturating_sub(off).min(RX_CHUNK as u32) as usize;
        sock.recv(&mut rx.chunk[..n])?;
        let st = dev.lock();
        let b = st.backing.as_ref().ok_or(EIO)?;
        // The caller checked `sector + len` against the capacity (`check_data`).
        b.lower
            .write(
                sector.saturating_add(u64::from(off >> 9)),
                &mut rx.chunk[..n],
                true,
            )
            .inspect_err(|e| {
                pr_err!("resource {}: local write failed: {:?}\n", c.name(), e);
            })?;
        off = off.saturating_add(n as u32);
    }
    Ok(())
}

fn bad(c: &Connection, h: w::Header, e: WireError) -> End {
    pr_err!(
        "resource {}: malformed {} packet ({} bytes): {:?}\n",
        c.name(),
        packet_name(h.command),
        h.length,
        e
    );
    End::Retry
}
