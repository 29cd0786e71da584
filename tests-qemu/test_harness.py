# SPDX-License-Identifier: GPL-2.0
"""Unit tests of the harness's scenario headers and scratch disks."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class HeaderTest(unittest.TestCase):
    def parse(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
            f.write(text)
        try:
            return harness.parse_header(f.name)
        finally:
            os.unlink(f.name)

    def test_defaults_and_keys(self):
        m = self.parse("# vms: 2\n# timeout: 99\n# disk: 8M\n# disk-random: 1\n# text\necho\n# vms: 1\n")
        self.assertEqual((m["vms"], m["timeout"], m["disk"], m["disk-random"]), (2, 99, "8M", "1"))
        self.assertEqual(self.parse("echo\n")["disk-random"], "")

    def test_bad_vm_count(self):
        with self.assertRaises(ValueError):
            self.parse("# vms: 3\n")


class DiskTest(unittest.TestCase):
    def content(self, random_fill):
        with tempfile.TemporaryDirectory() as d:
            disk = os.path.join(d, "d.qcow2")
            harness.make_disk(disk, "2M", random_fill)
            raw = os.path.join(d, "d.raw")
            subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", disk, raw], check=True)
            with open(raw, "rb") as f:
                return f.read()

    def test_zeroed_and_random(self):
        self.assertEqual(self.content(False), bytes(2 << 20))
        data = self.content(True)
        self.assertEqual(len(data), 2 << 20)
        # Random: no zero MiB anywhere (each would be a 1 in 2^(8 Mi) chance).
        self.assertNotEqual(data[:1 << 20], bytes(1 << 20))
        self.assertNotEqual(data[1 << 20:], bytes(1 << 20))


if __name__ == "__main__":
    unittest.main()
