# vms: 2
# timeout: 900
# disk: 72M
# disk-random: 0
# drbd-resync, short, with replication protocol B: initial full sync of the 72 MiB disk of
# random data, fio verify writes, roles swapped, fio again; md5 of both data areas after each.
export HARK_DRBD_PROTOCOL=B
export HARK_DRBD_SHORT=1
. "$HARK_SCENARIO_DIR/drbd-resync.sh"
