// SPDX-License-Identifier: GPL-2.0

//! The asender thread (C DRBD's `drbd_asender()`): serves the meta socket while a session
//! lasts: pings and ping-acks, the acks of our writes and resync blocks, barrier acks, and
//! replies to our state-change requests.

use super::request::{got_ack, got_barrier_ack};
use super::resync::got_resync_ack;
use super::state_chg::got_state_chg_reply;
use super::{packet_name, recv_header, recv_payload, volume0, Connection};
use crate::device::Device;
use crate::drbd_resync::ID_SYNCER;
use crate::drbd_wire::{self as w, Packet};
use crate::net::Socket;
use kernel::prelude::*;
use kernel::sync::Arc;

/// An acknowledgement whose header `h` was read: its payload is received here and it goes to
/// the resync (`ID_SYNCER`) or the transfer log. A malformed one is a protocol error.
fn block_ack(c: &Connection, meta: &Socket, dev: Option<&Device>, h: &w::Header) -> bool {
    let mut p = [0u8; w::BlockAck::SIZE];
    if h.length as usize != p.len() || meta.recv(&mut p).is_err() {
        return false;
    }
    let Ok(a) = w::BlockAck::decode(&p) else {
        return false;
    };
    if a.block_id == ID_SYNCER {
        got_resync_ack(c, dev, h, &a)
    } else {
        got_ack(c, dev, h, &a)
    }
}

/// The asender thread: pings and ping-acks on the meta socket.
pub(super) fn asender(c: &Arc<Connection>) {
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
                    Some(Packet::StateChgReply) => {
                        got_state_chg_reply(c, buf.get(..n).unwrap_or(&[]))
                    }
                    Some(Packet::BarrierAck) => got_barrier_ack(c, buf.get(..n).unwrap_or(&[])),
                    Some(
                        Packet::WriteAck
                        | Packet::RecvAck
                        | Packet::NegAck
                        | Packet::RsWriteAck
                        | Packet::NegRsDReply,
                    ) => block_ack(c, &meta, dev.as_deref(), &h),
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
