# SPDX-License-Identifier: GPL-2.0
"""ha/drbd-fence-peer.sh and ha/drbd-unfence-peer.sh against stub Pacemaker tools: the
constraint they place and remove, and the exit codes (4, 7, 1)."""

import os
import subprocess
import tempfile
import textwrap
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = os.path.join(TOP, "ha", "drbd-fence-peer.sh")
UNFENCE = os.path.join(TOP, "ha", "drbd-unfence-peer.sh")

RESOURCES = """<resources>
  <clone id="ms_web"><primitive id="p_web" class="ocf" provider="hark" type="drbd_rs">
    <instance_attributes id="ia1"><nvpair id="n1" name="drbd_resource" value="web"/>
    </instance_attributes></primitive></clone>
  <clone id="ms_r0"><primitive id="p_r0" class="ocf" provider="hark" type="drbd_rs">
    <instance_attributes id="ia2"><nvpair id="n2" name="drbd_resource" value="r0"/>
    </instance_attributes></primitive><meta_attributes id="m"/></clone>
</resources>"""

# cibadmin stub: -Q -o resources|constraints, -C/-R/-D -o constraints -X XML; the constraints
# live in $STATE/constraints.xml.
CIBADMIN = textwrap.dedent('''\
    #!/usr/bin/env python3
    import os, sys, xml.etree.ElementTree as ET
    st = os.environ["STATE"]
    a = sys.argv[1:]
    path = os.path.join(st, "constraints.xml")
    cons = ET.parse(path).getroot() if os.path.exists(path) else ET.Element("constraints")
    def save(): ET.ElementTree(cons).write(path)
    sect = a[a.index("-o") + 1]
    if a[0] == "-Q":
        print(open(os.path.join(st, "resources.xml")).read() if sect == "resources"
              else ET.tostring(cons).decode())
        sys.exit(0)
    x = ET.fromstring(a[a.index("-X") + 1])
    old = [c for c in cons if c.get("id") == x.get("id")]
    if a[0] == "-C":
        if old or (x.find("rule") is not None and x.find("rule").get("role") not in
                   os.environ.get("ROLES", "Promoted Master").split()):
            sys.exit(76)
        cons.append(x)
    elif a[0] == "-R":
        if not old: sys.exit(105)
        cons.remove(old[0]); cons.append(x)
    elif a[0] == "-D":
        if not old: sys.exit(105)
        cons.remove(old[0])
    save()
''')


class FenceScripts(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        d = self.tmp.name
        with open(os.path.join(d, "resources.xml"), "w") as f:
            f.write(RESOURCES)
        self.stub("cibadmin", CIBADMIN)
        self.stub("crm_node", "#!/bin/sh\necho node-a\n")
        self.mon("true", "false")

    def tearDown(self):
        self.tmp.cleanup()

    def stub(self, name, text):
        p = os.path.join(self.tmp.name, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, 0o755)

    def mon(self, online, unclean):
        xml = (f'<crm_mon><nodes><node name="node-a" online="true" unclean="false"/>'
               f'<node name="node-b" online="{online}" unclean="{unclean}"/></nodes></crm_mon>')
        self.stub("crm_mon", f"#!/bin/sh\necho '{xml}'\n")

    def run_script(self, script, res="r0", **env):
        d = self.tmp.name
        e = dict(os.environ, STATE=d, DRBD_RESOURCE=res, CIBADMIN=f"{d}/cibadmin",
                 CRM_MON=f"{d}/crm_mon", CRM_NODE=f"{d}/crm_node", **env)
        return subprocess.run([script, res], env=e, capture_output=True, text=True,
                              timeout=60).returncode

    def constraints(self):
        import xml.etree.ElementTree as ET
        p = os.path.join(self.tmp.name, "constraints.xml")
        return list(ET.parse(p).getroot()) if os.path.exists(p) else []

    def test_fence_places_the_constraint_and_exits_4(self):
        self.assertEqual(self.run_script(FENCE), 4)
        [c] = self.constraints()
        self.assertEqual(c.get("id"), "drbd-fence-by-handler-r0-ms_r0")
        self.assertEqual(c.get("rsc"), "ms_r0")
        rule = c.find("rule")
        self.assertEqual((rule.get("role"), rule.get("score")), ("Promoted", "-INFINITY"))
        e = rule.find("expression")
        self.assertEqual((e.get("attribute"), e.get("operation"), e.get("value")),
                         ("#uname", "ne", "node-a"))
        # Again (the constraint exists): replaced, still 4, still one.
        self.assertEqual(self.run_script(FENCE), 4)
        self.assertEqual(len(self.constraints()), 1)

    def test_old_schema_gets_master(self):
        self.assertEqual(self.run_script(FENCE, ROLES="Master"), 4)
        self.assertEqual(self.constraints()[0].find("rule").get("role"), "Master")

    def test_peer_offline_and_clean_is_7_unclean_is_4(self):
        self.mon("false", "false")
        self.assertEqual(self.run_script(FENCE), 7)
        self.mon("false", "true")
        self.assertEqual(self.run_script(FENCE), 4)

    def test_unknown_resource_fails(self):
        self.assertEqual(self.run_script(FENCE, res="nope"), 1)
        self.assertEqual(self.constraints(), [])

    def test_unfence_removes_only_its_resource(self):
        self.assertEqual(self.run_script(FENCE, res="web"), 4)
        self.assertEqual(self.run_script(FENCE), 4)
        self.assertEqual(self.run_script(UNFENCE), 0)
        self.assertEqual([c.get("id") for c in self.constraints()],
                         ["drbd-fence-by-handler-web-ms_web"])
        self.assertEqual(self.run_script(UNFENCE), 0)  # none left: fine


if __name__ == "__main__":
    unittest.main()
