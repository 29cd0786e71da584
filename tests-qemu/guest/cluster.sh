# SPDX-License-Identifier: GPL-2.0
# Corosync + Pacemaker in a test VM, from the host's Debian packages through the 9p root (no
# systemd): what the packages' units do, by hand. Source after lib.sh.
#
# The guest's root is a tmpfs overlay over the host's root, so every path is writable, but the
# host's own state under /var/lib/{pacemaker,corosync} shows through: each boot starts from an
# empty CIB and an empty corosync state of its own.

CLUSTER_LOG=$HARK_OUT/cluster

# cluster_conf NODE...: corosync.conf for the VMs with these indexes (knet on the test segment,
# two_node when there are two), and fence_hark installed where the fencer looks for agents.
cluster_conf() {
	local i nodes= two=
	for i in "$@"; do
		nodes+="
	node {
		name: hark-vm$i
		nodeid: $((i + 1))
		ring0_addr: 10.77.0.$((i + 1))
	}"
	done
	[ $# -eq 2 ] && two="
	two_node: 1"
	mkdir -p /etc/corosync
	cat >/etc/corosync/corosync.conf <<CONF
totem {
	version: 2
	cluster_name: hark
	transport: knet
	crypto_cipher: none
	crypto_hash: none
	token: ${CLUSTER_TOKEN_MS:-3000}
}
nodelist {$nodes
}
quorum {
	provider: corosync_votequorum$two
}
logging {
	to_stderr: no
	to_logfile: yes
	logfile: /var/log/corosync/corosync.log
	to_syslog: no
	timestamp: on
}
CONF
	install -m 755 "$HARK_TOP/ha/fence_hark" /usr/sbin/fence_hark
}

# cluster_start: a fresh CIB and corosync state, then corosync and pacemakerd in the background.
cluster_start() {
	mountpoint -q /dev/shm || { mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm; }
	rm -rf /var/lib/pacemaker /var/lib/corosync /var/log/pacemaker /var/log/corosync /run/crm
	install -d -o hacluster -g haclient -m 750 /var/lib/pacemaker \
		/var/lib/pacemaker/{cib,pengine,blackbox,cores} /var/log/pacemaker
	install -d -m 755 /var/lib/corosync /var/log/corosync
	mkdir -p "$CLUSTER_LOG"
	corosync -f >"$CLUSTER_LOG/corosync.vm$HARK_VM.b$HARK_BOOT.out" 2>&1 &
	CLUSTER_COROSYNC=$!
	until_ok 120 corosync-quorumtool -s >/dev/null || die "corosync not quorate after 120 s"
	step "corosync quorate"
	PCMK_logfile=/var/log/pacemaker/pacemaker.log pacemakerd \
		>"$CLUSTER_LOG/pacemakerd.vm$HARK_VM.b$HARK_BOOT.out" 2>&1 &
	CLUSTER_PACEMAKERD=$!
}

# cluster_online N SECONDS: crm_mon shows N nodes online within SECONDS.
cluster_online() {
	local want=$1 end=$((SECONDS + $2)) l
	while [ "$SECONDS" -lt "$end" ]; do
		l=$(crm_mon -1 2>/dev/null | grep -E '^  \* Online: \[')
		if [ -n "$l" ]; then
			l=${l#*[}
			l=${l%]*}
			# shellcheck disable=SC2086
			set -- $l
			[ $# -ge "$want" ] && return 0
		fi
		nap 1
	done
	return 1
}

# cluster_stop: pacemakerd (which stops its daemons), then corosync; logs kept in $CLUSTER_LOG.
cluster_stop() {
	[ -n "${CLUSTER_PACEMAKERD:-}" ] && kill -TERM "$CLUSTER_PACEMAKERD" 2>/dev/null &&
		until_ok 60 eval '! kill -0 $CLUSTER_PACEMAKERD 2>/dev/null'
	corosync-cfgtool -H --force >/dev/null 2>&1
	until_ok 30 eval '! kill -0 $CLUSTER_COROSYNC 2>/dev/null'
	cluster_save_logs
}

cluster_save_logs() {
	cp /var/log/pacemaker/pacemaker.log "$CLUSTER_LOG/pacemaker.vm$HARK_VM.b$HARK_BOOT.log" 2>/dev/null
	cp /var/log/corosync/corosync.log "$CLUSTER_LOG/corosync.vm$HARK_VM.b$HARK_BOOT.log" 2>/dev/null
	true
}
