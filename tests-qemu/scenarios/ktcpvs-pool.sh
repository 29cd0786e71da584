# vms: 1
# timeout: 900
# ktcpvs_rs's server connection pool (pool_idle): two python HTTP/1.1 keep-alive backends on
# 127.0.0.1 that report, in every response, the client port of the connection they serve and
# the number of requests seen on it. Without pooling every request is a new server connection
# (sent with Connection: close); with pool_idle=2 sequential requests (separate client
# connections, then one keep-alive client connection) reuse one server connection; a server
# that answers with Connection: close, closes a connection after reading the next request
# (retried on a fresh connection), or closes idle connections after 1 s causes no client
# error; at most pool_idle idle connections stay after a burst; draining the server and the
# idle timeout close them; active_conns is back to 0; rmmod with an idle pooled connection
# left by a request that ended after its service was deleted.
. "$HARK_TOP/tests-qemu/guest/lib.sh"

K=/sys/kernel/config/ktcpvs
T=/tmp/pool-test.py
stat_of() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$1/stats"; }
# Connections a backend has open now, from its log (bash builtins only: no process per call).
open_of() {
	OPEN=0
	local l
	while read -r l; do
		case $l in
		open*) OPEN=$((OPEN + 1)) ;;
		closed*) OPEN=$((OPEN - 1)) ;;
		esac
	done < "/tmp/backend-$1.log"
}
open_is() { open_of "$1"; [ "$OPEN" "$2" "$3" ]; }

cat > $T <<'PY'
import http.client, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def backend(name, port, idle):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The server closes a connection idle this long (0: never).
        timeout = idle or None
        def log_message(self, *a):
            pass
        def handle(self):
            self.count = 0
            self.drop_next = False
            print(f"open {self.client_address[1]}", flush=True)
            try:
                super().handle()
            finally:
                print(f"closed {self.client_address[1]}", flush=True)
        def do_GET(self):
            self.count += 1
            if self.drop_next:
                # Read the request, close without an answer.
                self.close_connection = True
                return
            if self.path.startswith("/slow="):
                time.sleep(float(self.path.split("=")[1]))
            body = (f"{name} port={self.client_address[1]} n={self.count} "
                    f"conn={self.headers.get('Connection', '-')}").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if self.path == "/close":
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.drop_next = self.path == "/dropnext"
    s = ThreadingHTTPServer(("127.0.0.1", port), H)
    s.daemon_threads = True
    s.serve_forever()

def fail(msg):
    print("FAIL:", msg); sys.exit(1)

def parse(status, body, what):
    w = body.decode().split()
    if status != 200 or len(w) != 4:
        fail(f"{what}: {status} {body[:100]!r}")
    d = dict(kv.split("=", 1) for kv in w[1:])
    return int(d["port"]), int(d["n"]), d["conn"]

def get(path, port=8090):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse(); body = r.read(); c.close()
    return parse(r.status, body, path)

def nopool(n):
    ports = set()
    for i in range(n):
        p, k, conn = get(f"/np{i}")
        if k != 1 or conn != "close":
            fail(f"without pooling request {i}: n={k} conn={conn}")
        ports.add(p)
    if len(ports) != n:
        fail(f"without pooling {n} requests used {len(ports)} server connections")
    print(f"nopool: {n} requests, {len(ports)} server connections, all Connection: close")

def pooled(n, how, most):
    seen = {}
    c = http.client.HTTPConnection("127.0.0.1", 8090, timeout=30) if how == "ka" else None
    for i in range(n):
        if c:
            c.request("GET", f"/ka{i}")
            r = c.getresponse(); body = r.read()
            if (r.getheader("Connection") or "").lower() != "keep-alive":
                fail(f"keep-alive client: Connection {r.getheader('Connection')}")
            p, k, conn = parse(r.status, body, f"/ka{i}")
        else:
            p, k, conn = get(f"/p{i}")
        if conn != "-":
            fail(f"pooled request {i} reached the server with Connection: {conn}")
        seen[p] = max(seen.get(p, 0), k)
    if len(seen) > most:
        fail(f"{n} requests ({how}) used {len(seen)} server connections: {seen}")
    print(f"pooled {how}: {n} requests, {len(seen)} server connections, "
          f"requests per connection {sorted(seen.values())}")

def closepath():
    # /close is answered with Connection: close: that connection is not reused.
    closed = set()
    for i in range(10):
        path = "/close" if i % 2 else f"/c{i}"
        p, k, conn = get(path)
        if p in closed:
            fail(f"request {i} reused a connection the server closed ({p})")
        if path == "/close":
            closed.add(p)
    print(f"closepath: 10 requests ok, {len(closed)} connections closed by the server not reused")

def retry():
    # The pooled connection is closed by the server after it read the next request, before
    # any answer: the switch sends the request again on a new connection.
    p1, _, _ = get("/dropnext")
    p2, k, _ = get("/after")
    if p2 == p1 or k != 1:
        fail(f"retry: first port {p1}, then port {p2} n={k}")
    print(f"retry: connection {p1} dropped the next request, answered on new connection {p2}")

