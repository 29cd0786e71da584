// SPDX-License-Identifier: GPL-2.0

//! Establishing a session (C DRBD's `conn_connect()`): the two sockets, the feature
//! handshake, CRAM-HMAC authentication, `P_PROTOCOL`, and the volume's parameters.

use super::state::our_uuids;
use super::{packet_name, recv_header, send_packet, Connection, End, NetConf, MAX_BIO_SIZE};
use crate::device::Device;
use crate::drbd_wire::{self as w, Features, Packet};
use crate::net::{self, Listener, Socket};
use kernel::prelude::*;

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
pub(super) fn establish(c: &Connection) -> Result<(Socket, Socket, bool)> {
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
pub(super) fn features(c: &Connection, data: &Socket) -> core::result::Result<u32, End> {
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
pub(super) fn authenticate(
    c: &Connection,
    data: &Socket,
    agreed: u32,
) -> core::result::Result<(), End> {
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

pub(super) fn our_protocol(conf: &NetConf) -> w::Protocol {
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
pub(super) fn send_volume_params(c: &Connection, agreed: u32, dev: &Device) -> Result {
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

/// `receive_protocol()`: the peer's replication settings must equal ours.
pub(super) fn receive_protocol(
    c: &Connection,
    agreed: u32,
    p: &[u8],
) -> core::result::Result<(), End> {
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
