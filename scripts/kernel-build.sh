#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Configure and build hark's test kernel, cached outside the repository.
# The cache key covers the source version, the config fragment and the toolchain versions;
# a matching build is reused, a changed key builds anew. Prints the build directory on stdout.
set -euo pipefail
. "$(dirname "$0")/common.sh"

src=$("$HARK_TOP/scripts/fetch-kernel.sh")
# HARK_KERNEL=test (default): the debug kernel every scenario runs unless it asks otherwise.
# HARK_KERNEL=perf: the same without debug options (kconfig/perf.config).
variant=${HARK_KERNEL:-test}
case "$variant" in
  test) frag=$HARK_TOP/kconfig/hark.config; suffix= ;;
  perf)
    mkdir -p "$HARK_CACHE"
    frag=$HARK_CACHE/perf-fragment.config
    { sed '/^# --- tests and debugging/,$d' "$HARK_TOP/kconfig/hark.config"
      cat "$HARK_TOP/kconfig/perf.config"; } >"$frag"
    suffix=-perf ;;
  *) die "HARK_KERNEL must be test or perf (got $variant)" ;;
esac
command -v "clang$HARK_LLVM" >/dev/null || die "clang$HARK_LLVM missing: run scripts/setup.sh"
command -v bindgen >/dev/null || die "bindgen missing: run scripts/setup.sh"

key_text=$(
  cat "$src/.hark-unpacked"
  sha256sum < "$frag"
  echo "build-recipe 1" # Bump when the way the kernel is configured or built changes.
  "clang$HARK_LLVM" --version | head -n1
  rustc --version
  bindgen --version
)
key=$(printf '%s\n' "$key_text" | sha256sum | cut -c1-16)
out=$HARK_CACHE/kbuild$suffix-$key
ln -sfn "$out" "$HARK_CACHE/kbuild-current$suffix"

if [ -f "$out/.hark-built" ]; then
  log "kernel build cache hit: $out"
  echo "$out"
  exit 0
fi

mk() { make -C "$src" O="$out" ARCH=x86_64 LLVM="$HARK_LLVM" "$@"; }
log "kernel build cache miss (key $key): configuring in $out"
mkdir -p "$out"
mk rustavailable >&2 || die "Rust toolchain not usable for the kernel: run scripts/setup.sh"
mk tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$frag" >/dev/null
mk olddefconfig >/dev/null
# Every option of the fragment must have survived (a missing dependency silently drops one).
missing=0
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) want=$line ;;
    "# CONFIG_"*" is not set") want=$line ;;
    *) continue ;;
  esac
  if ! grep -qxF "$want" "$out/.config"; then
    log "config: wanted '$want' but got '$(grep -E "^(# )?${want%%[= ]*}[= ]" "$out/.config" || echo unset)'"
    missing=1
  fi
done < <(sed -e 's/^# \(CONFIG_[A-Z0-9_]*\) is not set/# \1 is not set/' "$frag")
[ "$missing" = 0 ] || die "kernel config fragment not satisfied (see above); fix kconfig/hark.config"

jobs=$(( $(nproc) + 1 ))
log "building the kernel with -j$jobs (about 25 minutes on 2 cores; log: $out/build.log)"
start=$(date +%s)
if ! mk -j"$jobs" > "$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log" >&2
  die "kernel build failed; full log in $out/build.log"
fi
log "kernel built in $(( $(date +%s) - start )) s"
printf '%s\n' "$key_text" > "$out/.hark-built"
echo "$out"
