#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Download Debian's linux-source package through a private apt configuration
# (the system's apt sources are never touched) and unpack the tree into the cache.
# Prints the path of the unpacked source tree on stdout.
set -euo pipefail
. "$(dirname "$0")/common.sh"

apt_dir=$HARK_CACHE/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc"
cat > "$apt_dir/etc/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $HARK_KSUITE main
SRC
: > "$apt_dir/etc/preferences"
apt_opts=(
  -o Dir::Etc::SourceList="$apt_dir/etc/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o Dir::Etc::Preferences="$apt_dir/etc/preferences"
  -o Dir::Etc::PreferencesParts=/dev/null
  -o Dir::State::Lists="$apt_dir/lists"
  -o Dir::Cache="$apt_dir/cache"
  -o Dir::Cache::Archives="$apt_dir/archives"
  -o APT::Get::List-Cleanup=0
  -o Debug::NoLocking=1
  -o APT::Sandbox::User=root
)
mkdir -p "$apt_dir/cache"

# Reuse an already unpacked tree when it is there.
existing=$(ls -d "$HARK_CACHE"/src/linux-source-*/ 2>/dev/null | head -n1 || true)
if [ -n "$existing" ] && [ -f "$existing/.hark-unpacked" ] && [ -z "${HARK_REFETCH:-}" ]; then
  echo "${existing%/}"
  exit 0
fi

log "fetching the $HARK_KSUITE package index (private apt config in $apt_dir)"
apt-get -q "${apt_opts[@]}" update >&2 || die "apt-get update of $HARK_KSUITE failed (network to deb.debian.org?)"
ver=$(apt-cache "${apt_opts[@]}" show "$HARK_KVER_PKG" 2>/dev/null | awk '/^Version:/{print $2; exit}')
[ -n "$ver" ] || die "$HARK_KVER_PKG is not in $HARK_KSUITE"
log "downloading $HARK_KVER_PKG $ver"
(cd "$apt_dir/archives" && apt-get -q "${apt_opts[@]}" download "$HARK_KVER_PKG=$ver" >&2) \
  || die "download of $HARK_KVER_PKG failed"
deb=$(ls "$apt_dir/archives/${HARK_KVER_PKG}_"*.deb | head -n1)

log "unpacking $deb"
tmp=$HARK_CACHE/unpack.$$
rm -rf "$tmp"; mkdir -p "$tmp"
dpkg-deb -x "$deb" "$tmp"
tarball=$(ls "$tmp"/usr/src/linux-source-*.tar.* | head -n1)
[ -f "$tarball" ] || die "no source tarball inside $deb"
mkdir -p "$HARK_CACHE/src"
tar -C "$HARK_CACHE/src" -xf "$tarball"
rm -rf "$tmp"
src=$(ls -d "$HARK_CACHE"/src/linux-source-*/ | head -n1)
src=${src%/}
echo "$HARK_KVER_PKG $ver" > "$src/.hark-unpacked"
log "kernel source in $src"
echo "$src"
