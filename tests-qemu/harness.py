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
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import initramfs  # noqa: E402
import logscan  # noqa: E402

SCENARIO_DIR = os.path.join(HERE, "scenarios")
RESULT_RE = re.compile(r"HARK-RESULT vm=(\d+) rc=(\d+)")
CRASH_MARK = "HARK-CRASH-NOW"
SUBNET = "10.77.0."


def vm_ip(index):
    return f"{SUBNET}{index + 1}"


def parse_header(path):
    meta = {"vms": 1, "timeout": 180, "disk": None, "mem": 1024, "boots": 1, "cmdline": "",
            "disk-random": ""}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                if line.strip():
                    break
                continue
            m = re.match(r"#\s*(vms|timeout|disk|disk-random|mem|boots|cmdline):\s*(\S.*?)\s*$", line)
            if m:
                key, value = m.group(1), m.group(2)
                meta[key] = value if key in ("disk", "disk-random", "cmdline") else int(value)
    if not 1 <= meta["vms"] <= 2:
        raise ValueError(f"{path}: vms must be 1 or 2 (got {meta['vms']})")
    return meta


def scenarios():
    names = []
    for entry in sorted(os.listdir(SCENARIO_DIR)):
        if entry.endswith(".sh"):
            names.append(entry[:-3])
    return names


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class Vm:
    def __init__(self, index, nvm, name, meta, kernel, initrd, outdir, port, boot=1):
        self.index = index
        self.name = name
        self.outdir = outdir
        self.boot = boot
        suffix = f".boot{boot}" if meta["boots"] > 1 else ""
        self.console = os.path.join(outdir, f"vm{index}{suffix}.console.log")
        share = os.path.join(outdir, f"vm{index}.share")
        os.makedirs(share, exist_ok=True)
        peers = " ".join(vm_ip(i) for i in range(nvm) if i != index)
        cmdline = " ".join([
            "console=ttyS0", "panic=-1", "printk.time=1", "loglevel=7",
            "hung_task_panic=0", "oops=panic" if os.environ.get("HARK_OOPS_PANIC") else "",
            f"HARK_TOP={TOP}", f"HARK_SCENARIO={name}", f"HARK_SCENARIO_DIR={SCENARIO_DIR}", f"HARK_VM={index}",
            f"HARK_NVM={nvm}", f"HARK_IP={vm_ip(index)}", f"HARK_PEER_IPS={peers.replace(' ', ',')}",
            f"HARK_BOOT={boot}", f"HARK_BOOTS={meta['boots']}",
            # The kernel build (for in-tree modules such as the reference C DRBD).
            f"HARK_KBUILD={os.path.realpath(os.path.join(os.path.dirname(kernel), '../../..'))}",
            meta["cmdline"],
        ]).split()
        # No 5-level paging: with it, 7.3's KASAN reports a wild access in an interrupt that
        # hits identify_cpu() early in boot (seen once in about 20 boots).
        accel = (["-accel", "kvm", "-cpu", "host"] if kvm_usable()
                 else ["-accel", "tcg", "-cpu", "max,la57=off"])
        args = [
            "qemu-system-x86_64", *accel, "-m", str(meta["mem"]), "-smp", "2",
            "-nographic", "-no-reboot", "-monitor", "none", "-serial", f"file:{self.console}",
            "-kernel", kernel, "-initrd", initrd, "-append", " ".join(cmdline),
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={share},mount_tag=harkout,security_model=none,multidevs=remap",
            "-device", "virtio-rng-pci",
        ]
        if meta["disk"]:
            disk = os.path.join(outdir, f"vm{index}.disk.qcow2")
            if boot == 1:
                make_disk(disk, meta["disk"], str(index) in meta["disk-random"].split())
            args += ["-drive", f"file={disk},if=virtio,format=qcow2,cache=unsafe"]
        if nvm == 2:
            mode = "listen" if index == 0 else "connect"
            args += ["-netdev", f"socket,id=n0,{mode}=127.0.0.1:{port}",
                     "-device", f"virtio-net-pci,netdev=n0,mac=52:54:00:77:00:{index + 1:02x}"]
        else:
            args += ["-nic", "none"]
        self.args = args
        self.port = port
        self.proc = None

    def start(self):
        with open(os.path.join(self.outdir, f"vm{self.index}.qemu.cmd"), "a", encoding="utf-8") as f:
            f.write(" ".join(self.args) + "\n")
        self.stderr = open(os.path.join(self.outdir, f"vm{self.index}.qemu.err"), "a", encoding="utf-8")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        try:
            with open(self.console, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def run_scenario(name, kernel, initrd, artifacts):
    path = os.path.join(SCENARIO_DIR, name + ".sh")
    meta = parse_header(path)
    outdir = os.path.join(artifacts, name)
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    start = time.monotonic()
    deadline = start + meta["timeout"]
    problems = []
    for boot in range(1, meta["boots"] + 1):
        last = boot == meta["boots"]
        port = free_port()
        vms = [Vm(i, meta["vms"], name, meta, kernel, initrd, outdir, port, boot)
               for i in range(meta["vms"])]
        timed_out = run_boot(vms, meta, deadline, crash=not last)
        problems += judge(vms, timed_out, meta, crash=not last)
        if problems:
            break
    return problems, time.monotonic() - start, outdir


def run_boot(vms, meta, deadline, crash):
    """Runs one boot of all VMs; with `crash`, kills each VM as soon as it asks for it.
    Returns whether the deadline passed."""
    try:
        for vm in vms:
            vm.start()
            if meta["vms"] > 1 and vm.index == 0:
                # The connecting VM needs the listener to exist already.
                for _ in range(50):
                    if vm.proc.poll() is not None:
                        break
                    try:
                        socket.create_connection(("127.0.0.1", vm.port), timeout=0.2).close()
                        break
                    except OSError:
                        time.sleep(0.1)
        while any(vm.proc.poll() is None for vm in vms):
            if time.monotonic() > deadline:
                return True
            if crash:
                for vm in vms:
                    if vm.proc.poll() is None and CRASH_MARK in vm.log():
                        vm.kill()  # SIGKILL: nothing in the guest gets to flush or unmount
            # One VM finishing early with a failure ends the boot.
            if any(vm.proc.poll() is not None and not vm_passed(vm) and not asked_crash(vm)
                   for vm in vms):
                break
            time.sleep(0.2)
    finally:
        for vm in vms:
            vm.kill()
    return False


def judge(vms, timed_out, meta, crash):
    problems = []

    def tag(vm):
        return f"vm{vm.index}" + (f" boot {vm.boot}" if meta["boots"] > 1 else "")

    if timed_out:
        problems.append(f"timeout after {meta['timeout']} s")
    for vm in vms:
        text = vm.log()
        results = RESULT_RE.findall(text)
        if crash:
            if results:
                problems.append(f"{tag(vm)}: exit {results[-1][1]} before the planned crash")
            elif CRASH_MARK not in text and not timed_out:
                problems.append(f"{tag(vm)}: ended without asking for the crash")
        elif not results:
            if not timed_out:
                problems.append(f"{tag(vm)}: no result line (crashed or killed early)")
        elif results[-1][1] != "0":
            problems.append(f"{tag(vm)}: exit {results[-1][1]}")
        splats = logscan.scan(text)
        if splats:
            problems.append(f"{tag(vm)}: {logscan.summary(splats)}")
    return problems


def asked_crash(vm):
    return CRASH_MARK in vm.log()


def vm_passed(vm):
    results = RESULT_RE.findall(vm.log())
    return bool(results) and results[-1][1] == "0"


def find_kernel():
    kbuild = os.environ.get("HARK_KBUILD") or os.path.join(
        os.environ.get("HARK_CACHE", os.path.expanduser("~/.cache/hark")), "kbuild-current")
    image = os.path.join(kbuild, "arch/x86/boot/bzImage")
    if not os.path.isfile(image):
        sys.exit(f"harness: no kernel at {image}: run 'make kernel' first")
    return image


def main():
    ap = argparse.ArgumentParser(description="Run hark's QEMU scenarios.")
    ap.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("--dir", help="folder of scenario files (default: tests-qemu/scenarios)")
    ap.add_argument("-j", "--jobs", type=int,
                    default=int(os.environ.get("HARK_JOBS", "0")) or os.cpu_count() or 1,
                    help="scenarios run at once (default: HARK_JOBS or the number of CPUs; "
                         "a TCG VM keeps about one CPU busy)")
    ap.add_argument("--artifacts", default=os.environ.get("HARK_ARTIFACTS", os.path.join(TOP, "artifacts")),
                    help="folder for consoles and shared files (default: ./artifacts)")
    args = ap.parse_args()
    if args.dir:
        global SCENARIO_DIR
        SCENARIO_DIR = os.path.abspath(args.dir)
    available = scenarios()
    if args.list:
        print("\n".join(available))
        return 0
    names = args.names or available
    unknown = [n for n in names if n not in available]
    if unknown:
        sys.exit(f"harness: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(available)}")
    if shutil.which("qemu-system-x86_64") is None:
        sys.exit("harness: qemu-system-x86_64 missing: run scripts/setup.sh")
    kernel = find_kernel()
    os.makedirs(args.artifacts, exist_ok=True)
    initrd = initramfs.build(os.path.join(args.artifacts, "initramfs.cpio.gz"),
                             os.path.join(HERE, "guest", "init"))
    passed = failed = 0
    # Longest first (the header's timeout is the estimate), so parallel runs end together.
    order = sorted(names, key=lambda n: -parse_header(os.path.join(SCENARIO_DIR, n + ".sh"))["timeout"])
    jobs = max(1, min(args.jobs, len(order)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_scenario, n, kernel, initrd, args.artifacts): n for n in order}
        for fut in concurrent.futures.as_completed(futures):
            name = futures[fut]
            problems, elapsed, outdir = fut.result()
            if problems:
                failed += 1
                print(f"FAIL {name} ({elapsed:.0f} s): {'; '.join(problems)} [logs: {outdir}]", flush=True)
            else:
                passed += 1
                print(f"ok   {name} ({elapsed:.0f} s)", flush=True)
    print(f"vm: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
