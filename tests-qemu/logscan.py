# SPDX-License-Identifier: GPL-2.0
"""Find kernel splats in a VM's console log.

A scenario fails when any VM's log shows an oops, a WARN, a BUG, a KASAN or lockdep report, a
hung task, a soft or hard lockup, an RCU stall, a kmemleak report or a panic. The patterns are
the first lines the kernel prints for each of these reports.
"""

import re

# (kind, regex on a single line), first match wins. Lines are matched after stripping a printk
# timestamp, so a test's own output (no timestamp) can still be matched: keep patterns specific.
PATTERNS = [
    ("kasan", re.compile(r"^(BUG: KASAN: |KASAN: )")),
    ("lockdep", re.compile(r"^WARNING: (possible circular locking dependency|possible recursive "
                           r"locking|inconsistent lock state|suspicious RCU usage|lock held when "
                           r"returning to user space|bad unlock balance|held lock freed|"
                           r"possible irq lock inversion|[A-Za-z-]+-safe -> [A-Za-z-]+-unsafe)")),
    ("lockdep", re.compile(r"^(DEBUG_LOCKS_WARN_ON|INFO: possible circular locking|"
                           r"INFO: inconsistent lock state)")),
    ("lockup", re.compile(r"^(watchdog: )?BUG: soft lockup")),
    ("lockup", re.compile(r"Watchdog detected hard LOCKUP")),
    ("oops", re.compile(r"^Oops(: |\b)")),
    ("oops", re.compile(r"^(general protection fault|BUG: unable to handle|"
                        r"BUG: kernel NULL pointer dereference)")),
    ("bug", re.compile(r"^kernel BUG at ")),
    ("bug", re.compile(r"^BUG: ")),  # scheduling while atomic, sleeping function called ...
    ("warn", re.compile(r"^WARNING: (CPU: \d+ PID: \d+ at |.+ at .+\+0x)")),
    ("warn", re.compile(r"^-+\[ cut here \]-+$")),
    ("hung-task", re.compile(r"^INFO: task .+ blocked for more than \d+ seconds")),
    ("rcu-stall", re.compile(r"rcu: INFO: \w+ (self-)?detected stalls?")),
    ("kmemleak", re.compile(r"^kmemleak: \d+ new suspected memory leaks")),
    ("panic", re.compile(r"^Kernel panic - not syncing")),
    ("ubsan", re.compile(r"^UBSAN: ")),
    ("list-debug", re.compile(r"^list_(add|del) corruption")),
]

_TIMESTAMP = re.compile(r"^\s*\[\s*\d+\.\d+\]\s?(\[\s*[CT]\d+\]\s?)?")


def strip_prefix(line: str) -> str:
    """Remove a printk timestamp (and caller id) and surrounding blanks."""
    return _TIMESTAMP.sub("", line.rstrip("\r\n")).strip()


def scan(text: str):
    """Return a list of (line_number, kind, line) for every splat line found in `text`."""
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = strip_prefix(raw)
        if not line:
            continue
        for kind, pattern in PATTERNS:
            if pattern.search(line):
                found.append((number, kind, line))
                break
    return found


def summary(found, limit=3):
    """A short human-readable description of the first splats found."""
    parts = [f"{kind} at line {n}: {line[:120]}" for n, kind, line in found[:limit]]
    more = len(found) - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)
