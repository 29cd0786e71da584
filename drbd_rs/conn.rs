// SPDX-License-Identifier: GPL-2.0

//! The connection of a resource to its peer, DRBD 8.4 style.
//!
//! One receiver thread per connected resource runs DRBD's `conn_connect()` loop: listen on
//! the local address (accepting only the peer's address) and connect to the peer until both
//! of DRBD's sockets exist (data and meta, told apart by `P_INITIAL_DATA`/`P_INITIAL_META`),
//! then the feature handshake, then
//! `P_PROTOCOL` and per volume `P_SYNC_PARAM89`, `P_SIZES`, `P_UUIDS`, `P_STATE`, and then it
//! receives on the data socket. While a session lasts an asender thread serves the meta socket
//! (ping / ping-ack, state-change replies). Any error, protocol violation or missed ping
//! ends the session: both sockets are shut down, the threads notice, and the receiver starts
//! over (`WFConnection`). A dialect or configuration mismatch is fatal: `StandAlone` until
//! `disconnect`.
//!
//! Locking: [`Connection::info`] is a spinlock over small state (never held across I/O).
//! Senders serialise per socket with [`Connection::data_tx`] / [`Connection::meta_tx`]. The
//! device state mutex may be taken before `info`, never the other way round.

use crate::activity;
use crate::device::{self, Device, DEVICES};
use crate::drbd_genl::{DiskState, Role};
use crate::drbd_resync::{self as rs, RsBlock, ID_SYNCER};
use crate::drbd_state::{self as ws, Conn};
use crate::drbd_sync as sync;
use crate::drbd_wire::{self as w, Features, Packet, WireError};
use crate::glue::RqRef;
use crate::net::{self, Addr, KThread, Listener, Socket};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::alloc::KVVec;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex, SpinLock};
use kernel::{new_mutex, new_spinlock};

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
}

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

