# SPDX-License-Identifier: GPL-2.0
"""Unit tests of the harness's scenario headers and scratch disks."""

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ctl  # noqa: E402
import harness  # noqa: E402
import netswitch  # noqa: E402


class HeaderTest(unittest.TestCase):
    def parse(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
            f.write(text)
        try:
            return harness.parse_header(f.name)
        finally:
            os.unlink(f.name)

    def test_defaults_and_keys(self):
        m = self.parse("# vms: 2\n# timeout: 99\n# disk: 8M\n# disk-random: 1\n# text\necho\n# vms: 1\n")
        self.assertEqual((m["vms"], m["timeout"], m["disk"], m["disk-random"]), (2, 99, "8M", "1"))
        self.assertEqual(self.parse("echo\n")["disk-random"], "")

    def test_vm_count_and_suite(self):
        self.assertEqual(self.parse("# vms: 4\n")["vms"], 4)
        self.assertEqual(self.parse("# vms: 3\n# suite: soak\n")["suite"], "soak")
        self.assertEqual(self.parse("echo\n")["suite"], "test")
        for bad in ("# vms: 5\n", "# vms: 0\n", "# suite: nightly\n"):
            with self.assertRaises(ValueError):
                self.parse(bad)


class DiskTest(unittest.TestCase):
    def content(self, random_fill):
        with tempfile.TemporaryDirectory() as d:
            disk = os.path.join(d, "d.qcow2")
            harness.make_disk(disk, "2M", random_fill)
            raw = os.path.join(d, "d.raw")
            subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", disk, raw], check=True)
            with open(raw, "rb") as f:
                return f.read()

    def test_zeroed_and_random(self):
        self.assertEqual(self.content(False), bytes(2 << 20))
        data = self.content(True)
        self.assertEqual(len(data), 2 << 20)
        # Random: no zero MiB anywhere (each would be a 1 in 2^(8 Mi) chance).
        self.assertNotEqual(data[:1 << 20], bytes(1 << 20))
        self.assertNotEqual(data[1 << 20:], bytes(1 << 20))


BOOT_LOG = """[    0.000000] Linux version 7.3.4 (hark)
[    1.250000] smp: Brought up 1 node, 2 CPUs
hark-vm0: running scenario x
"""
PASSED = BOOT_LOG + "HARK-RESULT vm=0 rc=0\n"
FAILED = BOOT_LOG + "HARK-RESULT vm=0 rc=1\n"
SPLAT = "[    9.100000] BUG: KASAN: slab-use-after-free in foo+0x1/0x2\n"


class JudgeTest(unittest.TestCase):
    """Planted outcomes of one VM boot and the harness's verdict on each."""

    def judge(self, text, **kw):
        return harness.judge_boot("vm0", text, kw.pop("timed_out", False), **kw)

    def test_plain_boots(self):
        self.assertEqual(self.judge(PASSED), [])
        self.assertIn("exit 1", self.judge(FAILED)[0])
        self.assertIn("no result line", self.judge(BOOT_LOG)[0])
        self.assertEqual(self.judge(BOOT_LOG, timed_out=True), [])  # the timeout itself is reported once
        self.assertIn("kasan", self.judge(PASSED + SPLAT)[0])

    def test_powered_off_on_purpose(self):
        # A VM cut by the power switch has no result line, and that is fine ...
        self.assertEqual(self.judge(BOOT_LOG, killed=True), [])
        self.assertEqual(self.judge(PASSED, killed=True), [])
        # ... but its splats and a failure it reported before the cut still count.
        self.assertIn("kasan", self.judge(BOOT_LOG + SPLAT, killed=True)[0])
        self.assertIn("before it was powered off", self.judge(FAILED, killed=True)[0])

    def test_planned_crash(self):
        crash = BOOT_LOG + harness.CRASH_MARK + "\n"
        self.assertEqual(self.judge(crash, crash_planned=True), [])
        self.assertIn("without asking", self.judge(BOOT_LOG, crash_planned=True)[0])
        self.assertIn("before the planned crash", self.judge(PASSED, crash_planned=True)[0])
        self.assertIn("kasan", self.judge(crash + SPLAT, crash_planned=True)[0])

    def test_summary_sorted_with_total(self):
        lines = harness.summary_lines([("a", 10, True, 7.0), ("b", 30, False, 50.0)], 35)
        self.assertIn("b", lines[1])
        self.assertIn("FAIL", lines[1])
        self.assertRegex(lines[-1], r"total +40 +57 +\(35 s wall clock\)")


class GateTest(unittest.TestCase):
    """A lone scenario runs with nothing beside it; the others share."""

    def run_all(self, plan):
        gate, log, lock = harness.Gate(), [], threading.Lock()
        running = set()

        def one(name, alone):
            gate.enter(alone)
            with lock:
                running.add(name)
                log.append(sorted(running))
            time.sleep(0.05)
            with lock:
                running.discard(name)
            gate.leave(alone)

        threads = [threading.Thread(target=one, args=p) for p in plan]
        for t in threads:
            t.start()
            time.sleep(0.01)
        for t in threads:
            t.join(5)
        return log

    def test_alone_runs_alone(self):
        log = self.run_all([("a", False), ("lone", True), ("b", False), ("c", False)])
        self.assertEqual(len(log), 4)
        for seen in log:
            if "lone" in seen:
                self.assertEqual(seen, ["lone"])

    def test_others_share(self):
        log = self.run_all([("a", False), ("b", False)])
        self.assertIn(["a", "b"], log)


class FakeScenario:
    """What ctl.Server needs of a scenario: a note log, a power switch and a network switch."""

    def __init__(self, switch=None):
        self.switch = switch
        self.power = {0: "on", 1: "on"}
        self.notes = []

    def note(self, text):
        self.notes.append(text)

    def power_on(self, i):
        was, self.power[i] = self.power[i], "on"
        return was == "off"

    def power_off(self, i):
        was, self.power[i] = self.power[i], "off"
        return was == "on"

    def power_state(self, i):
        return self.power[i]


class CtlTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.scn = FakeScenario()
        self.srv = ctl.Server(self.dir, 2, self.scn)
        self.srv.start()

    def tearDown(self):
        self.srv.stop()
        shutil.rmtree(self.dir)

    def ask(self, vm, line):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.srv.path(vm))
            s.sendall(line.encode() + b"\n")
            return s.makefile().readline().strip()

    def test_power_and_keys(self):
        self.assertEqual(self.ask(1, "7 power off 0"), "7 ok")
        self.assertEqual(self.ask(1, "8 power status 0"), "8 ok off")
        self.assertEqual(self.ask(1, "9 power off 0"), "9 err vm0 is already off")
        self.assertEqual(self.ask(1, "10 power on 0"), "10 ok")
        self.assertEqual(self.ask(0, "11 power cycle 1"), "11 ok")
        self.assertEqual(self.scn.power, {0: "on", 1: "on"})
        self.assertEqual(self.ask(0, "12 power on 2"), "12 err no VM 2")
        self.assertEqual(self.ask(0, "13 get k"), "13 err unset")
        self.assertEqual(self.ask(0, "14 set k a b"), "14 ok")
        self.assertEqual(self.ask(1, "15 wait k 5"), "15 ok a b")
        self.assertEqual(self.ask(1, "16 wait never 0.3"), "16 err timeout")
        self.assertEqual(self.ask(1, "17 link down 0"), "17 err a one-VM scenario has no network")
        self.assertEqual(self.ask(1, "18 frobnicate"), "18 err unknown request 'frobnicate'")

    def test_wait_is_released_by_another_vm(self):
        out = []
        t = threading.Thread(target=lambda: out.append(self.ask(0, "1 wait go 10")))
        t.start()
        time.sleep(0.3)
        self.assertEqual(self.ask(1, "2 set go now"), "2 ok")
        t.join(5)
        self.assertEqual(out, ["1 ok now"])


