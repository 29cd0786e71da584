#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Host tests: cargo test over the userspace workspace (including the no_std logic the modules
# compile), formatting and clippy, and the harness's own unit tests (log scanner etc.).
# Prints "host: N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/common.sh"
cd "$HARK_TOP"
passed=0; failed=0
out=$(mktemp)

log "cargo test (userspace workspace)"
if (cd userspace && cargo test --locked 2>&1) | tee "$out" | grep -E '^test result|FAILED|panicked' >&2; then :; fi
p=$(awk '/^test result/ {s+=$4} END {print s+0}' "$out")
f=$(awk '/^test result/ {s+=$6} END {print s+0}' "$out")
if ! grep -q '^test result' "$out" || grep -q 'error\[E' "$out"; then
  log "cargo test did not run (see above)"; tail -20 "$out" >&2; f=$((f + 1))
fi
passed=$((passed + p)); failed=$((failed + f))

log "python unit tests (tests-qemu)"
if python3 -m unittest discover -s tests-qemu -p 'test_*.py' > "$out" 2>&1; then :; fi
tail -3 "$out" >&2
read -r p f < <(python3 -c '
import re, sys
t = open(sys.argv[1]).read()
ran = re.search(r"^Ran (\d+) test", t, re.M)
bad = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", t))
print(int(ran.group(1)) if ran else 0, bad if ran else 1)' "$out")
passed=$((passed + p - f)); failed=$((failed + f))

log "rustfmt --check"
if (cd userspace && cargo fmt --check) >&2 \
   && rustfmt --edition 2021 --check userspace/fuzz/fuzz_targets/*.rs >&2 \
   && rustfmt --edition 2021 --check drbd_rs/*.rs ktcpvs_rs/*.rs ipvs_glue/*.rs >&2; then
  passed=$((passed + 1))
else
  log "rustfmt: run 'make fmt'"; failed=$((failed + 1))
fi

log "clippy (userspace, -D warnings)"
if (cd userspace && cargo clippy --locked --all-targets -q -- -D warnings) >&2; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi
rm -f "$out"
echo "host: $passed passed, $failed failed"
[ "$failed" = 0 ]
