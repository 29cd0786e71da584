# vms: 1
# timeout: 900
# disk: 96M
# cmdline: kmemleak=on
# drbd_rs on one node: create-md (read back by Debian's drbdmeta), up, Secondary refuses
# writes, primary needs --force, fio with crc32c verify through /dev/rdrbd0, data lands on the
# lower device 1:1, status/events, rmmod refused while up, down, and 4,000 random or
# malformed netlink requests without a splat; kmemleak finds nothing left behind.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
write_drbd_conf
A=$RDRBDADM

kmemleak_clear
step "create-md, dump-md, and Debian's drbdmeta reads what we wrote"
must $A create-md r0
must_fail $A create-md r0 2>/dev/null
must $A create-md --force r0
$A dump-md r0 | tee /tmp/dump.ours
drbdmeta --force 0 v08 /dev/vda internal dump-md > /tmp/dump.drbdmeta 2>&1 || { cat /tmp/dump.drbdmeta; die "drbdmeta dump-md failed on our metadata"; }
cat /tmp/dump.drbdmeta
grep -q 'la-size-sect 0;' /tmp/dump.drbdmeta || die "drbdmeta: unexpected la-size-sect"
grep -q '0x0000000000000004' /tmp/dump.drbdmeta || die "drbdmeta: current UUID should be JUST_CREATED"

step "up: the module is required"
must_fail $A up r0 2>/dev/null
must insmod "$(ko drbd_rs)"
must $A up r0
size=$(cat /sys/block/rdrbd0/size)
echo "rdrbd0 size: $size sectors"
[ "$size" -eq $(( $(cat /sys/block/vda/size) - 8 - 8 - 64 - 8 )) ] || echo "note: size $size"
$A status r0 | tee /tmp/st
grep -q 'role:Secondary' /tmp/st && grep -q 'disk:Inconsistent' /tmp/st || die "expected Secondary/Inconsistent"
$A events --now | tee /tmp/ev
grep -q '^exists device name:r0 volume:0 minor:0 role:Secondary disk:Inconsistent' /tmp/ev || die "events --now"

grep -q '^exists resource name:r0$' /tmp/ev || die "events --now: no resource line"

step "resource rules over raw netlink: names checked, minors need their resource, busy resources stay"
# genl.py exits with the errno: keep it out of pipefail.
G() { $PY "$HARK_TOP/tests-qemu/guest/genl.py" cmd drbd_rs "$@" || true; }
G 2 1=str:r0 | grep -q EEXIST || die "new-resource of an existing resource"
G 2 1=str:a/b | grep -q EINVAL || die "new-resource with '/' in the name"
G 4 1=str:nores 2=u32:5 | grep -q ENOENT || die "new-minor of an unknown resource"
G 3 1=str:r0 | grep -q EBUSY || die "del-resource with a minor"
G 3 1=str:nores | grep -q ENOENT || die "del-resource of an unknown resource"

step "Secondary refuses opens for writing"
must_fail dd if=/dev/zero of=/dev/rdrbd0 bs=4k count=1 2>/dev/null
step "primary without --force is refused, with --force it works"
must_fail $A primary r0
$A events > /tmp/events.log 2>&1 &
evpid=$!
sleep 1
must $A primary --force r0
$A status --json | tee /tmp/st.json
grep -q '"role":"Primary","disk-state":"UpToDate"' /tmp/st.json || die "expected Primary/UpToDate"

step "fio with crc32c verify through /dev/rdrbd0"
must fio --name=verify --filename=/dev/rdrbd0 --rw=randwrite --bs=4k --size=4M --direct=1 \
  --ioengine=psync --verify=crc32c --verify_fatal=1 --do_verify=1 --output=/tmp/fio.out
grep -E 'WRITE:|READ:|err=' /tmp/fio.out
must fio --name=seq --filename=/dev/rdrbd0 --rw=write --bs=1M --size=16M --direct=1 --ioengine=psync \
  --verify=crc32c --verify_fatal=1 --output=/tmp/fio2.out
