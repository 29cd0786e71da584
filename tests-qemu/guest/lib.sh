# SPDX-License-Identifier: GPL-2.0
# Helpers for scenario scripts; source it: . "$HARK_TOP/tests-qemu/guest/lib.sh"
set -euo pipefail

# Print a step, so the console log reads like a story (with the seconds since the scenario
# started: bash's $SECONDS, no process started).
step() { echo "== vm$HARK_VM [${SECONDS}s]: $*"; }
# Fail the scenario with a message.
die() { echo "FAIL vm$HARK_VM: $*"; exit 1; }
# Assert that a command succeeds / fails.
must() { "$@" || die "command failed: $*"; }
# OCF agents: `ocf_expect RC ACTION [VAR=VALUE...]` runs resource agent $agent's ACTION (with the
# variables set for that call) and fails unless it exits RC.
ocf_expect() {
	local want=$1 action=$2 got
	shift 2
	got=$(env "$@" "$agent" "$action" >/dev/null 2>&1; echo $?)
	[ "$got" = "$want" ] || die "$agent $action ${*:-}: exit $got, want $want"
}
must_fail() { if "$@"; then die "command should have failed: $*"; fi; }
# Path of a built module.
ko() { echo "$HARK_TOP/$1/$1.ko"; }
# Userspace binaries.
RDRBDADM=$HARK_TOP/userspace/target/release/rdrbdadm
RTCPVSADM=$HARK_TOP/userspace/target/release/rtcpvsadm
VMTOOL=$HARK_TOP/userspace/target/release/hark-vmtool
PY=/usr/bin/python3

# Under TCG with a debug kernel (KASAN, lockdep) every fork+exec costs about 0.1 s of guest CPU
# (testbed-smp measures it; python3 -c pass 1.3 s). Polling loops therefore use bash builtins
# only: `nap` sleeps with `read -t` on a private FIFO.
mkfifo "/tmp/hark-nap.$$" && exec {HARK_NAP_FD}<>"/tmp/hark-nap.$$" && rm -f "/tmp/hark-nap.$$"
nap() { read -r -t "$1" -u "$HARK_NAP_FD" _ || true; }

# Scenario waits are written in seconds an idle machine needs, with margin; CI runs two
# scenarios (four TCG VMs) on two cores, so every wait allows HARK_WAIT_SCALE times as much.
export HARK_WAIT_SCALE=${HARK_WAIT_SCALE:-3}
# until_ok SECONDS CMD...: run CMD until it succeeds, after 0.2 s, then ever less often up to
# every 2 s; false after the (scaled) deadline. A poll that starts a program (rdrbdadm status,
# dmesg) costs a VM 0.1 s of CPU idle and about 1 s beside other scenarios: polling every half
# second kept a waiting VM's vCPU a quarter busy, CPU the other scenarios lacked.
until_ok() {
	local end=$((SECONDS + $1 * HARK_WAIT_SCALE)) i=0 naps=(0.2 0.3 0.5 0.8 1.2 2)
	shift
	while ! "$@"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		nap "${naps[i]}"
		if [ "$i" -lt 5 ]; then i=$((i + 1)); fi
	done
}

# harkctl REQUEST...: ask the harness (tests-qemu/ctl.py lists the requests: power on|off|cycle|
# status VM, link up|down VM, link delay VM MS, link loss VM PERCENT, set KEY VALUE, get KEY,
# wait KEY SECONDS, vms). Prints the answer's value; fails with the harness's error message on
# stderr. Bash builtins only. The port can be open in one process at a time and a fence agent
# (ha/fence_hark) in another process may need it: it is opened for one request (a second
# opener gets EBUSY and retries), and a long `wait` is asked as a series of 1-second waits.
HARK_CTL_SEQ=0
harkctl() {
	if [ "${1:-}" = wait ] && [ $# -eq 3 ]; then
		local end=$((SECONDS + $3)) rc
		while :; do
			rc=0
			_harkctl_once wait "$2" 1 2>/dev/null || rc=$?
			[ "$rc" = 0 ] && return 0
			[ "$rc" = 1 ] && [ "$SECONDS" -lt "$end" ] || break
			nap 0.3 # the port free for a moment: a fence agent may be waiting for it
		done
		echo "harkctl wait $2: timeout after $3 s" >&2
		return 1
	fi
	_harkctl_once "$@"
}

_harkctl_once() {
	local fd reply id end=$((SECONDS + 60))
	[ -n "${HARK_CTL:-}" ] || { echo "harkctl: no harness channel" >&2; return 2; }
	while ! exec {fd}<>"$HARK_CTL"; do
		[ "$SECONDS" -lt "$end" ] || { echo "harkctl: $HARK_CTL stays busy" >&2; return 2; }
		nap 0.1
	done 2>/dev/null
	HARK_CTL_SEQ=$((HARK_CTL_SEQ + 1))
	id="$$.$HARK_CTL_SEQ"
	printf '%s %s\n' "$id" "$*" >&"$fd"
	while read -r -t "${HARKCTL_TIMEOUT:-900}" -u "$fd" reply; do
		[[ $reply == "$id "* ]] && break
		reply=
	done
	exec {fd}>&-
	reply=${reply#"$id "}
	case "$reply" in
	ok) return 0 ;;
	"ok "*) echo "${reply#ok }" ;;
	"err "*) echo "harkctl $*: ${reply#err }" >&2; return 1 ;;
	*) echo "harkctl $*: no answer" >&2; return 2 ;;
	esac
}

# The kernel log matches the extended regex $1.
# Not `dmesg | grep -q`: grep stops at the first match, dmesg dies of SIGPIPE and under pipefail
# the pipeline fails although the line is there (testbed-smp failed that way once).
dmesg_has() { grep -Eq "$1" < <(dmesg); }
# Something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp: no process started).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Rendezvous of all VMs of the scenario at a named point (over the test network).
barrier() { "$VMTOOL" barrier "$1"; }

# Two-VM scenarios: both bring r0 up and connect, vm0 is forced Primary, and both wait until the
# full sync is done (barriers ready, connected, synced).
drbd_pair_forced_sync() {
	barrier ready
	must "$RDRBDADM" up r0
	wait_status 'connection:Connected' 60
	barrier connected
	if [ "$HARK_VM" = 0 ]; then
		must "$RDRBDADM" primary --force r0
		wait_status 'role:Primary.*connection:Connected.*peer-role:Secondary peer-disk:UpToDate' 600
	else
		wait_status 'role:Secondary.*disk:UpToDate.*connection:Connected.*peer-role:Primary' 600
	fi
	barrier synced
}

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
status_is() { [[ "$($RDRBDADM status r0 2>/dev/null)" =~ $1 ]]; }
wait_status() {
	until_ok "${2:-60}" status_is "$1" && return 0
	$RDRBDADM status r0
	die "status did not reach /$1/ within ${2:-60} s (x$HARK_WAIT_SCALE)"
}

# Two-VM scenarios: send our line ($1) to the other VM and print its line (over the test
# network; vm0 listens). Both VMs must call it at the same point.
exchange() { "$VMTOOL" exchange "$1"; }

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
	# No automatic scans (every 10 minutes, each minutes of a vCPU under TCG with KASAN):
	# kmemleak_check scans when the scenario wants a verdict.
	echo scan=off > /sys/kernel/debug/kmemleak
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
