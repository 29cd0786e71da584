# vms: 1
# timeout: 180
# The KUnit suite inside drbd_rs runs when the module loads; its results must all pass.
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
step "done"
