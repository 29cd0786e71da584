#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Barrier for the VMs of one scenario: VM 0 waits for every peer to check in with the same
name, then releases them all. Only the scenario's internal test network is used."""

import os
import socket
import sys
import time

PORT = 7799
# Generous: a peer may be in a long step (e.g. replicated fio under TCG with other VMs on the
# same cores took 137 s); the scenario timeout still bounds the whole run.
TIMEOUT = 300


def main(name):
    vm = int(os.environ["HARK_VM"])
    nvm = int(os.environ["HARK_NVM"])
    if nvm == 1:
        return 0
    deadline = time.monotonic() + TIMEOUT
    if vm == 0:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((os.environ["HARK_IP"], PORT))
        srv.listen(nvm)
        srv.settimeout(TIMEOUT)
        peers = []
        while len(peers) < nvm - 1:
            conn, _ = srv.accept()
            got = conn.makefile().readline().strip()
            if got != name:
                sys.exit(f"barrier: expected {name!r}, a peer arrived at {got!r}")
            peers.append(conn)
        for conn in peers:
            conn.sendall(b"go\n")
            conn.close()
        srv.close()
        return 0
    leader = os.environ["HARK_PEER_IPS"].split()[0]
    while True:
        try:
            conn = socket.create_connection((leader, PORT), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"barrier {name}: leader {leader} unreachable")
            time.sleep(0.2)
    conn.settimeout(TIMEOUT)
    conn.sendall(name.encode() + b"\n")
    if conn.makefile().readline().strip() != "go":
        sys.exit(f"barrier {name}: no release")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
