# vms: 2
# timeout: 1200
# disk: 72M
# disk-random: 0
# drbd-resync, short, with replication protocols A and B: initial full sync of the 72 MiB disk
# of random data, fio verify writes and a 4 MiB sequential write with protocol A, roles
# swapped, fio again; then both reconnect with protocol B, fio verify and 4 MiB sequential on
# vm1, roles swapped back, fio on vm0; no write loses its ack; md5 of both data areas after the
# full sync and at the end (every write reached the peer).
export HARK_DRBD_PROTOCOL=A
export HARK_DRBD_PROTOCOL2=B
export HARK_DRBD_SHORT=1
. "$HARK_SCENARIO_DIR/drbd-resync.sh"
