// SPDX-License-Identifier: GPL-2.0

//! The receiver thread (C DRBD's `drbd_receiver()`): connects, runs a session (handshake, the
//! asender, the receive loop on the data socket) and starts over after a failure; the data
//! socket's dispatch and the packets that belong to no other concern.

use super::asender::asender;
use super::bitmap::receive_bitmap;
use super::handshake::{
    authenticate, establish, features, our_protocol, receive_protocol, send_volume_params,
};
use super::request::fail_transfer_log;
use super::resync::{receive_rs_data, receive_sync_uuid, serve_rs_request};
use super::state_chg::{receive_conn_st_chg_req, receive_state_chg_req};
use super::sync_handshake::receive_state;
use super::{
    bad, outstanding, packet_name, recv_data_header, recv_header, recv_payload, volume0,
    write_payload, ConnHandle, Connection, End, Epoch, Info, NetConf, Receiving, ResyncStats,
    FIRST_EPOCH, MAX_BIO_SIZE, MAX_CONTROL_PAYLOAD, RS_INFLIGHT_MAX, RS_SERVED_MAX, TL_CAPACITY,
};
use crate::device::Device;
use crate::drbd_genl::Role;
use crate::drbd_state::{self as ws, Conn};
use crate::drbd_wire::{self as w, Packet, WireError};
use crate::events::PeerView;
use crate::net::{self, KThread, Socket};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::{new_mutex, new_spinlock};

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
                    connects: 0,
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
                st_chg_pending: AtomicBool::new(false),
                st_chg_reply <- new_spinlock!(None),
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
        fail_transfer_log(c);
        // The peer no longer has our data: a Primary starts a new data generation.
        if c.had_peer.swap(false, Ordering::SeqCst) {
            if let Some(dev) = volume0(c) {
                dev.lost_peer();
            }
            c.fence_after_loss();
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
            Some(Packet::StateChgReq) => receive_state_chg_req(c, p, dev, resolve_conflicts),
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
