# vms: 1
# timeout: 400
# Load and unload all three modules; check metadata, parameters, the Rust->C call and the
# configfs subsystem; check that bad parameters and a wrong unload order are refused.
. "$HARK_TOP/tests-qemu/guest/lib.sh"

step "ktcpvs_rs needs ipvs_glue: loading it alone fails"
must_fail insmod "$(ko ktcpvs_rs)" 2>/dev/null

step "insmod all three"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko drbd_rs)"
must insmod "$(ko ktcpvs_rs)"
for m in ipvs_glue drbd_rs ktcpvs_rs; do
  grep -q "^$m " /proc/modules || die "$m not in /proc/modules"
  [ "$(cat /sys/module/$m/version)" = "0.1.0" ] || die "$m: wrong version"
done
# Rust module parameters are not exposed in sysfs (permission 0); the load lines show them.
grep -q 'drbd_rs: loaded: minor_count=32,' < <(dmesg) || die "minor_count default not in load line"

step "the Rust->C path: ktcpvs_rs reports IPVS's version through ipvs_glue"
v=$(cat /sys/kernel/config/ktcpvs/version)
echo "configfs version: $v"
[ "$v" = "ktcpvs_rs 0.1.0 ipvs 1.2.1" ] || die "unexpected version attribute '$v'"
grep -q 'ktcpvs_rs: loaded: max_services=64, IPVS 1.2.1 via ipvs_glue' < <(dmesg) || die "no load line"
[ "$(awk '$1=="ipvs_glue"{print $3}' /proc/modules)" = 1 ] || die "ipvs_glue refcount should be 1"
must_fail rmmod ipvs_glue 2>/dev/null
must "$RTCPVSADM" probe
must "$RDRBDADM" status

step "rmmod in order"
must rmmod ktcpvs_rs
[ ! -e /sys/kernel/config/ktcpvs ] || die "configfs subsystem left behind"
must_fail "$RTCPVSADM" probe >/dev/null
must rmmod drbd_rs
must_fail "$RDRBDADM" status 2>/dev/null
must rmmod ipvs_glue
grep -q 'drbd_rs: unloaded' < <(dmesg) || die "no unload line"

step "bad parameters are refused with a log line"
must_fail insmod "$(ko drbd_rs)" minor_count=0 2>/dev/null
grep -q 'minor_count=0 is out of range' < <(dmesg) || die "no log line for minor_count=0"
must insmod "$(ko ipvs_glue)"
must_fail insmod "$(ko ktcpvs_rs)" max_services=100000 2>/dev/null
grep -q 'max_services=100000 is out of range' < <(dmesg) || die "no log line for max_services"
must rmmod ipvs_glue

step "parameters are taken"
must insmod "$(ko drbd_rs)" minor_count=7
grep -q 'drbd_rs: loaded: minor_count=7,' < <(dmesg) || die "minor_count=7 not taken"
must rmmod drbd_rs

step "load/unload 5 more times"
for i in 1 2 3 4 5; do
  insmod "$(ko ipvs_glue)" && insmod "$(ko drbd_rs)" && insmod "$(ko ktcpvs_rs)" || die "load $i"
  rmmod ktcpvs_rs && rmmod drbd_rs && rmmod ipvs_glue || die "unload $i"
done
step "done"
