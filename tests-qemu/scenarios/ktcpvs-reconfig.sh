# vms: 1
# timeout: 600
# ktcpvs_rs configuration changes under load are exact (issue 13, item 4):
# - a kept-alive client connection routes each request with the current configuration: after a
#   server is re-addressed and another deleted, its next requests go only to the new address;
# - a busy server removed (its requests held in flight, then two answered, two cut without an
#   answer) and a new one added in its slot: the new server starts with zero counters and no
#   passive-health failure, and lc, wlc, wrr and uri-hash give it its share;
# - a server added to a running wrr or uri-hash service gets its share (the scheduler state
#   follows the configuration generation).
# Four backends and the client in one Python process; rtcpvsadm changes the configuration.
. "$HARK_TOP/tests-qemu/guest/lib.sh"

T=/tmp/reconfig-test.py
cat > $T <<'PY'
import http.client, os, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADM = os.environ["RTCPVSADM"]
K = "/sys/kernel/config/ktcpvs"
PORTS = {"a": 9201, "b": 9202, "c": 9203, "n": 9204}
SCALE = float(os.environ.get("HARK_WAIT_SCALE", "3"))
# Requests for /hold are answered once this is set.
RELEASE = threading.Event()

def backend(name):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def do_GET(self):
            if "/hold" in self.path:
                RELEASE.wait(120 * SCALE)
            if "/slow=" in self.path:
                time.sleep(float(self.path.split("=")[1]))
            if "/hang=" in self.path:
                # No answer: the connection is closed (HTTP/1.0 handler).
                time.sleep(float(self.path.split("=")[1]))
                return
            body = f"{name} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    s = ThreadingHTTPServer(("127.0.0.1", PORTS[name]), H)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()

class Fail(Exception):
    pass

def fail(msg):
    raise Fail(msg)

def step(msg):
    print("--", msg, flush=True)

def adm(*args):
    r = subprocess.run([ADM, *args], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"rtcpvsadm {' '.join(args)}: {r.stderr.strip()}")

def stats(path):
    line = open(f"{K}/{path}/stats").read()
    return {k: int(v) for k, v in (f.split("=") for f in line.split())}

def stat(path, key):
    return stats(path)[key]

def wait_for(what, cond, secs=10):
    deadline = time.monotonic() + secs * SCALE
    while not cond():
        if time.monotonic() > deadline:
            fail(f"timed out waiting for {what}")
        time.sleep(0.1)

def get(port, path):
    """(status, backend name or body) on a new connection"""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path)
    r = c.getresponse(); body = r.read().decode(); c.close()
    return r.status, (body.split()[0] if r.status == 200 else body)

def on(c, path):
    """the backend name that answers `path` on the kept-alive connection `c`"""
    c.request("GET", path)
    r = c.getresponse(); body = r.read().decode()
    if r.status != 200 or r.getheader("Connection", "").lower() == "close":
        fail(f"kept-alive request {path}: {r.status} {body} Connection: {r.getheader('Connection')}")
    return body.split()[0]

def keepalive():
    step("a kept-alive connection follows a re-addressed and a deleted server")
    adm("add-service", "k", "--listen", "127.0.0.1:8091", "--scheduler", "rr")
    adm("add-server", "k", "a", f"127.0.0.1:{PORTS['a']}")
    adm("add-server", "k", "b", f"127.0.0.1:{PORTS['b']}")
    adm("start", "k")
    c = http.client.HTTPConnection("127.0.0.1", 8091, timeout=60)
    first = sorted(on(c, f"/ka{i}") for i in range(2))
    if first != ["a", "b"]:
        fail(f"rr over a and b went to {first}")
    adm("edit-server", "k", "a", "--address", f"127.0.0.1:{PORTS['c']}")
    adm("delete-server", "k", "b")
    got = [on(c, f"/kb{i}") for i in range(6)]
    conns = stat("k", "total_conns")
    c.close()
    if conns != 1:
        fail(f"the requests did not share one client connection: total_conns={conns}")
    if got != ["c"] * 6:
        fail(f"after a moved to c's address and b was deleted, the kept-alive connection went to {got}")
    print(f"kept-alive: before {first}, after {got}", flush=True)
    adm("delete-service", "k")

def busy_then_replace(sched, port):
    """Service r with servers a and b; four requests in flight on a (two answered late, two
    cut without an answer); a deleted and n added (in a's slot); returns when the four ended."""
    adm("add-service", "r", "--listen", f"127.0.0.1:{port}", "--scheduler", sched,
        "--max-fails", "1", "--fail-timeout-ms", "600000")
    adm("add-server", "r", "a", f"127.0.0.1:{PORTS['a']}")
    adm("add-server", "r", "b", f"127.0.0.1:{PORTS['b']}")
    adm("add-rule", "r", "010-busy", "--match", "path_prefix=/busy/", "--target", "a")
    adm("start", "r")
    out = []
    paths = ["/busy/hold/1", "/busy/hold/2", "/busy/hold/hang=0", "/busy/hold/hang=1"]
    ths = [threading.Thread(target=lambda p=p: out.append(get(port, p)), daemon=True)
           for p in paths]
    RELEASE.clear()
    try:
        [t.start() for t in ths]
        wait_for("4 requests active on a", lambda: stat("r/servers/a", "active_conns") == 4)
        adm("delete-rule", "r", "010-busy")
        adm("delete-server", "r", "a")
        adm("add-server", "r", "n", f"127.0.0.1:{PORTS['n']}")
    finally:
        RELEASE.set()
    [t.join() for t in ths]
    codes = sorted(o[0] for o in out)
    if codes != [200, 200, 502, 502]:
        fail(f"{sched}: the requests of the removed server ended with {out}")
    wait_for("the client connections to end", lambda: stat("r", "active_conns") == 0)
    fresh = stats("r/servers/n")
    if any(fresh.values()):
        return f"{sched}: the new server inherited the removed one's counters: {fresh}"
    return None

