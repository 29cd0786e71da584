# vms: 1
# timeout: 1500
# mem: 2048
# suite: soak
# ktcpvs_rs's resource use under attack, measured in one run (hark-vmtool http-siege): the
# median latency of a normal client unloaded, then with 10,000 idle keep-alive connections
# (each after one answered request) and 1,000 slowloris clients (a field line every 2 s each)
# held open; loaded must stay within 2x unloaded. The service's mem_bytes and the guest's Slab
# before and after the idle connections give the memory per idle connection. Then every
# connection is closed and active_conns and mem_bytes must return to 0 (exact accounting), and
# max_mem_kib refuses connections with 503 and counts them in `refused`.
# In `make soak`, not `make test`: it runs 8–15 minutes, and the 2x goal is not met yet on a
# loaded host (2.37 and 2.73 measured; Documentation/ktcpvs-relay.md).
. "$HARK_TOP/tests-qemu/guest/lib.sh"

K=/sys/kernel/config/ktcpvs
stat_of() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$1/stats"; }

step "load, one keep-alive backend"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)"
dmesg | grep "ktcpvs_rs: .*worker threads" || die "no worker count logged"
"$VMTOOL" http-backend a 9001 --keepalive > /tmp/backend-a.log 2>&1 &
pid_a=$!
trap 'kill $pid_a 2>/dev/null || true' EXIT
until_ok 20 port_open 9001 || die "backend did not start"

step "service web: header timeout 600 s (the idle and slowloris clients stay), pool of 16"
must "$RTCPVSADM" add-service web --listen 127.0.0.1:8080 --scheduler rr \
	--client-header-timeout-ms 600000 --max-conns 20000
must "$RTCPVSADM" add-server web a 127.0.0.1:9001
echo 16 > $K/web/pool_idle || die "pool_idle"
must "$RTCPVSADM" start web
grep -qx 65536 $K/web/max_mem_kib || die "max_mem_kib default: $(cat $K/web/max_mem_kib)"

step "siege: 10,000 idle keep-alive + 1,000 slowloris, latency loaded vs unloaded"
ulimit -n 65536
t0=$SECONDS
must "$VMTOOL" http-siege 10000 1000 60 $K/web/stats
echo "siege took $((SECONDS - t0)) s"
cat $K/web/stats

step "every connection closed: active_conns and mem_bytes back to 0"
conns_gone() { [ "$(stat_of $K/web active_conns)" = 0 ] && [ "$(stat_of $K/web mem_bytes)" = 0 ]; }
until_ok 60 conns_gone || die "not back to 0: $(cat $K/web/stats)"

step "max_mem_kib 64: partial heads hold 8 KiB each, the next connections get 503, counted"
echo 64 > $K/web/max_mem_kib || die "max_mem_kib"
ref0=$(stat_of $K/web refused)
for i in $(seq 3 22); do
	exec {fd}<>/dev/tcp/127.0.0.1/8080
	printf 'GET / HTTP/1.1\r\nHost: x\r\n' >&$fd
	eval "fd_$i=$fd"
done
got503=0
for i in $(seq 3 22); do
	eval "fd=\$fd_$i"
	if read -r -t 5 line <&$fd && [[ $line == "HTTP/1.1 503"* ]]; then
		got503=$((got503 + 1))
	fi
done
ref1=$(stat_of $K/web refused)
echo "503 answers: $got503 of 20, refused $ref0 -> $ref1; $(cat $K/web/stats)"
[ "$got503" -ge 5 ] || die "expected 503 answers above 64 KiB"
[ "$((ref1 - ref0))" -ge "$got503" ] || die "refusals not counted"
[ "$(stat_of $K/web mem_bytes)" -le 65536 ] || die "mem_bytes above the limit"
for i in $(seq 3 22); do eval "exec {fd_$i}>&-"; done
until_ok 30 conns_gone || die "not back to 0: $(cat $K/web/stats)"

step "unload"
must "$RTCPVSADM" delete-service web
must rmmod ktcpvs_rs
must rmmod ipvs_glue
step "done"
