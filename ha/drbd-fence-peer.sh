#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# fence-peer handler for drbd_rs under Pacemaker, like DRBD 8.4's crm-fence-peer.sh:
#   handlers { fence-peer "/usr/lib/drbd_rs/drbd-fence-peer.sh"; }
# The kernel runs it as `/bin/sh -c 'CMD "$@"' fence-peer RESOURCE` with DRBD_RESOURCE,
# DRBD_MINOR, DRBD_PEER_ADDRESS, ... in the environment (Documentation/drbd_rs.md).
#
# It finds the promotable clone running ocf:hark:drbd_rs with drbd_resource=RESOURCE
# (`cibadmin -Q`) and adds the location constraint drbd-fence-by-handler-RESOURCE-CLONE:
# role Promoted, score -INFINITY where #uname ne <this node>, so the peer cannot be promoted.
# Exit codes (DRBD 8.4's): 4 the peer is fenced by the constraint, 7 the peer is also
# offline and clean in Pacemaker's view (STONITH confirmed), 1 failure (no clone, no CIB).
#
# Environment for tests: CIBADMIN, CRM_MON, CRM_NODE (default: the Pacemaker tools).

RES=${DRBD_RESOURCE:-$1}
: "${CIBADMIN:=cibadmin}" "${CRM_MON:=crm_mon}" "${CRM_NODE:=crm_node}"
log() { echo "drbd-fence-peer: $RES: $*" >&2; logger -t drbd-fence-peer "$RES: $*" 2>/dev/null || true; }
[ -n "$RES" ] || { log "no resource (DRBD_RESOURCE or \$1)"; exit 1; }

# The clone (promotable clone or master) whose drbd_rs primitive has drbd_resource=$RES.
clone_of() {
	$CIBADMIN -Q -o resources 2>/dev/null | python3 -c '
import sys, xml.etree.ElementTree as ET
res = sys.argv[1]
root = ET.fromstring(sys.stdin.read())
for c in list(root.iter("clone")) + list(root.iter("master")):
    for p in c.iter("primitive"):
        if (p.get("provider"), p.get("type")) != ("hark", "drbd_rs"):
            continue
        if any(n.get("name") == "drbd_resource" and n.get("value") == res
               for n in p.iter("nvpair")):
            print(c.get("id"))
            sys.exit(0)
sys.exit(1)' "$RES"
}

# 0 if every other cluster node is offline and clean (not left unclean: it was fenced).
peer_fenced() {
	$CRM_MON -1 --output-as=xml 2>/dev/null | python3 -c '
import sys, xml.etree.ElementTree as ET
me = sys.argv[1]
nodes = [n for n in ET.fromstring(sys.stdin.read()).iter("node")
         if n.get("name") and n.get("name") != me and n.get("type", "member") == "member"]
ok = nodes and all(n.get("online") == "false" and n.get("unclean") == "false" for n in nodes)
sys.exit(0 if ok else 1)' "$1"
}

constraint() { # $1 clone, $2 node, $3 role
	id="drbd-fence-by-handler-$RES-$1"
	printf '<rsc_location rsc="%s" id="%s"><rule role="%s" score="-INFINITY" id="%s-rule"><expression attribute="#uname" operation="ne" value="%s" id="%s-expr"/></rule></rsc_location>' \
		"$1" "$id" "$3" "$id" "$2" "$id"
}

fence() {
	me=$($CRM_NODE -n 2>/dev/null) || me=$(uname -n)
	clone=$(clone_of) || { log "no promotable clone runs ocf:hark:drbd_rs with drbd_resource=$RES"; exit 1; }
	id="drbd-fence-by-handler-$RES-$clone"
	placed=
	for role in Promoted Master; do # Master: CIB schemas before pacemaker-3.7
		xml=$(constraint "$clone" "$me" "$role")
		if $CIBADMIN -C -o constraints -X "$xml" >/dev/null 2>&1 ||
			$CIBADMIN -R -o constraints -X "$xml" >/dev/null 2>&1; then
			placed=$role
			break
		fi
	done
	[ -n "$placed" ] || { log "cannot place constraint $id"; exit 1; }
	if peer_fenced "$me"; then
		log "placed $id (role $placed); the peer is offline and clean: fenced"
		exit 7
	fi
	log "placed $id (role $placed): $clone may be promoted only on $me"
	exit 4
}

if command -v flock >/dev/null 2>&1; then
	mkdir -p /run/lock 2>/dev/null
	exec 9>"/run/lock/drbd_rs-fence.$RES" && flock -w 60 9
fi
fence
