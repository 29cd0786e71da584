# vms: 1
# timeout: 600
# disk: 96M
# boots: 2
# drbd_rs crash recovery through the activity log: boot 1 writes to extent 10 once and keeps
# writing to extents 2..4 when the VM is killed (QEMU gets SIGKILL). Boot 2 attaches: the
# unclean metadata makes drbd_rs replay the activity log, and the bitmap then covers exactly
# the hot extents {2, 3, 4, 10} (16 MiB). Debian's drbdmeta apply-al on a copy of the same
# metadata must come to the same bitmap (our transactions are DRBD 8.4's).
. "$HARK_TOP/tests-qemu/guest/lib.sh"
write_drbd_conf
A=$RDRBDADM
must insmod "$(ko drbd_rs)"

if [ "$HARK_BOOT" = 1 ]; then
	step "boot 1: create-md, up, primary --force"
	must $A create-md r0
	must $A up r0
	must $A primary --force r0
	step "one write to extent 10 (40 MiB), then a random 4 KiB write load on extents 2..4"
	must dd if=/dev/urandom of=/dev/rdrbd0 bs=64k count=4 seek=640 oflag=direct 2>/dev/null
	(
		while :; do
			dd if=/dev/urandom of=/dev/rdrbd0 bs=4k count=1 oflag=direct \
				seek=$((2048 + RANDOM % 3072)) 2>/dev/null
		done
	) &
	sleep 6
	$A status r0
	step "pulling the plug during the write load"
	crash_now
fi

step "boot 2: the metadata is unclean; drbd_rs attaches and applies the activity log"
$A dump-md r0 | tee /tmp/dump.crash
grep -q '# unclean' /tmp/dump.crash || die "metadata should be unclean after the crash"

step "Debian's drbdmeta replays our activity log on a copy of the metadata"
bytes=$(blockdev --getsize64 /dev/vda)
truncate -s "$bytes" /tmp/copy.img
# Internal metadata sits in the last MiBs: copy the last 4 MiB into a sparse file of the same size.
must dd if=/dev/vda of=/tmp/copy.img bs=1M skip=$((bytes / 1048576 - 4)) seek=$((bytes / 1048576 - 4)) \
	conv=notrunc iflag=direct 2>/dev/null
loop=$(losetup --find --show /tmp/copy.img) || die "losetup"
drbdmeta --force 0 v08 "$loop" internal apply-al > /tmp/applyal 2>&1 || { cat /tmp/applyal; die "drbdmeta apply-al failed on our activity log"; }
cat /tmp/applyal
drbdmeta --force 0 v08 "$loop" internal dump-md > /tmp/dm.copy 2>&1 || { cat /tmp/dm.copy; die "drbdmeta dump-md after apply-al"; }
grep -E '^# bits-set|flags' /tmp/dm.copy
theirs=$(sed -n 's/^# bits-set \([0-9]*\);/\1/p' /tmp/dm.copy)
losetup -d "$loop"

must $A up r0
dmesg | grep 'rdrbd0: unclean shutdown' || die "no activity-log replay logged"
grep -q 'applied the activity log, 4 extents' < <(dmesg) || die "expected 4 extents in the activity log"
$A status r0 | tee /tmp/st
oos=$(sed -n 's/.*out-of-sync:\([0-9]*\)KiB.*/\1/p' /tmp/st)
[ "$oos" = 16384 ] || die "out-of-sync $oos KiB, expected 16384 (extents 2, 3, 4, 10)"
[ "$theirs" = 4096 ] || die "drbdmeta apply-al: $theirs bits, expected 4096"

step "down writes the bitmap; drbdmeta sees exactly the hot extents"
must $A down r0
drbdmeta --force 0 v08 /dev/vda internal dump-md > /tmp/dm.after 2>&1 || { cat /tmp/dm.after; die "drbdmeta dump-md"; }
grep -q '^# bits-set 4096;' /tmp/dm.after || { cat /tmp/dm.after; die "bitmap on disk"; }
# The bitmap words of extents 2..4 and 10: 16 64-bit words per extent, all ones.
$PY - /dev/vda <<'PYEOF' || die "bitmap bits are not exactly extents 2, 3, 4 and 10"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.lseek(fd, 0, os.SEEK_END)
md = size // 4096 * 4096 - 4096          # superblock of internal metadata
sb = os.pread(fd, 4096, md)
bm_off = int.from_bytes(sb[76:80], "big", signed=True) * 512
bm = os.pread(fd, 4096, md + bm_off)
for ext in range(24):
    chunk = bm[ext * 128:(ext + 1) * 128]
    want = b"\xff" * 128 if ext in (2, 3, 4, 10) else bytes(128)
    if chunk != want:
        sys.exit(f"extent {ext}: {chunk.hex()[:32]}...")
print("bitmap: extents 2, 3, 4, 10 set, all others clear")
PYEOF
must $A up r0
dmesg | grep -c 'rdrbd0: unclean shutdown' | grep -qx 1 || die "a clean down must not need a replay"
grep -q 'out-of-sync:16384KiB' < <($A status r0) || die "bitmap not loaded on attach"
must $A down r0
must rmmod drbd_rs
step "done"