def idleclose(n, gap):
    # Backend b closes connections idle for 1 s.
    ports = set()
    for i in range(int(n)):
        p, k, conn = get(f"/i{i}", 8091)
        ports.add(p)
        time.sleep(gap if gap > 0 else 0.8 + 0.05 * (i % 8))
    print(f"idleclose gap={gap}: {int(n)} requests ok on {len(ports)} server connections")

def burst(threads, each):
    out = []
    def worker():
        for i in range(int(each)):
            try:
                out.append(get("/slow=0.3")[0])
            except Exception as e:
                out.append(f"error {e}")
    ths = [threading.Thread(target=worker) for _ in range(int(threads))]
    [t.start() for t in ths]; [t.join() for t in ths]
    bad = [o for o in out if isinstance(o, str)]
    if bad:
        fail(f"burst: {bad[:3]}")
    print(f"burst: {len(out)} requests from {int(threads)} clients at once on "
          f"{len(set(out))} server connections")

def one(path):
    p, k, conn = get(path)
    print(f"one {path}: port={p} n={k}")

def arg(a):
    for conv in (int, float):
        try:
            return conv(a)
        except ValueError:
            pass
    return a

def serve(cmd_fifo, rc_fifo):
    """Runs client commands, one per line of cmd_fifo ("OUTFILE CMD ARGS..."), each with its
    output in OUTFILE, and answers its exit code on rc_fifo: Python starts once."""
    rcs = open(rc_fifo, "w", buffering=1)
    for line in open(cmd_fifo):
        words = line.split()
        if len(words) < 2:
            continue
        rc = 0
        with open(words[0], "w") as out:
            sys.stdout = out
            try:
                globals()[words[1]](*[arg(a) for a in words[2:]])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
            except Exception as e:  # a bug in a check is a failure too
                print(f"FAIL: {words[1]}: {e!r}")
                rc = 1
            finally:
                sys.stdout = sys.__stdout__
        rcs.write(f"{rc}\n")

cmd = sys.argv[1]
globals()[cmd](*[arg(a) for a in sys.argv[2:]])
PY

# pyc CMD ARGS...: runs a client command of $T in one long-running Python ($T serve), which
# starts once instead of for each of the nine commands (seconds each under TCG). Both FIFOs
# stay open read-write here, so a dead server makes `read -t` time out instead of blocking.
mkfifo /tmp/pool.cmd /tmp/pool.rc
exec {POOL_CMD}<>/tmp/pool.cmd {POOL_RC}<>/tmp/pool.rc
$PY $T serve /tmp/pool.cmd /tmp/pool.rc > /tmp/pool-serve.log 2>&1 &
pid_c=$!
pyc() {
	local rc
	echo "/tmp/pool-cmd.out $*" >&"$POOL_CMD"
	read -r -t $((120 * HARK_WAIT_SCALE)) -u "$POOL_RC" rc ||
		{ cat /tmp/pool-serve.log; die "the Python client did not answer $*"; }
	cat /tmp/pool-cmd.out
	return "$rc"
}

step "load, start backend a (no idle close) and b (closes idle connections after 1 s)"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)"
$PY $T backend a 9011 0 > /tmp/backend-a.log 2>&1 &
pid_a=$!
$PY $T backend b 9012 1 > /tmp/backend-b.log 2>&1 &
pid_b=$!
trap 'kill $pid_a $pid_b $pid_c ${slowpid:-} 2>/dev/null || true' EXIT
for p in 9011 9012; do
	until_ok 60 port_open "$p" || die "backend on port $p did not start"
done
# port_open's probe connections are logged too: start counting from here.
until_ok 10 open_is a = 0 || die "backend a: probe connection not closed"

step "configure pool (a, 127.0.0.1:8090, pool_idle 0) and pool2 (b, 127.0.0.1:8091, pool_idle 2)"
must "$RTCPVSADM" add-service pool --listen 127.0.0.1:8090 --scheduler rr
must "$RTCPVSADM" add-server pool a 127.0.0.1:9011
must "$RTCPVSADM" start pool
must "$RTCPVSADM" add-service pool2 --listen 127.0.0.1:8091 --scheduler rr --pool-idle 2
must "$RTCPVSADM" add-server pool2 b 127.0.0.1:9012
must "$RTCPVSADM" start pool2
[ "$(cat $K/pool/pool_idle)" = 0 ] || die "pool_idle default: $(cat $K/pool/pool_idle)"
[ "$(cat $K/pool2/pool_idle)" = 2 ] || die "pool_idle of pool2: $(cat $K/pool2/pool_idle)"
must_fail sh -c "echo 257 > $K/pool/pool_idle" 2>/dev/null

