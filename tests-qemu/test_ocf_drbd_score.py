# SPDX-License-Identifier: GPL-2.0
"""ha/ocf/drbd_rs's promotion score against stub rdrbdadm and crm_attribute: the score for a
state, and crm_attribute started only when the score changes, after a probe, a start or a
stop, or when the cached value is older than SCORE_REFRESH."""

import os
import subprocess
import tempfile
import textwrap
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(TOP, "ha", "ocf", "drbd_rs")

RDRBDADM = textwrap.dedent('''\
    #!/bin/sh
    # rdrbdadm stub: "status" prints $STATE/status
    for a in "$@"; do [ "$a" = status ] && exec cat "$STATE/status"; done
    exit 0
    ''')
CRM_ATTRIBUTE = textwrap.dedent('''\
    #!/bin/sh
    echo "$*" >>"$STATE/crm_attribute.log"
    ''')


@unittest.skipUnless(os.path.exists("/usr/lib/ocf/lib/heartbeat/ocf-shellfuncs"),
                     "resource-agents is not installed")
class ScoreCache(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        d = self.tmp.name
        for name, text in (("rdrbdadm", RDRBDADM), ("crm_attribute", CRM_ATTRIBUTE)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(d, name), 0o755)
        os.mkdir(os.path.join(d, "sysfs"))
        with open(os.path.join(d, "drbd.conf"), "w") as f:
            f.write("resource r0 { }\n")
        self.env = dict(os.environ, STATE=d, OCF_ROOT="/usr/lib/ocf", HA_SBIN_DIR=d,
                        HA_RSCTMP=os.path.join(d, "rsctmp"), DRBD_RS_SYSFS=os.path.join(d, "sysfs"),
                        OCF_RESKEY_drbd_resource="r0", OCF_RESKEY_drbdconf=os.path.join(d, "drbd.conf"),
                        OCF_RESKEY_rdrbdadm=os.path.join(d, "rdrbdadm"),
                        OCF_RESKEY_crm_feature_set="3.16.1", OCF_RESOURCE_INSTANCE="p_drbd",
                        OCF_RESKEY_CRM_meta_interval="31000")

    def tearDown(self):
        self.tmp.cleanup()

    def status(self, line):
        with open(os.path.join(self.tmp.name, "status"), "w") as f:
            f.write(line + "\n")

    def run_agent(self, action, **extra):
        env = dict(self.env, **extra)
        return subprocess.run(["bash", AGENT, action], env=env, capture_output=True,
                              text=True, timeout=60).returncode

    def calls(self):
        try:
            with open(os.path.join(self.tmp.name, "crm_attribute.log")) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def test_set_once_then_cached(self):
        self.status("r0 role:Secondary disk:UpToDate connection:Connected peer-role:Primary peer-disk:UpToDate")
        self.assertEqual(self.run_agent("monitor"), 0)
        self.assertEqual(self.calls(), ["-p -v 10000"])
        self.assertEqual(self.run_agent("monitor"), 0)
        self.assertEqual(len(self.calls()), 1, "same score: no crm_attribute")

    def test_changed_score_is_set(self):
        self.status("r0 role:Secondary disk:UpToDate connection:Connected peer-role:Primary peer-disk:UpToDate")
        self.run_agent("monitor")
        self.status("r0 role:Secondary disk:UpToDate connection:WFConnection peer-role:Unknown peer-disk:DUnknown")
        self.run_agent("monitor")
        self.status("r0 role:Secondary disk:Inconsistent connection:WFConnection peer-role:Unknown peer-disk:DUnknown")
        self.run_agent("monitor")
        self.assertEqual(self.calls(), ["-p -v 10000", "-p -v 1000", "-p -D"])

    def test_probe_drops_cache(self):
        self.status("r0 role:Secondary disk:UpToDate connection:Connected peer-role:Primary peer-disk:UpToDate")
        self.run_agent("monitor")
        self.assertEqual(self.run_agent("monitor", OCF_RESKEY_CRM_meta_interval="0"), 0)
        self.assertEqual(len(self.calls()), 1, "a probe sets no score")
        self.run_agent("monitor")
        self.assertEqual(len(self.calls()), 2, "the monitor after a probe sets the score again")

    def test_old_cache_is_refreshed(self):
        self.status("r0 role:Secondary disk:UpToDate connection:Connected peer-role:Primary peer-disk:UpToDate")
        self.run_agent("monitor")
        cache = os.path.join(self.tmp.name, "rsctmp", "drbd_rs-r0.score")
        with open(cache) as f:
            value, when = f.read().split()
        with open(cache, "w") as f:
            f.write(f"{value} {int(when) - 301}\n")
        self.run_agent("monitor")
        self.assertEqual(len(self.calls()), 2)


if __name__ == "__main__":
    unittest.main()
