#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs inside a hark test VM after the root switch: sets up the guest, runs the scenario,
# prints the result line the host harness reads, and powers the VM off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root HARK_OUT=/hark-out
cd /
for f in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do
  [ -e "/dev/${f%%:*}" ] || ln -s "${f#*:}" "/dev/${f%%:*}"
done
mount -t devpts devpts /dev/pts 2>/dev/null || { mkdir -p /dev/pts && mount -t devpts devpts /dev/pts; }
mount -t configfs configfs /sys/kernel/config 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
hostname "hark-vm$HARK_VM"
ip link set lo up
if [ "${HARK_NVM:-1}" -gt 1 ]; then
  # Jumbo frames: QEMU's socket netdev has no offloads, so under TCG the cost is per packet
  # (measured: 8 MiB over TCP in 14.7 s at MTU 1500, 1.6 s at 9000). Both ends use the same MTU.
  ip link set eth0 mtu 9000
  ip link set eth0 up && ip addr add "$HARK_IP/24" dev eth0
fi
export HARK_PEER_IPS=${HARK_PEER_IPS//,/ }
# The virtio-serial port to the harness (tests-qemu/ctl.py; lib.sh's harkctl uses it).
for f in /sys/class/virtio-ports/*/name; do
  [ -r "$f" ] && read -r n < "$f" && [ "$n" = hark.ctl ] || continue
  f=${f%/name}
  export HARK_CTL=/dev/${f##*/}
done
echo "hark-vm$HARK_VM: running scenario $HARK_SCENARIO (ip ${HARK_IP}, peers ${HARK_PEER_IPS:-none})"
bash "$HARK_SCENARIO_DIR/$HARK_SCENARIO.sh" 2>&1 | tee "$HARK_OUT/scenario.log"
rc=${PIPESTATUS[0]}
sleep 0.2
dmesg > "$HARK_OUT/dmesg.log" 2>/dev/null
sync
echo "HARK-RESULT vm=$HARK_VM rc=$rc"
sleep 0.2
# PID 1 must not exit (that panics); reboot(2) ends QEMU because of -no-reboot.
busybox reboot -f
