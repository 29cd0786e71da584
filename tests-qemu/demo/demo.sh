# vms: 1
# timeout: 240
# The demo: load hark's modules in a VM and show what they expose today.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
show() { echo; echo "\$ $*"; "$@"; }
show uname -r
show insmod "$(ko ipvs_glue)"
show insmod "$(ko drbd_rs)"
show insmod "$(ko ktcpvs_rs)"
show grep -E '^(ipvs_glue|drbd_rs|ktcpvs_rs) ' /proc/modules
show modinfo -F version "$(ko drbd_rs)"
show modinfo -F parm "$(ko drbd_rs)"
show cat /sys/kernel/config/ktcpvs/version
show "$RDRBDADM" family
show "$RTCPVSADM" probe
show cat /sys/kernel/debug/kunit/drbd_rs_shared/results
echo; echo "\$ dmesg | grep -E 'ipvs_glue|drbd_rs|ktcpvs_rs'"
dmesg | grep -E 'ipvs_glue|drbd_rs|ktcpvs_rs'
show rmmod ktcpvs_rs drbd_rs ipvs_glue
