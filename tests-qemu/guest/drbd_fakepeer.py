#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A hostile DRBD 8.4 peer for tests: opens DRBD's two sockets to a node waiting for its peer
(WFConnection) and then misbehaves in one of several ways. Only the test network is used.

usage: drbd_fakepeer.py HOST PORT MODE[,MODE...] [SOURCE-ADDRESS] [--barriers]
Several modes run one after the other in one process (a Python start costs seconds under
TCG); with --barriers each MODE runs between the test bed's barriers fake-MODE and
fake-MODE-done (hark-vmtool barrier), so the node's side can check each one.
  garbage    random bytes instead of P_CONNECTION_FEATURES
  truncated  a features header announcing 72 bytes, 10 of them, then close
  badlen     P_CONNECTION_FEATURES with the wrong length
  oldproto   features offering only protocol 80..85 (incompatible dialect)
  oversized  a correct handshake, then a P_PROTOCOL header announcing 1 MiB
  badstate   a correct handshake, then P_STATE with an impossible state word
  baddata    a correct handshake, then P_DATA far past the end of the device
  stchg      a correct handshake, then P_STATE_CHG_REQ asking to change the node's own role
             (it must answer SS_NOT_SUPPORTED, -17, and keep the session; exit 1 otherwise),
             then a P_STATE_CHG_REPLY to a request the node never made
  promote    a correct handshake, then P_STATE_CHG_REQ to become Primary: a node that is
             Primary must answer SS_TWO_PRIMARIES, -1 (exit 1 otherwise)
  stranger   both sockets from SOURCE-ADDRESS (not the configured peer): the node must close
             them without a word (exit 1 if it sends its features)
The next modes play a freshly created sync target (UUID_JUST_CREATED, Inconsistent) until the
node is SyncSource (full sync: its bitmap in, an empty one back, P_SYNC_UUID), then:
  rsack      P_RS_WRITE_ACK for 64 KiB at sector 0 that it never requested
  dupack     requests 4 KiB at sector 0, takes the reply and acknowledges it twice
  slowread   requests 64 x 512 KiB and reads nothing more for 40 s (a slow peer), answering
             pings; the node's application I/O must not wait for it
The next plays an UpToDate Primary whose bitmap UUID is the (Secondary) node's current UUID,
with 8 blocks out of sync, until the node is SyncTarget and requests them, then:
  negreply   P_NEG_RS_DREPLY for 4 KiB at sector 1024, which the node never requested
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

MAGIC_80 = 0x83740267
MAGIC_100 = 0x8620EC20
P_INITIAL_META, P_INITIAL_DATA, P_FEATURES = 0xFFF1, 0xFFF2, 0xFFFE
P_DATA, P_RS_DATA_REPLY, P_BITMAP, P_RS_DATA_REQUEST = 0x00, 0x02, 0x04, 0x09
P_PROTOCOL, P_UUIDS, P_SIZES, P_STATE, P_SYNC_UUID = 0x0B, 0x0C, 0x0D, 0x0E, 0x0F
P_PING, P_PING_ACK, P_RS_WRITE_ACK, P_NEG_RS_DREPLY = 0x13, 0x14, 0x17, 0x1B
P_SYNC_PARAM89, P_COMPRESSED_BITMAP = 0x23, 0x24
P_STATE_CHG_REQ, P_STATE_CHG_REPLY = 0x12, 0x1D
SS_NOT_SUPPORTED, SS_TWO_PRIMARIES = -17, -1
ID_SYNCER = 2**64 - 1
UUID_JUST_CREATED = 4
# Secondary, peer Primary, WFReportParams, Inconsistent, peer DUnknown (drbd_state.rs layout).
STATE_INCONSISTENT = 2 | 1 << 2 | 9 << 4 | 4 << 9 | 6 << 13
# Primary, peer Secondary, WFReportParams, UpToDate, peer DUnknown.
STATE_UPTODATE_PRIMARY = 1 | 2 << 2 | 9 << 4 | 8 << 9 | 6 << 13


def h80(cmd, length):
    return struct.pack(">IHH", MAGIC_80, cmd, length)


def h100(cmd, length):
    return struct.pack(">IHHII", MAGIC_100, 0, cmd, length, 0)


def pkt(cmd, payload=b""):
    return h100(cmd, len(payload)) + payload


def features(lo=86, hi=101):
    return struct.pack(">IIII", lo, 0, hi, 0) + bytes(56)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += got
    return buf


def recv_pkt(s):
    magic, _vol, cmd, length, _pad = struct.unpack(">IHHII", recv_exact(s, 16))
    assert magic == MAGIC_100, hex(magic)
    return cmd, recv_exact(s, length)


