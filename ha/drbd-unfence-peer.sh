#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# unfence-peer handler for drbd_rs under Pacemaker (DRBD 8.4's crm-unfence-peer.sh):
#   handlers { unfence-peer "/usr/lib/drbd_rs/drbd-unfence-peer.sh"; }
# The kernel runs it after a resync as source ended with both disks UpToDate. Removes every
# location constraint drbd-fence-by-handler-RESOURCE-* that drbd-fence-peer.sh placed.
# Exit 0 (also when there was none), 1 if the CIB cannot be read or changed.

RES=${DRBD_RESOURCE:-$1}
: "${CIBADMIN:=cibadmin}"
log() { echo "drbd-unfence-peer: $RES: $*" >&2; logger -t drbd-unfence-peer "$RES: $*" 2>/dev/null || true; }
[ -n "$RES" ] || { log "no resource (DRBD_RESOURCE or \$1)"; exit 1; }

cons=$($CIBADMIN -Q -o constraints 2>/dev/null) || { log "cannot read the CIB"; exit 1; }
ids=$(printf '%s' "$cons" | python3 -c '
import sys, xml.etree.ElementTree as ET
pre = "drbd-fence-by-handler-" + sys.argv[1] + "-"
for l in ET.fromstring(sys.stdin.read()).iter("rsc_location"):
    if l.get("id", "").startswith(pre):
        print(l.get("id"))' "$RES") || { log "cannot parse the constraints"; exit 1; }
rc=0
for id in $ids; do
	if $CIBADMIN -D -o constraints -X "<rsc_location id=\"$id\"/>" >/dev/null 2>&1; then
		log "removed $id"
	else
		log "cannot remove $id"
		rc=1
	fi
done
exit $rc
