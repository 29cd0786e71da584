# vms: 2
# timeout: 1200
# disk: 16M
# Cluster-wide promotion (issue 14 item 1): while Connected, `primary` asks the peer
# (P_STATE_CHG_REQ / P_STATE_CHG_REPLY). With vm0 Primary, vm1's promotion (with and without
# --force) fails with SS_TWO_PRIMARIES and vm1 stays Secondary; after vm0 demotes, vm1's
# promotion goes through the peer (vm0 logs the granted request and shows peer-role:Primary),
# and now vm0's is refused. Disconnected, promotion is local and works. A peer asking a Primary
# node to become Primary too gets SS_TWO_PRIMARIES (hostile peer `promote`).
# allow-two-primaries is refused at configuration time by rdrbdadm and by the kernel.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
A=$RDRBDADM
PEER=${HARK_PEER_IPS%% *}
NET="net { protocol C; connect-int 2; ping-int 3; ping-timeout 30; timeout 25; }"
write_drbd_conf "$NET"
must $A create-md r0
must insmod "$(ko drbd_rs)"

step "allow-two-primaries is refused: by rdrbdadm's configuration check and by the kernel"
write_drbd_conf "net { protocol C; allow-two-primaries yes; }"
out=$($A up r0 2>&1) && die "up with allow-two-primaries succeeded"
echo "$out"
grep -q 'allow-two-primaries .yes. is not supported: drbd_rs has no dual-primary mode' <<<"$out" ||
	die "no clear refusal of allow-two-primaries"
[ -z "$($A status 2>/dev/null)" ] || die "a resource was created"
write_drbd_conf "$NET"
# connect with the allow-two-primaries flag (31) over raw netlink, to a bare resource:
# addresses 10.77.0.1:7789 (refused before they are used).
G() { $PY "$HARK_TOP/tests-qemu/guest/genl.py" cmd drbd_rs "$@" || true; }
ADDR=02006d1e0a4d0001000000000000000000000000
G 2 1=str:r0 | grep -q 'result: 0' || die "new-resource failed"
out=$(G 11 1=str:r0 12=raw:$ADDR 13=raw:$ADDR 31=flag:)
echo "$out"
grep -q 'EINVAL.*allow-two-primaries is not supported' <<<"$out" || die "kernel accepted allow-two-primaries"
G 3 1=str:r0 | grep -q 'result: 0' || die "del-resource failed"

step "up: Connected; vm0 forced Primary, full sync"
drbd_pair_forced_sync

step "vm1: promotion refused with SS_TWO_PRIMARIES (with and without --force), stays Secondary"
if [ "$HARK_VM" = 1 ]; then
	for f in "" --force; do
		out=$($A primary $f r0 2>&1) && die "primary $f succeeded while the peer is Primary"
		echo "$out"
		grep -q 'EBUSY.*SS_TWO_PRIMARIES: Multiple primaries not allowed by config' <<<"$out" ||
			die "primary $f: no SS_TWO_PRIMARIES in the error"
	done
	$A status r0
	status_is 'role:Secondary.*disk:UpToDate.*peer-role:Primary' || die "vm1 is not Secondary"
fi
barrier refused
[ "$HARK_VM" = 0 ] && { status_is 'role:Primary.*peer-role:Secondary' || die "vm0 lost its role"; }

step "vm0 demotes; vm1's promotion goes through the peer; now vm0's is refused"
[ "$HARK_VM" = 0 ] && must $A secondary r0
barrier demoted
if [ "$HARK_VM" = 1 ]; then
	wait_status 'role:Secondary.*peer-role:Secondary' 30
	must $A primary r0
	wait_status 'role:Primary.*disk:UpToDate.*connection:Connected.*peer-role:Secondary' 10
	dmesg_has 'r0: asking the peer: become Primary \(mask 0x00000003, val 0x00000001\)' ||
		die "the promotion did not ask the peer"
fi
barrier promoted
if [ "$HARK_VM" = 0 ]; then
	wait_status 'role:Secondary.*peer-role:Primary' 30
	dmesg_has 'r0: peer requests a state change \(mask 0x00000003, val 0x00000001\): Success' ||
		die "the peer's request was not logged as granted"
	out=$($A primary r0 2>&1) && die "vm0 promoted while vm1 is Primary"
	grep -q 'SS_TWO_PRIMARIES' <<<"$out" || die "vm0: no SS_TWO_PRIMARIES: $out"
	status_is 'role:Secondary' || die "vm0 is not Secondary"
fi
barrier refused-back

step "disconnected, promotion is local and works"
if [ "$HARK_VM" = 1 ]; then
	must $A secondary r0
	# vm1 stays away from here on: vm0 keeps waiting for a peer (WFConnection).
	must $A disconnect r0
fi
barrier secondary
if [ "$HARK_VM" = 0 ]; then
	must $A disconnect r0
	must $A primary r0
	wait_status 'role:Primary.*disk:UpToDate.*connection:StandAlone' 10
	must $A connect r0
	wait_status 'role:Primary.*connection:WFConnection' 30
fi
barrier local-primary

step "hostile peer asks the Primary vm0 to become Primary too: SS_TWO_PRIMARIES"
if [ "$HARK_VM" = 1 ]; then
	barrier fake-promote
	must $PY "$HARK_TOP/tests-qemu/guest/drbd_fakepeer.py" "$PEER" 7789 promote
	barrier fake-promote-done
else
	barrier fake-promote
	barrier fake-promote-done
	until_ok 10 dmesg_has 'r0: peer requests a state change \(mask 0x00000003, val 0x00000001\): Multiple primaries not allowed by config \(SS_TWO_PRIMARIES\)' ||
		die "the refusal was not logged"
	wait_status 'role:Primary.*connection:WFConnection' 30
	must $A secondary r0
fi
barrier hostile-done

step "down"
must $A down r0
must rmmod drbd_rs
step "done"
