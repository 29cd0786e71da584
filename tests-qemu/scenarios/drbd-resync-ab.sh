# vms: 2
# timeout: 1200
# disk: 72M
# disk-random: 0
# drbd-resync, short, with replication protocols A and B: initial full sync of the 72 MiB disk
# of random data and fio verify writes with protocol A, roles swapped, fio again; then both
# reconnect with protocol B, fio verify writes on vm1, roles swapped back, fio on vm0; md5 of
# both data areas after the full sync and at the end.
export HARK_DRBD_PROTOCOL=A
export HARK_DRBD_PROTOCOL2=B
export HARK_DRBD_SHORT=1
. "$HARK_SCENARIO_DIR/drbd-resync.sh"