step "pool_idle=0: every request is a new server connection with Connection: close"
c0=$(stat_of $K/pool/servers/a total_conns)
must pyc nopool 20
dc=$(( $(stat_of $K/pool/servers/a total_conns) - c0 ))
echo "server a total_conns +$dc for 20 requests"
[ "$dc" = 20 ] || die "without pooling: $dc server connections for 20 requests"

step "pool_idle=2: 20 requests on separate client connections, 20 on one keep-alive connection"
must "$RTCPVSADM" edit-service pool --pool-idle 2
grep -q '"name":"pool",[^]]*"pool_idle":2' < <("$RTCPVSADM" list --json) || die "list --json: no pool_idle"
c0=$(stat_of $K/pool/servers/a total_conns); r0=$(stat_of $K/pool/servers/a requests)
t0=$(stat_of $K/pool total_conns)
must pyc pooled 20 sep 2
dc=$(( $(stat_of $K/pool/servers/a total_conns) - c0 )); dr=$(( $(stat_of $K/pool/servers/a requests) - r0 ))
dt=$(( $(stat_of $K/pool total_conns) - t0 ))
echo "separate: client connections +$dt, server a total_conns +$dc, requests +$dr"
[ "$dt" = 20 ] && [ "$dc" -le 1 ] && [ "$dr" = 20 ] || die "pooled counters: $(cat $K/pool/servers/a/stats)"
c0=$(stat_of $K/pool/servers/a total_conns); r0=$(stat_of $K/pool/servers/a requests)
must pyc pooled 20 ka 1
dc=$(( $(stat_of $K/pool/servers/a total_conns) - c0 )); dr=$(( $(stat_of $K/pool/servers/a requests) - r0 ))
echo "keep-alive client: server a total_conns +$dc, requests +$dr"
[ "$dc" = 0 ] && [ "$dr" = 20 ] || die "keep-alive pooled counters: $(cat $K/pool/servers/a/stats)"
open_of a
echo "backend a has $OPEN connection(s) open (idle in the pool)"
[ "$OPEN" = 1 ] || die "expected 1 idle pooled connection, backend a has $OPEN"

step "the server closes connections: Connection: close, a dropped request, idle close"
e0=$(stat_of $K/pool errors); e2=$(stat_of $K/pool2 errors)
must pyc closepath
must pyc retry
must pyc idleclose 4 1.6
must pyc idleclose 16 0
[ "$(stat_of $K/pool errors)" = "$e0" ] && [ "$(stat_of $K/pool2 errors)" = "$e2" ] ||
	die "client-visible errors: $(cat $K/pool/stats) / $(cat $K/pool2/stats)"
cat $K/pool2/servers/b/stats

step "a burst of 8 clients at once leaves at most pool_idle=2 idle connections"
must pyc burst 8 3
until_ok 5 open_is a -le 2 || true
open_of a
echo "backend a has $OPEN connection(s) open after the burst"
[ "$OPEN" -ge 1 ] && [ "$OPEN" -le 2 ] || die "after the burst backend a has $OPEN connections open"

step "drain closes the server's idle connections; the idle timeout closes them"
must "$RTCPVSADM" edit-server pool a --state drain
until_ok 5 open_is a = 0 || die "drain left idle connections open"
must "$RTCPVSADM" edit-server pool a --state up
must "$RTCPVSADM" edit-service pool --idle-timeout-ms 1500
must pyc one /x
open_of a
[ "$OPEN" = 1 ] || die "expected 1 idle connection, got $OPEN"
s0=$SECONDS
until_ok 5 open_is a = 0 || die "idle timeout did not close the pooled connection"
echo "pooled connection closed by the idle timeout after about $((SECONDS - s0)) s"
must "$RTCPVSADM" edit-service pool --idle-timeout-ms 60000

step "active_conns back to 0"
for d in $K/pool $K/pool/servers/a $K/pool2 $K/pool2/servers/b; do
	[ "$(stat_of $d active_conns)" = 0 ] || die "$d: $(cat $d/stats)"
done
"$RTCPVSADM" list --stats

step "rmmod with an idle pooled connection (its request ended after its service was deleted)"
$PY $T one /slow=6 > /tmp/slow.out 2>&1 &
slowpid=$!
conns_are() { [ "$(stat_of $K/pool active_conns)" "$1" "$2" ]; }
until_ok 60 conns_are -ge 1 || die "the slow request did not arrive"
must "$RTCPVSADM" delete-service pool
wait $slowpid || die "slow request: $(cat /tmp/slow.out)"
cat /tmp/slow.out
open_of a
echo "backend a has $OPEN connection(s) open before rmmod"
[ "$OPEN" = 1 ] || die "expected the slow request's connection in the pool, got $OPEN"
must "$RTCPVSADM" delete-service pool2
must rmmod ktcpvs_rs
until_ok 5 open_is a = 0 || die "rmmod left the pooled connection open"
grep -q "ktcpvs_rs: unloaded" < <(dmesg) || die "no unload line"
must rmmod ipvs_glue
step "done"
