#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""hark's QEMU test harness.

Boots 1..N VMs per scenario from the cached test kernel under TCG, shares the host root
read-only over 9p (the guest runs host binaries from an overlay with a tmpfs upper layer),
links the VMs with QEMU socket netdevs on loopback, attaches scratch disks, saves every
console to the artifacts folder, and judges each scenario: it fails on a non-zero exit, a
timeout, or any kernel splat (see logscan.py) in any VM's console.

Scenario files live in tests-qemu/scenarios/NAME.sh. Their header says what they need:

    # vms: 2          number of VMs (default 1)
    # timeout: 300    seconds for the whole scenario (default 180)
    # disk: 256M      one scratch disk per VM, /dev/vda (default none)
    # disk-random: 0  these VMs' disks (space-separated indexes) start filled with random bytes
                      from the host (filling them in the guest from /dev/urandom takes a minute)
    # mem: 1024       MiB per VM (default 1024)
    # cmdline: k=v    extra kernel command line (e.g. kmemleak=on)
    # boots: 2        boot the VMs this many times over the same disks (default 1); every boot
                      but the last ends in a crash: the guest prints HARK-CRASH-NOW (lib.sh's
                      crash_now) and the harness kills QEMU at once, like pulling the plug

The script runs as root in every VM with HARK_VM (0-based index), HARK_NVM, HARK_TOP (the
repository), HARK_OUT (a writable folder shared with the host), HARK_IP (this VM's address)
and HARK_PEER_IPS set, HARK_BOOT (1-based) / HARK_BOOTS, and HARK_KBUILD (the kernel build, for
in-tree modules such as the reference C DRBD); tests-qemu/guest/lib.sh has helpers (barriers, module paths, checks).
"""

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import ctl  # noqa: E402
import initramfs  # noqa: E402
import logscan  # noqa: E402
import netswitch  # noqa: E402

SCENARIO_DIR = os.path.join(HERE, "scenarios")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Host scheduling priority (nice increment) of a scenario's QEMUs, by its "# priority:" header.
# Scenarios run in parallel and their TCG vCPUs outnumber the host's cores; Pacemaker's
# pacemakerd kills a sub-daemon that does not answer within about 30 s of starting, which
# starved VMs missed (cluster-fence failed 2 of 3 runs beside another scenario). "high" VMs
# win the host's CPU from "normal" ones about 3:1 (CFS weights of nice 0 and 5); nobody needs
# the privilege of a negative nice value.
NICE = {"high": 0, "normal": 5}
RESULT_RE = re.compile(r"HARK-RESULT vm=(\d+) rc=(\d+)")
CRASH_MARK = "HARK-CRASH-NOW"
SUBNET = "10.77.0."


MAX_VMS = 4
SUITES = ("test", "soak")


def vm_ip(index):
    return f"{SUBNET}{index + 1}"


def vm_mac(index):
    return f"52:54:00:77:00:{index + 1:02x}"


def parse_header(path):
    meta = {"vms": 1, "timeout": 180, "disk": None, "mem": 1024, "boots": 1, "cmdline": "",
            "disk-random": "", "suite": "test", "smp": 2, "priority": "normal", "alone": "no"}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                if line.strip():
                    break
                continue
            m = re.match(r"#\s*(vms|timeout|disk|disk-random|mem|boots|cmdline|suite|smp|priority|alone):\s*(\S.*?)\s*$",
                         line)
            if m:
                key, value = m.group(1), m.group(2)
                meta[key] = value if key in ("disk", "disk-random", "cmdline", "suite", "priority", "alone") else int(value)
    if not 1 <= meta["vms"] <= MAX_VMS:
        raise ValueError(f"{path}: vms must be 1 to {MAX_VMS} (got {meta['vms']})")
    if meta["suite"] not in SUITES:
        raise ValueError(f"{path}: suite must be one of {', '.join(SUITES)} (got {meta['suite']})")
    if meta["alone"] not in ("yes", "no"):
        raise ValueError(f"{path}: alone must be yes or no (got {meta['alone']})")
    if meta["priority"] not in NICE:
        raise ValueError(f"{path}: priority must be one of {', '.join(NICE)} (got {meta['priority']})")
    return meta


def scenarios(suite=None):
    names = []
    for entry in sorted(os.listdir(SCENARIO_DIR)):
        if entry.endswith(".sh"):
            name = entry[:-3]
            if suite is None or parse_header(os.path.join(SCENARIO_DIR, entry))["suite"] == suite:
                names.append(name)
    return names


def make_disk(path, size, random_fill):
    """A qcow2 scratch disk of `size` (qemu-img syntax), zeroed or filled with random bytes."""
    if not random_fill:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], check=True)
        return
    raw = path + ".raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", raw, size], check=True)
    with open(raw, "r+b") as f:
        left = os.fstat(f.fileno()).st_size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path], check=True)
    os.unlink(raw)


def kvm_usable():
    """KVM only when asked for and a probe boot proved it; nested KVM hangs on our machines."""
    return os.environ.get("HARK_KVM") == "1" and os.access("/dev/kvm", os.R_OK | os.W_OK)


class VmBoot:
    """One boot of one VM: a QEMU process and its console log."""

    def __init__(self, scn, index, boot):
        self.index = index
        self.boot = boot
        meta, outdir = scn.meta, scn.outdir
        suffix = f".boot{boot}" if meta["boots"] > 1 or boot > 1 else ""
        self.tag = f"vm{index}" + (f" boot {boot}" if suffix else "")
        self.console = os.path.join(outdir, f"vm{index}{suffix}.console.log")
        self.outdir = outdir
        self.killed = False  # powered off on purpose (a VM's request): not a failure
        share = os.path.join(outdir, f"vm{index}.share")
        os.makedirs(share, exist_ok=True)
        nvm = meta["vms"]
        peers = ",".join(vm_ip(i) for i in range(nvm) if i != index)
        cmdline = " ".join([
            "console=ttyS0", "panic=-1", "printk.time=1", f"loglevel={scn.loglevel}",
            # PCI interrupts routed by the BIOS's table, not ACPI's link devices: under TCG each
            # of the four link devices took 22 s to enable (boot to /init 97 s; 6 s without).
            "pci=noacpi",
            # The IO-APIC timer check counts ticks during a busy-wait; on a loaded host a TCG
            # vCPU can miss them and boot panics "IO-APIC + timer doesn't work!" (seen twice
            # with load average 12). Virtual machines skip it, as KVM guests do.
            "no_timer_check",
            # Boot time measured with initcall_debug on an idle machine: pty_init 2.6 s creating
            # 256 legacy BSD pty pairs nothing uses (devpts serves /dev/pts), loop_init 0.6 s
            # creating 8 loop devices (losetup asks /dev/loop-control for one when it needs it).
            "pty.legacy_count=0", "max_loop=0",
            "hung_task_panic=0", "oops=panic" if os.environ.get("HARK_OOPS_PANIC") else "",
            f"HARK_TOP={TOP}", f"HARK_SCENARIO={scn.name}", f"HARK_SCENARIO_DIR={SCENARIO_DIR}",
            f"HARK_VM={index}", f"HARK_NVM={nvm}", f"HARK_IP={vm_ip(index)}", f"HARK_PEER_IPS={peers}",
            f"HARK_BOOT={boot}", f"HARK_BOOTS={meta['boots']}",
            # The kernel build (for in-tree modules such as the reference C DRBD).
            f"HARK_KBUILD={os.path.realpath(os.path.join(os.path.dirname(scn.kernel), '../../..'))}",
            meta["cmdline"], os.environ.get("HARK_CMDLINE", ""),
        ]).split()
        # No 5-level paging: with it, 7.3's KASAN reports a wild access in an interrupt that
        # hits identify_cpu() early in boot (seen once in about 20 boots).
        accel = (["-accel", "kvm", "-cpu", "host"] if kvm_usable()
                 else ["-accel", "tcg", "-cpu", "max,la57=off"])
        args = [
            "qemu-system-x86_64", *accel, "-m", str(meta["mem"]), "-smp", str(meta["smp"]),
            "-nographic", "-no-reboot", "-monitor", "none", "-serial", f"file:{self.console}",
            "-kernel", scn.kernel, "-initrd", scn.initrd, "-append", " ".join(cmdline),
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={share},mount_tag=harkout,security_model=none,multidevs=remap",
            "-device", "virtio-rng-pci",
            # The channel to the harness (power switch, link faults, shared keys): ctl.py.
            "-chardev", f"socket,id=ctl,path={scn.ctl.path(index)}",
            "-device", "virtio-serial-pci,id=vser",
            "-device", "virtserialport,bus=vser.0,chardev=ctl,name=hark.ctl",
        ]
        if meta["disk"]:
            args += ["-drive", f"file={scn.disk_path(index)},if=virtio,format=qcow2,cache=unsafe"]
        if scn.switch:
            args += ["-netdev", f"stream,id=n0,server=off,addr.type=unix,addr.path={scn.switch.ports[index].path}",
                     "-device", f"virtio-net-pci,netdev=n0,mac={vm_mac(index)}"]
        else:
            args += ["-nic", "none"]
        self.args = args
        self.priority = meta["priority"]
        self.proc = None
        self.cpu = 0.0  # QEMU's user+system CPU seconds, sampled while it runs

    def sample_cpu(self):
        """Reads QEMU's CPU time so far (the guest's cost on the host, whatever else runs)."""
        if not self.running():
            return
        try:
            with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            self.cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass

    def start(self):
        self.started = time.time()
        with open(os.path.join(self.outdir, f"vm{self.index}.qemu.cmd"), "a", encoding="utf-8") as f:
            f.write(" ".join(self.args) + "\n")
        with open(os.path.join(self.outdir, f"vm{self.index}.qemu.err"), "a", encoding="utf-8") as err:
            # nice(1) execs QEMU: the same process, so its CPU time is still sampled.
            self.proc = subprocess.Popen(["nice", "-n", str(NICE[self.priority]), *self.args],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.running():
            self.sample_cpu()
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def log(self):
        try:
            with open(self.console, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def judge_boot(tag, text, timed_out, crash_planned=False, killed=False):
    """The problems of one VM boot, from its console text and how it ended.

    A boot must end with `HARK-RESULT ... rc=0`, except one powered off on purpose (`killed`:
    a VM asked the harness's power switch for it) and one that asked for its planned crash
    (`crash_planned`: every boot but the last of a `boots: N` scenario). Any splat fails,
    however the boot ended."""
    problems = []
    results = RESULT_RE.findall(text)
    if crash_planned:
        if results:
            problems.append(f"{tag}: exit {results[-1][1]} before the planned crash")
        elif CRASH_MARK not in text and not timed_out and not killed:
            problems.append(f"{tag}: ended without asking for the crash")
    elif killed:
        if results and results[-1][1] != "0":
            problems.append(f"{tag}: exit {results[-1][1]} before it was powered off")
    elif not results:
        if not timed_out:
            problems.append(f"{tag}: no result line (crashed or killed early)")
    elif results[-1][1] != "0":
        problems.append(f"{tag}: exit {results[-1][1]}")
    splats = logscan.scan(text)
    if splats:
        problems.append(f"{tag}: {logscan.summary(splats)}")
    return problems


class Scenario:
    """One scenario run: its VMs (each may be powered off and on again while the others run),
    the network switch between them and the harness's control channel."""

    def __init__(self, name, kernel, initrd, artifacts):
        self.name = name
        self.kernel = kernel
        self.initrd = initrd
        self.meta = parse_header(os.path.join(SCENARIO_DIR, name + ".sh"))
        self.loglevel = int(os.environ.get("HARK_LOGLEVEL", "7"))
        self.outdir = os.path.join(artifacts, name)
        shutil.rmtree(self.outdir, ignore_errors=True)
        os.makedirs(self.outdir)
        # Unix socket paths are limited to 107 bytes: sockets go to a short private folder.
        self.sockdir = tempfile.mkdtemp(prefix=f"hark-{name[:20]}-")
        self.lock = threading.RLock()
        self.current = [None] * self.meta["vms"]  # the VmBoot of each VM, or None when off
        self.boots = []  # every VmBoot, in start order
        self.boot_count = [0] * self.meta["vms"]
        self.switch = None
        if self.meta["vms"] > 1:
            self.switch = netswitch.Switch(self.sockdir, self.meta["vms"])
        self.ctl = ctl.Server(self.sockdir, self.meta["vms"], self)
        self.events = open(os.path.join(self.outdir, "harness.log"), "a", encoding="utf-8")
        self.t0 = time.monotonic()

    def note(self, text):
        self.events.write(f"[{time.monotonic() - self.t0:7.1f} s] {text}\n")
        self.events.flush()

    def disk_path(self, index):
        return os.path.join(self.outdir, f"vm{index}.disk.qcow2")

    # --- the power switch (also used by ctl.py on a VM's request) ---

    def power_on(self, index):
        with self.lock:
            if self.current[index] is not None and self.current[index].running():
                return False
            if self.meta["disk"] and not os.path.exists(self.disk_path(index)):
                make_disk(self.disk_path(index), self.meta["disk"],
                          str(index) in self.meta["disk-random"].split())
            self.boot_count[index] += 1
            vm = VmBoot(self, index, self.boot_count[index])
            vm.start()
            self.current[index] = vm
            self.boots.append(vm)
            self.note(f"vm{index}: power on (boot {vm.boot})")
            return True

    def power_off(self, index, on_purpose=True):
        with self.lock:
            vm = self.current[index]
            if vm is None or not vm.running():
                return False
            vm.killed = on_purpose
            vm.kill()  # SIGKILL: nothing in the guest gets to flush or unmount
            self.note(f"vm{index}: power off")
            return True

    def power_state(self, index):
        with self.lock:
            vm = self.current[index]
            return "on" if vm is not None and vm.running() else "off"

    def dmesg(self, vm):
        """The kernel log the VM's last boot saved at its end (run.sh): all of it, also what the
        console's log level left out."""
        path = os.path.join(self.outdir, f"vm{vm.index}.share", "dmesg.log")
        try:
            if os.path.getmtime(path) < vm.started:
                return ""
            with open(path, encoding="utf-8", errors="replace") as f:
                return "\n" + f.read()
        except OSError:
            return ""

    # --- running ---

    def run(self):
        """Runs every boot of the scenario; returns the list of problems."""
        problems = []
        deadline = self.t0 + self.meta["timeout"]
        try:
            if self.switch:
                self.switch.start()
            self.ctl.start()
            for boot in range(1, self.meta["boots"] + 1):
                crash = boot < self.meta["boots"]
                first = len(self.boots)
                for i in range(self.meta["vms"]):
                    self.power_on(i)
                timed_out = self.run_boot(deadline, crash)
                for vm in self.boots[first:]:
                    text = vm.log()
                    if vm is self.current[vm.index]:
                        text += self.dmesg(vm)
                    problems += judge_boot(vm.tag, text, timed_out, crash_planned=crash and vm.boot == boot,
                                           killed=vm.killed)
                if timed_out:
                    problems.insert(0, f"timeout after {self.meta['timeout']} s")
                if problems:
                    break
        finally:
            with self.lock:
                for vm in self.current:
                    if vm is not None:
                        vm.kill()
            self.ctl.stop()
            if self.switch:
                self.switch.stop()
                self.note("switch: " + ", ".join(f"vm{i} {self.switch.stats(i)}"
                                                 for i in range(self.meta["vms"])))
            shutil.rmtree(self.sockdir, ignore_errors=True)
            self.events.close()
        return problems

    def run_boot(self, deadline, crash):
        """Runs until every VM is off; with `crash`, kills each VM as soon as it asks for it.
        Returns whether the deadline passed."""
        while True:
            with self.lock:
                live = [vm for vm in self.current if vm is not None and vm.running()]
                if not live:
                    return False
                for vm in live:
                    vm.sample_cpu()
                if crash:
                    for vm in live:
                        if CRASH_MARK in vm.log():
                            vm.kill()
                # One VM ending early with a failure ends the boot.
                for vm in self.current:
                    if vm is not None and not vm.running() and not vm.killed and not vm_passed(vm) \
                            and not asked_crash(vm):
                        self.note(f"vm{vm.index}: ended without passing; stopping the scenario")
                        return False
            if time.monotonic() > deadline:
                return True
            time.sleep(0.2)


class Gate:
    """Lets a scenario with "# alone: yes" run only when no other scenario runs, and no other
    start while it runs (Pacemaker's daemons, started all at once in a VM that shares two
    cores with another scenario's VMs, missed pacemakerd's 30-s start check and were killed).
    A waiting lone scenario goes before scenarios that arrive after it."""

    def __init__(self):
        self.cv = threading.Condition()
        self.running = 0
        self.alone = False
        self.alone_waiting = 0

    def enter(self, alone):
        with self.cv:
            if alone:
                self.alone_waiting += 1
                self.cv.wait_for(lambda: self.running == 0)
                self.alone_waiting -= 1
                self.alone = True
            else:
                self.cv.wait_for(lambda: not self.alone and self.alone_waiting == 0)
            self.running += 1

    def leave(self, alone):
        with self.cv:
            self.running -= 1
            if alone:
                self.alone = False
            self.cv.notify_all()


GATE = Gate()


def run_scenario(name, kernel, initrd, artifacts):
    """Returns (problems, seconds, QEMU CPU seconds, artifacts folder); a harness error is a
    problem too. Waits for its turn at GATE first (not counted)."""
    alone = False
    try:
        alone = parse_header(os.path.join(SCENARIO_DIR, name + ".sh"))["alone"] == "yes"
    except (OSError, ValueError):
        pass  # Scenario() reports it
    GATE.enter(alone)
    try:
        return run_scenario_now(name, kernel, initrd, artifacts)
    finally:
        GATE.leave(alone)


def run_scenario_now(name, kernel, initrd, artifacts):
    start = time.monotonic()
    outdir = os.path.join(artifacts, name)
    scn = None
    try:
        scn = Scenario(name, kernel, initrd, artifacts)
        problems = scn.run()
    except Exception:  # noqa: BLE001 - one scenario's harness error must not end the run
        problems = ["harness error: " + traceback.format_exc().strip().replace("\n", " | ")]
    cpu = sum(vm.cpu for vm in scn.boots) if scn is not None else 0.0
    return problems, time.monotonic() - start, cpu, outdir


def asked_crash(vm):
    return CRASH_MARK in vm.log()


def vm_passed(vm):
    results = RESULT_RE.findall(vm.log())
    return bool(results) and results[-1][1] == "0"


def summary_lines(times, wall):
    """Each scenario's time and its VMs' CPU time on the host, longest first, and the totals."""
    lines = ["scenario times (s):    wall      cpu"]
    for name, secs, ok, cpu in sorted(times, key=lambda t: -t[1]):
        lines.append(f"  {'ok  ' if ok else 'FAIL'}  {name:24} {secs:7.0f}  {cpu:7.0f}")
    lines.append(f"  {'total':30} {sum(t[1] for t in times):7.0f}  {sum(t[3] for t in times):7.0f}"
                 f"  ({wall:.0f} s wall clock)")
    return lines


def find_kernel():
    kbuild = os.environ.get("HARK_KBUILD") or os.path.join(
        os.environ.get("HARK_CACHE", os.path.expanduser("~/.cache/hark")), "kbuild-current")
    image = os.path.join(kbuild, "arch/x86/boot/bzImage")
    if not os.path.isfile(image):
        sys.exit(f"harness: no kernel at {image}: run 'make kernel' first")
    return image


def main():
    ap = argparse.ArgumentParser(description="Run hark's QEMU scenarios.")
    ap.add_argument("names", nargs="*", help="scenarios to run (default: every one of the suite)")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("--suite", default="test", choices=SUITES,
                    help="which scenarios run by default: 'test' (make test) or 'soak' (make soak)")
    ap.add_argument("--dir", help="folder of scenario files (default: tests-qemu/scenarios)")
    ap.add_argument("-j", "--jobs", type=int,
                    default=int(os.environ.get("HARK_JOBS", "0")) or os.cpu_count() or 1,
                    help="scenarios run at once (default: HARK_JOBS or the number of CPUs)")
    ap.add_argument("--artifacts", default=os.environ.get("HARK_ARTIFACTS", os.path.join(TOP, "artifacts")),
                    help="folder for consoles and shared files (default: ./artifacts)")
    args = ap.parse_args()
    if args.dir:
        global SCENARIO_DIR
        SCENARIO_DIR = os.path.abspath(args.dir)
    available = scenarios()
    if args.list:
        print("\n".join(f"{n}\t{parse_header(os.path.join(SCENARIO_DIR, n + '.sh'))['suite']}"
                        for n in available))
        return 0
    names = args.names or scenarios(args.suite)
    unknown = [n for n in names if n not in available]
    if unknown:
        sys.exit(f"harness: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(available)}")
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils")):
        if shutil.which(tool) is None:
            sys.exit(f"harness: {tool} missing (package {package}): run scripts/setup.sh")
    kernel = find_kernel()
    os.makedirs(args.artifacts, exist_ok=True)
    initrd = initramfs.build(os.path.join(args.artifacts, "initramfs.cpio.gz"),
                             os.path.join(HERE, "guest", "init"))
    passed = failed = 0
    times = []
    wall = time.monotonic()
    # Lone scenarios first (nothing else has started yet), then the longest first (the
    # header's timeout is the estimate), so parallel runs end together.
    def rank(name):
        meta = parse_header(os.path.join(SCENARIO_DIR, name + ".sh"))
        return (meta["alone"] != "yes", -meta["timeout"])
    order = sorted(names, key=rank)
    jobs = max(1, min(args.jobs, len(order)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_scenario, n, kernel, initrd, args.artifacts): n for n in order}
        for fut in concurrent.futures.as_completed(futures):
            name = futures[fut]
            problems, elapsed, cpu, outdir = fut.result()
            times.append((name, elapsed, not problems, cpu))
            if problems:
                failed += 1
                print(f"FAIL {name} ({elapsed:.0f} s): {'; '.join(problems)} [logs: {outdir}]", flush=True)
            else:
                passed += 1
                print(f"ok   {name} ({elapsed:.0f} s)", flush=True)
    print("\n".join(summary_lines(times, time.monotonic() - wall)))
    print(f"vm: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