def frame(dst, src, payload=b"x" * 50):
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x08\x00" + payload


class SwitchTest(unittest.TestCase):
    A, B, C = "52:54:00:77:00:01", "52:54:00:77:00:02", "52:54:00:77:00:03"
    BCAST = "ff:ff:ff:ff:ff:ff"

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.sw = netswitch.Switch(self.dir, 3, seed=1)
        self.sw.start()
        self.vms = []
        for p in self.sw.ports:
            s = socket.socket(socket.AF_UNIX)
            s.connect(p.path)
            s.settimeout(0.3)
            self.vms.append(s)
        time.sleep(0.2)

    def tearDown(self):
        for s in self.vms:
            s.close()
        self.sw.stop()
        shutil.rmtree(self.dir)

    def send(self, i, f):
        self.vms[i].sendall(struct.pack(">I", len(f)) + f)

    def recv_all(self, i, wait=0.3):
        data = b""
        self.vms[i].settimeout(wait)
        try:
            while True:
                chunk = self.vms[i].recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        frames = []
        while data:
            (n,) = struct.unpack_from(">I", data)
            frames.append(data[4:4 + n])
            data = data[4 + n:]
        return frames

    def test_flood_learn_and_unicast(self):
        f = frame(self.BCAST, self.A)
        self.send(0, f)
        self.assertEqual(self.recv_all(1), [f])
        self.assertEqual(self.recv_all(2), [f])
        self.assertEqual(self.recv_all(0, 0.1), [])
        # B is unknown: flooded; then A is known: only A gets B's answer.
        g = frame(self.B, self.A)
        self.send(0, g)
        self.assertEqual(self.recv_all(1), [g])
        self.assertEqual(self.recv_all(2), [g])
        h = frame(self.A, self.B)
        self.send(1, h)
        self.assertEqual(self.recv_all(0), [h])
        self.assertEqual(self.recv_all(2, 0.1), [])

    def test_cut_link_and_restore(self):
        self.sw.set_link(2, False)
        f = frame(self.BCAST, self.A)
        self.send(0, f)
        self.assertEqual(self.recv_all(1), [f])
        self.assertEqual(self.recv_all(2, 0.2), [])
        self.send(2, frame(self.BCAST, self.C))
        self.assertEqual(self.recv_all(0, 0.2), [])
        self.sw.set_link(2, True)
        self.send(0, f)
        self.assertEqual(self.recv_all(2), [f])

    def test_delay_and_loss(self):
        self.sw.set_delay(1, 400)
        f = frame(self.BCAST, self.A)
        t = time.monotonic()
        self.send(0, f)
        self.assertEqual(self.recv_all(2), [f])  # not delayed
        self.assertEqual(self.recv_all(1, 1.0), [f])
        self.assertGreaterEqual(time.monotonic() - t, 0.4)
        self.sw.set_delay(1, 0)
        self.sw.set_loss(1, 100)
        self.send(0, f)
        self.assertEqual(self.recv_all(1, 0.2), [])
        self.assertGreaterEqual(self.sw.stats(1)["dropped"], 1)

    def test_reconnect_after_power_cut(self):
        self.vms[1].close()
        time.sleep(0.2)
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sw.ports[1].path)
        self.vms[1] = s
        time.sleep(0.2)
        f = frame(self.BCAST, self.A)
        self.send(0, f)
        self.assertEqual(self.recv_all(1), [f])


if __name__ == "__main__":
    unittest.main()