class Meta:
    """The meta socket: answers pings in a thread; acks are sent under a lock."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def send(self, cmd, payload=b""):
        with self.lock:
            self.sock.sendall(pkt(cmd, payload))

    def serve(self):
        try:
            while True:
                cmd, _ = recv_pkt(self.sock)
                if cmd == P_PING:
                    self.send(P_PING_ACK)
        except (OSError, ConnectionError, AssertionError):
            pass


def become_sync_target(data, meta):
    """Handshake as a new, Inconsistent node; returns once the node sent P_SYNC_UUID."""
    data.sendall(pkt(P_PROTOCOL, struct.pack(">IIIIII", 3, 0, 0, 0, 0, 0) + b"\0"))
    capacity = None
    sent_params = False
    while True:
        cmd, p = recv_pkt(data)
        if cmd == P_SIZES:
            capacity = struct.unpack_from(">Q", p)[0]
        if cmd == P_STATE and not sent_params:
            sent_params = True
            send_params(data, capacity, (UUID_JUST_CREATED, 0, 0, 0, 0, 0), STATE_INCONSISTENT)
        if cmd in (P_BITMAP, P_COMPRESSED_BITMAP) and (cmd == P_COMPRESSED_BITMAP or not p):
            # The node's (full) bitmap is in (one RLE packet, or plain ending empty): answer
            # with ours, all clear.
            send_plain_bitmap(data, capacity)
        if cmd == P_SYNC_UUID:
            return


def send_params(data, capacity, uuids, state):
    data.sendall(pkt(P_SYNC_PARAM89, struct.pack(">I64s64sIIII", 250, b"", b"", 0, 10, 100, 102400)))
    data.sendall(pkt(P_SIZES, struct.pack(">QQQIHH", capacity, 0, capacity, 512 * 1024, 0, 0)))
    data.sendall(pkt(P_UUIDS, struct.pack(">QQQQQQ", *uuids)))
    data.sendall(pkt(P_STATE, struct.pack(">I", state)))


def send_plain_bitmap(data, capacity, first_word=0):
    """Our whole bitmap as plain words (the first one `first_word`), then the empty end packet."""
    words = -(-(-(-capacity // 8)) // 64)
    head = struct.pack("<Q", first_word)
    while words:
        n = min(words, (4096 - 16) // 8)
        data.sendall(pkt(P_BITMAP, (head + bytes(8 * n))[: 8 * n]))
        head = b""
        words -= n
    data.sendall(pkt(P_BITMAP))


def become_sync_source(data):
    """Handshake as an UpToDate Primary whose bitmap UUID is the node's current UUID, with 8
    blocks (sector 0..63) out of sync; returns once the node sent its first resync request."""
    data.sendall(pkt(P_PROTOCOL, struct.pack(">IIIIII", 3, 0, 0, 0, 0, 0) + b"\0"))
    capacity = current = None
    while True:
        cmd, p = recv_pkt(data)
        if cmd == P_SIZES:
            capacity = struct.unpack_from(">Q", p)[0]
        if cmd == P_UUIDS and current is None:
            current = struct.unpack_from(">Q", p)[0] & ~1
            uuids = (0x5EED_0000_0000_0001, current, 0, 0, 8, 0)
            send_params(data, capacity, uuids, STATE_UPTODATE_PRIMARY)
            send_plain_bitmap(data, capacity, 0xFF)
        if cmd in (P_BITMAP, P_COMPRESSED_BITMAP) and (cmd == P_COMPRESSED_BITMAP or not p):
            data.sendall(pkt(P_SYNC_UUID, struct.pack(">Q", 0x5EED_0000_0001_0000)))
        if cmd == P_RS_DATA_REQUEST:
            return struct.unpack_from(">QQI", p)


def mode_after_sync(mode, data, meta):
    if mode == "rsack":
        meta.send(P_RS_WRITE_ACK, struct.pack(">QQII", 0, ID_SYNCER, 65536, 1))
    elif mode == "dupack":
        data.sendall(pkt(P_RS_DATA_REQUEST, struct.pack(">QQII", 0, ID_SYNCER, 4096, 0)))
        while True:
            cmd, p = recv_pkt(data)
            if cmd == P_RS_DATA_REPLY:
                break
        sector = struct.unpack_from(">Q", p)[0]
        ack = struct.pack(">QQII", sector, ID_SYNCER, 4096, 1)
        meta.send(P_RS_WRITE_ACK, ack)
        meta.send(P_RS_WRITE_ACK, ack)
    elif mode == "slowread":
        for i in range(64):
            data.sendall(pkt(P_RS_DATA_REQUEST, struct.pack(">QQII", i * 1024, ID_SYNCER, 512 * 1024, 0)))
        print("fakepeer: slowread: 64 requests sent, not reading", flush=True)
        time.sleep(40)
        return
    time.sleep(2)


def ask(data, meta, mode, mask, val, want):
    """Sends P_STATE_CHG_REQ (mask, val) and checks the node's P_STATE_CHG_REPLY."""
    data.sendall(pkt(P_STATE_CHG_REQ, struct.pack(">II", mask, val)))
    meta.settimeout(30)
    while True:
        cmd, p = recv_pkt(meta)
        if cmd == P_STATE_CHG_REPLY:
            break
    rc = struct.unpack(">i", p)[0]
    if rc != want:
        sys.exit(f"fakepeer: {mode}: the node answered {rc}, not {want}")
    print(f"fakepeer: {mode}: the node answered {rc}", flush=True)


