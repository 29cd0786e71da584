# vms: 1
# timeout: 600
# rtcpvsadm follow-ipvs: a ktcpvs_rs service with servers_from = fwmark 100 follows the IPVS
# firewall-mark service 100 (programmed with ipvsadm, as keepalived does over the same generic
# netlink family): destinations added, removed, weight changed, weight 0 -> drain and back,
# the IPVS service deleted (servers kept), re-created empty (servers drain, rule targets
# kept) and given other destinations; each change
# is measured from the ipvsadm call to the configfs tree. A rule keeps targeting a followed
# server by its address name; requests through the switch reach only up servers. keepalived -t
# accepts the fwmark declaration of Documentation/l7-ha.md.
. "$HARK_TOP/tests-qemu/guest/lib.sh"

K=/sys/kernel/config/ktcpvs
S=$K/web/servers
A=ip-127.0.0.1-8081 B=ip-127.0.0.1-8082 C=ip-127.0.0.1-8083

# The servers as "name:weight:state ..." in name order.
servers() {
	local d out=
	for d in "$S"/*/; do
		[ -d "$d" ] || continue
		d=${d%/}
		out+="${d##*/}:$(<"$d/weight"):$(<"$d/state") "
	done
	echo "${out% }"
}

# expect WANT: waits until servers() is WANT; prints the time it took after the last ipvsadm.
expect() {
	local end=$((SECONDS + 2 * HARK_WAIT_SCALE))
	until [ "$(servers)" = "$1" ]; do
		[ "$SECONDS" -lt "$end" ] || die "servers are '$(servers)', expected '$1'"
		nap 0.05
	done
	local ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
	echo "followed in $ms ms: $1"
	[ "$ms" -le $((1000 * HARK_WAIT_SCALE)) ] || die "took $ms ms (limit 1 s x $HARK_WAIT_SCALE)"
}
ipvs() { must ipvsadm "$@"; t0=${EPOCHREALTIME/./}; }

# One request through the switch: prints the backend's name.
ask() {
	local l last=
	exec 3<>/dev/tcp/127.0.0.1/8080 || return 1
	printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3
	while IFS= read -r -t 20 l <&3 || [ -n "$l" ]; do
		last=$l
		l=
	done
	exec 3<&-
	echo "${last%% *}"
}

step "modules, backends a b c on 127.0.0.1:8081..8083"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)"
names=(- a b c)
for n in 1 2 3; do
	"$VMTOOL" http-backend "${names[n]}" 808$n > /tmp/backend-$n.log 2>&1 &
done
for n in 1 2 3; do until_ok 30 port_open 808$n || die "backend $n not listening"; done

step "IPVS fwmark service 100 (a w1, b w3); ktcpvs service web follows it"
ipvs -A -f 100 -s swrr
ipvs -a -f 100 -r 127.0.0.1:8081 -m -w 1
ipvs -a -f 100 -r 127.0.0.1:8082 -m -w 3
must "$RTCPVSADM" add-service web --listen 127.0.0.1:8080 --scheduler wrr --servers-from "fwmark 100"
[ "$(<$K/web/servers_from)" = "fwmark 100" ] || die "servers_from reads '$(<$K/web/servers_from)'"
must_fail sh -c "echo 'fwmark 0' > $K/web/servers_from" 2>/dev/null
must_fail sh -c "echo 'udp 1.2.3.4:53' > $K/web/servers_from" 2>/dev/null
"$RTCPVSADM" follow-ipvs --interval-ms 500 > /tmp/follow.log 2>&1 &
follower=$!
t0=${EPOCHREALTIME/./}
expect "$A:1:up $B:3:up"
must "$RTCPVSADM" add-rule web 010-static --match 'path_prefix=/static/' --target "$A"
must "$RTCPVSADM" start web
[ "$(ask /static/x)" = a ] || die "the rule's server did not answer"

step "destination added, weight changed"
ipvs -a -f 100 -r 127.0.0.1:8083 -m -w 2
expect "$A:1:up $B:3:up $C:2:up"
ipvs -e -f 100 -r 127.0.0.1:8082 -m -w 5
expect "$A:1:up $B:5:up $C:2:up"

step "weight 0 (keepalived inhibit_on_failure) drains; traffic avoids it"
ipvs -e -f 100 -r 127.0.0.1:8081 -m -w 0
expect "$A:1:drain $B:5:up $C:2:up"
for i in 1 2 3 4 5 6 7; do
	n=$(ask /x$i) || die "request $i failed"
	[ "$n" = b ] || [ "$n" = c ] || die "request $i went to '$n'"
done
ipvs -e -f 100 -r 127.0.0.1:8081 -m -w 1
expect "$A:1:up $B:5:up $C:2:up"

step "destination removed"
ipvs -d -f 100 -r 127.0.0.1:8083
expect "$A:1:up $B:5:up"

step "IPVS service deleted: servers kept"
ipvs -D -f 100
nap 2
[ "$(servers)" = "$A:1:up $B:5:up" ] || die "servers changed with the service gone: $(servers)"
grep -q 'IPVS fwmark 100 absent: servers kept' /tmp/follow.log || die "absence not logged"

step "IPVS service re-created empty (servers drain), then with other destinations"
ipvs -A -f 100 -s swrr
expect "$A:1:drain $B:5:drain"
ipvsadm -a -f 100 -r 127.0.0.1:8081 -m -w 2
ipvs -a -f 100 -r 127.0.0.1:8083 -m -w 1
expect "$A:2:up $C:1:up"
[ "$(<$K/web/rules/010-static/target)" = "$A" ] || die "rule target lost"
[ "$(ask /static/y)" = a ] || die "the rule's server did not answer after re-creation"

step "the follower's log"
cat /tmp/follow.log
grep -q "service web: add server $C 127.0.0.1:8083 weight 2 up" /tmp/follow.log || die "no add line"
grep -q "service web: server $A drain" /tmp/follow.log || die "no drain line"
grep -q "service web: remove server $B" /tmp/follow.log || die "no remove line"
kill "$follower"

step "keepalived accepts the fwmark declaration (Documentation/l7-ha.md)"
mkdir -p /tmp/ka
cat > /tmp/ka/keepalived.conf <<'EOF'
virtual_server fwmark 100 {
    delay_loop 2
    lb_algo wrr
    lb_kind NAT
    inhibit_on_failure
    real_server 127.0.0.1 8081 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
EOF
keepalived -t -f /tmp/ka/keepalived.conf > /tmp/ka/check.log 2>&1 || {
	cat /tmp/ka/check.log
	die "keepalived -t refused the declaration"
}

step "unload"
must "$RTCPVSADM" delete-service web
must ipvsadm -C
must_fail rmmod ipvs_glue 2>/dev/null
must rmmod ktcpvs_rs
must rmmod ipvs_glue
step "done"
