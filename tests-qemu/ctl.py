# SPDX-License-Identifier: GPL-2.0
"""The harness's control channel: what a guest may ask of the host side of a scenario.

Each VM has a virtio-serial port named `hark.ctl` (the guest sees `/dev/vportNpM`; lib.sh's
`harkctl` finds it), whose host end is a unix socket this server listens on; a VM booted again
connects anew. The protocol is one line per request and one line per reply; a request starts
with an id the reply repeats, so a guest that gave up on an answer cannot mistake it for the
answer to its next request:

    ID power on|off|cycle|status VM     the power switch (off = SIGKILL to QEMU: a power cut)
    ID link up|down VM                  connect or cut VM's link on the switch (a partition)
    ID link delay VM MS                 delay VM's frames, both ways
    ID link loss VM PERCENT             drop that share of VM's frames, both ways
    ID set KEY [VALUE...]               a shared key, seen by every VM of the scenario
    ID get KEY                          its value ("err unset" if none)
    ID wait KEY SECONDS                 block until KEY is set, then its value
    ID vms                              the number of VMs

Replies: `ID ok [VALUE]` or `ID err MESSAGE`. A VM may act on any VM, itself included (a
power-off of itself gets no reply). Every request is written to the scenario's harness.log.
"""

import os
import socket
import threading
import time

MAX_LINE = 4096


class Server:
    def __init__(self, folder, nvm, scenario):
        self.folder = folder
        self.nvm = nvm
        self.scn = scenario
        self.keys = {}
        self.cond = threading.Condition()
        self.stopping = False
        self.listeners = []
        self.threads = []
        for i in range(nvm):
            path = self.path(i)
            if os.path.exists(path):
                os.unlink(path)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(4)
            s.settimeout(0.5)
            self.listeners.append(s)

    def path(self, index):
        return os.path.join(self.folder, f"ctl{index}.sock")

    def start(self):
        for i, lst in enumerate(self.listeners):
            t = threading.Thread(target=self._accept_loop, args=(i, lst), name=f"ctl{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stopping = True
        with self.cond:
            self.cond.notify_all()
        for t in self.threads:
            t.join(timeout=5)
        for lst in self.listeners:
            lst.close()

    def _accept_loop(self, index, lst):
        while not self.stopping:
            try:
                conn, _ = lst.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(index, conn), name=f"ctl{index}-conn",
                                 daemon=True)
            t.start()

    def _serve(self, index, conn):
        conn.settimeout(0.5)
        buf = b""
        with conn:
            while not self.stopping:
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return  # this boot of the VM is gone
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    reply = self.request(index, line.decode("utf-8", "replace").strip())
                    if reply is not None:
                        try:
                            conn.sendall(reply.encode() + b"\n")
                        except OSError:
                            return
                if len(buf) > MAX_LINE:
                    buf = b""

    def request(self, origin, line):
        """Carries out one request line from VM `origin`; returns the reply line."""
        if not line:
            return None
        rid, _, rest = line.partition(" ")
        try:
            answer = self.command(origin, rest.split())
            reply = f"{rid} ok" + (f" {answer}" if answer else "")
        except (ValueError, IndexError) as e:
            reply = f"{rid} err {e}"
        # lib.sh asks a long wait as 1-second waits: only the one that ends it is logged.
        if not (rest.startswith("wait ") and reply.endswith(" err timeout")):
            self.scn.note(f"vm{origin} asks: {rest}")
            self.scn.note(f"vm{origin} answer: {reply}")
        return reply

    def _vm(self, word):
        i = int(word)
        if not 0 <= i < self.nvm:
            raise ValueError(f"no VM {word}")
        return i

    def command(self, origin, words):
        if not words:
            raise ValueError("empty request")
        verb = words[0]
        if verb == "power":
            return self._power(words[1], self._vm(words[2]))
        if verb == "link":
            return self._link(words[1], self._vm(words[2]), words[3:])
        if verb == "set":
            with self.cond:
                self.keys[words[1]] = " ".join(words[2:])
                self.cond.notify_all()
            return ""
        if verb == "get":
            with self.cond:
                if words[1] not in self.keys:
                    raise ValueError("unset")
                return self.keys[words[1]]
        if verb == "wait":
            end = time.monotonic() + float(words[2])
            with self.cond:
                while words[1] not in self.keys:
                    left = end - time.monotonic()
                    if left <= 0 or self.stopping:
                        raise ValueError("timeout")
                    self.cond.wait(min(left, 1.0))
                return self.keys[words[1]]
        if verb == "vms":
            return str(self.nvm)
        raise ValueError(f"unknown request {verb!r}")

    def _power(self, what, vm):
        if what == "status":
            return self.scn.power_state(vm)
        if what in ("off", "cycle"):
            if not self.scn.power_off(vm) and what == "off":
                raise ValueError(f"vm{vm} is already off")
        if what in ("on", "cycle"):
            if not self.scn.power_on(vm):
                raise ValueError(f"vm{vm} is already on")
        elif what != "off":
            raise ValueError(f"unknown power action {what!r}")
        return ""

    def _link(self, what, vm, args):
        sw = self.scn.switch
        if sw is None:
            raise ValueError("a one-VM scenario has no network")
        if what in ("up", "down"):
            sw.set_link(vm, what == "up")
        elif what == "delay":
            ms = float(args[0])
            if not 0 <= ms <= 60000:
                raise ValueError("delay must be 0 to 60000 ms")
            sw.set_delay(vm, ms)
        elif what == "loss":
            pct = float(args[0])
            if not 0 <= pct <= 100:
                raise ValueError("loss must be 0 to 100 percent")
            sw.set_loss(vm, pct)
        else:
            raise ValueError(f"unknown link action {what!r}")
        return ""
