# vms: 2
# timeout: 1500
# disk: 64M
# drbd_rs discards and zero-outs while Connected (protocol C), vm0 Primary: `fallocate -z` over
# replicated random data must leave both lower devices zeroed there (zero-outs are replicated,
# nothing out of sync), `blkdiscard` of the whole device and `mkfs.ext4` with default options
# (BLKDISCARD, then zero-outs and writes) must complete within a bound and without a splat (the
# ha-failover stall: queue_rq stuck > 60 s with the state mutex held); discards are only marked
# out of sync, and a disconnect/connect resync then makes both data areas identical.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
A=$RDRBDADM
# Generous ping/send timeouts: TCG vCPUs starve under load (see drbd-resync).
write_drbd_conf "net { protocol C; connect-int 2; ping-int 5; ping-timeout 100; timeout 40; }"

# bounded SECS CMD...: run CMD, fail if it fails or is not done within SECS (scaled) seconds,
# printing its kernel stack then (where it waits).
bounded() {
	local secs=$(($1 * HARK_WAIT_SCALE)) t0=$SECONDS pid
	shift
	"$@" &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		if [ $((SECONDS - t0)) -gt "$secs" ]; then
			echo "vm$HARK_VM: still running after $secs s: $*; its kernel stack:"
			cat "/proc/$pid/stack"
			die "not done within $secs s: $*"
		fi
		nap 0.5
	done
	wait "$pid" || die "command failed: $*"
	echo "vm$HARK_VM: $* took $((SECONDS - t0)) s"
}

must $A create-md r0
must insmod "$(ko drbd_rs)"
barrier ready
must $A up r0
wait_status 'connection:Connected protocol:C' 60
[ "$HARK_VM" = 0 ] && must $A primary --force r0
# The initial full sync (both disks start zeroed, so it moves zeros).
wait_status 'connection:Connected protocol:C peer-role:(Primary|Secondary) peer-disk:UpToDate' 600
wait_status ' disk:UpToDate size' 10
size_kib=$($A status r0 | grep -o 'size:[0-9]*' | head -1 | cut -d: -f2)
[ -n "$size_kib" ] && [ "$size_kib" -gt 60000 ] || die "bad size: $size_kib"
kib=$((size_kib / 4 * 4))
barrier synced

# Bounds are for an idle machine (scaled like every wait): a replicated 8 MiB write takes a few
# seconds under TCG (drbd-resync), a discard of the whole device is 16 requests of 4 MiB
# with at most an activity-log transaction each, mkfs.ext4 of 64 MiB writes about 5 MiB.
if [ "$HARK_VM" = 0 ]; then
	step "zero-out over replicated data"
	must dd if=/dev/urandom of=/dev/rdrbd0 bs=1M count=16 seek=8 oflag=direct status=none
	bounded 20 fallocate -z -o 12M -l 8M /dev/rdrbd0
	bounded 20 blkdiscard -z -o 20M -l 4M /dev/rdrbd0
	wait_status 'out-of-sync:0KiB' 1
fi
barrier zeroed
# Protocol C: every acknowledged write is on both lower devices.
same_data "$kib" "after the zero-outs"
dd if=/dev/vda bs=1M count=12 skip=12 iflag=direct status=none | cmp -s -n 12582912 - /dev/zero ||
	die "MiB 12..23 of the lower device are not zero"
dd if=/dev/vda bs=1M count=4 skip=8 iflag=direct status=none | cmp -s -n 4194304 - /dev/zero &&
	die "MiB 8..11 are zero: the random data did not arrive"
barrier compared

if [ "$HARK_VM" = 0 ]; then
	step "blkdiscard of the whole device, then mkfs.ext4 (default options)"
	bounded 20 blkdiscard /dev/rdrbd0
	bounded 60 mkfs.ext4 -q -F /dev/rdrbd0
	# Discards are not replicated: marked out of sync, for the resync below.
	wait_status 'out-of-sync:[1-9]' 1
fi
barrier discarded

step "disconnect, connect: the resync makes both data areas identical"
must $A disconnect r0
barrier disconnected
must $A connect r0
wait_status 'connection:Connected protocol:C peer-role:(Primary|Secondary) peer-disk:UpToDate' 600
wait_status ' disk:UpToDate size' 10
[ "$HARK_VM" = 0 ] && wait_status 'out-of-sync:0KiB' 10
barrier resynced
[ "$HARK_VM" = 0 ] && must $A secondary r0
barrier secondary
must $A down r0
same_data "$kib" "after the resync"
[ "$HARK_VM" = 1 ] && must e2fsck -fn /dev/vda
barrier checked
must rmmod drbd_rs
step "done"
