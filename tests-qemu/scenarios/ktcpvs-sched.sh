# vms: 1
# timeout: 600
# ktcpvs_rs's server choice in a VM: cookie persistence (inserted cookie, sticky, forged cookies
# ignored, drain keeps sessions, down moves them), passive health (a refused server is left out
# for fail_timeout_ms, then tried again; max_fails 0 never leaves it out), the lc, sh and
# uri-hash schedulers, max_conns (503 past the limit), and a request in flight on a server that is
# set to drain then deleted (it completes). Three backends and the client in
# one Python process (Python starts slowly under TCG); it changes the configuration with
# rtcpvsadm between its checks.
. "$HARK_TOP/tests-qemu/guest/lib.sh"

T=/tmp/sched-test.py
cat > $T <<'PY'
import http.client, os, socket, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADM = os.environ["RTCPVSADM"]
K = "/sys/kernel/config/ktcpvs"
PORTS = {"a": 9101, "b": 9102, "c": 9103}
DEAD = 9109  # nothing listens there
SCALE = float(os.environ.get("HARK_WAIT_SCALE", "3"))

def backend(name):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(float(self.path.split("=")[1]))
            body = f"{name} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    s = ThreadingHTTPServer(("127.0.0.1", PORTS[name]), H)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()

def fail(msg):
    print("FAIL:", msg, flush=True); sys.exit(1)

def step(msg):
    print("--", msg, flush=True)

def adm(*args):
    r = subprocess.run([ADM, *args], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"rtcpvsadm {' '.join(args)}: {r.stderr.strip()}")

def stat(path, key):
    line = open(f"{K}/{path}/stats").read()
    return int(line.split(f"{key}=")[1].split()[0])

def get(path, port=8090, cookie=None, src="127.0.0.1", timeout=30):
    """(status, backend name or body, Set-Cookie value or None)"""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(src, 0))
    c.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    r = c.getresponse(); body = r.read().decode(); sc = r.getheader("Set-Cookie"); c.close()
    return r.status, (body.split()[0] if r.status == 200 else body), sc

def cookie():
    step("cookie persistence: SRV inserted, sticky, forged ignored, drain keeps, down moves")
    adm("add-service", "p", "--listen", "127.0.0.1:8090", "--scheduler", "rr", "--cookie", "SRV")
    for n in "abc":
        adm("add-server", "p", n, f"127.0.0.1:{PORTS[n]}")
    adm("start", "p")
    jar = {}
    for i in range(6):
        st, who, sc = get(f"/first{i}")
        if st != 200 or not sc:
            fail(f"no Set-Cookie on a request without cookie: {st} {who} {sc}")
        name, rest = sc.split("=", 1)
        value = rest.split(";")[0]
        if name != "SRV" or "Path=/" not in sc or "HttpOnly" not in sc or len(value) != 24:
            fail(f"bad Set-Cookie {sc!r}")
        if jar.setdefault(who, value) != value:
            fail(f"two cookies for server {who}: {jar[who]} {value}")
    if sorted(jar) != ["a", "b", "c"]:
        fail(f"rr without cookies did not reach every server: {sorted(jar)}")
    for who, value in jar.items():
        for i in range(8):
            st, got, sc = get(f"/sticky{i}", cookie=f"x=1; SRV={value}; y=2")
            if (st, got, sc) != (200, who, None):
                fail(f"cookie of {who}: request {i} went to {got} ({st}), Set-Cookie {sc}")
    # Forged: another id with a's MAC, a flipped MAC bit, garbage: like no cookie.
    a = jar["a"]
    forged = [jar["b"][:8] + a[8:], a[:-1] + ("0" if a[-1] != "0" else "1"), "zz", a.upper()]
    for f in forged:
        st, got, sc = get("/forged", cookie=f"SRV={f}")
        if st != 200 or not sc or sc.split(";")[0] != f"SRV={jar[got]}":
            fail(f"forged cookie {f!r}: {st} {got} Set-Cookie {sc}")
    adm("edit-server", "p", "a", "--state", "drain")
    for i in range(4):
        if get(f"/drain{i}", cookie=f"SRV={a}")[:2] != (200, "a"):
            fail("a draining server lost its session")
    for i in range(6):
        st, got, sc = get(f"/new{i}")
        if got == "a":
            fail("a draining server got a new session")
    adm("edit-server", "p", "a", "--state", "down")
    st, got, sc = get("/down", cookie=f"SRV={a}")
    if st != 200 or got == "a" or not sc or sc.split(";")[0] != f"SRV={jar[got]}":
        fail(f"cookie of a down server: {st} {got} {sc}")
    adm("edit-server", "p", "a", "--state", "up")
    print(f"cookies: {len(jar)} servers, sticky x8 each, {len(forged)} forged ignored", flush=True)

