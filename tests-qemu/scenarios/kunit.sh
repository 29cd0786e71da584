# vms: 1
# timeout: 180
# The KUnit suites inside drbd_rs and ktcpvs_rs run when the modules load; their results must all
# pass.
. "$HARK_TOP/tests-qemu/guest/lib.sh"

step "insmod drbd_rs (runs KUnit suite drbd_rs_shared)"
must insmod "$(ko drbd_rs)"
results=/sys/kernel/debug/kunit/drbd_rs_shared/results
[ -r "$results" ] || die "no KUnit results at $results (CONFIG_KUNIT_DEBUGFS?)"
cat "$results"
grep -q '^ok 1 drbd_rs_shared' "$results" || die "suite did not pass"
n=$(grep -cE '^\s+ok [0-9]+ ' "$results")
[ "$n" -eq 3 ] || die "expected 3 passing cases, got $n"
if grep -q 'not ok' "$results"; then die "a case failed"; fi
must rmmod drbd_rs

step "insmod ktcpvs_rs (runs KUnit suite ktcpvs_rs_config)"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)"
results=/sys/kernel/debug/kunit/ktcpvs_rs_config/results
[ -r "$results" ] || die "no KUnit results at $results"
cat "$results"
grep -qE '^ok [0-9]+ ktcpvs_rs_config' "$results" || die "suite ktcpvs_rs_config did not pass"
n=$(grep -cE '^\s+ok [0-9]+ ' "$results")
[ "$n" -eq 2 ] || die "expected 2 passing ktcpvs_rs cases, got $n"
if grep -q 'not ok' "$results"; then die "a ktcpvs_rs case failed"; fi
dmesg | grep 'snapshots had the address' || true
must rmmod ktcpvs_rs
must rmmod ipvs_glue
step "done"
