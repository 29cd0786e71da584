#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make test`: setup, kernel (cached), modules, userspace, host tests, VM scenarios.
# Ends with one line "N passed, N failed" summing host tests and VM scenarios.
set -uo pipefail
. "$(dirname "$0")/common.sh"
cd "$HARK_TOP"
t0=$(date +%s)
stage() { log "[$(( $(date +%s) - t0 )) s] $*"; }

stage "setup"
scripts/setup.sh || die "setup failed"
stage "kernel (cached build is reused when its key matches)"
scripts/kernel-build.sh >/dev/null || die "kernel build failed"
stage "modules"
make -s modules >/tmp/hark-modules.log 2>&1 || { cat /tmp/hark-modules.log; die "module build failed"; }
grep -E 'warning|error' /tmp/hark-modules.log >&2 || true
stage "userspace"
make -s userspace || die "userspace build failed"

stage "host tests"
host_out=$(scripts/host-test.sh | tee -a /dev/stderr | tail -n1)
stage "VM scenarios"
vm_out=$(tests-qemu/harness.py "$@" | tee -a /dev/stderr | tail -n1)

hp=$(sed -n 's/^host: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$host_out")
hf=$(sed -n 's/^host: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$host_out")
vp=$(sed -n 's/^vm: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$vm_out")
vf=$(sed -n 's/^vm: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$vm_out")
# A stage that printed no count line failed as a whole.
[ -n "$hp" ] || { hp=0; hf=1; log "host tests printed no result line"; }
[ -n "$vp" ] || { vp=0; vf=1; log "VM scenarios printed no result line"; }
stage "done (host $hp/$((hp + hf)), vm $vp/$((vp + vf)); artifacts in $HARK_TOP/artifacts)"
echo "$((hp + vp)) passed, $((hf + vf)) failed"
[ $((hf + vf)) = 0 ]