def passive():
    step("passive health: a refused server is left out for fail_timeout_ms, then retried")
    adm("add-server", "p", "dead", f"127.0.0.1:{DEAD}")
    adm("edit-service", "p", "--cookie", "", "--max-fails", "1", "--fail-timeout-ms", "8000")
    t0 = time.monotonic()
    seen = set()
    for i in range(12):
        st, got, _ = get(f"/p{i}")
        if st != 200:
            fail(f"request {i} with a dead server: {st} {got}")
        seen.add(got)
    dt = time.monotonic() - t0
    errs = stat("p/servers/dead", "errors")
    print(f"12 requests in {dt:.1f} s, served by {sorted(seen)}, dead errors={errs}", flush=True)
    # rr over 4 servers would try dead 3 times; failed after the first, it is left out.
    if dt < 8 and errs != 1:
        fail(f"dead was tried {errs} times within its fail_timeout")
    time.sleep(8.5)
    for i in range(4):
        get(f"/q{i}")
    errs2 = stat("p/servers/dead", "errors")
    if errs2 < errs + 1:
        fail(f"dead was not tried again after fail_timeout_ms: errors {errs} -> {errs2}")
    # max_fails 0: never left out, tried on its turn.
    adm("edit-service", "p", "--max-fails", "0")
    e0 = stat("p/servers/dead", "errors")
    for i in range(12):
        if get(f"/r{i}")[0] != 200:
            fail("max_fails 0: a request failed")
    e1 = stat("p/servers/dead", "errors")
    if e1 - e0 < 2:
        fail(f"max_fails 0: dead tried {e1 - e0} times in 12 rr requests")
    print(f"after fail_timeout: dead errors {errs} -> {errs2}; max_fails 0: +{e1 - e0} in 12", flush=True)
    adm("delete-server", "p", "dead")
    adm("edit-service", "p", "--max-fails", "1")

def schedulers():
    step("sh: each source address keeps its server")
    adm("edit-service", "p", "--scheduler", "sh")
    owners = {}
    for src in [f"127.0.0.{i}" for i in range(1, 9)]:
        got = {get(f"/sh{j}", src=src)[1] for j in range(4)}
        if len(got) != 1:
            fail(f"sh: source {src} went to {got}")
        owners[src] = got.pop()
    if len(set(owners.values())) < 2:
        fail(f"sh: 8 sources all on one server: {owners}")
    print("sh:", owners, flush=True)
    step("uri-hash: each path keeps its server")
    adm("edit-service", "p", "--scheduler", "uri-hash")
    owners = {}
    for j in range(24):
        got = {get(f"/u/{j}?q={k}")[1] for k in range(3)}
        if len(got) != 1:
            fail(f"uri-hash: /u/{j} went to {got}")
        owners[j] = got.pop()
    if len(set(owners.values())) < 2:
        fail("uri-hash: 24 paths all on one server")
    print("uri-hash: servers used", sorted(set(owners.values())), flush=True)
    step("lc: requests avoid a server busy with a slow request")
    adm("edit-service", "p", "--scheduler", "lc")
    out = []
    th = threading.Thread(target=lambda: out.append(get("/slow=6")))
    th.start()
    deadline = time.monotonic() + 10 * SCALE
    busy = None
    while busy is None and time.monotonic() < deadline:
        for n in "abc":
            if stat(f"p/servers/{n}", "active_conns") == 1:
                busy = n
        time.sleep(0.1)
    if busy is None:
        fail("lc: the slow request is not active on any server")
    got = [get(f"/lc{j}")[1] for j in range(6)]
    th.join()
    if busy in got or out[0][:2] != (200, busy):
        fail(f"lc: {busy} busy, quick requests went to {got}, slow one {out}")
    print(f"lc: {busy} busy, quick requests went to {got}", flush=True)

def maxconns():
    step("max_conns 2: a third client connection gets 503")
    adm("edit-service", "p", "--max-conns", "2", "--scheduler", "rr")
    out = []
    ths = [threading.Thread(target=lambda: out.append(get("/slow=5"))) for _ in range(2)]
    [t.start() for t in ths]
    deadline = time.monotonic() + 10 * SCALE
    while stat("p", "active_conns") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    st = get("/over")[0]
    [t.join() for t in ths]
    if st != 503 or [o[0] for o in out] != [200, 200]:
        fail(f"max_conns: third got {st}, the two got {[o[0] for o in out]}")
    if get("/after")[0] != 200:
        fail("max_conns: no request after the slow ones ended")
    print("max_conns: 503 past the limit, 200 after", flush=True)

def inflight():
    step("a request in flight on a server set to drain, then deleted: it completes")
    adm("edit-service", "p", "--max-conns", "0")
    adm("add-rule", "p", "010-slow", "--match", "path_prefix=/slow", "--target", "c")
    out = []
    th = threading.Thread(target=lambda: out.append(get("/slow=4")))
    th.start()
    deadline = time.monotonic() + 10 * SCALE
    while stat("p/servers/c", "active_conns") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    if stat("p/servers/c", "active_conns") != 1:
        fail("the slow request is not active on c")
    adm("edit-server", "p", "c", "--state", "drain")
    st = get("/slow=0")[0]
    if st != 503:
        fail(f"a new request for a draining server's rule got {st}, not 503")
    adm("delete-server", "p", "c", "--force")
    th.join()
    if not out or out[0][:2] != (200, "c"):
        fail(f"the in-flight request did not complete: {out}")
    after = get("/after-delete")
    # The switch ends a connection a moment after its response (it reads the client's close).
    deadline = time.monotonic() + 5 * SCALE
    while stat("p", "active_conns") != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    if after[0] != 200 or stat("p", "active_conns") != 0:
        fail(f"after the delete: {after} {open(K + '/p/stats').read()}")
    print("in flight: completed through drain and delete; new requests 503 for the rule", flush=True)

for n in PORTS:
    backend(n)
for t in [cookie, passive, schedulers, maxconns, inflight]:
    t()
adm("delete-service", "p")
print("sched test ok", flush=True)
PY

step "load"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)"

step "cookies, passive health, lc, sh, uri-hash, max_conns, drain/delete in flight (one python process)"
RTCPVSADM=$RTCPVSADM must $PY $T
dmesg_has "service p: server dead failed 1 time\(s\): no new requests for 8000 ms" ||
	die "no log line for the failed server"
[ -z "$(ls -d /sys/kernel/config/ktcpvs/*/ 2>/dev/null)" ] || die "service left behind"

step "unload"
must rmmod ktcpvs_rs
must rmmod ipvs_glue
step "done"
