#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make demo`: build what is needed (kernel cached), boot a VM, load hark's modules, show them.
set -euo pipefail
. "$(dirname "$0")/common.sh"
cd "$HARK_TOP"
scripts/setup.sh
scripts/kernel-build.sh >/dev/null
log "building modules and userspace"
make -s modules >/dev/null
make -s userspace
log "booting a VM (TCG, a few seconds)"
art=$HARK_TOP/artifacts/demo-run
rc=0
tests-qemu/harness.py --dir tests-qemu/demo --artifacts "$art" demo || rc=$?
echo "------------------------------------------------------------------ demo output (from the VM)"
cat "$art/demo/vm0.share/scenario.log" 2>/dev/null || echo "(no output: see $art/demo/vm0.console.log)"
echo "------------------------------------------------------------------"
log "full console: $art/demo/vm0.console.log"
exit $rc
