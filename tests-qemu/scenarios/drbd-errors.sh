# vms: 1
# timeout: 400
# disk: 64M
# drbd_rs error paths: I/O errors of the lower device reach the application (a dm "error"
# segment in the middle of the lower device), the rest of the device keeps working, and
# unprivileged netlink requests are refused with EPERM, and so is joining the events group.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
A=$RDRBDADM
step "lower device: /dev/vda through device-mapper, 1 MiB at 16 MiB fails every I/O"
sectors=$(cat /sys/block/vda/size)
printf '0 32768 linear /dev/vda 0\n32768 2048 error\n34816 %d linear /dev/vda 34816\n' \
	$((sectors - 34816)) | must dmsetup create hark-bad
must dmsetup mknodes hark-bad  # no udev in the VM: create /dev/mapper/hark-bad ourselves
dmsetup table hark-bad
write_drbd_conf
sed -i 's|disk /dev/vda;|disk /dev/mapper/hark-bad;|' /etc/hark/drbd.conf
must $A create-md r0
must insmod "$(ko drbd_rs)"
must $A up r0
must $A primary --force r0

step "writes and reads inside the failing range get EIO, outside they work"
must_fail dd if=/dev/zero of=/dev/rdrbd0 bs=4k count=1 seek=$((16 * 256 + 10)) oflag=direct 2>/tmp/werr
cat /tmp/werr
grep -q 'Input/output error' /tmp/werr || die "write error is not EIO"
must_fail dd if=/dev/rdrbd0 of=/dev/null bs=4k count=1 skip=$((16 * 256 + 10)) iflag=direct 2>/tmp/rerr
grep -q 'Input/output error' /tmp/rerr || die "read error is not EIO"
must dd if=/dev/urandom of=/tmp/data bs=1M count=2 2>/dev/null
must dd if=/tmp/data of=/dev/rdrbd0 bs=1M seek=20 oflag=direct 2>/dev/null
must dd if=/dev/rdrbd0 of=/tmp/back bs=1M skip=20 count=2 iflag=direct 2>/dev/null
cmp /tmp/data /tmp/back || die "data outside the failing range"

step "unprivileged callers get EPERM from every command"
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$@"; }
nobody $A status r0 > /tmp/np 2>&1 && die "unprivileged status succeeded"
cat /tmp/np
grep -q 'Operation not permitted' /tmp/np || die "expected EPERM"
for cmd in 2 3 4 5 6 7 8 9 10 11 12; do
	out=$(nobody $PY "$HARK_TOP/tests-qemu/guest/genl.py" cmd drbd_rs $cmd 1=str:r0 2=u32:0 || true)
	echo "$out" | grep -q EPERM || die "command $cmd as nobody: $out"
done
grep -q 'role:Primary' < <($A status r0) || die "state changed by refused requests"

step "joining the events multicast group needs CAP_NET_ADMIN (root may, nobody may not)"
out=$(nobody $PY "$HARK_TOP/tests-qemu/guest/genl.py" join drbd_rs events || true)
echo "nobody: $out"
echo "$out" | grep -q EPERM || die "nobody joined the events group: $out"
out=$($PY "$HARK_TOP/tests-qemu/guest/genl.py" join drbd_rs events) || die "root cannot join: $out"
echo "root: $out"

step "down; the failed I/O left the device usable"
must $A secondary r0
must $A down r0
must rmmod drbd_rs
must dmsetup remove hark-bad
step "done"
