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

# The daemons' programs and libraries read once into the page cache (the host root is 9p with
# cache=loose): pacemakerd starts six daemons at once and kills any that does not answer its
# IPC within about 30 s, which cold page faults over 9p under TCG exceeded (measured: each
# daemon killed and started again once, about 40 s lost).
cluster_warm() {
	local t=$SECONDS f libs=()
	for f in /usr/sbin/pacemakerd /usr/sbin/corosync /usr/lib/pacemaker/pacemaker-controld \
		/usr/lib/pacemaker/pacemaker-based; do
		while read -r _ _ lib _; do
			# ICU's 30 MiB of data tables (libxml2 links ICU) would be half the reading,
			# and the daemons touch few of their pages.
			[ -f "$lib" ] && [[ $lib != */libicudata.* ]] && libs+=("$lib")
		done < <(ldd "$f" 2>/dev/null)
	done
	cat /usr/sbin/pacemakerd /usr/sbin/corosync /usr/lib/pacemaker/* "${libs[@]}" >/dev/null
	step "cluster programs and $(printf '%s\n' "${libs[@]}" | sort -u | wc -l) libraries read in $((SECONDS - t)) s"
}

# The CIB a first start begins with: empty nodes, resources and constraints (the schema wants
# them: without, the controller exits "cluster is mis-configured") and the other <configuration>
# children in $CLUSTER_CIB (options the daemons read as they start). Written where
# pacemaker-based reads its CIB; without a digest file it warns and uses it. A node that
# starts later gets the DC's CIB.
cluster_initial_cib() {
	local f=/var/lib/pacemaker/cib/cib.xml
	cat >"$f" <<XML
<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
<configuration><nodes/><resources/><constraints/>$CLUSTER_CIB</configuration><status/></cib>
XML
	chown hacluster:haclient "$f"
	chmod 600 "$f"
}

quorate() { corosync-quorumtool -s >/dev/null 2>&1; }

# cluster_start [AFTER]: a fresh CIB and corosync state, then corosync and pacemakerd in the
# background; with AFTER (a VM index), pacemakerd starts only when that VM's Pacemaker is up.
# Announces its own Pacemaker as up (harkctl key pcmk-vmN-bB) when the controller is.
#
# Why one node after the other: pacemakerd forks its six daemons at once and kills any that has
# not answered its IPC after 5 checks, about 30 s (hard-coded in 2.1.5); the CIB manager, once
# killed so, is not started again "until the cluster returns". Under TCG, with the other node
# starting its daemons too, they took over 30 s (measured, with the run alone on the host: no
# CIB ever). One after the other, the first node's start was clean (23-79 s); the second's
# still took 48 s to over 330 s, its daemons killed and started again together (measured).
cluster_start() {
	mountpoint -q /dev/shm || { mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm; }
	# tmpfs over the host's state directories (a removal in the overlay of a directory from
	# the 9p lower layer fails with EIO).
	local d
	for d in /var/lib/pacemaker /var/lib/corosync /var/log/pacemaker /var/log/corosync /run/crm; do
		mountpoint -q "$d" && umount "$d"
		mkdir -p "$d"
		mount -t tmpfs -o mode=755 tmpfs "$d" || die "cannot mount a tmpfs on $d"
	done
	install -d -o hacluster -g haclient -m 750 /var/lib/pacemaker/{cib,pengine,blackbox,cores}
	[ -z "${CLUSTER_CIB:-}" ] || cluster_initial_cib
	chown hacluster:haclient /var/lib/pacemaker /var/log/pacemaker
	chmod 750 /var/lib/pacemaker
	mkdir -p "$CLUSTER_LOG"
	cluster_warm
	corosync -f >"$CLUSTER_LOG/corosync.vm$HARK_VM.b$HARK_BOOT.out" 2>&1 &
	CLUSTER_COROSYNC=$!
	until_ok 120 quorate || die "corosync not quorate after 120 s"
	step "corosync quorate"
	[ -z "${1:-}" ] || harkctl wait "pcmk-vm$1-b1" 900 >/dev/null || die "vm$1's Pacemaker not up"
	PCMK_logfile=/var/log/pacemaker/pacemaker.log pacemakerd \
		>"$CLUSTER_LOG/pacemakerd.vm$HARK_VM.b$HARK_BOOT.out" 2>&1 &
	CLUSTER_PACEMAKERD=$!
	local t=$SECONDS
	until_ok 300 grep -q "controller successfully started" /var/log/pacemaker/pacemaker.log 2>/dev/null ||
		{ cluster_snapshot; cluster_stacks; die "pacemaker-controld not started in 300 s"; }
	step "Pacemaker's daemons up in $((SECONDS - t)) s"
	harkctl set "pcmk-vm$HARK_VM-b$HARK_BOOT" up
}

# cluster_online N SECONDS: crm_mon shows N nodes online within SECONDS.
cluster_online() {
	local want=$1 end=$((SECONDS + $2)) l
	while [ "$SECONDS" -lt "$end" ]; do
		l=$(crm_mon -1 2>/dev/null | grep -E '^  \* Online: \[') || l=
		if [ -n "$l" ]; then
			l=${l#*[}
			l=${l%]*}
			# shellcheck disable=SC2086
			set -- $l
			[ $# -ge "$want" ] && return 0
		fi
		# crm_mon loads Pacemaker's libraries: seconds of CPU under TCG, which the starting
		# daemons need more.
		nap 3
	done
	cluster_save_logs # for the failure that follows
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
	mkdir -p "$CLUSTER_LOG"
	cp /var/log/pacemaker/pacemaker.log "$CLUSTER_LOG/pacemaker.vm$HARK_VM.b$HARK_BOOT.log" 2>/dev/null || true
	cp /var/log/corosync/corosync.log "$CLUSTER_LOG/corosync.vm$HARK_VM.b$HARK_BOOT.log" 2>/dev/null || true
}

# cluster_snapshot: the logs and the processes that used the most CPU so far, into $CLUSTER_LOG
# (a running scenario's view from the host).
cluster_snapshot() {
	cluster_save_logs
	ps -eo pid,etime,time,args --sort=-time 2>&1 | head -n 25 >"$CLUSTER_LOG/ps.vm$HARK_VM.b$HARK_BOOT.txt"
}

# cluster_stacks: where each Pacemaker and corosync process waits, into $CLUSTER_LOG.
cluster_stacks() {
	local p
	for p in /proc/[0-9]*; do
		case "$(cat "$p/comm" 2>/dev/null)" in pacemaker* | corosync) ;; *) continue ;; esac
		echo "== ${p#/proc/} $(cat "$p/comm") $(cut -d' ' -f3 "$p/stat") wchan=$(cat "$p/wchan")"
		cat "$p/stack" 2>/dev/null
	done >"$CLUSTER_LOG/stacks.vm$HARK_VM.b$HARK_BOOT.txt" 2>&1
}