grep -E 'WRITE:|READ:' /tmp/fio2.out
step "writes land on the lower device 1:1; flush and discard pass"
must dd if=/dev/urandom of=/tmp/data bs=1M count=4 2>/dev/null
must dd if=/tmp/data of=/dev/rdrbd0 bs=1M seek=10 oflag=direct,sync 2>/dev/null
must dd if=/dev/vda of=/tmp/lower bs=1M skip=10 count=4 iflag=direct 2>/dev/null
cmp /tmp/data /tmp/lower || die "lower device content differs"
must sync
must blockdev --flushbufs /dev/rdrbd0

step "rmmod is refused while a device is up"
must_fail rmmod drbd_rs 2>/dev/null
step "secondary is refused while open for writing"
exec 7<>/dev/rdrbd0
must_fail $A secondary r0
exec 7>&-
must $A secondary r0
oos=$($A status r0 | sed -n 's/.*out-of-sync:\([0-9]*\)KiB.*/\1/p')
echo "out of sync before down: ${oos} KiB (no peer: every write marks its blocks)"
# fio wrote 4 MiB random + 16 MiB sequential from offset 0, dd 4 MiB at 10 MiB: at least
# the 16 MiB sequential range, at most the 20 MiB the writes can reach.
[ "$oos" -ge 16384 ] && [ "$oos" -le 20480 ] || die "out-of-sync $oos KiB not in 16384..20480"
must $A down r0
kill $evpid 2>/dev/null; wait $evpid 2>/dev/null || true
cat /tmp/events.log
grep -q '^change device name:r0 volume:0 minor:0 role:Primary disk:UpToDate' /tmp/events.log || die "no Primary change event"
grep -q '^destroy device name:r0' /tmp/events.log || die "no destroy event"
grep -q '^destroy resource name:r0$' /tmp/events.log || die "no resource destroy event"

step "metadata after down: consistent, UpToDate, la-size set; drbdmeta agrees"
$A dump-md r0 | tee /tmp/dump2
grep -q "la-size-sect $size;" /tmp/dump2 || die "la-size-sect not written"
drbdmeta --force 0 v08 /dev/vda internal dump-md > /tmp/dm2 2>&1 || { cat /tmp/dm2; die "drbdmeta"; }
grep -q "la-size-sect $size;" /tmp/dm2 || { cat /tmp/dm2; die "drbdmeta la-size"; }
grep -q "^# bits-set $((oos / 4));" /tmp/dm2 || { cat /tmp/dm2; die "drbdmeta: bitmap should have $((oos / 4)) bits set"; }
grep -q "# clean" /tmp/dump2 || die "metadata not clean after down"
step "up again: the data is UpToDate without --force"
must $A up r0
$A status r0 | tee /tmp/st5
grep -q 'disk:UpToDate' /tmp/st5 || die "not UpToDate after re-attach"
grep -q "out-of-sync:${oos}KiB" /tmp/st5 || die "bitmap not kept across down/up"
grep -q 'unclean shutdown' < <(dmesg) && die "a clean down must not need the activity log"
must $A primary r0
must dd if=/dev/rdrbd0 of=/tmp/back bs=1M skip=10 count=4 iflag=direct 2>/dev/null
cmp /tmp/data /tmp/back || die "data lost across down/up"
must $A down r0

step "4,000 random and malformed netlink requests"
must $A up r0
must $PY "$HARK_TOP/tests-qemu/guest/genl.py" fuzz drbd_rs 4000 42
$A status | tee /tmp/st3
must $PY "$HARK_TOP/tests-qemu/guest/genl.py" cleanup drbd_rs 32
$A status | tee /tmp/st4
[ ! -s /tmp/st4 ] || die "devices left after cleanup"

step "metadata written by Debian's drbdmeta create-md attaches (read the other way)"
must drbdmeta --force 0 v08 /dev/vda internal create-md
$A dump-md r0 | tee /tmp/dump3
grep -q '0x0000000000000004;' /tmp/dump3 || die "our reader: current UUID of drbdmeta's create-md"
must $A up r0
$A status r0 | tee /tmp/st4
grep -q 'disk:Inconsistent' /tmp/st4 || die "drbdmeta's fresh metadata should attach Inconsistent"
must $A down r0
must rmmod drbd_rs
step "kmemleak after everything above and rmmod"
kmemleak_check
step "done"
