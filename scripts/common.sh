# SPDX-License-Identifier: GPL-2.0
# Shared settings for hark's scripts. Source it; do not run it.

HARK_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Everything large lives outside the repository, keyed so that it can be reused.
HARK_CACHE=${HARK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hark}
# The kernel hark is built and tested against (Debian's linux-source package).
HARK_KVER_PKG=${HARK_KVER_PKG:-linux-source-7.3}
HARK_KSUITE=${HARK_KSUITE:-trixie-backports}
HARK_LLVM=${HARK_LLVM:--19}
HARK_BINDGEN_VERSION=${HARK_BINDGEN_VERSION:-0.73.0}
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm${HARK_LLVM}/lib}
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[hark %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[hark] ERROR: %s\n' "$*" >&2; exit 1; }
