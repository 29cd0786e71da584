#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install everything hark needs on a Debian bookworm machine. Idempotent; prints progress.
# Only bookworm is used from the system's apt sources; the kernel source comes through a
# private apt configuration (scripts/fetch-kernel.sh), never through the system's sources.
set -euo pipefail
. "$(dirname "$0")/common.sh"

pkgs=(clang-19 lld-19 llvm-19 libclang-19-dev bc flex bison libelf-dev libssl-dev cpio kmod
      qemu-system-x86 qemu-utils busybox-static fio drbd-utils python3 e2fsprogs zstd xz-utils
      make gcc git ca-certificates curl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing[*]}"
else
  log "Debian packages: all present"
fi

command -v rustup >/dev/null || die "rustup not found: install Rust with rustup (stable) first"
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  log "rustup component add rust-src"
  rustup component add rust-src >&2
else
  log "rust-src: present"
fi
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >&2
done

if ! bindgen --version 2>/dev/null | grep -qF "$HARK_BINDGEN_VERSION"; then
  log "cargo install bindgen-cli $HARK_BINDGEN_VERSION (about 80 s)"
  cargo install --locked bindgen-cli --version "=$HARK_BINDGEN_VERSION" >&2 \
    || die "cargo install bindgen-cli failed"
else
  log "bindgen $HARK_BINDGEN_VERSION: present"
fi

"$HARK_TOP/scripts/fetch-kernel.sh" >/dev/null
log "setup complete"
