#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A hostile DRBD 8.4 peer for tests: opens DRBD's two sockets to a node waiting for its peer
(WFConnection) and then misbehaves in one of several ways. Only the test network is used.

usage: drbd_fakepeer.py HOST PORT MODE
  garbage    random bytes instead of P_CONNECTION_FEATURES
  truncated  a features header announcing 72 bytes, 10 of them, then close
  badlen     P_CONNECTION_FEATURES with the wrong length
  oldproto   features offering only protocol 80..85 (incompatible dialect)
  oversized  a correct handshake, then a P_PROTOCOL header announcing 1 MiB
  badstate   a correct handshake, then P_STATE with an impossible state word
  baddata    a correct handshake, then P_DATA far past the end of the device
"""

import os
import socket
import struct
import sys
import time

MAGIC_80 = 0x83740267
MAGIC_100 = 0x8620EC20
P_INITIAL_META, P_INITIAL_DATA, P_FEATURES = 0xFFF1, 0xFFF2, 0xFFFE
P_DATA, P_PROTOCOL, P_STATE = 0x00, 0x0B, 0x0E


def h80(cmd, length):
    return struct.pack(">IHH", MAGIC_80, cmd, length)


def h100(cmd, length):
    return struct.pack(">IHHII", MAGIC_100, 0, cmd, length, 0)


def features(lo=86, hi=101):
    return struct.pack(">IIII", lo, 0, hi, 0) + bytes(56)


def main(host, port, mode):
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
    else:
        sys.exit(f"unknown mode {mode}")
    time.sleep(1)
    data.close()
    meta.close()
    print(f"fakepeer: {mode} sent")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
