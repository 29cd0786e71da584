#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Coverage-guided fuzzing (`make fuzz`): builds userspace/fuzz with cargo-fuzz (libFuzzer,
# overflow checks and debug assertions on) and runs each target for FUZZ_SECONDS, one at a
# time. See Documentation/testing.md, "Fuzzing".
#
#   FUZZ_TARGETS="http_request body_relay"  targets to run (default: all; `make fuzz TARGET=x`)
#   FUZZ_SECONDS=60                         seconds per target
#   FUZZ_MAX_LEN=4096                       largest input libFuzzer makes
#   FUZZ_MERGE=1                            fold inputs that add coverage into corpus/<target>
#                                           (0: leave the committed corpus alone)
#   FUZZ_JOBS=1                             libFuzzer -fork=N workers (default: no fork)
#
# Crashes (panics, overflow, failed assertions, timeouts, out-of-memory) are written to
# userspace/fuzz/crashes/<target>/ and replayed by `cargo test` from then on. Prints one line
# per target with executions, exec/s, coverage (libFuzzer's cov/ft) and crashes; exits 1 if
# any target crashed.
set -uo pipefail
. "$(dirname "$0")/common.sh"

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-4096}
FUZZ_MERGE=${FUZZ_MERGE:-1}
FUZZ_JOBS=${FUZZ_JOBS:-1}
FUZZ=$HARK_TOP/userspace/fuzz
all_targets=$(sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' "$FUZZ/Cargo.toml" | grep -v '^hark-fuzz$')
FUZZ_TARGETS=${FUZZ_TARGETS:-$all_targets}

# Tooling: cargo-fuzz from crates.io (libfuzzer-sys compiles libFuzzer with the C++ compiler).
# cargo-fuzz passes unstable rustc flags; RUSTC_BOOTSTRAP lets the stable toolchain take them,
# so no nightly toolchain is needed.
if ! command -v c++ >/dev/null; then
  [ "$(id -u)" = 0 ] || die "libFuzzer needs a C++ compiler: install g++"
  log "installing g++ (libFuzzer is built from source)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends g++ >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends g++ >/dev/null; } \
    || die "apt-get install g++ failed"
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked --quiet "cargo-fuzz@$CARGO_FUZZ_VERSION" || die "cargo install cargo-fuzz failed"
fi
export RUSTC_BOOTSTRAP=1

cd "$FUZZ" || die "no $FUZZ"
log "building fuzz targets (release, overflow checks and debug assertions on)"
# --sanitizer none: no ASan runtime needed; the targets are safe Rust, and overflow checks and
# assertions are what catch the bugs that matter here (a panic in the kernel is an oops).
cargo fuzz build --sanitizer none >&2 || die "cargo fuzz build failed"
bindir=$(ls -d target/*/release | head -1)

summary=()
crashed=0
for t in $FUZZ_TARGETS; do
  [ -x "$bindir/$t" ] || die "no fuzz target '$t' (targets: $(echo $all_targets))"
  mkdir -p "corpus/$t" "crashes/$t" "work/$t"
  log "fuzzing $t for ${FUZZ_SECONDS}s"
  out=work/$t.log
  before=$(find "crashes/$t" -maxdepth 1 -type f | wc -l)
  fork=()
  [ "$FUZZ_JOBS" -gt 1 ] && fork=(-fork="$FUZZ_JOBS" -ignore_crashes=0)
  # Text formats get a dictionary of their tokens and boundary numbers (dict/*.dict); the
  # binary ones rely on libFuzzer's comparison tracing for magics and lengths.
  dict=()
  case $t in
    http_*|l7_rules) dict=(-dict=dict/http.dict) ;;
    body_relay) dict=(-dict=dict/body.dict) ;;
    drbd_conf|rtcpvs_conf|ktcpvs_cfs) dict=(-dict=dict/conf.dict) ;;
  esac
  # New inputs go to work/<t> (not committed); corpus/<t> is read as seeds.
  "$bindir/$t" "work/$t" "corpus/$t" -max_total_time="$FUZZ_SECONDS" -max_len="$FUZZ_MAX_LEN" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="crashes/$t/" \
    "${dict[@]}" "${fork[@]}" > "$out" 2>&1
  rc=$?
  after=$(find "crashes/$t" -maxdepth 1 -type f | wc -l)
  new=$((after - before))
  [ "$rc" != 0 ] && [ "$new" = 0 ] && { tail -30 "$out" >&2; die "$t: libFuzzer failed (rc $rc), see $FUZZ/$out"; }
  if [ "$new" -gt 0 ]; then
    crashed=1
    log "$t: CRASH, input in userspace/fuzz/crashes/$t/:"
    grep -a -m1 -A3 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$out" >&2
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
  cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+' "$out" | tail -1)
  if [ "$FUZZ_MERGE" = 1 ] && [ "$new" = 0 ]; then
    n0=$(find "corpus/$t" -type f | wc -l)
    # Edges only (-use_counters=0): inputs that only change hit counts stay out, which keeps
    # the committed corpus small (a few hundred inputs per target).
    "$bindir/$t" -merge=1 -use_counters=0 -max_len="$FUZZ_MAX_LEN" "corpus/$t" "work/$t" \
      > "work/$t.merge.log" 2>&1 \
      || log "$t: merge failed, see $FUZZ/work/$t.merge.log"
    n1=$(find "corpus/$t" -type f | wc -l)
    log "$t: corpus $n0 -> $n1 files"
  fi
  summary+=("$(printf '%-14s execs %-10s exec/s %-7s %-20s crashes %s' "$t" "${execs:-?}" "${eps:-?}" "${cov:-cov: ?}" "$new")")
done

printf '%s\n' "${summary[@]}"
[ "$crashed" = 0 ] || { log "crash inputs are in userspace/fuzz/crashes/ (cargo test replays them)"; exit 1; }
