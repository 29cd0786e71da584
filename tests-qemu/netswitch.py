# SPDX-License-Identifier: GPL-2.0
"""A learning Ethernet switch for the test VMs of one scenario, on the host.

Each VM's NIC is a QEMU `-netdev stream` client of one unix socket of the switch (a port);
frames travel as a 4-byte big-endian length and the frame, QEMU's stream framing. Nothing
leaves the host: the sockets are unix sockets in the scenario's artifacts folder.

The switch learns source MAC addresses, floods broadcast, multicast and unknown destinations,
and can, per port:
- cut the link (`set_link(port, False)`): frames from and to the port are dropped, as with a
  pulled cable; the guest's NIC keeps its carrier, so only timeouts tell it;
- delay frames (`set_delay(port, ms)`) and drop a share of them (`set_loss(port, percent)`),
  in both directions.

A port whose VM is killed loses its connection; a VM booted again connects anew.
"""

import heapq
import os
import random
import selectors
import socket
import struct
import threading
import time

# Bytes queued towards one port before frames to it are dropped (a switch's port buffer).
PORT_QUEUE_LIMIT = 8 << 20
MAX_FRAME = 65536 + 14


class Port:
    def __init__(self, index, path):
        self.index = index
        self.path = path
        self.listener = None
        self.conn = None
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.up = True
        self.delay = 0.0
        self.loss = 0.0
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0


class Switch:
    """The switch runs in its own thread from start() until stop()."""

    def __init__(self, folder, nports, seed=None):
        self.ports = [Port(i, os.path.join(folder, f"sw{i}.sock")) for i in range(nports)]
        self.macs = {}
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.delayed = []  # heap of (due, seq, "in" or "out", port index, frame)
        self.seq = 0
        self.rng = random.Random(seed)
        self.stopping = False
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        for port in self.ports:
            if os.path.exists(port.path):
                os.unlink(port.path)
            lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            lst.bind(port.path)
            lst.listen(4)
            lst.setblocking(False)
            port.listener = lst
            self.sel.register(lst, selectors.EVENT_READ, ("accept", port))
        self.thread = threading.Thread(target=self._run, name="netswitch", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping = True
        self._wake()
        self.thread.join(timeout=5)
        for port in self.ports:
            for s in (port.conn, port.listener):
                if s:
                    s.close()
            if os.path.exists(port.path):
                os.unlink(port.path)
        self.wake_r.close()
        self.wake_w.close()

    # --- faults (called from other threads) ---

    def set_link(self, index, up):
        with self.lock:
            self.ports[index].up = up
        self._wake()

    def set_delay(self, index, ms):
        with self.lock:
            self.ports[index].delay = ms / 1000.0
        self._wake()

    def set_loss(self, index, percent):
        with self.lock:
            self.ports[index].loss = percent / 100.0
        self._wake()

    def stats(self, index):
        p = self.ports[index]
        return {"in": p.frames_in, "out": p.frames_out, "dropped": p.dropped,
                "connected": p.conn is not None, "up": p.up}

    # --- the loop ---

    def _wake(self):
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    def _run(self):
        while not self.stopping:
            timeout = None
            if self.delayed:
                timeout = max(0.0, self.delayed[0][0] - time.monotonic())
            for key, events in self.sel.select(timeout):
                kind, port = key.data
                if kind == "wake":
                    try:
                        self.wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                elif kind == "accept":
                    self._accept(port)
                else:
                    if events & selectors.EVENT_READ:
                        self._read(port)
                    if events & selectors.EVENT_WRITE and port.conn:
                        self._flush(port)
            now = time.monotonic()
            while self.delayed and self.delayed[0][0] <= now:
                _, _, way, index, frame = heapq.heappop(self.delayed)
                with self.lock:
                    if way == "in":
                        self._forward_locked(self.ports[index], frame, delayed=True)
                    else:
                        self._send(self.ports[index], frame, delayed=True)

    def _accept(self, port):
        try:
            conn, _ = port.listener.accept()
        except BlockingIOError:
            return
        self._drop_conn(port)
        conn.setblocking(False)
        port.conn = conn
        port.rbuf.clear()
        port.wbuf.clear()
        self.sel.register(conn, selectors.EVENT_READ, ("conn", port))

    def _drop_conn(self, port):
        if port.conn is not None:
            self.sel.unregister(port.conn)
            port.conn.close()
            port.conn = None
        for mac in [m for m, i in self.macs.items() if i == port.index]:
            del self.macs[mac]

    def _read(self, port):
        try:
            data = port.conn.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop_conn(port)  # the VM is gone (powered off or ended)
            return
        port.rbuf += data
        while len(port.rbuf) >= 4:
            (n,) = struct.unpack_from(">I", port.rbuf)
            if n > MAX_FRAME:
                self._drop_conn(port)  # not QEMU's framing: drop the peer
                return
            if len(port.rbuf) < 4 + n:
                break
            frame = bytes(port.rbuf[4:4 + n])
            del port.rbuf[:4 + n]
            port.frames_in += 1
            self._forward(port, frame)

    def _delay(self, seconds, way, port, frame):
        self.seq += 1
        heapq.heappush(self.delayed, (time.monotonic() + seconds, self.seq, way, port.index, frame))

    def _forward(self, src, frame):
        if len(frame) < 14:
            return
        with self.lock:
            self._forward_locked(src, frame)

    def _forward_locked(self, src, frame, delayed=False):
        if not src.up:
            src.dropped += 1
            return
        if not delayed and src.delay > 0:
            self._delay(src.delay, "in", src, frame)
            return
        if src.loss and self.rng.random() < src.loss:
            src.dropped += 1
            return
        dst_mac, src_mac = frame[0:6], frame[6:12]
        if not src_mac[0] & 1:
            self.macs[src_mac] = src.index
        if dst_mac[0] & 1 or dst_mac not in self.macs:
            targets = [p for p in self.ports if p is not src]
        else:
            targets = [self.ports[self.macs[dst_mac]]]
        for dst in targets:
            self._send(dst, frame)

    def _send(self, dst, frame, delayed=False):
        """Queues a frame towards a port (the switch lock is held)."""
        if dst.conn is None:
            return
        if not dst.up or (dst.loss and self.rng.random() < dst.loss):
            dst.dropped += 1
            return
        if not delayed and dst.delay > 0:
            self._delay(dst.delay, "out", dst, frame)
            return
        if len(dst.wbuf) + len(frame) > PORT_QUEUE_LIMIT:
            dst.dropped += 1
            return
        was_empty = not dst.wbuf
        dst.wbuf += struct.pack(">I", len(frame)) + frame
        dst.frames_out += 1
        if was_empty:
            self._flush(dst)

    def _flush(self, port):
        if port.wbuf:
            try:
                sent = port.conn.send(port.wbuf)
                del port.wbuf[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop_conn(port)
                return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if port.wbuf else 0)
        self.sel.modify(port.conn, events, ("conn", port))
