# vms: 2
# timeout: 240
# Two VMs exchange 8 MiB over TCP on the internal test link and agree on its SHA-256.
. "$HARK_TOP/tests-qemu/guest/lib.sh"

if [ "$HARK_VM" = 0 ]; then
  step "serving on $HARK_IP:7000"
  $PY - "$HARK_IP" <<'PYEOF' &
import hashlib, socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 7000)); srv.listen(1); srv.settimeout(120)
conn, peer = srv.accept(); h = hashlib.sha256(); n = 0
while True:
    b = conn.recv(65536)
    if not b: break
    h.update(b); n += len(b)
conn.sendall(f"{n} {h.hexdigest()}\n".encode()); conn.close()
print(f"server: received {n} bytes from {peer[0]}")
PYEOF
  server=$!
  barrier listening
  wait "$server" || die "server failed"
else
  barrier listening
  peer=${HARK_PEER_IPS%% *}
  step "ping $peer"
  must busybox ping -c 2 -W 5 "$peer"
  step "sending 8 MiB to $peer:7000"
  $PY - "$peer" <<'PYEOF' || die "transfer mismatch"
import hashlib, os, socket, sys
data = os.urandom(8 << 20)
c = socket.create_connection((sys.argv[1], 7000), timeout=60)
c.sendall(data); c.shutdown(socket.SHUT_WR)
reply = c.makefile().readline().split()
want = [str(len(data)), hashlib.sha256(data).hexdigest()]
print("client: server says", reply, "expected", want)
sys.exit(0 if reply == want else 1)
PYEOF
fi
step "done"
