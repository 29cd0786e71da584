#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Checks that every program hark's build and test suite runs is on PATH (host and guests: the
# guests run the host's binaries over 9p). Prints each missing one with the package that has it;
# exits 1 if any is missing. --packages: only the tools from Debian packages (not Rust/bindgen).
set -uo pipefail
. "$(dirname "$0")/common.sh"
only_pkgs=0
[ "${1:-}" = --packages ] && only_pkgs=1
# program:package
tools=(
  qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils busybox:busybox-static
  clang$HARK_LLVM:clang-19 ld.lld$HARK_LLVM:lld-19 llvm-ar$HARK_LLVM:llvm-19 bindgen:bindgen-cli
  rustc:rustup cargo:rustup make:make bc:bc flex:flex bison:bison cpio:cpio
  python3:python3 fio:fio /lib/drbd/drbdadm-84:drbd-utils /lib/drbd/drbdsetup-84:drbd-utils drbdmeta:drbd-utils
  mkfs.ext4:e2fsprogs ip:iproute2 modprobe:kmod zstd:zstd
  corosync:corosync pacemakerd:pacemaker crm_mon:pacemaker-cli-utils stonith_admin:pacemaker-cli-utils
  cibadmin:pacemaker-cli-utils xmllint:libxml2-utils crm:crmsh ocf-tester:resource-agents /usr/lib/ocf/resource.d/heartbeat/IPaddr2:resource-agents
  ipvsadm:ipvsadm keepalived:keepalived
)
missing=0
for t in "${tools[@]}"; do
  prog=${t%%:*} pkg=${t#*:}
  [ "$only_pkgs" = 1 ] && case "$pkg" in rustup|bindgen-cli) continue ;; esac
  if ! command -v "$prog" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$prog" ] && ! [ -x "/sbin/$prog" ]; then
    log "missing: $prog (package $pkg)"
    missing=1
  fi
done
# A present binary that cannot run (a library removed under it) is missing too.
if command -v qemu-img >/dev/null && ! qemu-img --version >/dev/null 2>&1; then
  log "qemu-img is installed but does not run: $(qemu-img --version 2>&1 | head -n1)"; missing=1
fi
if command -v qemu-system-x86_64 >/dev/null && ! qemu-system-x86_64 --version >/dev/null 2>&1; then
  log "qemu-system-x86_64 is installed but does not run"; missing=1
fi
[ "$missing" = 0 ] && log "tools: all present"
exit "$missing"
