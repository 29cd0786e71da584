# vms: 3
# timeout: 900
# The test bed's faults, judged by the harness: three VMs on one switched segment; vm2 pings
# vm0 and vm1, power-cuts vm0 and boots it again on the same disk while vm1 and vm2 keep
# running, cuts vm1's link for 10 s and restores it, then delays and drops vm1's frames. The
# power cut and the boot go through the fence agent ha/fence_hark (as Pacemaker calls it: key=value
# lines on stdin, and its command line).
# disk: 16M
. "$HARK_TOP/tests-qemu/guest/lib.sh"

alive() { busybox ping -c 1 -W 2 "$1" >/dev/null 2>&1; }
# The round trip of one ping to $1, in whole milliseconds (empty if none came back).
rtt_ms() {
	local out
	out=$(busybox ping -c 1 -W 5 "$1" 2>/dev/null) || return 0
	[[ $out =~ time=([0-9]+) ]] && echo "${BASH_REMATCH[1]}"
}

case "$HARK_VM" in
0)
	if [ "$HARK_BOOT" = 1 ]; then
		step "boot 1: writing a mark on the disk, then waiting to be powered off"
		echo "boot1-mark" | dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null
		must harkctl set vm0-boot1 up
		harkctl wait never 900 || true
		die "boot 1 was not powered off"
	fi
	step "boot $HARK_BOOT: the disk survived the power cut"
	read -r mark < /dev/vda || true
	[ "$mark" = boot1-mark ] || die "disk mark after the power cut: '$mark'"
	must harkctl set "vm0-boot$HARK_BOOT" up
	must harkctl wait done 900 >/dev/null
	;;
1)
	must harkctl set vm1 up
	must harkctl wait done 900 >/dev/null
	;;
2)
	must harkctl wait vm0-boot1 300 >/dev/null
	must harkctl wait vm1 300 >/dev/null
	vm0=10.77.0.1 vm1=10.77.0.2
	step "ping vm0 and vm1"
	until_ok 30 alive $vm0 || die "vm0 does not answer"
	until_ok 30 alive $vm1 || die "vm1 does not answer"

	fence=$HARK_TOP/ha/fence_hark
	step "fence agent: list, status, then power-cut vm0"
	[ "$("$fence" -o list | tr '\n' ' ')" = "0,hark-vm0 1,hark-vm1 2,hark-vm2 " ] ||
		die "fence_hark list: $("$fence" -o list)"
	"$fence" -o status -n hark-vm0 || die "fence_hark status of vm0: exit $? (0 = on)"
	"$fence" -o metadata | grep -q '<action name="reboot"' || die "fence_hark metadata"
	printf 'action=off\nplug=hark-vm0\nnodename=hark-vm0\n' | "$fence" ||
		die "fence_hark off: exit $?"
	rc=0
	"$fence" -o status -n 0 || rc=$?
	[ "$rc" = 2 ] || die "fence_hark status after off: exit $rc (2 = off)"
	[ "$(harkctl power status 0)" = off ] || die "vm0 still on after the power cut"
	printf 'action=off\nport=0\n' | "$fence" || die "fence_hark off of an off VM: exit $?"
	alive $vm0 && die "vm0 answers after its power cut"
	alive $vm1 || die "vm1 stopped answering when vm0 was cut"
	step "boot vm0 again"
	"$fence" -o on -n 0 || die "fence_hark on: exit $?"
	must harkctl wait vm0-boot2 600 >/dev/null
	until_ok 30 alive $vm0 || die "vm0 does not answer after its reboot"
	alive $vm1 || die "vm1 stopped answering"

	step "cut vm1's link for 10 s"
	must harkctl link down 1
	end=$((SECONDS + 10))
	n=0
	while [ "$SECONDS" -lt "$end" ]; do
		alive $vm1 && die "vm1 answered while its link was cut"
		n=$((n + 1))
	done
	alive $vm0 || die "vm0 stopped answering while vm1 was cut"
	step "$n pings lost in 10 s; restoring the link"
	must harkctl link up 1
	until_ok 10 alive $vm1 || die "vm1 does not answer after its link came back"

	base=$(rtt_ms $vm1)
	step "delay vm1's frames by 300 ms (round trip before: ${base:-?} ms)"
	must harkctl link delay 1 300
	slow=$(rtt_ms $vm1)
	[ -n "$slow" ] && [ "$slow" -ge 600 ] || die "round trip with 2 x 300 ms of delay: '${slow}' ms"
	must harkctl link delay 1 0
	step "round trip with the delay: $slow ms; now 100% loss"
	must harkctl link loss 1 100
	alive $vm1 && die "vm1 answered through 100% loss"
	must harkctl link loss 1 0
	until_ok 10 alive $vm1 || die "vm1 does not answer after the loss ended"
	must harkctl set done yes
	;;
esac
step "done"
