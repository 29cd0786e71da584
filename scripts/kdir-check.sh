#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Checks that a kernel build tree can build hark's modules, before Kbuild runs.
#
#   scripts/kdir-check.sh KDIR [LLVM]
#
# KDIR is a built kernel tree: the source tree itself, or an O= build directory (its `source`
# link points at the sources), or a distribution's build directory. LLVM is the value the user
# gave `make` (empty: detect it). Checks, each failing with a message naming what is missing:
#   - KDIR has a .config, include/config/kernel.release and Module.symvers (it was built);
#   - the options the modules need (REQUIRED below), and the Rust artefacts of the build;
#   - the compilers: CONFIG_CC_VERSION_TEXT and CONFIG_RUSTC_VERSION_TEXT of the tree must be
#     what `clang`/`clang-N` (or `gcc`) and `rustc` on PATH print, because the modules are
#     compiled against the kernel's `.rmeta` files (rustc refuses another version's) and with
#     the C flags the kernel chose for its compiler.
# Options that only some features need (RECOMMENDED) are warned about.
# Prints the toolchain argument for the kernel's make on stdout (`LLVM=-19`, `LLVM=1`, or
# nothing for a GCC-built kernel); everything else goes to stderr.
set -euo pipefail

kdir=${1:?usage: kdir-check.sh KDIR [LLVM]}
want_llvm=${2:-}

die() {
  printf 'hark: KDIR=%s cannot build the modules:\n' "$kdir" >&2
  printf '  %s\n' "$@" >&2
  exit 1
}

[ -d "$kdir" ] || die "no such directory"
config=$kdir/.config
[ -f "$config" ] || die "no .config: KDIR must be a configured and built kernel tree" \
  "(the source tree, its O= build directory, or /lib/modules/\$(uname -r)/build)"
[ -f "$kdir/Makefile" ] || die "no Makefile: not a kernel build tree"
[ -f "$kdir/include/config/kernel.release" ] && [ -f "$kdir/Module.symvers" ] ||
  die "no include/config/kernel.release or Module.symvers: the kernel was not built yet" \
    "(run 'make' in it, with the same O=, LLVM= and ARCH= as when it was configured)"

# The value of CONFIG_$1 in the tree's .config: y, m, a string (unquoted), or empty if unset.
opt() {
  local line
  line=$(grep -m1 -E "^CONFIG_$1=" "$config" || true)
  line=${line#*=}
  if [ "${line:0:1}" = '"' ]; then
    line=${line:1:${#line}-2}
    line=${line//\\\"/\"}
    line=${line//\\\\/\\}
  fi
  printf '%s' "$line"
}

# What the modules use, and why. `y` means built in; `ym` accepts a module too.
REQUIRED=(
  "MODULES y loadable modules"
  "RUST y Rust support (the modules are Rust)"
  "NET y sockets and generic netlink (drbd_rs's netlink family, both modules' TCP)"
  "INET y TCP/IP (DRBD replication, the layer-7 switch)"
  "BLOCK y the block layer (drbd_rs's /dev/rdrbdN, blk-mq)"
  "CONFIGFS_FS ym configfs (ktcpvs_rs is configured through it; kernel::configfs)"
  "IP_VS ym IPVS (ipvs_glue bridges it; <net/ip_vs.h>)"
  "CRC32 ym the crc32c() library (drbd_rs's activity log and metadata)"
  "CRYPTO_HASH ym the crypto hash API (drbd_rs's cram-hmac-alg peer authentication)"
)
RECOMMENDED=(
  "MODULE_UNLOAD y rmmod of the modules"
  "IPV6 ym IPv6 addresses for DRBD peers and ktcpvs listeners/servers"
  "CRYPTO_HMAC ym hmac() for cram-hmac-alg (with the digest named there, e.g. CRYPTO_SHA256)"
)

missing=()
for entry in "${REQUIRED[@]}"; do
  read -r name accept why <<<"$entry"
  val=$(opt "$name")
  case "$accept:$val" in
    y:y | ym:y | ym:m) ;;
    y:m) missing+=("CONFIG_$name=y (it is m): $why") ;;
    *) missing+=("CONFIG_$name=${accept/ym/y or m} (it is ${val:-not set}): $why") ;;
  esac
done
[ ${#missing[@]} = 0 ] || die "its .config lacks options the modules need:" "${missing[@]}" \
  "Enable them (make menuconfig, or scripts/config --enable ...), rebuild that kernel, boot it."

for entry in "${RECOMMENDED[@]}"; do
  read -r name accept why <<<"$entry"
  val=$(opt "$name")
  case "$accept:$val" in
    y:y | ym:y | ym:m) ;;
    *) printf 'hark: warning: KDIR=%s: CONFIG_%s is %s; without it there is no %s\n' \
      "$kdir" "$name" "${val:-not set}" "$why" >&2 ;;
  esac
done

[ -f "$kdir/rust/libkernel.rmeta" ] ||
  die "no rust/libkernel.rmeta although CONFIG_RUST=y: the kernel's Rust part was not built" \
    "(a headers-only package without the Rust artefacts cannot build Rust modules)"

# Host architecture: external modules are built for ARCH=$(uname -m) unless told otherwise.
case "$(uname -m)" in
  x86_64) [ "$(opt X86_64)" = y ] || die "it is not an x86_64 kernel (cross builds are not supported by 'make modules')" ;;
  aarch64) [ "$(opt ARM64)" = y ] || die "it is not an arm64 kernel (cross builds are not supported by 'make modules')" ;;
