#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install everything hark needs on a Debian bookworm machine. Idempotent; prints progress.
# Only bookworm is used from the system's apt sources; the kernel source comes through a
# private apt configuration (scripts/fetch-kernel.sh), never through the system's sources.
# HARK_SETUP_PACKAGES_ONLY=1 stops after the Debian packages and QEMU and checks only the tools
# that come from packages (no rustup, bindgen or kernel source): for testing on a bare machine.
set -euo pipefail
. "$(dirname "$0")/common.sh"

pkgs=(clang-19 lld-19 llvm-19 libclang-19-dev bc flex bison libelf-dev libssl-dev cpio kmod
      busybox-static fio drbd-utils python3 e2fsprogs zstd xz-utils
      corosync pacemaker pacemaker-cli-utils crmsh resource-agents libxml2-utils ipvsadm keepalived
      make gcc git ca-certificates curl iproute2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
apt_install() {
  [ "$(id -u)" = 0 ] || die "need root to install: $*"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${apt_updated:-}" ]; then
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt_updated=1
  fi
  apt-get install -y -q --no-install-recommends --allow-downgrades "$@" >/dev/null \
    || die "apt-get install failed for: $*"
}
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
else
  log "Debian packages: all present"
fi

# QEMU is one set of packages from one suite: qemu-system-x86 and qemu-utils of different
# versions cannot be installed together, and apt resolves the clash by removing one (a machine
# that shipped qemu-utils from bookworm-backports lost qemu-img that way). When the installed
# pair is not one version, both are installed at the version the system's sources offer for
# qemu-system-x86 (a downgrade of a newer qemu-utils if need be).
qemu_ver() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }
if [ -z "$(qemu_ver qemu-system-x86)" ] || [ "$(qemu_ver qemu-system-x86)" != "$(qemu_ver qemu-utils)" ]; then
  want=$(apt-cache policy qemu-system-x86 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$want" ] || [ "$want" = "(none)" ]; then
    apt-get update -q >/dev/null 2>&1 || true; apt_updated=1
    want=$(apt-cache policy qemu-system-x86 2>/dev/null | awk '/Candidate:/ {print $2}')
  fi
  [ -n "$want" ] && [ "$want" != "(none)" ] || die "qemu-system-x86 is not in the system's apt sources"
  log "installing QEMU $want as one set (installed: system '$(qemu_ver qemu-system-x86)', utils '$(qemu_ver qemu-utils)')"
  # qemu-system-common and the rest follow through qemu-system-x86's exact-version dependencies.
  apt_install "qemu-system-x86=$want" "qemu-utils=$want"
else
  log "QEMU $(qemu_ver qemu-utils): system and utils match"
fi

if [ "${HARK_SETUP_PACKAGES_ONLY:-0}" = 1 ]; then
  "$HARK_TOP/scripts/check-tools.sh" --packages || die "tools missing after setup (see above)"
  log "setup complete (packages only: Rust, bindgen and the kernel source skipped)"
  exit 0
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

# Every tool the suite runs, on PATH: name what is missing rather than fail later in a VM.
"$HARK_TOP/scripts/check-tools.sh" || die "tools missing after setup (see above)"
log "setup complete"
