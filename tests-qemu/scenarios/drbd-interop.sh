# vms: 2
# timeout: 600
# disk: 64M
# drbd_rs (vm0) <-> the kernel's C DRBD 8.4 configured by Debian's drbdadm-84 (vm1): both
# sides agree protocol 101, exchange P_PROTOCOL / P_SYNC_PARAM89 / P_SIZES / P_UUIDS / P_STATE
# and reach Connected (fresh metadata on both: no sync); roles travel both ways (a C Primary
# asks us with P_STATE_CHG_REQ); pings keep the idle link up; disconnect and reconnect from
# either side; the C driver logs no protocol error.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
A=$RDRBDADM
NET="net { protocol C; connect-int 2; ping-int 2; ping-timeout 5; timeout 10; }"
c_state() { cat /proc/drbd 2>/dev/null | grep -o 'cs:[A-Za-z]* ro:[A-Za-z]*/[A-Za-z]* ds:[A-Za-z]*/[A-Za-z]*'; }
wait_c() {  # regex, seconds
	local i
	for i in $(seq 1 $(($2 * 5))); do c_state | grep -Eq "$1" && return 0; sleep 0.2; done
	cat /proc/drbd
	die "C DRBD did not reach /$1/ within $2 s"
}

if [ "$HARK_VM" = 0 ]; then
	write_drbd_conf "$NET"
	must $A create-md r0
	must insmod "$(ko drbd_rs)"
else
	mkdir -p /var/lib/drbd /var/run/drbd /run/drbd
	cat > /etc/drbd.conf <<CONF
global { usage-count no; }
resource r0 {
  device /dev/drbd0;
  disk /dev/vda;
  meta-disk internal;
  $NET
  on hark-vm0 { address 10.77.0.1:7789; }
  on hark-vm1 { address 10.77.0.2:7789; }
}
CONF
	must insmod "$HARK_KBUILD/lib/lru_cache.ko"
	must insmod "$HARK_KBUILD/drivers/block/drbd/drbd.ko"
	head -1 /proc/drbd
	must drbdmeta --force 0 v08 /dev/vda internal create-md
	DA() { /lib/drbd/drbdadm-84 -c /etc/drbd.conf "$@"; }
fi
barrier ready

step "up on both: Connected, agreed protocol 101"
if [ "$HARK_VM" = 0 ]; then
	must $A up r0
	wait_status 'connection:Connected protocol:C peer-role:Secondary peer-disk:Inconsistent' 90
	dmesg | grep -q 'agreed network protocol version 101' || die "no agreed version 101"
	dmesg | grep 'sync handshake'
else
	must DA up r0
	wait_c 'cs:Connected ro:Secondary/Secondary ds:Inconsistent/Inconsistent' 90
	dmesg | grep -q 'Agreed network protocol version 101' || die "C DRBD did not agree 101"
	c_state
fi
barrier connected

step "idle link stays up (ping-int 2 s)"
sleep 8
if [ "$HARK_VM" = 0 ]; then
	wait_status 'connection:Connected' 1
else
	wait_c 'cs:Connected' 1
	dmesg | grep -q 'PingAck did not arrive' && die "C DRBD missed a PingAck on an idle link"
fi
barrier idle

step "disconnect from the C side, then from ours; both reconnect"
[ "$HARK_VM" = 1 ] && must DA disconnect r0
[ "$HARK_VM" = 0 ] && wait_status 'connection:(WFConnection|NetworkFailure|Unconnected)' 30
[ "$HARK_VM" = 0 ] && { dmesg | grep -q 'peer disconnects' || die "graceful disconnect not seen"; }
barrier c-disconnected
[ "$HARK_VM" = 1 ] && must DA connect r0
if [ "$HARK_VM" = 0 ]; then wait_status 'connection:Connected' 60; else wait_c 'cs:Connected' 60; fi
barrier c-reconnected
[ "$HARK_VM" = 0 ] && must $A disconnect r0
[ "$HARK_VM" = 1 ] && wait_c 'cs:WFConnection' 30
barrier rs-disconnected
[ "$HARK_VM" = 0 ] && must $A connect r0
if [ "$HARK_VM" = 0 ]; then wait_status 'connection:Connected' 60; else wait_c 'cs:Connected' 60; fi
barrier rs-reconnected

step "the C node becomes Primary (P_STATE_CHG_REQ to us) and Secondary again"
# (Last: its forced promotion makes its data newer than ours, and resync does not exist yet.)
if [ "$HARK_VM" = 1 ]; then
	must DA primary --force r0
	wait_c 'cs:Connected ro:Primary/Secondary ds:UpToDate/' 20
	c_state
else
	wait_status 'peer-role:Primary peer-disk:UpToDate' 30
	dmesg | grep -q 'peer requests a state change .*: Success' || die "no P_STATE_CHG_REQ answered"
fi
barrier c-primary
[ "$HARK_VM" = 1 ] && must DA secondary r0
[ "$HARK_VM" = 0 ] && wait_status 'peer-role:Secondary' 30
barrier c-secondary

step "the C driver logged no protocol error"
if [ "$HARK_VM" = 1 ]; then
	dmesg | grep -E 'drbd r0' | tail -40
	if dmesg | grep -Ei 'drbd.*(protocol error|unexpected|incompatible|error receiving|expected .* packet|unknown packet|bad packet|magic|refused by peer)'; then
		die "C DRBD logged a protocol problem"
	fi
fi
barrier checked

step "down on both"
if [ "$HARK_VM" = 0 ]; then
	must $A down r0
	must rmmod drbd_rs
else
	must DA down r0
	must rmmod drbd
fi
step "done"