esac

# rustc: the modules link against the kernel's .rmeta files, which only the same rustc reads.
rustc=${RUSTC:-rustc}
k_rustc=$(opt RUSTC_VERSION_TEXT)
h_rustc=$("$rustc" --version 2>/dev/null) || h_rustc="($rustc not found)"
h_rustc=${h_rustc//#/}
[ "$k_rustc" = "$h_rustc" ] ||
  die "the kernel was built with '$k_rustc', but $rustc on PATH is '$h_rustc'." \
    "Rust modules must be compiled by the same rustc as the kernel (rustc refuses .rmeta files" \
    "of another version): put that rustc first on PATH (e.g. rustup toolchain install and" \
    "rustup override set), or set RUSTC=/path/to/rustc, or rebuild the kernel with your rustc."

# The C compiler: the version text Kbuild recorded (LC_ALL=C $(CC) --version | head -n 1, '#'
# removed) against the candidates on PATH.
k_cc=$(opt CC_VERSION_TEXT)
cc_text() { LC_ALL=C "$1" --version 2>/dev/null | head -n 1 | tr -d '#'; }
if [ "$(opt CC_IS_CLANG)" = y ]; then
  major=$(sed -nE 's/.*clang version ([0-9]+)\..*/\1/p' <<<"$k_cc")
  case "$want_llvm" in
    "") candidates=("-$major" 1) ;;
    1) candidates=(1) ;;
    -*) candidates=("$want_llvm") ;;
    *) die "LLVM=$want_llvm: use LLVM=1 (clang, ld.lld on PATH) or LLVM=-N (clang-N, ld.lld-N)" ;;
  esac
  seen=()
  for c in "${candidates[@]}"; do
    if [ "$c" = 1 ]; then cc=clang; else cc=clang$c; fi
    text=$(cc_text "$cc") || true
    if [ "$text" = "$k_cc" ]; then
      echo "LLVM=$c"
      exit 0
    fi
    seen+=("$cc: ${text:-not found}")
  done
  die "the kernel was built with clang '$k_cc', and no matching clang is on PATH:" "${seen[@]}" \
    "Modules must be built with the compiler the kernel was built with (the kernel's C flags" \
    "are that compiler's). Install that clang (LLVM=-$major expects clang-$major, ld.lld-$major;" \
    "LLVM=1 expects clang, ld.lld), or rebuild the kernel with the clang you have."
fi

[ -z "$want_llvm" ] || die "the kernel was built with GCC ('$k_cc'); do not pass LLVM=$want_llvm"
text=$(cc_text "${CC:-gcc}") || true
[ "$text" = "$k_cc" ] ||
  die "the kernel was built with '$k_cc', but ${CC:-gcc} on PATH is '${text:-not found}'." \
    "Modules must be built with the compiler the kernel was built with."
