# vms: 2
# timeout: 1500
# disk: 16M
# drbd_rs <-> drbd_rs connection (issue 4, first part): DRBD's two sockets, the feature
# handshake (agreed protocol 101), P_PROTOCOL / P_SYNC_PARAM89 / P_SIZES / P_UUIDS / P_STATE,
# Connected on both nodes with the peer's role and disk in status and events; role changes
# reach the peer; pings keep an idle connection up; disconnect/connect and a lost peer lead
# back to WFConnection and a new session; a hostile peer (garbage, truncated, bad length,
# incompatible dialect, oversized packet, impossible state, a write past the end of the
# device, a state change request for the node's own role and a state change reply nobody asked
# for, connections from an address that is not the peer's) is refused with a log line;
# CRAM-HMAC with the same and with a different secret; a hostile sync target (resync acks it
# never requested or sent twice; a peer that stops reading while vm0 serves its requests,
# which must not stall vm0's application reads) and a hostile sync source (a negative reply to
# a request never made).
# The disk is small (16 MiB): the full sync of >= 64 MiB is drbd-resync's job.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
A=$RDRBDADM
PEER=${HARK_PEER_IPS%% *}
# ping-timeout 3 s: under TCG the initial full sync can starve a vCPU past a 0.5 s ping-ack.
write_drbd_conf "net { protocol C; connect-int 2; ping-int 3; ping-timeout 30; timeout 25; }"
must $A create-md r0
must insmod "$(ko drbd_rs)"
$A events > /tmp/events.log 2>&1 &
events=$!

step "up: both nodes listen and connect"
barrier ready
must $A up r0
wait_status 'connection:Connected protocol:C peer-role:Secondary peer-disk:Inconsistent' 60
$A status r0
grep -q 'agreed network protocol version 101' < <(dmesg) || die "no agreed version 101 in the log"
barrier connected

step "role changes reach the peer; the forced Primary's data goes to the peer (full sync)"
if [ "$HARK_VM" = 0 ]; then
	must $A primary --force r0
	wait_status 'role:Primary' 5
	wait_status 'peer-role:Secondary peer-disk:Inconsistent' 10
	wait_status 'connection:Connected protocol:C peer-role:Secondary peer-disk:UpToDate' 600
else
	wait_status 'peer-role:Primary peer-disk:UpToDate' 20
	wait_status ' disk:UpToDate size' 600
fi
barrier promoted

step "idle connection stays up (pings every 3 s)"
lost=$(dmesg | grep -c 'PingAck did not arrive' || true)
sleep 8
wait_status 'connection:Connected' 1
[ "$(dmesg | grep -c 'PingAck did not arrive' || true)" = "$lost" ] || die "a ping timed out on an idle link"
barrier idle

step "disconnect on vm1: vm1 StandAlone, vm0 back to WFConnection; connect: Connected again"
if [ "$HARK_VM" = 1 ]; then
	must $A disconnect r0
	wait_status 'connection:StandAlone' 5
fi
[ "$HARK_VM" = 0 ] && wait_status 'connection:(WFConnection|NetworkFailure|Unconnected)' 30
barrier disconnected
[ "$HARK_VM" = 1 ] && must $A connect r0
wait_status 'connection:Connected' 60
barrier reconnected

step "hostile peer: vm1 disconnects and impersonates a DRBD peer towards vm0"
if [ "$HARK_VM" = 1 ]; then
	must $A disconnect r0
fi
barrier hostile-start
if [ "$HARK_VM" = 1 ]; then
	# A second address on vm1: connections from it are not from the configured peer.
	must ip addr add 10.77.0.99/24 dev eth0
	must $PY "$HARK_TOP/tests-qemu/guest/drbd_fakepeer.py" "$PEER" 7789 \
		stranger,garbage,truncated,oversized,badstate,baddata,stchg,badlen,oldproto 10.77.0.99 --barriers
else
	expect_log() {  # mode, regex of the log line, expected state afterwards
		barrier "fake-$1"
		barrier "fake-$1-done"
		until_ok 10 dmesg_has "$2" || die "$1: no log line /$2/"
		wait_status "connection:$3" 30
		echo "vm0: $1 -> logged /$2/, $3"
	}
	wait_status 'connection:WFConnection' 30
	expect_log stranger 'r0: connection from 10\.77\.0\.99:[0-9]+ refused: not the peer 10\.77\.0\.2:7789' WFConnection
	expect_log garbage 'bad packet header' WFConnection
	expect_log truncated 'r0: handshake failed' WFConnection
	expect_log oversized 'oversized packet: 1048576 bytes of ReportProtocol' WFConnection
	expect_log badstate 'invalid peer state word 0xffffffff' WFConnection
	expect_log baddata 'P_DATA of 4120 bytes at sector 1152921504606846976 refused' WFConnection
	expect_log stchg 'r0: state change reply without a request' WFConnection
	dmesg_has 'r0: peer requests a state change \(mask 0x0000000c, val 0x00000004\): Peer does not support protocol \(SS_NOT_SUPPORTED\)' ||
		die "stchg: the node's answer was not logged"
	expect_log badlen 'expected ConnectionFeatures, received ConnectionFeatures \(0xfffe, 80 bytes\)' StandAlone
	must $A disconnect r0
	must $A connect r0
	expect_log oldproto 'incompatible DRBD dialects: I support 86-101, peer supports 80-85' StandAlone
	must $A disconnect r0
