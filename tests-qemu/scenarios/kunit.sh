# vms: 1
# timeout: 180
# The KUnit suites inside drbd_rs and ktcpvs_rs run when the modules load; their results must all
# pass.
. "$HARK_TOP/tests-qemu/guest/lib.sh"

# check_suite SUITE N: suite SUITE passed with N passing cases and none failing.
check_suite() {
	local results=/sys/kernel/debug/kunit/$1/results n
	[ -r "$results" ] || die "no KUnit results at $results (CONFIG_KUNIT_DEBUGFS?)"
	cat "$results"
	grep -qE "^ok [0-9]+ $1\$" "$results" || die "suite $1 did not pass"
	n=$(grep -cE '^\s+ok [0-9]+ ' "$results")
	[ "$n" -eq "$2" ] || die "$1: expected $2 passing cases, got $n"
	if grep -q 'not ok' "$results"; then die "$1: a case failed"; fi
}

step "insmod drbd_rs (runs KUnit suite drbd_rs_shared)"
must insmod "$(ko drbd_rs)"
check_suite drbd_rs_shared 3
must rmmod drbd_rs

step "insmod ktcpvs_rs (runs KUnit suite ktcpvs_rs_config)"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)"
check_suite ktcpvs_rs_config 2
dmesg | grep 'snapshots had the address' || true
must rmmod ktcpvs_rs
must rmmod ipvs_glue
step "done"
