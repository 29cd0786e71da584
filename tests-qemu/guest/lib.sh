# SPDX-License-Identifier: GPL-2.0
# Helpers for scenario scripts; source it: . "$HARK_TOP/tests-qemu/guest/lib.sh"
set -euo pipefail

# Print a step, so the console log reads like a story.
step() { echo "== vm$HARK_VM: $*"; }
# Fail the scenario with a message.
die() { echo "FAIL vm$HARK_VM: $*"; exit 1; }
# Assert that a command succeeds / fails.
must() { "$@" || die "command failed: $*"; }
must_fail() { if "$@"; then die "command should have failed: $*"; fi; }
# Path of a built module.
ko() { echo "$HARK_TOP/$1/$1.ko"; }
# Userspace binaries.
RDRBDADM=$HARK_TOP/userspace/target/release/rdrbdadm
RTCPVSADM=$HARK_TOP/userspace/target/release/rtcpvsadm
PY=/usr/bin/python3

# Rendezvous of all VMs of the scenario at a named point (over the test network).
barrier() { $PY "$HARK_TOP/tests-qemu/guest/barrier.py" "$1"; }

# Write /etc/hark/drbd.conf with one resource r0 on /dev/vda; an optional argument is extra
# lines inside the resource (e.g. a net section). Single-VM scenarios get only their own host
# (no peer: `up` does not connect); two-VM scenarios get both (`up` connects).
write_drbd_conf() {
	mkdir -p /etc/hark
	local peer=
	[ "${HARK_NVM:-1}" -gt 1 ] && peer="
  on hark-vm1 { address 10.77.0.2:7789; }"
	cat > /etc/hark/drbd.conf <<CONF
resource r0 {
  device /dev/rdrbd0;
  disk /dev/vda;
  meta-disk internal;${1:+
  $1}
  on hark-vm0 { address 10.77.0.1:7789; }$peer
}
CONF
}

# Wait up to $2 seconds (default 60) until `rdrbdadm status r0` matches the regex $1.
wait_status() {
	local i
	for i in $(seq 1 $((${2:-60} * 5))); do
		$RDRBDADM status r0 2>/dev/null | grep -Eq "$1" && return 0
		sleep 0.2
	done
	$RDRBDADM status r0
	die "status did not reach /$1/ within ${2:-60} s"
}

# Two-VM scenarios: send our line ($1) to the other VM and print its line (over the test
# network; vm0 listens). Both VMs must call it at the same point.
exchange() {
	$PY - "$HARK_VM" "$HARK_IP" "${HARK_PEER_IPS%% *}" "$1" <<'PYEOF'
import socket, sys, time
vm, me, peer, mine = sys.argv[1:]
if vm == "0":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((me, 7001)); s.listen(1); s.settimeout(300); c, _ = s.accept()
else:
    for _ in range(1500):
        try:
            c = socket.create_connection((peer, 7001), timeout=5); break
        except OSError:
            time.sleep(0.2)
c.sendall((mine + "\n").encode()); print(c.makefile().readline().strip())
PYEOF
}

# md5 of the first $1 KiB (a multiple of 4) of the lower device /dev/vda, read with O_DIRECT
# (the replicated device writes around the page cache) in 1 MiB reads (4 KiB reads take
# minutes under TCG).
lower_md5() {
	[ $(($1 % 4)) = 0 ] || die "lower_md5: $1 KiB is not a multiple of 4"
	dd if=/dev/vda bs=1M count=$(($1 * 1024)) iflag=direct,count_bytes status=none | md5sum | cut -d' ' -f1
}

# Compare the data areas ($1 KiB) of both VMs' lower devices; fail if they differ.
same_data() {
	local sum theirs
	sum=$(lower_md5 "$1")
	theirs=$(exchange "$sum")
	echo "vm$HARK_VM: data area ($1 KiB) md5 $sum, peer $theirs${2:+ ($2)}"
	[ "$sum" = "$theirs" ] || die "data differs between the nodes${2:+ ($2)}"
}

# Boot number of a scenario with "# boots: N" (1-based).
HARK_BOOT=${HARK_BOOT:-1}
# Ask the harness to kill this VM now (SIGKILL to QEMU: no flush, no unmount, like a power
# cut); the next boot of the scenario starts with the same disks. Never returns.
crash_now() {
	echo "HARK-CRASH-NOW"
	sleep 600
	die "still alive 600 s after asking for the crash"
}

# kmemleak (scenarios with "# cmdline: kmemleak=on"): forget what is known so far, then later
# report anything new that is unreferenced. kmemleak only reports objects older than 5 s.
kmemleak_clear() {
	[ -w /sys/kernel/debug/kmemleak ] || die "kmemleak is not enabled (boot with kmemleak=on)"
	echo scan > /sys/kernel/debug/kmemleak
	echo clear > /sys/kernel/debug/kmemleak
}
kmemleak_check() {
	sleep 6
	echo scan > /sys/kernel/debug/kmemleak
	sleep 1
	echo scan > /sys/kernel/debug/kmemleak
	# debugfs files have size 0: read the report to see whether there is one.
	local report
	report=$(cat /sys/kernel/debug/kmemleak)
	if [ -n "$report" ]; then
		echo "$report"
		die "kmemleak reports unreferenced objects (above)"
	fi
	echo "kmemleak: no leaks"
}
