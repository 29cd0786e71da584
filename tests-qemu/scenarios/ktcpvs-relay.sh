# vms: 1
# timeout: 1800
# ktcpvs_rs's data path: three backends on 127.0.0.1 (hark-vmtool http-backend), a service on
# 127.0.0.1:8080 with rules (/static/* -> a, Host api.example -> b, default -> c); routing,
# X-Forwarded-For and Connection: close over 600 requests (200 per rule), wrr 1:2:3 over 240
# requests, keep-alive (10 requests alternating backends on one connection, pipelining, idle
# close), 8 MiB up and down byte-identical, a chunked upload, a config change under a live
# connection, a backend killed mid-run, tcp mode over IPv6, 1,000 concurrent hostile clients
# (garbage, oversized heads, slowloris, half-close, RST) with active_conns back to 0, and rmmod
# while a load generator runs. The HTTP clients are hark-vmtool's http-* commands (Python under
# TCG starts in seconds and its threads wait on the GIL for seconds), except the keep-alive,
# 8 MiB and tcp-mode checks (python3's http.client).
. "$HARK_TOP/tests-qemu/guest/lib.sh"

K=/sys/kernel/config/ktcpvs
T=/tmp/relay-test.py
stat_of() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$1/stats"; }

cat > $T <<'PY'
import hashlib, http.client, os, random, socket, sys, time

# What the backends (hark-vmtool http-backend) serve as /blob.
BLOB = random.Random(7).randbytes(8 << 20)

def get(path, host=None, timeout=30, port=8080):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path, headers={"Host": host} if host else {})
    r = c.getresponse(); body = r.read(); c.close()
    return r.status, body

# lib.sh's wait scale (several TCG VMs share the cores in CI): slack for timing checks.
SCALE = float(os.environ.get("HARK_WAIT_SCALE", "3"))

def fail(msg):
    print("FAIL:", msg); sys.exit(1)

def keepalive():
    # 10 requests alternating paths on one client connection, each routed anew.
    c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=30)
    ports = set()
    for i in range(10):
        path, want = (f"/static/ka{i}.css", "a") if i % 2 == 0 else (f"/ka{i}", "c")
        c.request("GET", path)
        r = c.getresponse(); body = r.read()
        w = body.decode().split()
        if r.status != 200 or w[0] != want or w[1] != path or w[3] != "conn=close":
            fail(f"keep-alive request {i} {path}: {r.status} {body[:80]}")
        if (r.getheader("Connection") or "").lower() != "keep-alive" or c.sock is None:
            fail(f"keep-alive request {i}: Connection {r.getheader('Connection')}")
        ports.add(c.sock.getsockname()[1])
    # A body on the connection (then the next request), a HEAD (no body despite its
    # Content-Length), then plain requests up to the limit of 100 a connection.
    part = BLOB[:100000]
    c.request("POST", "/static/up", body=part)
    r = c.getresponse(); w = r.read().decode().split()
    if r.status != 200 or w[:3] != ["a", str(len(part)), hashlib.sha256(part).hexdigest()]:
        fail(f"keep-alive POST: {r.status} {w}")
    ports.add(c.sock.getsockname()[1])
    c.request("HEAD", "/static/head")
    r = c.getresponse(); body = r.read()
    if r.status != 200 or body or int(r.getheader("Content-Length")) < 10:
        fail(f"keep-alive HEAD: {r.status} {r.getheaders()} {body[:40]!r}")
    ports.add(c.sock.getsockname()[1])
    for i in range(13, 101):
        c.request("GET", f"/n{i}")
        r = c.getresponse(); body = r.read()
        conn = (r.getheader("Connection") or "").lower()
        if r.status != 200 or not body.startswith(f"c /n{i} ".encode()):
            fail(f"keep-alive request {i}: {r.status} {body[:80]}")
        if conn != ("close" if i == 100 else "keep-alive"):
            fail(f"keep-alive request {i}: Connection {conn}")
        if i < 100:
            ports.add(c.sock.getsockname()[1])
        elif c.sock is not None:
            fail("keep-alive: the client kept the connection after the 100th request")
    c.close()
    if len(ports) != 1:
        fail(f"keep-alive: the client used {len(ports)} connections")
    # Idle: closed after the header timeout (2 s).
    c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=30)
    c.request("GET", "/idle")
    c.getresponse().read()
    t = time.time(); s = c.sock
    s.settimeout(2.0 + 3.0 * SCALE)
    try:
        d = s.recv(100)
    except socket.timeout:
        fail("keep-alive: the idle connection was not closed")
    idle = time.time() - t
    if d or idle < 1.5:
        fail(f"keep-alive: idle close after {idle:.1f} s with {d!r}")
    c.close()
    # Two pipelined requests in one segment, the second with Connection: close.
    s = socket.create_connection(("127.0.0.1", 8080), timeout=30)
    s.sendall(b"GET /static/p1 HTTP/1.1\r\nHost: h\r\n\r\n"
              b"GET /p2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    data = readall(s, 30); s.close()
    first, _, second = data.partition(b"a /static/p1 ")
    if (b"Connection: keep-alive" not in first or b"c /p2 " not in second
            or b"Connection: close" not in second):
        fail(f"pipelined: {data!r}")
    # Connection: close from the client: answered with close, the client reconnects.
    c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=30)
    c.request("GET", "/static/close", headers={"Connection": "close"})
    r = c.getresponse(); body = r.read()
    if not body.startswith(b"a /static/close ") or r.getheader("Connection") != "close":
        fail(f"close: {r.status} {r.getheader('Connection')} {body[:80]}")
    c.close()
    print(f"keepalive: 10 requests on one connection (a, c alternating), then a POST, a HEAD "
          f"and GETs up to the 100th (answered with close), idle close after {idle:.1f} s, "
          f"2 pipelined, Connection: close honoured")