/// What the receiver knows about the peer while a session lasts.
#[derive(Clone, Copy)]
pub(crate) struct PeerView {
    /// Connection state.
    pub(crate) cstate: Conn,
    /// Peer role (`Unknown` when not connected).
    pub(crate) role: ws::Role,
    /// Peer disk state (`DUnknown` when not connected).
    pub(crate) disk: ws::Disk,
    /// Agreed protocol version (0 when not connected).
    pub(crate) agreed: u32,
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
    /// Starts connecting `resource` with `conf`.
    pub(crate) fn start(resource: &[u8], conf: NetConf) -> Result<ConnHandle> {
        let mut name = KVec::with_capacity(resource.len(), GFP_KERNEL)?;
        name.extend_from_slice(resource, GFP_KERNEL)?;
        let tl = KVec::with_capacity(TL_CAPACITY, GFP_KERNEL)?;
        let requested = outstanding(RS_INFLIGHT_MAX as usize)?;
        let served = outstanding(RS_SERVED_MAX)?;
        let conn = Arc::pin_init(
            pin_init!(Connection {
                resource: name,
                conf,
                info <- new_spinlock!(Info {
                    view: PeerView {
                        cstate: Conn::StandAlone,
                        role: ws::Role::Unknown,
                        disk: ws::Disk::DUnknown,
                        agreed: 0,
                    },
                    data: None,
                    meta: None,
                    peer_uuids: None,
                    peer_max_bio: 0,
                    peer_sectors: 0,
                }),
                data_tx <- new_mutex!(Epoch { number: FIRST_EPOCH, writes: 0 }),
                writers: AtomicU32::new(0),
                meta_tx <- new_mutex!(()),
                stop: AtomicBool::new(false),
                tl <- new_mutex!(tl),
                next_id: AtomicU64::new(1),
                down: AtomicBool::new(false),
                had_peer: AtomicBool::new(false),
                rs: ResyncStats {
                    total_bits: AtomicU64::new(0),
                    start_ms: AtomicU64::new(0),
                    failed_bits: AtomicU64::new(0),
                    peer_done: AtomicBool::new(false),
                },
                ack_seq: AtomicU32::new(0),
                requested <- new_spinlock!(requested),
                served <- new_spinlock!(served),
                serving <- new_spinlock!(None),
            }),
            GFP_KERNEL,
        )?;
        let mut tname = [0u8; 16];
        let prefix = b"drbd_r_";
        // The resource name, cut to fit with the prefix and a NUL.
        let room = tname.len().saturating_sub(prefix.len()).saturating_sub(1);
        let name = &resource[..resource.len().min(room)];
        tname[..prefix.len()].copy_from_slice(prefix);
        tname[prefix.len()..][..name.len()].copy_from_slice(name);
        let tname = CStr::from_bytes_until_nul(&tname).map_err(|_| EINVAL)?;
        let thread = KThread::spawn(tname, conn.clone(), receiver)?;
        Ok(ConnHandle {
            conn,
            thread: Some(thread),
        })
    }

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
            if !reached(cstate, Conn::WFReportParams) {
                i.view.role = ws::Role::Unknown;
                i.view.disk = ws::Disk::DUnknown;
            }
            old != cstate
        };
        if changed {
            pr_info!("resource {}: connection {}\n", self.name(), cstate.name());
            crate::genl::notify_connection(self);
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

    /// The resource's name as bytes.
    pub(crate) fn resource(&self) -> &[u8] {
        &self.resource
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

    /// Whether application writes go to the peer now (`drbd_should_do_remote`: `Connected`,
    /// and from `WFBitMapT` through the sync states).
    pub(crate) fn replicates(&self) -> bool {
        let c = self.view().cstate;
        c == Conn::Connected || (reached(c, Conn::WFBitMapT) && !reached(c, Conn::Ahead))
    }

    /// Whether application writes are only announced as out of sync (`P_OUT_OF_SYNC`): our
    /// bitmap is on its way to the peer (`WFBitMapS`).
    pub(crate) fn sends_out_of_sync(&self) -> bool {
        self.view().cstate == Conn::WFBitMapS
    }

    /// Whether a peer shares our data now (a new current UUID is not needed to promote).
    pub(crate) fn peer_has_data(&self) -> bool {
        let v = self.view();
        reached(v.cstate, Conn::Connected) && reached_disk(v.disk, ws::Disk::Inconsistent)
    }

    /// Tells the peer that a write of `bytes` at `sector` stays local for now
    /// (`P_OUT_OF_SYNC`); the write is marked in our bitmap already. Best effort.
    pub(crate) fn send_out_of_sync(&self, sector: u64, bytes: u64) {
        let d = w::BlockDesc {
            sector,
            blksize: bytes as u32,
            pad: 0,
        };
        let _ = self.send(false, Packet::OutOfSync, &d.encode());
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

    /// Sends a write to the peer (`P_DATA`): `held` keeps the request from completing until
    /// the protocol's acknowledgement arrives (A: sent, B: received, C: written). The write
    /// joins the current epoch, which a `P_BARRIER` closes when no other writer is about to
    /// send, after a FUA write, or after [`MAX_EPOCH_WRITES`]; the write leaves the transfer
    /// log with its epoch's `P_BARRIER_ACK`. On a send failure, or with the transfer log full,
    /// the request completes with the local copy only and its blocks are marked out of sync.
    pub(crate) fn send_data(&self, dev: &Device, held: RqRef, data: &[u8], sector: u64, fua: bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sectors = data.len() as u64 >> 9;
        let ack_flag = match self.conf.protocol {
            w::PROT_B => w::DP_SEND_RECEIVE_ACK,
            w::PROT_C => w::DP_SEND_WRITE_ACK,
            _ => 0,
        };
        let d = w::DataHeader {
            sector,
            block_id: id,
            seq_num: id as u32,
            dp_flags: ack_flag | if fua { w::DP_FUA } else { 0 },
        };
        self.wait_not_serving(sector, sectors);
        let (sock, agreed) = self.session_socket(false);
        let Some(sock) = sock else {
            dev.mark_out_of_sync(sector, sectors);
            return;
        };
        self.writers.fetch_add(1, Ordering::SeqCst);
        let mut ep = self.data_tx.lock();
        let (tl_held, held) = if ack_flag != 0 {
            (Some(held), None)
        } else {
            (None, Some(held))
        };
        let e = TlEntry {
            id,
            sector,
            sectors,
            epoch: ep.number,
            held: tl_held,
        };
        // (Bound first: the log's lock must not be held while sending.)
        let pushed = self.tl.lock().push_within_capacity(e);
        let sent = match pushed {
            Ok(()) => {
                let sent = send_packet(&sock, agreed, Packet::Data, &[&d.encode(), data]).is_ok();
                if !sent {
                    // The session ends: the peer needs the write later.
                    dev.mark_out_of_sync(sector, sectors);
                    let mut tl = self.tl.lock();
                    if let Some(i) = tl.iter().position(|e| e.id == id) {
                        let _ = tl.remove(i);
                    }
                }
                sent
            }
            Err(e) => {
                pr_err!(
                    "resource {}: transfer log full (barrier acks missing)\n",
                    self.name()
                );
                // Marked before the request completes (dropping `e` completes it).
                dev.mark_out_of_sync(sector, sectors);
                drop(e);
                false
            }
        };
        let last = self.writers.fetch_sub(1, Ordering::SeqCst) == 1;
        if sent {
            // At most MAX_EPOCH_WRITES: the epoch is closed then.
            ep.writes = ep.writes.saturating_add(1);
            if fua || last || ep.writes >= MAX_EPOCH_WRITES {
                let b = w::Barrier {
                    barrier: ep.number,
                    pad: 0,
                };
                // A failure ends the session, which marks the whole log out of sync.
                if send_packet(&sock, agreed, Packet::Barrier, &[&b.encode()]).is_ok() {
                    ep.number = ep.number.wrapping_add(1);
                    ep.writes = 0;
                }
            }
        }
        drop(ep);
        // Protocol A: the request completes now that the write is on its way.
        drop(held);
    }

    /// A write of `sectors` from `sector` that overlaps the resync block being served (read
    /// before the write was submitted) waits until that reply is on the socket, so that its
    /// `P_DATA` follows the older data (see [`serve_rs_request`]). Other writes do not wait.
    fn wait_not_serving(&self, sector: u64, sectors: u64) {
        let end = sector.saturating_add(sectors);
        let overlaps = || {
            (*self.serving.lock()).is_some_and(|b| {
                let b_end = b.sector.saturating_add(u64::from(b.bytes >> 9));
                b.sector < end && sector < b_end
            })
        };
        while overlaps() && !self.stopping() && !self.down.load(Ordering::SeqCst) {
            net::sleep_interruptible(1);
        }
    }

    /// Tells the peer our current state (after a local role or disk change). Best effort: a
    /// failure ends the session by itself.
    pub(crate) fn send_state(&self, dev: &Device) {
        if !reached(self.view().cstate, Conn::WFReportParams) {
            return;
        }
        // UUIDs first: a forced promotion gave us new ones, and the peer decides on both.
        let u = our_uuids(dev).1;
        let _ = self.send(false, Packet::Uuids, &u.encode());
        let word = self.state_word(dev);
        let _ = self.send(false, Packet::State, &word.to_be_bytes());
    }

    fn state_word(&self, dev: &Device) -> u32 {
        let (role, disk) = {
            let st = dev.lock();
            (st.role, st.disk_state)
        };
        let v = self.view();
        ws::State::new(wire_role(role), v.role, v.cstate, wire_disk(disk), v.disk).pack()
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

/// Our `P_UUIDS` payload and the bitmap size in bits (0 without a disk).
fn our_uuids(dev: &Device) -> (u64, w::Uuids) {
    let st = dev.lock();
    match st.backing.as_ref() {
        Some(b) => {
            let u = b.md.uuids();
            (
                b.md.geometry().bm_bits(),
                w::Uuids {
                    current: u[0],
                    bitmap: u[1],
                    history_start: u[2],
                    history_end: u[3],
                    dirty_bits: dev.out_of_sync_kib() / 4,
                    flags: if st.disk_state == DiskState::Inconsistent {
                        sync::UUID_FLAG_INCONSISTENT
                    } else {
                        0
                    },
                },
            )
        }
        None => (0, w::Uuids::default()),
    }
}

/// Our role on the wire.
fn wire_role(r: Role) -> ws::Role {
    match r {
        Role::Primary => ws::Role::Primary,
        Role::Secondary => ws::Role::Secondary,
    }
}

/// Our disk state on the wire (DRBD's numbering differs from the netlink one).
fn wire_disk(d: DiskState) -> ws::Disk {
    match d {
        DiskState::Diskless => ws::Disk::Diskless,
        DiskState::Attaching => ws::Disk::Attaching,
        DiskState::Inconsistent => ws::Disk::Inconsistent,
        DiskState::Outdated => ws::Disk::Outdated,
        DiskState::Consistent => ws::Disk::Consistent,
        DiskState::UpToDate => ws::Disk::UpToDate,
    }
}

/// A peer disk state for netlink.
pub(crate) fn genl_disk(d: ws::Disk) -> Option<DiskState> {
    Some(match d {
        ws::Disk::Diskless => DiskState::Diskless,
        ws::Disk::Attaching | ws::Disk::Negotiating => DiskState::Attaching,
        ws::Disk::Inconsistent | ws::Disk::Failed => DiskState::Inconsistent,
        ws::Disk::Outdated => DiskState::Outdated,
        ws::Disk::Consistent => DiskState::Consistent,
        ws::Disk::UpToDate => DiskState::UpToDate,
        ws::Disk::DUnknown => return None,
    })
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

/// The receiver thread.
fn receiver(c: &Arc<Connection>) {
    pr_info!(
        "resource {}: connecting {} -> {}\n",
        c.name(),
        c.conf.local,
        c.conf.peer
    );
    while !c.stopping() {
        c.set_cstate(Conn::Unconnected);
        c.set_cstate(Conn::WFConnection);
        let end = match establish(c) {
            Ok((data, meta, resolve)) => session(c, data, meta, resolve),
            Err(_) => End::Retry,
        };
        let sockets = {
            let mut i = c.info.lock();
            i.view.agreed = 0;
            (i.data.take(), i.meta.take())
        };
        // Released (which sleeps) outside the spinlock.
        drop(sockets);
        // Writes whose epoch the peer never acknowledged complete now (if they still wait),
        // with the local copy only, and are marked out of sync: the peer may not have them.
        // (Dropped under the mutex, which keeps the reserved capacity: releasing is atomic.)
        let dev = volume0(c);
        let mut tl = c.tl.lock();
        if !tl.is_empty() {
            pr_warn!(
                "resource {}: {} writes without the peer's barrier ack: marked out of sync\n",
                c.name(),
                tl.len()
            );
        }
        if let Some(dev) = dev {
            for e in tl.iter() {
                dev.mark_out_of_sync(e.sector, e.sectors);
            }
        }
        tl.clear();
        drop(tl);
        // The next session starts a fresh epoch (the peer forgot the open one).
        c.data_tx.lock().writes = 0;
        // The peer no longer has our data: a Primary starts a new data generation.
        if c.had_peer.swap(false, Ordering::SeqCst) {
            if let Some(dev) = volume0(c) {
                dev.lost_peer();
            }
        }
        if let End::StandAlone = end {
            c.set_cstate(Conn::StandAlone);
            while !c.stopping() {
                net::sleep_interruptible(1000);
            }
            break;
        }
        if !c.stopping() {
            c.set_cstate(Conn::NetworkFailure);
            net::sleep_interruptible(1000);
        }
    }
    c.set_cstate(Conn::StandAlone);
    pr_info!("resource {}: disconnected\n", c.name());
}

fn send_first(s: &Socket, cmd: Packet) -> Result {
    send_packet(s, w::PRO_VERSION_INITIAL, cmd, &[])
}

/// `receive_first_packet()`: which socket the peer meant this one to be.
fn receive_first(c: &Connection, s: &Socket) -> Result<u16> {
    let to = c.conf.ping_timeout_ms().saturating_mul(4);
    s.setup(to, to);
    let h = recv_header(s, w::PRO_VERSION_INITIAL)?;
    if h.length != 0 {
        return Err(EPROTO);
    }
    Ok(h.command)
}

/// `drbd_socket_okay()`: drops a socket the peer has closed.
fn okay(s: &mut Option<Socket>) -> bool {
    match s {
        Some(sock) if sock.alive() => true,
        _ => {
            *s = None;
            false
        }
    }
}

/// `connection_established()`: both sockets exist and survive a ping-timeout's wait.
fn established(c: &Connection, d: &mut Option<Socket>, m: &mut Option<Socket>) -> bool {
    if d.is_none() || m.is_none() {
        return false;
    }
    net::sleep_interruptible(c.conf.ping_timeout_ms());
    let a = okay(d);
    okay(m) && a
}

fn coin() -> bool {
    // SAFETY: `get_random_u32` has no requirements.
    let r = unsafe { kernel::bindings::get_random_u32() };
    r & 1 == 1
}

/// Whether an accepted socket comes from the configured peer's address. Anything else is
/// logged (rate-limited) and dropped before a byte is read from it.
fn from_peer(c: &Connection, s: &Socket) -> bool {
    match s.peer_addr() {
        Ok(a) if a.same_host(&c.conf.peer) => true,
        r => {
            // SAFETY: `net_ratelimit` has no preconditions.
            if unsafe { kernel::bindings::net_ratelimit() } != 0 {
                match r {
                    Ok(a) => pr_warn!(
                        "resource {}: connection from {} refused: not the peer {}\n",
                        c.name(),
                        a,
                        c.conf.peer
                    ),
                    Err(e) => pr_warn!(
                        "resource {}: connection of unknown origin refused: {:?}\n",
                        c.name(),
                        e
                    ),
                }
            }
            false
        }
    }
}

/// `conn_connect()`'s socket part: returns the data and meta sockets, and whether we have
/// `RESOLVE_CONFLICTS` (we accepted the meta socket).
fn establish(c: &Connection) -> Result<(Socket, Socket, bool)> {
    let listener = loop {
        match Listener::bind(&c.conf.local) {
            Ok(l) => break l,
            Err(e) => {
                pr_warn!(
                    "resource {}: cannot listen on {}: {:?}\n",
                    c.name(),
                    c.conf.local,
                    e
                );
                if c.stopping() {
                    return Err(EINTR);
                }
                net::sleep_interruptible(c.conf.connect_int_ms());
            }
        }
    };
    let mut data: Option<Socket> = None;
    let mut meta: Option<Socket> = None;
    let mut resolve = false;
    loop {
        if c.stopping() {
            return Err(EINTR);
        }
        if let Ok(s) = Socket::connect(&c.conf.local, &c.conf.peer, 1000) {
            if data.is_none() {
                if send_first(&s, Packet::InitialData).is_ok() {
                    data = Some(s);
                }
            } else if meta.is_none() && send_first(&s, Packet::InitialMeta).is_ok() {
                resolve = false;
                meta = Some(s);
            }
        }
        if established(c, &mut data, &mut meta) {
            break;
        }
        // Wait for the peer's connection: connect-int with DRBD's +-1/7 jitter, in slices
        // so that `disconnect` is noticed.
        let total = c.conf.connect_int_ms();
        let total = if coin() {
            total.saturating_add(total / 7)
        } else {
            total.saturating_sub(total / 7)
        };
        let mut waited = 0u32;
        'retry: while waited < total && !c.stopping() {
            let slice = total.saturating_sub(waited).min(500);
            let s = match listener.accept(slice) {
                Ok(s) if from_peer(c, &s) => s,
                // A refused connection counts as a slice, so that a flood of them cannot keep
                // us from connecting out.
                Ok(_) | Err(_) => {
                    waited = waited.saturating_add(slice);
                    continue;
                }
            };
            let fp = receive_first(c, &s);
            okay(&mut data);
            okay(&mut meta);
            let slot = match fp {
                Ok(cmd) if cmd == Packet::InitialData as u16 => &mut data,
                Ok(cmd) if cmd == Packet::InitialMeta as u16 => {
                    resolve = true;
                    &mut meta
                }
                _ => {
                    pr_warn!("resource {}: error receiving initial packet\n", c.name());
                    if coin() {
                        continue 'retry;
                    }
                    break;
                }
            };
            let crossed = slot.is_some();
            *slot = Some(s);
            if crossed {
                pr_warn!("resource {}: initial packet crossed\n", c.name());
                if coin() {
                    continue 'retry;
                }
            }
            break;
        }
        if established(c, &mut data, &mut meta) {
            break;
        }
    }
    match (data, meta) {
        (Some(d), Some(m)) => Ok((d, m, resolve)),
        _ => Err(EIO),
    }
}

/// Exchanges `P_CONNECTION_FEATURES`; returns the agreed version.
fn features(c: &Connection, data: &Socket) -> core::result::Result<u32, End> {
    let failed = |e: Error| {
        pr_warn!("resource {}: handshake failed: {:?}\n", c.name(), e);
        End::Retry
    };
    send_packet(
        data,
        w::PRO_VERSION_INITIAL,
        Packet::ConnectionFeatures,
        &[&Features::OURS.encode()],
    )
    .map_err(failed)?;
    let h = recv_header(data, w::PRO_VERSION_INITIAL).map_err(failed)?;
    if h.command != Packet::ConnectionFeatures as u16 || h.length as usize != w::FEATURES_SIZE {
        pr_err!(
            "resource {}: expected ConnectionFeatures, received {} (0x{:04x}, {} bytes)\n",
            c.name(),
            packet_name(h.command),
            h.command,
            h.length
        );
        return Err(End::StandAlone);
    }
    let mut p = [0u8; w::FEATURES_SIZE];
    data.recv(&mut p).map_err(failed)?;
    let peer = Features::decode(&p).map_err(|_| failed(EPROTO))?;
    match Features::negotiate(&Features::OURS, &peer) {
        Ok((agreed, _)) => {
            pr_info!(
                "resource {}: handshake successful: agreed network protocol version {}\n",
                c.name(),
                agreed
            );
            Ok(agreed)
        }
        Err(_) => {
            pr_err!(
                "resource {}: incompatible DRBD dialects: I support {}-{}, peer supports {}-{}\n",
                c.name(),
                w::PRO_VERSION_MIN,
                w::PRO_VERSION_MAX,
                peer.protocol_min,
                peer.protocol_max
            );
            Err(End::StandAlone)
        }
    }
}

/// CRAM-HMAC (`drbd_do_auth()`), right after the feature handshake: each side sends a random
/// challenge and answers the peer's with HMAC(`cram-hmac-alg`, shared secret, challenge). A
/// wrong answer or a malformed exchange is fatal (`StandAlone`), as in DRBD.
fn authenticate(c: &Connection, data: &Socket, agreed: u32) -> core::result::Result<(), End> {
    let alg = w::c_str(&c.conf.cram_hmac_alg);
    let secret = w::c_str(&c.conf.shared_secret);
    let lost = |e: Error| {
        pr_warn!("resource {}: authentication: {:?}\n", c.name(), e);
        End::Retry
    };
    let mut mine = [0u8; w::CHALLENGE_LEN];
    // SAFETY: `get_random_bytes` writes exactly `mine.len()` bytes into `mine`.
    unsafe { kernel::bindings::get_random_bytes(mine.as_mut_ptr().cast(), mine.len()) };
    send_packet(data, agreed, Packet::AuthChallenge, &[&mine]).map_err(lost)?;
    let h = recv_header(data, agreed).map_err(lost)?;
    let n = h.length as usize;
    if h.command != Packet::AuthChallenge as u16
        || !(w::CHALLENGE_LEN..=w::AUTH_CHALLENGE_MAX).contains(&n)
    {
        pr_err!(
            "resource {}: expected AuthChallenge of {}..{} bytes, received {} ({} bytes)\n",
            c.name(),
            w::CHALLENGE_LEN,
            w::AUTH_CHALLENGE_MAX,
            packet_name(h.command),
            h.length
        );
        return Err(End::StandAlone);
    }
    let mut theirs = [0u8; w::AUTH_CHALLENGE_MAX];
    data.recv(&mut theirs[..n]).map_err(lost)?;
    if theirs[..w::CHALLENGE_LEN] == mine {
        pr_err!("resource {}: peer presented the same challenge\n", c.name());
        return Err(End::Retry);
    }
    let hmac_failed = |e: Error| {
        pr_err!(
            "resource {}: hmac({}) failed: {:?}\n",
            c.name(),
            core::str::from_utf8(alg).unwrap_or("?"),
            e
        );
        End::StandAlone
    };
    let mut answer = [0u8; 64];
    let len = net::hmac(alg, secret, &theirs[..n], &mut answer).map_err(hmac_failed)?;
    send_packet(data, agreed, Packet::AuthResponse, &[&answer[..len]]).map_err(lost)?;
    let h = recv_header(data, agreed).map_err(lost)?;
    if h.command != Packet::AuthResponse as u16 || h.length as usize != len {
        pr_err!(
            "resource {}: expected AuthResponse of {} bytes, received {} ({} bytes)\n",
            c.name(),
            len,
            packet_name(h.command),
            h.length
        );
        return Err(End::StandAlone);
    }
    let mut got = [0u8; 64];
    data.recv(&mut got[..len]).map_err(lost)?;
    let mut right = [0u8; 64];
    net::hmac(alg, secret, &mine, &mut right).map_err(hmac_failed)?;
    // Compared without an early exit.
    let diff = got[..len]
        .iter()
        .zip(&right[..len])
        .fold(0u8, |a, (x, y)| a | (x ^ y));
    if diff != 0 {
        pr_err!("resource {}: authentication of peer failed\n", c.name());
        return Err(End::StandAlone);
    }
    pr_info!(
        "resource {}: peer authenticated using {} bytes HMAC\n",
        c.name(),
        len
    );
    Ok(())
}

fn our_protocol(conf: &NetConf) -> w::Protocol {
    w::Protocol {
        protocol: conf.protocol,
        after_sb_0p: conf.after_sb[0],
        after_sb_1p: conf.after_sb[1],
        after_sb_2p: conf.after_sb[2],
        conn_flags: 0,
        two_primaries: u32::from(conf.two_primaries),
        integrity_alg: [0; w::SHARED_SECRET_MAX],
    }
}

/// Sends `P_SYNC_PARAM89`, `P_SIZES`, `P_UUIDS` and `P_STATE` of volume 0 (`drbd_connected()`).
fn send_volume_params(c: &Connection, agreed: u32, dev: &Device) -> Result {
    let sp = w::SyncParam {
        resync_rate: c.conf.resync_rate,
        verify_alg: c.conf.verify_alg,
        csums_alg: c.conf.csums_alg,
        c_plan_ahead: c.conf.c_plan_ahead_ds,
        c_delay_target: 10,
        c_fill_target: 100,
        c_max_rate: c.conf.c_max_rate,
    };
    let mut buf = [0u8; 256];
    let n = sp.encode(agreed, &mut buf).map_err(|_| EINVAL)?;
    c.send(false, w::SyncParam::packet(agreed), &buf[..n])?;
    let cap = dev
        .lock()
        .backing
        .as_ref()
        .map_or(0, |b| b.md.capacity_sectors());
    let sizes = w::Sizes {
        d_size: cap,
        u_size: 0,
        c_size: cap,
        max_bio_size: MAX_BIO_SIZE,
        queue_order_type: 0,
        dds_flags: 0,
    };
    c.send(false, Packet::Sizes, &sizes.encode())?;
    c.send(false, Packet::Uuids, &our_uuids(dev).1.encode())?;
    let word = c.state_word(dev);
    c.send(false, Packet::State, &word.to_be_bytes())
}

/// One connected session: handshake, then the receive loop on the data socket.
fn session(c: &Arc<Connection>, data: Socket, meta: Socket, resolve_conflicts: bool) -> End {
    let ping_to = c.conf.ping_timeout_ms().saturating_mul(4);
    data.setup(ping_to, ping_to);
    meta.setup(c.conf.ping_int_ms(), c.conf.timeout_ms());
    let agreed = match features(c, &data) {
        Ok(a) => a,
        Err(e) => return e,
    };
    if c.conf.cram_hmac_alg[0] != 0 {
        if let Err(e) = authenticate(c, &data, agreed) {
            return e;
        }
    }
    data.setup(0, c.conf.timeout_ms());
    let (data, meta) = match (Arc::new(data, GFP_KERNEL), Arc::new(meta, GFP_KERNEL)) {
        (Ok(d), Ok(m)) => (d, m),
        _ => return End::Retry,
    };
    c.down.store(false, Ordering::SeqCst);
    {
        let mut i = c.info.lock();
        i.data = Some(data.clone());
        i.meta = Some(meta.clone());
        i.view.agreed = agreed;
        i.peer_uuids = None;
        i.peer_max_bio = 0;
        i.peer_sectors = 0;
    }
    // Nothing is outstanding with a new session's peer.
    c.requested.lock().clear();
    c.served.lock().clear();
    *c.serving.lock() = None;
    // A disconnect that raced with the publication above missed these sockets.
    if c.stopping() {
        return End::Retry;
    }
    let mut buf = [0u8; 256];
    let n = match our_protocol(&c.conf).encode(agreed, &mut buf) {
        Ok(n) => n,
        Err(_) => return End::StandAlone,
    };
    if c.send(false, Packet::Protocol, &buf[..n]).is_err() {
        return End::Retry;
    }
    let Some(dev) = volume0(c) else {
        pr_err!("resource {}: no volume to replicate\n", c.name());
        return End::StandAlone;
    };
    if send_volume_params(c, agreed, &dev).is_err() {
        return End::Retry;
    }
    c.set_cstate(Conn::WFReportParams);
    let asender = match KThread::spawn(c"drbd_asender", c.clone(), asender) {
        Ok(t) => t,
        Err(_) => return End::Retry,
    };
    let Ok(mut rx) = Receiving::new() else {
        c.shutdown_sockets();
        return End::Retry;
    };
    let end = receive_loop(c, &data, agreed, &dev, resolve_conflicts, &mut rx);
    c.shutdown_sockets();
    // Joins the resync worker, then the asender.
    drop(rx);
    drop(asender);
    end
}

fn receive_loop(
    c: &Arc<Connection>,
    data: &Socket,
    agreed: u32,
    dev: &Device,
    resolve_conflicts: bool,
    rx: &mut Receiving,
) -> End {
    let mut buf = KVec::new();
    if buf
        .resize(MAX_CONTROL_PAYLOAD as usize, 0u8, GFP_KERNEL)
        .is_err()
    {
        return End::Retry;
    }
    loop {
        if c.stopping() {
            return End::Retry;
        }
        // Data is applied right here; a control packet is returned with its payload length.
        let got = recv_header(data, agreed).and_then(|h| {
            if h.command == Packet::Data as u16 {
                receive_data(c, data, &h, dev, rx).map(|()| None)
            } else if h.command == Packet::RsDataReply as u16 {
                receive_rs_data(c, data, &h, dev, rx).map(|()| None)
            } else {
                recv_payload(data, &h, &mut buf).map(|n| Some((h, n)))
            }
        });
        let (h, n) = match got {
            Ok(None) => continue,
            Ok(Some(x)) => x,
            Err(e) => {
                if !c.stopping() {
                    if e == EPROTO {
                        pr_err!("resource {}: protocol error on the data socket\n", c.name());
                    } else {
                        pr_info!(
                            "resource {}: data socket: {:?}, connection lost\n",
                            c.name(),
                            e
                        );
                    }
                }
                return End::Retry;
            }
        };
        let p = &buf[..n];
        let r = match Packet::from_u16(h.command) {
            Some(Packet::Protocol) => receive_protocol(c, agreed, p),
            Some(Packet::SyncParam) | Some(Packet::SyncParam89) => w::SyncParam::decode(agreed, p)
                .map(|_| ())
                .map_err(|e| bad(c, h, e)),
            Some(Packet::Sizes) => receive_sizes(c, p, dev).map_err(|e| bad(c, h, e)),
            Some(Packet::Uuids) => w::Uuids::decode(p)
                .map(|u| c.info.lock().peer_uuids = Some(u))
                .map_err(|e| bad(c, h, e)),
            Some(Packet::State) => receive_state(c, agreed, p, dev, resolve_conflicts, rx),
            Some(Packet::StateChgReq) => receive_state_chg_req(c, p, dev),
            Some(Packet::ConnStChgReq) => receive_conn_st_chg_req(c, p),
            Some(Packet::Barrier) => receive_barrier(c, p, rx),
            Some(Packet::Bitmap) | Some(Packet::CompressedBitmap) => {
                receive_bitmap(c, agreed, h, p, dev, rx)
            }
            Some(Packet::SyncUuid) => receive_sync_uuid(c, p, dev, rx),
            Some(Packet::RsDataRequest) => serve_rs_request(c, p, dev, rx),
            Some(Packet::OutOfSync) => receive_out_of_sync(c, h, p, dev),
            // The C driver's hint to push acks out (`receive_UnplugRemote`): nothing to do, our
            // acks are sent at once.
            Some(Packet::UnplugRemote) => Ok(()),
            _ => {
                pr_err!(
                    "resource {}: unexpected packet {} (0x{:04x}) in state {}\n",
                    c.name(),
                    packet_name(h.command),
                    h.command,
                    c.view().cstate.name()
                );
                Err(End::Retry)
            }
        };
        if let Err(e) = r {
            return e;
        }
    }
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

/// `P_DATA` (`receive_Data`): applies the peer's write to our lower device and acknowledges it
/// as its `dp_flags` ask (`P_RECV_ACK` once received, `P_WRITE_ACK` once written). We write
/// through with FUA, so every write is stable when acknowledged and epochs need no flush.
fn receive_data(
    c: &Connection,
    sock: &Socket,
    h: &w::Header,
    dev: &Device,
    rx: &mut Receiving,
) -> Result {
    let d = recv_data_header(c, sock, h)?;
    let len = {
        let st = dev.lock();
        let cap = st.backing.as_ref().map_or(0, |b| b.md.capacity_sectors());
        match w::check_data(h.length, d.sector, cap, MAX_BIO_SIZE) {
            // Writes only into a Secondary, and only once the handshake is done.
            Ok(len) if st.role != Role::Primary && c.is_connected() => len,
            r => {
                pr_err!(
                    "resource {}: P_DATA of {} bytes at sector {} refused ({:?}, capacity {}, role {}, {})\n",
                    c.name(),
                    h.length,
                    d.sector,
                    r,
                    cap,
                    st.role.name(),
                    c.view().cstate.name()
                );
                return Err(EPROTO);
            }
        }
    };
    let ack = |cmd: Packet| {
        let a = w::BlockAck {
            sector: d.sector,
            block_id: d.block_id,
            blksize: len,
            seq_num: d.seq_num,
        };
        c.send(true, cmd, &a.encode())
    };
    if d.dp_flags & w::DP_SEND_RECEIVE_ACK != 0 {
        // Protocol B acknowledges receipt; with the payload still on the socket that is a
        // promise to write, which we keep below or tear the connection down.
        ack(Packet::RecvAck)?;
    }
    write_payload(c, sock, dev, rx, d.sector, len)?;
    // Zero-length writes count too, and cost the peer next to nothing: a peer that never
    // closes its epoch (DRBD closes them after max-epoch-size writes) is dropped.
    rx.epoch_writes = rx.epoch_writes.checked_add(1).ok_or_else(|| {
        pr_err!(
            "resource {}: epoch of more than {} writes\n",
            c.name(),
            u32::MAX
        );
        EPROTO
    })?;
    if d.dp_flags & w::DP_SEND_WRITE_ACK != 0 {
        ack(Packet::WriteAck)?;
    }
    Ok(())
}

/// `P_BARRIER`: every write of the epoch is already stable (written through): ack at once.
fn receive_barrier(c: &Connection, p: &[u8], rx: &mut Receiving) -> core::result::Result<(), End> {
    let b = w::Barrier::decode(p).map_err(|_| End::Retry)?;
    let ack = w::BarrierAck {
        barrier: b.barrier,
        set_size: rx.epoch_writes,
    };
    rx.epoch_writes = 0;
    c.send(true, Packet::BarrierAck, &ack.encode())
        .map_err(|_| End::Retry)
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

/// `receive_protocol()`: the peer's replication settings must equal ours.
fn receive_protocol(c: &Connection, agreed: u32, p: &[u8]) -> core::result::Result<(), End> {
    let peer = w::Protocol::decode(agreed, p).map_err(|e| {
        pr_err!(
            "resource {}: malformed Protocol packet: {:?}\n",
            c.name(),
            e
        );
        End::StandAlone
    })?;
    let ours = our_protocol(&c.conf);
    let mismatch = if peer.protocol != ours.protocol {
        Some("protocol")
    } else if peer.after_sb_0p != ours.after_sb_0p {
        Some("after-sb-0pri")
    } else if peer.after_sb_1p != ours.after_sb_1p {
        Some("after-sb-1pri")
    } else if peer.after_sb_2p != ours.after_sb_2p {
        Some("after-sb-2pri")
    } else if peer.two_primaries != ours.two_primaries {
        Some("allow-two-primaries")
    } else if peer.integrity_alg_str() != ours.integrity_alg_str() {
        Some("data-integrity-alg")
    } else {
        None
    };
    if let Some(what) = mismatch {
        pr_err!("resource {}: incompatible {} settings\n", c.name(), what);
        return Err(End::StandAlone);
    }
    Ok(())
}

fn receive_sizes(c: &Connection, p: &[u8], dev: &Device) -> core::result::Result<(), WireError> {
    // Without the optional queue limits (we offer no features that add them).
    let s = w::Sizes::decode(p)?;
    let ours = dev
        .lock()
        .backing
        .as_ref()
        .map_or(0, |b| b.md.capacity_sectors());
    if s.d_size != 0 && ours != 0 && s.d_size != ours {
        pr_warn!(
            "resource {}: peer's disk size {} sectors differs from ours {}\n",
            c.name(),
            s.d_size,
            ours
        );
    }
    let mut i = c.info.lock();
    i.peer_max_bio = s.max_bio_size;
    i.peer_sectors = s.d_size;
    Ok(())
}

fn receive_state(
    c: &Arc<Connection>,
    agreed: u32,
    p: &[u8],
    dev: &Device,
    resolve_conflicts: bool,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let word = w::StateWord::decode(p).map_err(|_| End::Retry)?.state;
    let peer = ws::State::unpack(word).map_err(|_| {
        pr_err!(
            "resource {}: invalid peer state word 0x{:08x}\n",
            c.name(),
            word
        );
        End::Retry
    })?;
    let cstate = {
        let mut i = c.info.lock();
        i.view.role = peer.role;
        i.view.disk = peer.disk;
        i.view.cstate
    };
    let first = cstate == Conn::WFReportParams;
    let our_disk = dev.lock().disk_state;
    // `receive_state()`'s "consider resync": a new connection; the peer started a sync
    // handshake (it reports StartingSync* or WFBitMap*); or we are Inconsistent and the peer
    // has UpToDate data (it was forced Primary: DRBD's CONSIDER_RESYNC).
    let consider = first
        || (cstate == Conn::Connected
            && ((reached(peer.conn, Conn::StartingSyncS)
                && !reached(peer.conn, Conn::WFSyncUUID))
                || (our_disk == DiskState::Inconsistent && peer.disk == ws::Disk::UpToDate)));
    if is_sync(cstate) && peer.conn == Conn::Connected {
        // The sync target says it is done; the worker finishes once the acks are in.
        c.rs.peer_done.store(true, Ordering::SeqCst);
    }
    if !consider {
        crate::genl::notify_connection(c);
        return Ok(());
    }
    let Some(pu) = c.info.lock().peer_uuids else {
        pr_err!("resource {}: State before UUIDs\n", c.name());
        return Err(End::Retry);
    };
    let outcome = handshake(c, dev, &pu, &peer, resolve_conflicts)?;
    let (source, full) = match outcome {
        sync::Outcome::SyncSourceBitmap => (true, false),
        sync::Outcome::FullSyncSource => (true, true),
        sync::Outcome::SyncTargetBitmap => (false, false),
        sync::Outcome::FullSyncTarget => (false, true),
        _ => {
            if first {
                c.set_cstate(Conn::Connected);
                // The peer learns that we are Connected too.
                c.send_state(dev);
            }
            return Ok(());
        }
    };
    start_bitmap_exchange(c, agreed, dev, source, full, rx)
}

/// The sync handshake (`drbd_sync_handshake()`): returns a sync outcome or no-sync, or ends
/// the session (split brain, unrelated data, refusals).
fn handshake(
    c: &Connection,
    dev: &Device,
    pu: &w::Uuids,
    peer: &ws::State,
    resolve_conflicts: bool,
) -> core::result::Result<sync::Outcome, End> {
    let me = {
        let st = dev.lock();
        let Some(b) = st.backing.as_ref() else {
            // Diskless: nothing to synchronise here.
            return Ok(sync::Outcome::NoSync);
        };
        let u = b.md.uuids();
        sync::Side {
            uuids: sync::Uuids {
                current: u[0],
                bitmap: u[1],
                history: [u[2], u[3]],
                dirty_bits: dev.out_of_sync_kib() / 4,
                flags: 0,
            },
            role: wire_role(st.role),
            disk: wire_disk(st.disk_state),
        }
    };
    let them = sync::Side {
        uuids: sync::Uuids::from_wire(pu),
        role: peer.role,
        disk: peer.disk,
    };
    let after_sb = c
        .conf
        .after_sb
        .map(|p| w::AfterSb::from_u32(p).unwrap_or(w::AfterSb::Disconnect));
    let link = sync::Link {
        agreed: c.view().agreed,
        features: 0,
        resolve_conflicts,
        negotiating: false,
    };
    let policy = sync::Policy {
        after_sb,
        always_asbp: false,
        rr_conflict: w::AfterSb::Disconnect,
    };
    let d = sync::sync_handshake(&me, &them, &link, &policy);
    pr_info!(
        "resource {}: sync handshake: uuid_compare()={} by rule {}: {:?}\n",
        c.name(),
        d.compared.hg,
        d.compared.rule,
        d.outcome
    );
    if let Some(fix) = d.compared.fix {
        // A missed resync-finished or sync-UUID event: DRBD corrects its UUIDs on the way.
        let (mut mine, mut theirs) = (me.uuids, them.uuids);
        fix.apply(&mut mine, &mut theirs);
        let mut st = dev.lock();
        if let Some(b) = st.backing.as_mut() {
            let u = b.md.uuids_mut();
            u[0] = mine.current;
            u[1] = mine.bitmap;
            u[2] = mine.history[0];
            u[3] = mine.history[1];
            if b.md.store(&b.lower).is_err() {
                return Err(End::Retry);
            }
        }
        c.info.lock().peer_uuids = Some(theirs.to_wire());
        pr_info!("resource {}: corrected UUIDs ({:?})\n", c.name(), fix);
    }
    match d.outcome {
        sync::Outcome::NoSync
        | sync::Outcome::SyncSourceBitmap
        | sync::Outcome::SyncTargetBitmap
        | sync::Outcome::FullSyncSource
        | sync::Outcome::FullSyncTarget => Ok(d.outcome),
        sync::Outcome::SplitBrain => {
            pr_err!(
                "resource {}: Split-Brain detected, dropping connection!\n",
                c.name()
            );
            Err(End::StandAlone)
        }
        sync::Outcome::Unrelated => {
            pr_err!("resource {}: Unrelated data, aborting!\n", c.name());
            Err(End::StandAlone)
        }
        _ => {
            pr_err!(
                "resource {}: sync handshake refused ({:?})\n",
                c.name(),
                d.outcome
            );
            Err(End::StandAlone)
        }
    }
}

/// Enters WFBitMapS (`source`) or WFBitMapT after a handshake that asks for a resync; a full
/// sync marks the whole bitmap first. The sync source sends its bitmap at once; the target
/// waits for it (`receive_bitmap`).
fn start_bitmap_exchange(
    c: &Connection,
    agreed: u32,
    dev: &Device,
    source: bool,
    full: bool,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let peer_sectors = c.info.lock().peer_sectors;
    {
        let mut st = dev.lock();
        let Some(b) = st.backing.as_mut() else {
            return Err(End::Retry);
        };
        let ours = b.md.capacity_sectors();
        if peer_sectors != ours {
            pr_err!(
                "resource {}: cannot resync: the peer's disk has {} sectors, ours {}\n",
                c.name(),
                peer_sectors,
                ours
            );
            return Err(End::StandAlone);
        }
        if full {
            pr_info!(
                "resource {}: writing the whole bitmap, full sync required\n",
                c.name()
            );
            let bits = b.md.geometry().bm_bits();
            if let Some(a) = (*dev.activity().lock()).as_mut() {
                a.set_all(bits);
            }
            let geo = *b.md.geometry();
            activity::flush_bitmap(dev, &b.lower, &geo, &mut b.io).map_err(|_| End::Retry)?;
        }
    }
    rx.bm_bit = 0;
    rx.bm_word = 0;
    rx.bm_packets = 0;
    c.set_cstate(if source {
        Conn::WFBitMapS
    } else {
        Conn::WFBitMapT
    });
    c.send_state(dev);
    if source {
        send_bitmap(c, agreed, dev).map_err(|_| End::Retry)?;
    }
    Ok(())
}

/// Sends our bitmap (`drbd_send_bitmap()`): RLE+VLI packets while they are smaller than the
/// plain bits, plain words otherwise; a plain transfer ends with an empty `P_BITMAP`.
fn send_bitmap(c: &Connection, agreed: u32, dev: &Device) -> Result {
    let bm_bits = dev
        .lock()
        .backing
        .as_ref()
        .map(|b| b.md.geometry().bm_bits())
        .ok_or(EIO)?;
    let words = bm_bits.div_ceil(64);
    let mut pkt = KVec::with_capacity(w::SOCKET_BUFFER_SIZE, GFP_KERNEL)?;
    pkt.resize(w::SOCKET_BUFFER_SIZE, 0u8, GFP_KERNEL)?;
    let code_max = w::compressed_bitmap_code_max(agreed);
    let (mut bit, mut word) = (0u64, 0u64);
    let (mut plain, mut compressed) = (0u32, 0u32);
    loop {
        // One packet is built under the bitmap lock and sent without it.
        let (cmd, len, done) = {
            let g = dev.activity().lock();
            let bm = (*g).as_ref().ok_or(EIO)?.bitmap();
            let mut off = bit;
            // Positions in our own bitmap (of `words` words): nothing saturates.
            match w::rle_encode(bm, bm_bits, &mut off, &mut pkt[1..][..code_max]) {
                Some((enc, n)) => {
                    pkt[0] = enc;
                    bit = off;
                    word = bit / 64;
                    (
                        Packet::CompressedBitmap,
                        n.saturating_add(1),
                        bit >= bm_bits,
                    )
                }
                None => {
                    let n = w::bitmap_plain_words(agreed, words.saturating_sub(word));
                    let len = n.saturating_mul(8);
                    let b0 = usize::try_from(word.saturating_mul(8))?;
                    let src = bm.get(b0..).and_then(|b| b.get(..len)).ok_or(EIO)?;
                    for (d, s) in pkt.iter_mut().zip(src) {
                        *d = *s;
                    }
                    word = word.saturating_add(n as u64);
                    bit = word.saturating_mul(64).min(bm_bits);
                    (Packet::Bitmap, len, n == 0)
                }
            }
        };
        if cmd == Packet::Bitmap {
            plain = plain.saturating_add(1);
        } else {
            compressed = compressed.saturating_add(1);
        }
        c.send(false, cmd, &pkt[..len])?;
        if done {
            break;
        }
    }
    pr_info!(
        "resource {}: sent bitmap: {} plain and {} compressed packets\n",
        c.name(),
        plain,
        compressed
    );
    Ok(())
}

/// `P_BITMAP` / `P_COMPRESSED_BITMAP` (`receive_bitmap()`): ORs the peer's bits into ours. At
/// the end the sync target answers with its bitmap and waits for the sync UUID; the sync
/// source starts the resync.
fn receive_bitmap(
    c: &Arc<Connection>,
    agreed: u32,
    h: w::Header,
    p: &[u8],
    dev: &Device,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let cstate = c.view().cstate;
    if cstate != Conn::WFBitMapS && cstate != Conn::WFBitMapT {
        pr_err!(
            "resource {}: bitmap packet in state {}\n",
            c.name(),
            cstate.name()
        );
        return Err(End::Retry);
    }
    let bm_bits = dev
        .lock()
        .backing
        .as_ref()
        .map(|b| b.md.geometry().bm_bits())
        .ok_or(End::Retry)?;
    if rx.bm_packets == 0 {
        rx.bm_started_ns = now_ns();
        rx.bm_slice_max_ns = 0;
    }
    rx.bm_packets = rx.bm_packets.saturating_add(1);
    let more = if h.command == Packet::CompressedBitmap as u16 {
        merge_compressed(agreed, p, dev, bm_bits, rx)
    } else {
        merge_plain(agreed, p, dev, bm_bits, rx)
    }
    .map_err(|e| bad(c, h, e))?;
    if more {
        return Ok(());
    }
    // Whole nanoseconds of a monotonic clock: no saturation.
    let took_ms = now_ns().saturating_sub(rx.bm_started_ns) / 1_000_000;
    pr_info!(
        "resource {}: received bitmap: {} KiB out of sync ({} packets in {} ms, longest slice under the bitmap lock {} us)\n",
        c.name(),
        dev.out_of_sync_kib(),
        rx.bm_packets,
        took_ms,
        rx.bm_slice_max_ns / 1000
    );
    rx.bm_packets = 0;
    if cstate == Conn::WFBitMapT {
        send_bitmap(c, agreed, dev).map_err(|_| End::Retry)?;
        c.set_cstate(Conn::WFSyncUUID);
        return Ok(());
    }
    // Sync source (`drbd_gen_and_send_sync_uuid()`, then `drbd_start_resync()`).
    let uuid = {
        let mut st = dev.lock();
        let primary = st.role == Role::Primary;
        let b = st.backing.as_mut().ok_or(End::Retry)?;
        // SAFETY: `get_random_u64` has no preconditions.
        let random = unsafe { kernel::bindings::get_random_u64() };
        let uuid = rs::gen_sync_uuid(b.md.uuids_mut(), random, primary);
        b.md.store(&b.lower).map_err(|_| End::Retry)?;
        let geo = *b.md.geometry();
        activity::flush_bitmap(dev, &b.lower, &geo, &mut b.io).map_err(|_| End::Retry)?;
        uuid
    };
    c.send(false, Packet::SyncUuid, &w::SyncUuid { uuid }.encode())
        .map_err(|_| End::Retry)?;
    begin_resync(c, dev, Conn::SyncSource, rx)
}

/// Bits of work per hold of the bitmap's interrupt-safe lock while merging a peer's bitmap: a
/// 1 TiB device's whole bitmap (2^28 bits) set by one packet takes 257 holds of at most 128 KiB.
const BM_SLICE_BITS: u64 = 1 << 20;

/// Merges one `P_COMPRESSED_BITMAP` in slices of [`BM_SLICE_BITS`], taking the lock per slice;
/// returns whether bits remain to be received.
fn merge_compressed(
    agreed: u32,
    p: &[u8],
    dev: &Device,
    bm_bits: u64,
    rx: &mut Receiving,
) -> core::result::Result<bool, WireError> {
    let (enc, code) = w::compressed_bitmap_parts(agreed, p)?;
    let mut d = w::RleDecoder::new(enc, code, bm_bits, rx.bm_bit)?;
    while !with_bitmap(dev, rx, |act| act.merge_rle(&mut d, BM_SLICE_BITS))? {}
    rx.bm_bit = d.offset();
    rx.bm_word = rx.bm_bit / 64;
    Ok(rx.bm_bit < bm_bits)
}

/// Runs `f` on the bitmap under its interrupt-safe lock (no bitmap: `BadValue`), and records
/// the longest hold in `rx`.
fn with_bitmap<R>(
    dev: &Device,
    rx: &mut Receiving,
    f: impl FnOnce(&mut activity::Activity) -> core::result::Result<R, WireError>,
) -> core::result::Result<R, WireError> {
    let t0 = now_ns();
    let r = {
        let mut g = dev.activity().lock();
        (*g).as_mut().ok_or(WireError::BadValue).and_then(f)
    };
    rx.bm_slice_max_ns = rx.bm_slice_max_ns.max(now_ns().saturating_sub(t0));
    r
}

/// Merges one plain `P_BITMAP` (at most 511 words, one hold of the lock); returns whether
/// words remain to be received.
fn merge_plain(
    agreed: u32,
    p: &[u8],
    dev: &Device,
    bm_bits: u64,
    rx: &mut Receiving,
) -> core::result::Result<bool, WireError> {
    // `bm_word` is at most the bitmap's words (a compressed packet's clear runs may end past
    // the bitmap: nothing is left then).
    let words = bm_bits.div_ceil(64);
    let n = w::bitmap_plain_words(agreed, words.saturating_sub(rx.bm_word));
    if p.len() != n.saturating_mul(8) {
        return Err(WireError::BadLength);
    }
    let word = rx.bm_word;
    with_bitmap(dev, rx, |act| act.merge_plain(word, p, bm_bits))?;
    rx.bm_word = rx.bm_word.saturating_add(n as u64);
    rx.bm_bit = rx.bm_word.saturating_mul(64).min(bm_bits);
    Ok(n != 0)
}

/// `P_SYNC_UUID` (`receive_sync_uuid()`): the sync target takes the source's new UUID, becomes
/// Inconsistent and starts requesting.
fn receive_sync_uuid(
    c: &Arc<Connection>,
    p: &[u8],
    dev: &Device,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    if c.view().cstate != Conn::WFSyncUUID {
        pr_err!(
            "resource {}: SyncUUID in state {}\n",
            c.name(),
            c.view().cstate.name()
        );
        return Err(End::Retry);
    }
    let su = w::SyncUuid::decode(p).map_err(|_| End::Retry)?;
    {
        let mut st = dev.lock();
        let primary = st.role == Role::Primary;
        let b = st.backing.as_mut().ok_or(End::Retry)?;
        rs::receive_sync_uuid(b.md.uuids_mut(), su.uuid, primary);
        b.md.set_disk_state(DiskState::Inconsistent);
        b.md.store(&b.lower).map_err(|_| End::Retry)?;
        let geo = *b.md.geometry();
        activity::flush_bitmap(dev, &b.lower, &geo, &mut b.io).map_err(|_| End::Retry)?;
        st.disk_state = DiskState::Inconsistent;
    }
    begin_resync(c, dev, Conn::SyncTarget, rx)
}

/// `drbd_start_resync()`: the figures, the state, and the worker that requests (target) or
/// waits for the end (source).
fn begin_resync(
    c: &Arc<Connection>,
    dev: &Device,
    side: Conn,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let bits = dev.out_of_sync_kib() / 4;
    c.rs.total_bits.store(bits, Ordering::SeqCst);
    c.rs.start_ms.store(now_ms(), Ordering::SeqCst);
    c.rs.failed_bits.store(0, Ordering::SeqCst);
    c.rs.peer_done.store(false, Ordering::SeqCst);
    if side == Conn::SyncSource {
        c.info.lock().view.disk = ws::Disk::Inconsistent;
    }
    c.set_cstate(side);
    pr_info!(
        "resource {}: began resync as {} (will sync {} KiB [{} bits set])\n",
        c.name(),
        side.name(),
        bits.saturating_mul(4),
        bits
    );
    crate::genl::notify(dev, crate::drbd_genl::EventType::Change);
    // A previous worker has ended (it stops when the state leaves its sync state).
    drop(rx.worker.take());
    c.requested.lock().clear();
    match KThread::spawn(c"drbd_rs_resync", c.clone(), resync_worker) {
        Ok(t) => {
            rx.worker = Some(t);
            Ok(())
        }
        Err(_) => Err(End::Retry),
    }
}

/// The resync worker. Sync target: requests the out-of-sync blocks in runs of at most
/// `RS_REQUEST_MAX` bytes, `RS_INFLIGHT_MAX` at a time, paced at the configured rate; when
/// nothing is left, finishes. Sync source: finishes when the target's acks have cleared every
/// bit.
fn resync_worker(c: &Arc<Connection>) {
    let Some(dev) = volume0(c) else {
        return;
    };
    let side = c.view().cstate;
    let Some((bm_bits, cap)) = dev
        .lock()
        .backing
        .as_ref()
        .map(|b| (b.md.geometry().bm_bits(), b.md.capacity_sectors()))
    else {
        return;
    };
    let peer_max = c.info.lock().peer_max_bio;
    let max_bytes = RS_REQUEST_MAX.min(if peer_max >= 4096 { peer_max } else { 4096 }) & !4095;
    let max_bits = u64::from(max_bytes / 4096);
    let mut pacer = rs::Pacer::new(c.conf.rs_rate_kib(), now_ms());
    let mut cursor = 0u64;
    loop {
        if c.stopping() || c.down.load(Ordering::SeqCst) || c.view().cstate != side {
            return;
        }
        let left = dev.out_of_sync_kib() / 4;
        let failed = c.rs.failed_bits.load(Ordering::SeqCst);
        if side == Conn::SyncSource {
            if left == 0 || (c.rs.peer_done.load(Ordering::SeqCst) && left <= failed) {
                finish_resync(c, &dev, side);
                return;
            }
            net::sleep_interruptible(50);
            continue;
        }
        if c.requested.lock().is_full() {
            net::sleep_interruptible(2);
            continue;
        }
        let next = (*dev.activity().lock())
            .as_ref()
            .and_then(|a| rs::next_request(a.bitmap(), bm_bits, cursor, max_bits));
        let Some((first, n)) = next else {
            if c.requested.lock().is_empty() {
                if left <= failed {
                    finish_resync(c, &dev, side);
                    return;
                }
                // Bits behind the cursor (failed blocks, or marked meanwhile): another pass.
                cursor = 0;
            }
            net::sleep_interruptible(10);
            continue;
        };
        // Bits of our bitmap (below 2^48) and `n` <= `max_bits`: nothing saturates, and the
        // size is at most `max_bytes` (a u32).
        let sector = first.saturating_mul(8);
        let bytes = n
            .saturating_mul(4096)
            .min(cap.saturating_sub(sector).saturating_mul(512)) as u32;
        let next = first.saturating_add(n);
        if bytes == 0 {
            cursor = next;
            continue;
        }
        if !pacer.take(u64::from(bytes), now_ms()) {
            net::sleep_interruptible(10);
            continue;
        }
        // Recorded before it is sent: the reply may come back at once. Not full (checked
        // above; only this thread adds).
        if !c.requested.lock().insert(RsBlock { sector, bytes }) {
            continue;
        }
        let req = w::BlockReq {
            sector,
            block_id: ID_SYNCER,
            blksize: bytes,
            pad: 0,
        };
        if c.send(false, Packet::RsDataRequest, &req.encode()).is_err() {
            return;
        }
        cursor = next;
    }
}

/// `drbd_resync_finished()`: UUIDs, disk states, bitmap on disk, back to Connected.
fn finish_resync(c: &Connection, dev: &Device, side: Conn) {
    let failed = c.rs.failed_bits.load(Ordering::SeqCst);
    let total = c.rs.total_bits.load(Ordering::SeqCst);
    let secs = (now_ms().saturating_sub(c.rs.start_ms.load(Ordering::SeqCst)) / 1000).max(1);
    let peer = c.info.lock().peer_uuids;
    {
        let mut st = dev.lock();
        let primary = st.role == Role::Primary;
        let Some(b) = st.backing.as_mut() else {
            return;
        };
        let mut up_to_date = false;
        if failed == 0 {
            let u = b.md.uuids_mut();
            if side == Conn::SyncTarget {
                match peer {
                    Some(p) => rs::finish_target(
                        u,
                        &[p.current, p.bitmap, p.history_start, p.history_end],
                        primary,
                    ),
                    None => rs::clear_bitmap_uuid(u),
                }
                b.md.set_disk_state(DiskState::UpToDate);
                up_to_date = true;
            } else {
                rs::finish_source(u);
            }
        }
        let geo = *b.md.geometry();
        if b.md.store(&b.lower).is_err()
            || activity::flush_bitmap(dev, &b.lower, &geo, &mut b.io).is_err()
        {
            pr_err!(
                "resource {}: writing metadata after resync failed\n",
                c.name()
            );
        }
        if up_to_date {
            st.disk_state = DiskState::UpToDate;
        }
    }
    if side == Conn::SyncSource && failed == 0 {
        c.info.lock().view.disk = ws::Disk::UpToDate;
    }
    c.set_cstate(Conn::Connected);
    pr_info!(
        "resource {}: resync done as {} (total {} s; {} K/sec; {} KiB failed)\n",
        c.name(),
        side.name(),
        secs,
        total.saturating_mul(4).checked_div(secs).unwrap_or(0),
        failed.saturating_mul(4)
    );
    if let Some(d) = volume0(c) {
        crate::genl::notify(&d, crate::drbd_genl::EventType::Change);
    }
    if side == Conn::SyncTarget {
        // Tell the source explicitly (as DRBD's `after_state_ch()` does).
        c.send_state(dev);
    }
}

/// `P_RS_DATA_REQUEST` (`receive_DataRequest()`, sync source): reads the range and sends it as
/// `P_RS_DATA_REPLY`, or `P_NEG_RS_DREPLY` if the read fails.
///
/// The device's state lock is held only while reading, never across network I/O: a slow peer
/// must not stall the application. Ordering against application writes: under the lock (no new
/// write is submitted) every write already submitted completes on the lower device, the block
/// is read into memory and marked as being served ([`Connection::serving`]). A write submitted
/// before is in the data we send; a write to the block submitted after waits in
/// [`Connection::send_data`] until the reply is on the socket, so its `P_DATA` follows it.
fn serve_rs_request(
    c: &Connection,
    p: &[u8],
    dev: &Device,
    rx: &mut Receiving,
) -> core::result::Result<(), End> {
    let r = w::BlockReq::decode(p).map_err(|_| End::Retry)?;
    rx.reply_buf()?;
    wait_served_room(c)?;
    let b = RsBlock {
        sector: r.sector,
        bytes: r.blksize,
    };
    if let Err(e) = read_rs_block(c, dev, b, rx)? {
        pr_warn!(
            "resource {}: resync read at sector {} failed: {:?}\n",
            c.name(),
            r.sector,
            e
        );
        let a = w::BlockAck {
            sector: r.sector,
            block_id: r.block_id,
            blksize: r.blksize,
            seq_num: c.next_ack_seq(),
        };
        return c
            .send(true, Packet::NegRsDReply, &a.encode())
            .map_err(|_| End::Retry);
    }
    // Recorded before it is sent: the ack may come back at once. There is room (checked
    // above; only this thread adds).
    c.served.lock().insert(b);
    let d = w::DataHeader {
        sector: r.sector,
        block_id: r.block_id,
        seq_num: 0,
        dp_flags: 0,
    };
    let data = rx.reply.get(..r.blksize as usize).unwrap_or(&[]);
    let sent = c.send_parts(false, Packet::RsDataReply, &[&d.encode(), data]);
    // Writes to the block may go now (after the reply, or after the session if it failed).
    *c.serving.lock() = None;
    sent.map_err(|e| {
        pr_err!(
            "resource {}: sending resync data failed: {:?}\n",
            c.name(),
            e
        );
        End::Retry
    })
}

/// Waits (without locks) until the sync target has acknowledged enough replies that another
/// one can be tracked; gives up when the session ends or after 30 s.
fn wait_served_room(c: &Connection) -> core::result::Result<(), End> {
    let deadline = now_ms().saturating_add(30_000);
    while c.served.lock().is_full() {
        if c.stopping() || c.down.load(Ordering::SeqCst) || now_ms() > deadline {
            pr_err!(
                "resource {}: {} resync replies without the peer's ack\n",
                c.name(),
                RS_SERVED_MAX
            );
            return Err(End::Retry);
        }
        net::sleep_interruptible(1);
    }
    Ok(())
}

/// Checks a resync request and reads its block into `rx.reply` under the device's state lock,
/// after every write submitted before has completed on the lower device; then marks the block
/// as being served (cleared by the caller once the reply is sent). `Err(End)` for a request
/// that is refused (the session ends), `Ok(Err(_))` for a failed read.
fn read_rs_block(
    c: &Connection,
    dev: &Device,
    b: RsBlock,
    rx: &mut Receiving,
) -> core::result::Result<Result, End> {
    let cstate = c.view().cstate;
    let st = dev.lock();
    let cap = st.backing.as_ref().map_or(0, |b| b.md.capacity_sectors());
    let ok = matches!(cstate, Conn::SyncSource | Conn::PausedSyncS)
        && st.disk_state == DiskState::UpToDate
        && b.bytes > 0
        && b.bytes % 512 == 0
        && b.bytes <= MAX_BIO_SIZE
        && b.sector
            .checked_add(u64::from(b.bytes >> 9))
            .is_some_and(|e| e <= cap);
    if !ok {
        pr_err!(
            "resource {}: resync request of {} bytes at sector {} refused (capacity {}, {})\n",
            c.name(),
            b.bytes,
            b.sector,
            cap,
            cstate.name()
        );
        return Err(End::Retry);
    }
    let deadline = now_ms().saturating_add(30_000);
    let stop = || c.stopping() || c.down.load(Ordering::SeqCst) || now_ms() > deadline;
    if !dev.wait_lower_writes(|| !stop()) {
        return Err(End::Retry);
    }
    let lower = &st.backing.as_ref().ok_or(End::Retry)?.lower;
    let mut off = 0u32;
    while off < b.bytes {
        // `off` < `bytes` <= MAX_BIO_SIZE: the pieces stay within `rx.reply`.
        let k = b.bytes.saturating_sub(off).min(RX_CHUNK as u32) as usize;
        let at = b.sector.saturating_add(u64::from(off >> 9));
        // Read through the kmalloc'd chunk (the reply buffer may be vmalloc'd).
        if let Err(e) = lower.read_into(at, &mut rx.chunk[..k]) {
            return Ok(Err(e));
        }
        let dst = rx
            .reply
            .get_mut(off as usize..)
            .and_then(|d| d.get_mut(..k))
            .ok_or(End::Retry)?;
        dst.copy_from_slice(&rx.chunk[..k]);
        off = off.saturating_add(k as u32);
    }
    *c.serving.lock() = Some(b);
    drop(st);
    Ok(Ok(()))
}

/// `P_RS_DATA_REPLY` (sync target): writes the block, marks it in sync and acknowledges it with
/// `P_RS_WRITE_ACK`.
fn receive_rs_data(
    c: &Connection,
    sock: &Socket,
    h: &w::Header,
    dev: &Device,
    rx: &mut Receiving,
) -> Result {
    let d = recv_data_header(c, sock, h)?;
    let len = {
        let st = dev.lock();
        let cap = st.backing.as_ref().map_or(0, |b| b.md.capacity_sectors());
        let cstate = c.view().cstate;
        match w::check_data(h.length, d.sector, cap, MAX_BIO_SIZE) {
            // Only the answer to one of our requests, once.
            Ok(len)
                if d.block_id == ID_SYNCER
                    && matches!(cstate, Conn::SyncTarget | Conn::PausedSyncT)
                    && c.requested.lock().take(RsBlock {
                        sector: d.sector,
                        bytes: len,
                    }) =>
            {
                len
            }
            r => {
                pr_err!(
                    "resource {}: RSDataReply of {} bytes at sector {} refused ({:?}, capacity {}, {})\n",
                    c.name(),
                    h.length,
                    d.sector,
                    r,
                    cap,
                    cstate.name()
                );
                return Err(EPROTO);
            }
        }
    };
    write_payload(c, sock, dev, rx, d.sector, len)?;
    dev.mark_in_sync(d.sector, u64::from(len >> 9));
    let a = w::BlockAck {
        sector: d.sector,
        block_id: d.block_id,
        blksize: len,
        seq_num: c.next_ack_seq(),
    };
    c.send(true, Packet::RsWriteAck, &a.encode())
}

/// `P_OUT_OF_SYNC`: the peer wrote a range it could not send us (its bitmap was on its way).
fn receive_out_of_sync(
    c: &Connection,
    h: w::Header,
    p: &[u8],
    dev: &Device,
) -> core::result::Result<(), End> {
    let d = w::BlockDesc::decode(p).map_err(|e| bad(c, h, e))?;
    let cap = dev
        .lock()
        .backing
        .as_ref()
        .map_or(0, |b| b.md.capacity_sectors());
    let sectors = u64::from(d.blksize).div_ceil(512);
    if d.sector.checked_add(sectors).is_none_or(|e| e > cap) || !c.is_connected() {
        pr_err!(
            "resource {}: OutOfSync of {} bytes at sector {} refused\n",
            c.name(),
            d.blksize,
            d.sector
        );
        return Err(End::Retry);
    }
    dev.mark_out_of_sync(d.sector, sectors);
    Ok(())
}

/// `P_STATE_CHG_REQ`: the peer asks to change the cluster-wide state (e.g. become Primary).
fn receive_state_chg_req(c: &Connection, p: &[u8], dev: &Device) -> core::result::Result<(), End> {
    let req = w::ReqState::decode(p).map_err(|_| End::Retry)?;
    // The request is phrased from the peer's side: its `role` field is the peer's role.
    let (role_mask, _) = ws::ns(&[ws::Field::Role(ws::Role::Unknown)]);
    let wants_primary = req.mask & role_mask != 0
        && ws::State::unpack(req.val).is_ok_and(|s| s.role == ws::Role::Primary);
    let rv = if wants_primary && dev.lock().role == Role::Primary && !c.conf.two_primaries {
        ws::StateRv::TwoPrimaries
    } else {
        ws::StateRv::Success
    };
    pr_info!(
        "resource {}: peer requests a state change (mask 0x{:08x}, val 0x{:08x}): {}\n",
        c.name(),
        req.mask,
        req.val,
        rv.name()
    );
    let reply = w::ReqStateReply {
        retcode: rv.to_wire(),
    };
    c.send(true, Packet::StateChgReply, &reply.encode())
        .map_err(|_| End::Retry)
}

/// `P_CONN_ST_CHG_REQ`: the peer asks for a connection-wide change. The C driver sends it for
/// a graceful `disconnect` (conn = Disconnecting); we agree and end the session (the peer
/// closes the sockets next), then wait for it again like after any lost connection.
fn receive_conn_st_chg_req(c: &Connection, p: &[u8]) -> core::result::Result<(), End> {
    let req = w::ReqState::decode(p).map_err(|_| End::Retry)?;
    let (conn_mask, _) = ws::ns(&[ws::Field::Conn(Conn::StandAlone)]);
    let wants = ws::State::unpack(req.val).map(|s| s.conn).ok();
    let reply = w::ReqStateReply {
        retcode: ws::StateRv::Success.to_wire(),
    };
    c.send(true, Packet::ConnStChgReply, &reply.encode())
        .map_err(|_| End::Retry)?;
    if req.mask & conn_mask != 0 && wants.is_some_and(|s| !reached(s, Conn::WFReportParams)) {
        pr_info!(
            "resource {}: peer disconnects ({})\n",
            c.name(),
            wants.map_or("?", |s| s.name())
        );
        return Err(End::Retry);
    }
    Ok(())
}

/// An acknowledgement (payload still on the socket). Of one of our writes: releases the
/// request (`P_RS_WRITE_ACK` also marks it in sync, as the peer did). Of a resync block
/// (`ID_SYNCER`): the sync source marks it in sync; a sync target counts a failed block
/// (`P_NEG_RS_DREPLY`). An ack for a write we did not send is a protocol error.
fn got_ack(c: &Connection, meta: &Socket, dev: Option<&Device>, h: &w::Header) -> bool {
    let mut p = [0u8; w::BlockAck::SIZE];
    if h.length as usize != p.len() || meta.recv(&mut p).is_err() {
        return false;
    }
    let Ok(a) = w::BlockAck::decode(&p) else {
        return false;
    };
    let cmd = Packet::from_u16(h.command);
    if a.block_id == ID_SYNCER {
        return got_resync_ack(c, dev, h, &a);
    }
    // The entry stays in the log until its epoch's barrier ack; the request completes now
    // (outside the lock: completing it may sleep).
    let found = {
        let mut tl = c.tl.lock();
        tl.iter_mut()
            .find(|e| e.id == a.block_id)
            .and_then(|e| e.held.take().map(|held| (e.sector, e.sectors, held)))
    };
    match found {
        Some((sector, sectors, held)) => {
            match cmd {
                Some(Packet::NegAck) => {
                    pr_warn!(
                        "resource {}: peer failed to write sector {}\n",
                        c.name(),
                        a.sector
                    );
                    if let Some(dev) = dev {
                        dev.mark_out_of_sync(sector, sectors);
                    }
                }
                Some(Packet::RsWriteAck) => {
                    if let Some(d) = dev {
                        d.mark_in_sync(sector, sectors);
                    }
                }
                _ => {}
            }
            drop(held);
            true
        }
        None => {
            pr_err!(
                "resource {}: {} for unknown request {}\n",
                c.name(),
                packet_name(h.command),
                a.block_id
            );
            false
        }
    }
}

/// An answer about a resync block (`ID_SYNCER`). Sync source: `P_RS_WRITE_ACK` of a reply we
/// sent marks it in sync; `P_NEG_ACK` (the target could not write it) leaves it out of sync and
/// counts a failed block. Sync target: `P_NEG_RS_DREPLY` to one of our requests counts a failed
/// block. Each must name an outstanding block exactly and counts once; anything else (another
/// packet, a block never asked for or answered already) is a protocol error, and no bit or
/// counter moves.
fn got_resync_ack(c: &Connection, dev: Option<&Device>, h: &w::Header, a: &w::BlockAck) -> bool {
    let b = RsBlock {
        sector: a.sector,
        bytes: a.blksize,
    };
    let cmd = Packet::from_u16(h.command);
    let ok = match cmd {
        Some(Packet::RsWriteAck | Packet::NegAck) => c.served.lock().take(b),
        Some(Packet::NegRsDReply) => c.requested.lock().take(b),
        _ => false,
    };
    if !ok {
        pr_err!(
            "resource {}: {} for {} bytes at sector {} that was not requested (state {})\n",
            c.name(),
            packet_name(h.command),
            a.blksize,
            a.sector,
            c.view().cstate.name()
        );
        return false;
    }
    if cmd == Some(Packet::RsWriteAck) {
        if let Some(d) = dev {
            d.mark_in_sync(a.sector, u64::from(a.blksize >> 9));
        }
    } else {
        let what = if cmd == Some(Packet::NegAck) {
            "write"
        } else {
            "read"
        };
        pr_warn!(
            "resource {}: peer could not {} {} bytes at sector {} for the resync\n",
            c.name(),
            what,
            a.blksize,
            a.sector
        );
        // At most 128 blocks of one request (`MAX_BIO_SIZE`): no saturation.
        c.rs.failed_bits
            .fetch_add(u64::from(a.blksize).div_ceil(4096), Ordering::SeqCst);
    }
    true
}

/// `P_BARRIER_ACK`: every write of epoch `barrier` is on the peer's disk. They leave the
/// transfer log (a request still waiting for its protocol ack completes too). The peer's count
/// must be ours, as DRBD checks it.
fn got_barrier_ack(c: &Connection, p: &[u8]) -> bool {
    let Ok(a) = w::BarrierAck::decode(p) else {
        return false;
    };
    let (expected, ok) = {
        let mut tl = c.tl.lock();
        let n = tl.iter().filter(|e| e.epoch == a.barrier).count();
        let ok = n > 0 && n == a.set_size as usize;
        if ok {
            // An entry still holding its request (the protocol ack always comes first, so
            // only a peer out of step) completes it here, under the mutex, as at session end.
            tl.retain(|e| e.epoch != a.barrier);
        }
        (n, ok)
    };
    if !ok {
        pr_err!(
            "resource {}: BarrierAck #{} for {} writes, expected {}\n",
            c.name(),
            a.barrier,
            a.set_size,
            expected
        );
        return false;
    }
    true
}

/// The asender thread: pings and ping-acks on the meta socket.
fn asender(c: &Arc<Connection>) {
    let Some(meta) = c.info.lock().meta.clone() else {
        return;
    };
    let agreed = c.view().agreed;
    let dev = volume0(c);
    let ping_int = c.conf.ping_int_ms();
    let mut ping_pending = false;
    let mut buf = [0u8; 64];
    loop {
        if c.stopping() {
            break;
        }
        let got = recv_header(&meta, agreed).and_then(|h| {
            if matches!(
                Packet::from_u16(h.command),
                Some(
                    Packet::WriteAck
                        | Packet::RecvAck
                        | Packet::NegAck
                        | Packet::RsWriteAck
                        | Packet::NegRsDReply
                )
            ) {
                Ok((h, 0))
            } else {
                recv_payload(&meta, &h, &mut buf).map(|n| (h, n))
            }
        });
        match got {
            Err(e) if e == EAGAIN && !ping_pending => {
                if c.send(true, Packet::Ping, &[]).is_err() {
                    break;
                }
                ping_pending = true;
                meta.setup(c.conf.ping_timeout_ms(), c.conf.timeout_ms());
            }
            Err(e) => {
                if !c.stopping() {
                    if e == EAGAIN {
                        pr_err!("resource {}: PingAck did not arrive in time\n", c.name());
                    } else {
                        pr_info!("resource {}: meta socket: {:?}\n", c.name(), e);
                    }
                }
                break;
            }
            Ok((h, n)) => {
                let ok = match Packet::from_u16(h.command) {
                    Some(Packet::Ping) => c.send(true, Packet::PingAck, &[]).is_ok(),
                    Some(Packet::PingAck) => {
                        if ping_pending {
                            ping_pending = false;
                            meta.setup(ping_int, c.conf.timeout_ms());
                        }
                        true
                    }
                    Some(Packet::StateChgReply) => true,
                    Some(Packet::BarrierAck) => got_barrier_ack(c, buf.get(..n).unwrap_or(&[])),
                    Some(
                        Packet::WriteAck
                        | Packet::RecvAck
                        | Packet::NegAck
                        | Packet::RsWriteAck
                        | Packet::NegRsDReply,
                    ) => got_ack(c, &meta, dev.as_deref(), &h),
                    _ => {
                        pr_err!(
                            "resource {}: unexpected packet {} (0x{:04x}) on the meta socket\n",
                            c.name(),
                            packet_name(h.command),
                            h.command
                        );
                        false
                    }
                };
                if !ok {
                    break;
                }
            }
        }
    }
    // Wake the receiver, which ends the session.
    c.shutdown_sockets();
}

/// Tells every connected resource's peer about a state change of `dev`.
pub(crate) fn state_changed(dev: &Device) {
    if let Some(conn) = device::connection_of(&dev.resource) {
        conn.send_state(dev);
    }
}
