# vms: 2
# timeout: 1200
# disk: 32M
# drbd_rs <-> drbd_rs replication of application writes (issue 4, write path): vm0 Primary,
# vm1 Secondary, protocol C (fio randwrite with crc32c verify + a sequential 8 MiB write), then
# A and B after reconnecting with the other protocol; at the end the whole data area of both
# lower devices has the same md5. Both disks start zeroed and the initial full sync after
# `primary --force` (drbd-resync tests it with random data) ends before the writes, so this
# proves that every application write reached the peer. The disk is small (32 MiB): the full
# sync of >= 64 MiB is drbd-resync's job, this scenario's is the write path. Replicated writes leave the bitmap
# clean; while disconnected the Primary marks exactly what it wrote.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
A=$RDRBDADM
# Generous timeouts (ping-timeout 10 s, timeout 4 s): under TCG with other VMs on the same
# cores a starved vCPU can delay a ping-ack past DRBD's 0.5 s default, which would (correctly)
# drop the connection and leave writes out of sync, failing the checks below.
conf() { write_drbd_conf "net { protocol $1; connect-int 2; ping-int 5; ping-timeout 100; timeout 40; }"; }

conf C
must $A create-md r0
must insmod "$(ko drbd_rs)"
barrier ready
must $A up r0
wait_status 'connection:Connected protocol:C' 60
[ "$HARK_VM" = 0 ] && must $A primary --force r0
# The initial full sync (both disks are zeroed, so it moves zeros).
wait_status 'connection:Connected protocol:C peer-role:(Primary|Secondary) peer-disk:UpToDate' 600
wait_status ' disk:UpToDate size' 10
barrier primary

if [ "$HARK_VM" = 0 ]; then
	step "protocol C: fio randwrite 2 MiB (4 KiB blocks) with crc32c verify, then 8 MiB sequential"
	t0=$(date +%s)
	must fio --name=verify --filename=/dev/rdrbd0 --rw=randwrite --bs=4k --size=2M --direct=1 \
		--ioengine=psync --verify=crc32c --do_verify=1 --randrepeat=0 --output=/tmp/fio.log
	grep -E 'WRITE:|READ:' /tmp/fio.log
	must dd if=/dev/urandom of=/dev/rdrbd0 bs=1M count=8 seek=4 oflag=direct status=none
	echo "vm0: protocol C writes took $(($(date +%s) - t0)) s"
	dmesg | grep -q 'not acknowledged' && die "writes lost their acks"
fi
barrier wrote-C

for P in A B; do
	step "protocol $P: reconnect and write"
	must $A disconnect r0
	conf $P
	barrier "disc-$P"
	must $A connect r0
	wait_status "connection:Connected protocol:$P" 60
	barrier "conn-$P"
	if [ "$HARK_VM" = 0 ]; then
		off=$([ $P = A ] && echo 14 || echo 22)
		must dd if=/dev/urandom of=/dev/rdrbd0 bs=1M count=4 seek=$off oflag=direct status=none
		must fio --name=v$P --filename=/dev/rdrbd0 --rw=randwrite --bs=64k --size=2M \
			--offset=$((off + 4))M --direct=1 --ioengine=psync --verify=crc32c --do_verify=1 \
			--randrepeat=0 --output=/tmp/fio$P.log
	fi
	barrier "wrote-$P"
done

step "secondary, down; compare the data areas"
# Every write was acknowledged: nothing is out of sync.
[ "$HARK_VM" = 0 ] && wait_status 'out-of-sync:0KiB' 1
size_kib=$($A status r0 | grep -o 'size:[0-9]*' | head -1 | cut -d: -f2)
[ -n "$size_kib" ] && [ "$size_kib" -gt 30000 ] || die "bad size: $size_kib"
[ "$HARK_VM" = 0 ] && must $A secondary r0
barrier secondary
must $A down r0
# Both disks started zeroed: the sequential 8 MiB (MiB 4..11) must be there, and equal.
dd if=/dev/vda bs=1M count=1 skip=8 iflag=direct status=none | cmp -s -n 1048576 - /dev/zero &&
	die "no data was written"
same_data "$((size_kib / 4 * 4))"

step "while disconnected the Primary marks exactly its writes out of sync (1 MiB scattered)"
must $A up r0
wait_status 'connection:Connected' 60
[ "$HARK_VM" = 0 ] && must $A primary r0
barrier up-again
[ "$HARK_VM" = 1 ] && must $A disconnect r0
if [ "$HARK_VM" = 0 ]; then
	wait_status 'connection:(WFConnection|NetworkFailure|Unconnected)' 30
	for i in $(seq 0 15); do
		must dd if=/dev/urandom of=/dev/rdrbd0 bs=64k count=1 seek=$((i * 28)) oflag=direct status=none
	done
	wait_status 'out-of-sync:1024KiB' 1
	must $A secondary r0
fi
barrier disconnected-writes
must $A down r0
must rmmod drbd_rs
step "done"
