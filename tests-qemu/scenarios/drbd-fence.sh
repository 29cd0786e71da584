# vms: 2
# timeout: 1200
# disk: 16M
# Fencing (issue 14 item 6): `disk { fencing resource-only; }` and `handlers { fence-peer;
# unfence-peer; }`. Connected, vm0 Primary; the test bed cuts vm1's link: vm0 runs fence-peer
# (a script recording its arguments and environment, exit 4) and shows peer-disk:Outdated.
# Meanwhile vm1, whose fence-peer exits 6 (peer is Primary), is refused promotion with
# SS_PRIMARY_NOP and stays Secondary. Link up: vm0 resyncs vm1 as source, then runs
# unfence-peer. resource-and-stonith is refused at configuration time. `rdrbdadm outdate` is
# refused while connected and on a Primary, and outdates a disconnected Secondary.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
A=$RDRBDADM
# A ping-timeout of 5 s: a loaded TCG host must not end the session by itself.
NET="net { protocol C; connect-int 2; ping-int 5; ping-timeout 50; timeout 40; }"
FENCE="disk { fencing resource-only; }
  handlers { fence-peer \"/tmp/fence.sh\"; unfence-peer \"/tmp/unfence.sh --unfence\"; }"
cat > /tmp/fence.sh <<'SH'
#!/bin/sh
{ echo "ARGS=$*"; env | grep '^DRBD_' | sort; } > /tmp/fence.env
exit "$(cat /tmp/fence.rc)"
SH
cat > /tmp/unfence.sh <<'SH'
#!/bin/sh
{ echo "ARGS=$*"; env | grep '^DRBD_' | sort; } > /tmp/unfence.env
SH
chmod 755 /tmp/fence.sh /tmp/unfence.sh
echo 4 > /tmp/fence.rc

write_drbd_conf "$NET
  $FENCE"
must $A create-md r0
must insmod "$(ko drbd_rs)"

step "resource-and-stonith is refused at configuration time"
write_drbd_conf "$NET
  disk { fencing resource-and-stonith; }"
out=$($A up r0 2>&1) && die "up with resource-and-stonith succeeded"
echo "$out"
grep -q 'resource-and-stonith is not supported' <<<"$out" || die "no clear refusal"
[ -z "$($A status 2>/dev/null)" ] || die "a resource was created"
write_drbd_conf "$NET
  $FENCE"

step "up: Connected; vm0 forced Primary, full sync"
drbd_pair_forced_sync
if [ "$HARK_VM" = 0 ]; then
	# 8.4 runs unfence-peer after every resync as source that leaves both disks UpToDate.
	until_ok 60 test -s /tmp/unfence.env || die "unfence-peer did not run after the full sync"
	rm /tmp/unfence.env
fi
# During the full sync the peer is Inconsistent: a session lost then is not fenced (8.4).
if [ -e /tmp/fence.env ]; then
	dmesg_has 'r0: connection NetworkFailure' || die "fence-peer ran while connected"
	die "the session was lost before the link was cut (host too slow?)"
fi

step "link down: vm0 fences its peer (exit 4: peer-disk Outdated); vm1 may not promote (exit 6)"
if [ "$HARK_VM" = 0 ]; then
	must harkctl link down 1
	must harkctl set cut 1 >/dev/null
	wait_status 'role:Primary.*connection:(NetworkFailure|Unconnected|WFConnection).*peer-disk:Outdated' 120
	$A status r0
	cat /tmp/fence.env
	for want in ARGS=r0 DRBD_RESOURCE=r0 DRBD_MINOR=0 DRBD_VOLUME=0 DRBD_PEER_ADDRESS=10.77.0.2 \
		DRBD_PEER_AF=ipv4 DRBD_MY_ADDRESS=10.77.0.1 DRBD_MY_AF=ipv4; do
		grep -qx "$want" /tmp/fence.env || die "fence-peer environment lacks $want"
	done
	dmesg_has 'r0: fence-peer helper returned 4 \(peer was fenced\)' || die "exit code 4 not logged"
	# Writes while the peer is fenced: out of sync, resynced after the link is back.
	must dd if=/dev/urandom of=/dev/rdrbd0 bs=4k count=64 oflag=direct status=none
	must harkctl wait vm1-refused 300 >/dev/null
	[ "$(dmesg | grep -c "helper command: /tmp/fence.sh r0")" = 1 ] ||
		die "fence-peer ran more than once"
	must harkctl link up 1
else
	must harkctl wait cut 300 >/dev/null
	wait_status 'role:Secondary.*connection:(NetworkFailure|Unconnected|WFConnection)' 120
	[ -e /tmp/fence.env ] && die "a Secondary ran fence-peer"
	echo 6 > /tmp/fence.rc
	out=$($A primary r0 2>&1) && die "promotion succeeded though fence-peer said: peer is Primary"
	echo "$out"
	grep -q 'SS_PRIMARY_NOP' <<<"$out" || die "no SS_PRIMARY_NOP in the refusal"
	grep -qx DRBD_PEER_ADDRESS=10.77.0.1 /tmp/fence.env || die "vm1's fence-peer did not run"
	dmesg_has 'r0: fence-peer helper returned 6 \(peer is active\)' || die "exit code 6 not logged"
	status_is 'role:Secondary' || die "vm1 is not Secondary"
	must harkctl set vm1-refused 1 >/dev/null
fi

step "link up: vm0 resyncs vm1, then runs unfence-peer"
wait_status 'connection:Connected.*peer-disk:UpToDate' 300
wait_status ' disk:UpToDate size.*out-of-sync:0KiB' 60
if [ "$HARK_VM" = 0 ]; then
	until_ok 60 test -s /tmp/unfence.env || die "unfence-peer did not run"
	cat /tmp/unfence.env
	grep -qx 'ARGS=--unfence r0' /tmp/unfence.env || die "unfence-peer arguments"
	grep -qx DRBD_PEER_ADDRESS=10.77.0.2 /tmp/unfence.env || die "unfence-peer environment"
	dmesg_has 'r0: resync done as SyncSource' || die "no resync as source"
else
	[ -e /tmp/unfence.env ] && die "the sync target ran unfence-peer"
fi
barrier resynced

step "outdate: refused while connected and while Primary; a disconnected Secondary is Outdated"
if [ "$HARK_VM" = 1 ]; then
	out=$($A outdate r0 2>&1) && die "outdate succeeded while connected"
	grep -q 'SS_CONNECTED_OUTDATES' <<<"$out" || die "outdate while connected: $out"
fi
barrier outdate-connected
must $A disconnect r0
if [ "$HARK_VM" = 0 ]; then
	out=$($A outdate r0 2>&1) && die "outdate succeeded on a Primary"
	grep -q 'SS_NO_UP_TO_DATE_DISK' <<<"$out" || die "outdate while Primary: $out"
	must $A secondary r0
else
	must $A outdate r0
	wait_status ' disk:Outdated' 10
	must $A outdate r0 # already Outdated: fine
	out=$($A primary r0 2>&1) && die "an Outdated node became Primary"
	grep -q 'EROFS' <<<"$out" || die "promotion of an Outdated disk: $out"
fi
barrier outdated

step "down"
must $A down r0
must rmmod drbd_rs
step "done"