def big():
    t = time.time()
    st, body = get("/blob", timeout=300)
    if st != 200 or hashlib.sha256(body).digest() != hashlib.sha256(BLOB).digest():
        fail(f"download: {st} {len(body)} bytes, not identical")
    print(f"download 8 MiB identical in {time.time() - t:.1f} s")
    t = time.time()
    c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=300)
    c.request("POST", "/up", body=BLOB)
    r = c.getresponse(); w = r.read().decode().split(); c.close()
    if r.status != 200 or w[1] != str(len(BLOB)) or w[2] != hashlib.sha256(BLOB).hexdigest():
        fail(f"upload: {r.status} {w}")
    print(f"upload 8 MiB identical in {time.time() - t:.1f} s")
    part = BLOB[:300000]
    c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=120)
    c.request("POST", "/chunked", body=(part[i:i + 7000] for i in range(0, len(part), 7000)),
              encode_chunked=True)
    r = c.getresponse(); w = r.read().decode().split(); c.close()
    if r.status != 200 or w[1] != str(len(part)) or w[2] != hashlib.sha256(part).hexdigest():
        fail(f"chunked upload: {r.status} {w}")
    print("chunked upload identical")

def tcp6():
    for i in range(20):
        s = socket.create_connection(("::1", 8081), timeout=30)
        s.sendall(b"GET /t HTTP/1.0\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        if not data.startswith(b"HTTP/1.0 200") or b"\r\n\r\nc /t xff=- conn=-" not in data:
            fail(f"tcp mode: {data[:200]}")
    print("tcp mode over IPv6: 20 connections ok (bytes untouched, half-close relayed)")

def readall(s, limit=5):
    s.settimeout(limit); data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (socket.timeout, ConnectionResetError):
        pass
    return data

globals()[sys.argv[1]]()
PY

step "load and start three backends"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)"
# Background processes write to files: the guest's runner pipes the scenario through tee,
# which waits for every writer; the trap ends them whatever happens.
port=9001
for n in a b c; do
	"$VMTOOL" http-backend $n $port > /tmp/backend-$n.log 2>&1 &
	eval "pid_$n=\$!"
	port=$((port + 1))
done
trap 'kill $pid_a $pid_b $pid_c ${slowpid:-} ${loadpid:-} 2>/dev/null || true' EXIT
for p in 9001 9002 9003; do
	until_ok 20 port_open "$p" || die "backend on port $p did not start"
done
conns_are() { [ "$(stat_of $K/web active_conns)" "$1" "$2" ]; }

step "configure web on 127.0.0.1:8080: /static/ -> a, Host api.example -> b, default -> c"
must "$RTCPVSADM" add-service web --listen 127.0.0.1:8080 --scheduler wrr \
	--client-header-timeout-ms 2000 --connect-timeout-ms 1000 --max-header-bytes 4096 --xff 1
must "$RTCPVSADM" add-server web a 127.0.0.1:9001
must "$RTCPVSADM" add-server web b 127.0.0.1:9002
must "$RTCPVSADM" add-server web c 127.0.0.1:9003
must "$RTCPVSADM" add-rule web 010-static --match 'path_prefix=/static/' --target a
must "$RTCPVSADM" add-rule web 020-api --match 'host=api.example' --target b
must "$RTCPVSADM" edit-service web --default-target c
must "$RTCPVSADM" start web
dmesg | tail -n 5 | grep -q "service web: enabled" || die "no enable line"
# A second service on the same address cannot listen.
must "$RTCPVSADM" add-service dup --listen 127.0.0.1:8080
must_fail "$RTCPVSADM" start dup 2>/dev/null
dmesg | tail -n 3 | grep -q "service dup: enabled: rejected.*cannot listen" || die "no EADDRINUSE log"
must "$RTCPVSADM" delete-service dup

