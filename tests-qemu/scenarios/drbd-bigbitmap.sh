# vms: 2
# timeout: 1500
# disk: 64M
# drbd_rs with a 1 TiB lower device (issue 13): a thin device-mapper stack, 1 TiB of dm-zero
# followed by the 64 MiB scratch disk, which holds the internal metadata (32 MiB of bitmap).
# `primary --force` while connected makes a full sync: each node sends the other its whole
# bitmap (2^28 set bits, one RLE packet) and merges the other's. The merge is word-wise, in
# slices of the bitmap lock (interrupts off) of 2^20 bits, with a running count; each node logs
# the time it took and its longest slice, and the longest slice must stay below 100 ms.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
A=$RDRBDADM
# The longest hold of the bitmap lock allowed while merging, in microseconds.
MAX_SLICE_US=100000

step "lower device: 1 TiB of zeros, then /dev/vda (metadata)"
zero=$((1 << 31))
vda=$(cat /sys/block/vda/size)
printf '0 %d zero\n%d %d linear /dev/vda 0\n' "$zero" "$zero" "$vda" | must dmsetup create hark-big
must dmsetup mknodes hark-big
dmsetup table hark-big
write_drbd_conf "net { protocol C; connect-int 2; ping-int 10; ping-timeout 50; timeout 90; }
  disk { resync-rate 1M; c-plan-ahead 0; }"
sed -i 's|disk /dev/vda;|disk /dev/mapper/hark-big;|' /etc/hark/drbd.conf
t0=$SECONDS
must $A create-md r0
echo "vm$HARK_VM: create-md of the 1 TiB device took $((SECONDS - t0)) s"
must insmod "$(ko drbd_rs)"
barrier ready
t0=$SECONDS
must $A up r0
echo "vm$HARK_VM: up (attach reads 32 MiB of bitmap) took $((SECONDS - t0)) s"
wait_status 'connection:Connected' 120
$A status r0
barrier connected

step "full sync: both bitmaps of 2^28 bits cross"
t0=$SECONDS
[ "$HARK_VM" = 0 ] && must $A primary --force r0
wait_status 'connection:(SyncSource|SyncTarget)' 600
echo "vm$HARK_VM: from primary --force to the resync: $((SECONDS - t0)) s"
$A status r0
line=$(dmesg | grep 'received bitmap:' | tail -1)
echo "vm$HARK_VM: $line"
[[ $line =~ received\ bitmap:\ ([0-9]+)\ KiB\ out\ of\ sync\ \(([0-9]+)\ packets\ in\ ([0-9]+)\ ms,\ longest\ slice\ under\ the\ bitmap\ lock\ ([0-9]+)\ us ]] ||
	die "no bitmap receive log line"
kib=${BASH_REMATCH[1]} us=${BASH_REMATCH[4]}
# Every 4 KiB block of the data area (1 TiB and some 30 MiB of /dev/vda) is out of sync.
[ "$kib" -ge $((1 << 30)) ] && [ "$kib" -le $(((1 << 30) + 65536)) ] || die "$kib KiB out of sync"
[ "$us" -le "$MAX_SLICE_US" ] || die "a slice held the bitmap lock for $us us"
barrier measured

step "disconnect and down"
must $A disconnect r0
[ "$HARK_VM" = 0 ] && must $A secondary r0
barrier disconnected
t0=$SECONDS
must $A down r0
echo "vm$HARK_VM: down (writes the bitmap) took $((SECONDS - t0)) s"
must rmmod drbd_rs
must dmsetup remove hark-big
step "done"