fi
barrier hostile-done

step "both connect again after the hostile peer"
must $A connect r0
wait_status 'connection:Connected' 60
[ "$HARK_VM" = 0 ] && wait_status 'peer-role:Secondary' 10
[ "$HARK_VM" = 1 ] && wait_status 'peer-role:Primary' 10
barrier final

step "CRAM-HMAC: the same secret authenticates, a different one is refused (StandAlone)"
NET='protocol C; connect-int 2; ping-int 3; ping-timeout 30; timeout 25; cram-hmac-alg sha1;'
must $A disconnect r0
write_drbd_conf "net { $NET shared-secret hark-one; }"
barrier auth-conf
must $A connect r0
wait_status 'connection:Connected' 60
grep -q 'peer authenticated using 20 bytes HMAC' < <(dmesg) || die "no authentication"
barrier auth-ok
must $A disconnect r0
[ "$HARK_VM" = 1 ] && write_drbd_conf "net { $NET shared-secret hark-two; }"
barrier auth-wrong-conf
must $A connect r0
wait_status 'connection:StandAlone' 60
grep -q 'authentication of peer failed' < <(dmesg) || die "a wrong secret was not refused"
barrier auth-refused
must $A disconnect r0
write_drbd_conf "net { $NET shared-secret hark-one; }"
barrier auth-restored
must $A connect r0
wait_status 'connection:Connected' 60
barrier auth-done

step "hostile sync target: vm1 plays a new node that vm0 fully syncs, and misbehaves"
# vm0 is Primary and UpToDate; the fake peer is UUID_JUST_CREATED, so vm0 becomes SyncSource.
# A long send timeout (60 s, so ping-int 120 s; the fake answers pings) for the slow reader.
must $A disconnect r0
barrier sync-fake-start
if [ "$HARK_VM" = 1 ]; then
	must $PY "$HARK_TOP/tests-qemu/guest/drbd_fakepeer.py" "$PEER" 7789 rsack,dupack,slowread,negreply --barriers
else
	write_drbd_conf "net { protocol C; connect-int 2; ping-int 120; ping-timeout 30; timeout 600; }"
	must $A connect r0
	wait_status 'connection:WFConnection' 30
	expect_log rsack 'r0: RSWriteAck for 65536 bytes at sector 0 that was not requested' WFConnection
	expect_log dupack 'r0: RSWriteAck for 4096 bytes at sector 0 that was not requested' WFConnection
	barrier fake-slowread
	wait_status 'connection:SyncSource' 60
	# The fake sent 64 requests of 512 KiB and reads nothing: vm0's receiver blocks in a send
	# once the socket buffers are full. Application reads must not wait for it (they did for
	# the whole send timeout while the device lock was held across the send).
	nap 8
	t0=$SECONDS
	must dd if=/dev/rdrbd0 of=/dev/null bs=4k count=1 skip=1000 iflag=direct status=none
	t=$((SECONDS - t0))
	echo "vm0: a 4 KiB read while the peer stalls the resync took ${t} s"
	[ "$t" -le $((5 * HARK_WAIT_SCALE)) ] || die "application read waited ${t} s for a slow peer"
	barrier fake-slowread-done
	wait_status 'connection:WFConnection' 120
	# As a Secondary vm0 becomes the fake's sync target (bitmap-based, 8 blocks).
	must $A secondary r0
	expect_log negreply 'r0: NegRSDReply for 4096 bytes at sector 1024 that was not requested' WFConnection
	must $A disconnect r0
fi
barrier sync-fake-done

step "events saw the connection come and go"
kill $events
grep -m 20 connection /tmp/events.log || true
grep -q 'change connection name:r0 connection:Connected role:' /tmp/events.log || die "no Connected event"
grep -q 'change connection name:r0 connection:WFConnection' /tmp/events.log || die "no WFConnection event"

step "down on both (disconnects), rmmod"
[ "$HARK_VM" = 0 ] && must $A secondary r0
barrier secondary
must $A down r0
must rmmod drbd_rs
step "done"