def share(sched, port):
    if sched in ("lc", "wlc"):
        # Four requests held by the backends, each sent once the one before is counted: two
        # each.
        out = []
        ths = []
        RELEASE.clear()
        try:
            for i in range(4):
                t = threading.Thread(target=lambda i=i: out.append(get(port, f"/hold/{i}")),
                                     daemon=True)
                t.start(); ths.append(t)
                wait_for(f"request {i} to be active",
                         lambda: stat("r/servers/n", "active_conns") + stat("r/servers/b", "active_conns") == i + 1)
            act = {s: stat(f"r/servers/{s}", "active_conns") for s in "nb"}
        finally:
            RELEASE.set()
        [t.join() for t in ths]
        who = sorted(o[1] for o in out)
        if act != {"n": 2, "b": 2} or who != ["b", "b", "n", "n"]:
            fail(f"{sched}: 4 concurrent requests: active {act}, served by {who}")
        return f"active {act}"
    if sched == "wrr":
        got = [get(port, f"/w{i}")[1] for i in range(20)]
        k = got.count("n")
        if not 8 <= k <= 12:
            fail(f"wrr (weights 1:1): n got {k} of 20: {got}")
        return f"n {k}/20"
    got = [get(port, f"/u/{i}")[1] for i in range(40)]
    k = got.count("n")
    again = [get(port, f"/u/{i}")[1] for i in range(40)]
    if k < 10 or got != again:
        fail(f"uri-hash: n got {k} of 40 paths; stable: {got == again}")
    return f"n {k}/40 paths"

def replace(i, sched):
    step(f"{sched}: a busy server removed, a new one in its slot gets its share")
    port = 8100 + i
    inherited = busy_then_replace(sched, port)
    # The share is checked even after a failed check of the counters (to show both).
    try:
        got = share(sched, port)
    except Fail as e:
        fail(f"{inherited}; {e}" if inherited else str(e))
    if inherited:
        fail(f"{inherited} (share: {got})")
    print(f"{sched}: {got}", flush=True)
    adm("delete-service", "r")

def grow(i, sched):
    step(f"{sched}: servers added to a running service get their share")
    port = 8110 + i
    adm("add-service", "g", "--listen", f"127.0.0.1:{port}", "--scheduler", sched)
    adm("add-server", "g", "a", f"127.0.0.1:{PORTS['a']}")
    adm("add-server", "g", "b", f"127.0.0.1:{PORTS['b']}")
    adm("start", "g")
    for j in range(6):
        get(port, f"/u/{j}")
    # Three rounds, each adding a server in a new slot (a stale Maglev table or wrr state,
    # kept because a new snapshot landed at the address of the old one, would give it
    # nothing); the added servers are all backend c, told apart by their counters.
    shares = []
    for r in range(3):
        adm("add-server", "g", f"x{r}", f"127.0.0.1:{PORTS['c']}")
        n = 3 + r
        got = [get(port, f"/u/{r}/{j}")[1] for j in range(40)]
        k = stat(f"g/servers/x{r}", "requests")
        if k < 40 // (3 * n) or got.count("c") < k:
            fail(f"{sched}: round {r}: the added server got {k} of 40 requests: {got}")
        shares.append(k)
    print(f"{sched}: added servers got {shares} of 40 requests each round", flush=True)
    adm("delete-service", "g")

for n in PORTS:
    backend(n)
# Every check runs (each on its own service, removed after a failure), so that one run shows
# every failure.
failed = []
checks = [("keepalive", keepalive, ())]
checks += [(f"replace-{s}", replace, (i, s)) for i, s in enumerate(["lc", "wlc", "wrr", "uri-hash"])]
checks += [(f"grow-{s}", grow, (i, s)) for i, s in enumerate(["wrr", "uri-hash"])]
for name, f, args in checks:
    try:
        f(*args)
    except Fail as e:
        print(f"FAIL: {name}: {e}", flush=True)
        failed.append(name)
        for svc in os.listdir(K):
            subprocess.run([ADM, "delete-service", svc], capture_output=True)
if failed:
    print("FAILED:", " ".join(failed), flush=True)
    sys.exit(1)
print("reconfig test ok", flush=True)
PY

step "load"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)"

step "kept-alive connection, busy server replaced (lc, wlc, wrr, uri-hash), server added"
RTCPVSADM=$RTCPVSADM must $PY $T
[ -z "$(ls -d /sys/kernel/config/ktcpvs/*/ 2>/dev/null)" ] || die "service left behind"

step "unload"
must rmmod ktcpvs_rs
must rmmod ipvs_glue
step "done"