step "routing: 600 requests by path and Host (200 per rule, 4 clients at a time)"
t0=$SECONDS
# A new client connection for each. Under TCG this runs at 7 to 10 requests a second whatever
# the clients and backends are written in (Python clients and backends did 600 wrr requests
# in 92 s, these in 64 to 98 s): the cost is the guest kernel's, two connections a request.
must "$VMTOOL" http-routing 200 4
echo "routing took $((SECONDS - t0)) s"
[ "$(stat_of $K/web requests)" -ge 600 ] || die "requests counter: $(cat $K/web/stats)"
for s in a b c; do
	[ "$(stat_of $K/web/servers/$s requests)" -ge 200 ] || die "server $s counter: $(cat $K/web/servers/$s/stats)"
done
"$RTCPVSADM" list --stats

step "keep-alive: 10 requests alternating paths on one connection, routed per request"
tc0=$(stat_of $K/web total_conns); rq0=$(stat_of $K/web requests)
sa0=$(stat_of $K/web/servers/a total_conns); sc0=$(stat_of $K/web/servers/c total_conns)
must $PY $T keepalive
tc=$(( $(stat_of $K/web total_conns) - tc0 )); rq=$(( $(stat_of $K/web requests) - rq0 ))
srv=$(( $(stat_of $K/web/servers/a total_conns) - sa0 + $(stat_of $K/web/servers/c total_conns) - sc0 ))
echo "keepalive counters: client connections +$tc, requests +$rq, server connections +$srv"
[ "$tc" = 4 ] && [ "$rq" = 104 ] && [ "$srv" = 104 ] || die "keep-alive counters: $(cat $K/web/stats)"

step "wrr 1:2:3 over 240 requests to the default target, config changed under a live connection"
"$VMTOOL" http-slow 1 5 > /tmp/slow1.out 2>&1 &
slowpid=$!
until_ok 10 conns_are -ge 1 || die "the slow request is not relayed: $(cat $K/web/stats)"
must "$RTCPVSADM" edit-server web b --weight 2
must "$RTCPVSADM" edit-server web c --weight 3
must "$RTCPVSADM" edit-service web --default-target a,b,c
t0=$SECONDS
must "$VMTOOL" http-wrr 240 1:2:3
echo "wrr took $((SECONDS - t0)) s"
wait $slowpid
grep -qx "slow clients ended: 200" /tmp/slow1.out || die "the live connection did not survive the change: $(cat /tmp/slow1.out)"

step "8 MiB download and upload byte-identical, chunked upload"
must $PY $T big

step "tcp mode on [::1]:8081"
must "$RTCPVSADM" add-service raw --listen "[::1]:8081" --mode tcp --scheduler rr
must "$RTCPVSADM" add-server raw c 127.0.0.1:9003
must "$RTCPVSADM" start raw
must $PY $T tcp6
must "$RTCPVSADM" stop raw
must_fail eval '(exec 3<>/dev/tcp/::1/8081) 2>/dev/null'
must "$RTCPVSADM" delete-service raw

step "kill backend a: requests go to b and c, none waits past the connect timeout"
kill $pid_a
wait $pid_a 2>/dev/null || true
must "$VMTOOL" http-survivors 120
a_err=$(stat_of $K/web/servers/a errors)
[ "$a_err" -ge 1 ] || die "no passive failure counted for a: $(cat $K/web/servers/a/stats)"
echo "server a errors=$a_err"

step "1000 hostile clients at once: garbage, oversized heads, slowloris, half-close, RST"
err0=$(stat_of $K/web errors)
t0=$SECONDS
must "$VMTOOL" http-hostile 1000
echo "hostile took $((SECONDS - t0)) s"
until_ok 10 conns_are = 0 || true
[ "$(stat_of $K/web active_conns)" = 0 ] || die "active_conns stuck: $(cat $K/web/stats)"
for s in a b c; do
	[ "$(stat_of $K/web/servers/$s active_conns)" = 0 ] || die "server $s active_conns stuck"
done
[ "$(stat_of $K/web errors)" -gt "$err0" ] || die "errors not counted"
cat $K/web/stats

step "rmmod while a load generator runs (and 10 slow requests are relayed)"
"$VMTOOL" http-load 20 > /tmp/load.out 2>&1 &
loadpid=$!
"$VMTOOL" http-slow 10 30 > /tmp/slow10.out 2>&1 &
slowpid=$!
# Wait until the 10 slow requests are being relayed.
until_ok 30 conns_are -ge 10 || true
active=$(stat_of $K/web active_conns)
echo "active_conns before delete: $active"
[ "$active" -ge 10 ] || die "expected at least the 10 slow connections, got $active"
must "$RTCPVSADM" delete-service web
t0=$(date +%s)
must rmmod ktcpvs_rs
echo "rmmod took $(( $(date +%s) - t0 )) s"
wait $slowpid
echo "$(cat /tmp/slow10.out)"
grep -q "slow clients ended" /tmp/slow10.out || die "slow clients did not end"
wait $loadpid
cat /tmp/load.out
grep -q "ktcpvs_rs: unloaded" < <(dmesg) || die "no unload line"
must rmmod ipvs_glue
step "done"
