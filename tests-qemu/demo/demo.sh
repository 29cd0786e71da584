# vms: 1
# timeout: 400
# disk: 64M
# The demo: hark's modules in a VM, and drbd_rs on one node driven by rdrbdadm.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
show() { echo; echo "\$ $*"; "$@"; }
show uname -r
show insmod "$(ko ipvs_glue)"
show insmod "$(ko drbd_rs)"
show insmod "$(ko ktcpvs_rs)"
show grep -E '^(ipvs_glue|drbd_rs|ktcpvs_rs) ' /proc/modules
show cat /sys/kernel/config/ktcpvs/version
show cat /sys/kernel/debug/kunit/drbd_rs_shared/results

write_drbd_conf "net { protocol C; }"
show cat /etc/hark/drbd.conf
A=$RDRBDADM
show "$A" create-md r0
show "$A" dump-md r0
show "$A" up r0
show "$A" status r0
echo; echo "\$ dd if=/dev/zero of=/dev/rdrbd0 count=1   # a Secondary refuses writers"
dd if=/dev/zero of=/dev/rdrbd0 count=1 || true
echo; echo "\$ $A primary r0                           # no UpToDate data yet"
"$A" primary r0 || true
show "$A" primary --force r0
show "$A" status --json
echo; echo "\$ echo 'hello from drbd_rs' | dd of=/dev/rdrbd0 oflag=direct,sync conv=sync"
echo 'hello from drbd_rs' | dd of=/dev/rdrbd0 bs=512 oflag=direct,sync conv=sync 2>/dev/null
echo; echo "\$ dd if=/dev/vda bs=512 count=1 | head -c 19   # the lower device has it"
dd if=/dev/vda bs=512 count=1 iflag=direct 2>/dev/null | head -c 19; echo
show "$A" secondary r0
show "$A" down r0
show "$A" dump-md r0
echo; echo "\$ dmesg | grep -E 'ipvs_glue|drbd_rs|ktcpvs_rs'"
dmesg | grep -E 'ipvs_glue|drbd_rs|ktcpvs_rs'
show rmmod ktcpvs_rs drbd_rs ipvs_glue