def state_change(data, meta):
    """A request for the node's own role (our `peer` field, R_MASK << 2 = Primary << 2): not
    ours to ask; then a reply to a request the node never made."""
    ask(data, meta, "stchg", 3 << 2, 1 << 2, SS_NOT_SUPPORTED)
    meta.sendall(pkt(P_STATE_CHG_REPLY, struct.pack(">i", 1)))
    time.sleep(2)


def stranger(host, port, src):
    socks = []
    for first in (P_INITIAL_DATA, P_INITIAL_META):
        s = socket.create_connection((host, port), timeout=60, source_address=(src, 0))
        s.sendall(h80(first, 0))
        socks.append(s)
        time.sleep(0.3)
    # A node that took us for its peer sends P_CONNECTION_FEATURES on the data socket.
    try:
        got = socks[0].recv(8)
    except (ConnectionResetError, socket.timeout):
        got = b""
    for s in socks:
        s.close()
    if got:
        sys.exit(f"fakepeer: stranger: the node talked to {src}: {got.hex()}")
    print(f"fakepeer: stranger: connections from {src} closed without a word")


def main(host, port, mode, src=None):
    if mode == "stranger":
        return stranger(host, port, src)
    data = socket.create_connection((host, port), timeout=10)
    data.sendall(h80(P_INITIAL_DATA, 0))
    time.sleep(0.3)
    meta = socket.create_connection((host, port), timeout=10)
    meta.sendall(h80(P_INITIAL_META, 0))
    # The node checks both sockets, then sends its features on the data socket.
    hdr = data.recv(8, socket.MSG_WAITALL)
    magic, cmd, length = struct.unpack(">IHH", hdr)
    assert (magic, cmd, length) == (MAGIC_80, P_FEATURES, 72), (hex(magic), hex(cmd), length)
    data.recv(72, socket.MSG_WAITALL)
    if mode == "garbage":
        data.sendall(os.urandom(200))
    elif mode == "truncated":
        data.sendall(h80(P_FEATURES, 72) + bytes(10))
    elif mode == "badlen":
        data.sendall(h80(P_FEATURES, 80) + features() + bytes(8))
    elif mode == "oldproto":
        data.sendall(h80(P_FEATURES, 72) + features(80, 85))
    elif mode in ("oversized", "badstate", "baddata"):
        data.sendall(h80(P_FEATURES, 72) + features())
        if mode == "oversized":
            data.sendall(h100(P_PROTOCOL, 1 << 20) + bytes(4096))
        elif mode == "badstate":
            data.sendall(h100(P_STATE, 4) + struct.pack(">I", 0xFFFFFFFF))
        else:
            p_data = struct.pack(">QQII", 1 << 60, 1, 1, 0x100)
            data.sendall(h100(P_DATA, 24 + 4096) + p_data + bytes(4096))
    elif mode == "stchg":
        data.sendall(h80(P_FEATURES, 72) + features())
        state_change(data, meta)
    elif mode == "promote":
        data.sendall(h80(P_FEATURES, 72) + features())
        ask(data, meta, mode, 3, 1, SS_TWO_PRIMARIES)
    elif mode == "negreply":
        data.sendall(h80(P_FEATURES, 72) + features())
        data.settimeout(120)
        m = Meta(meta)
        req = become_sync_source(data)
        print(f"fakepeer: negreply: the node is SyncTarget and requested {req}", flush=True)
        m.send(P_NEG_RS_DREPLY, struct.pack(">QQII", 1024, ID_SYNCER, 4096, 1))
        time.sleep(2)
    elif mode in ("rsack", "dupack", "slowread"):
        data.sendall(h80(P_FEATURES, 72) + features())
        data.settimeout(120)
        m = Meta(meta)
        become_sync_target(data, m)
        print(f"fakepeer: {mode}: the node is SyncSource", flush=True)
        mode_after_sync(mode, data, m)
    else:
        sys.exit(f"unknown mode {mode}")
    time.sleep(1)
    data.close()
    meta.close()
    print(f"fakepeer: {mode} sent")


def barrier(name):
    tool = os.path.join(os.environ["HARK_TOP"], "userspace/target/release/hark-vmtool")
    subprocess.run([tool, "barrier", name], check=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    with_barriers = "--barriers" in args
    args = [a for a in args if a != "--barriers"]
    for one in args[2].split(","):
        if with_barriers:
            barrier(f"fake-{one}")
        main(args[0], int(args[1]), one, *args[3:4])
        if with_barriers:
            barrier(f"fake-{one}-done")
