# SPDX-License-Identifier: GPL-2.0
"""The log scanner must catch every planted splat and must not flag clean logs."""

import glob
import os
import unittest

import logscan

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")

EXPECTED = {
    "oops.log": "oops",
    "warn.log": "warn",
    "kasan.log": "kasan",
    "lockdep.log": "lockdep",
    "lockdep-inconsistent.log": "lockdep",
    "sleep-atomic.log": "bug",
    "hung.log": "hung-task",
    "softlockup.log": "lockup",
    "panic.log": "panic",
    "kmemleak.log": "kmemleak",
    "rcu-stall.log": "rcu-stall",
}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


class PlantedSplats(unittest.TestCase):
    def test_every_planted_splat_is_caught(self):
        files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(DATA, "splats", "*.log")))
        self.assertEqual(sorted(EXPECTED), files, "every planted splat file has an expectation")
        for name, kind in EXPECTED.items():
            with self.subTest(name=name):
                found = logscan.scan(read(os.path.join(DATA, "splats", name)))
                self.assertTrue(found, f"{name}: nothing found")
                self.assertEqual(found[0][1], kind, f"{name}: first finding {found[0]}")

    def test_splat_inside_a_clean_log_is_caught(self):
        clean = read(os.path.join(DATA, "clean-boot.log"))
        for name in EXPECTED:
            with self.subTest(name=name):
                lines = clean.splitlines()
                middle = len(lines) // 2
                planted = "\n".join(lines[:middle] + read(os.path.join(DATA, "splats", name)).splitlines()
                                    + lines[middle:])
                self.assertTrue(logscan.scan(planted), f"{name} not caught inside a boot log")

    def test_clean_logs_are_clean(self):
        for name in ("clean-boot.log", "clean-test-output.log"):
            with self.subTest(name=name):
                self.assertEqual(logscan.scan(read(os.path.join(DATA, name))), [])

    def test_timestamp_and_caller_prefixes(self):
        self.assertEqual(logscan.strip_prefix("[   1.000000][  T231] BUG: x"), "BUG: x")
        self.assertEqual(logscan.strip_prefix("[1.5] WARNING: y"), "WARNING: y")


if __name__ == "__main__":
    unittest.main()
