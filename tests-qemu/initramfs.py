# SPDX-License-Identifier: GPL-2.0
"""Build the tiny initramfs hark's test VMs boot: busybox-static plus our /init.

Written directly in the cpio "newc" format so that no root rights (mknod) are needed for the
/dev/console node. The real userland is the host root, shared read-only over 9p.
"""

import gzip
import io
import os
import shutil
import stat


def _entry(out, ino, name, mode, data=b"", rdev=(0, 0)):
    name_b = name.encode() + b"\0"
    header = "070701" + "".join(f"{v:08x}" for v in (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0))
    out.write(header.encode())
    out.write(name_b)
    out.write(b"\0" * ((4 - (110 + len(name_b)) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))


def build(path, init_script):
    busybox = shutil.which("busybox") or "/bin/busybox"
    with open(busybox, "rb") as f:
        bb = f.read()
    with open(init_script, "rb") as f:
        init = f.read()
    buf = io.BytesIO()
    ino = 1
    for d in ("bin", "dev", "proc", "sys", "host", "newroot", "ovl", "tmp"):
        _entry(buf, ino, d, stat.S_IFDIR | 0o755)
        ino += 1
    _entry(buf, ino, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    ino += 1
    _entry(buf, ino, "bin/busybox", stat.S_IFREG | 0o755, bb)
    ino += 1
    _entry(buf, ino, "init", stat.S_IFREG | 0o755, init)
    ino += 1
    _entry(buf, 0, "TRAILER!!!", 0)
    data = gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)
    # Per process: two harness runs in one tree build it at the same time (same bytes).
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path
