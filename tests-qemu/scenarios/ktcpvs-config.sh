# vms: 1
# timeout: 600
# ktcpvs_rs's configfs tree: services, servers and rules made with mkdir and rtcpvsadm; every
# bad write fails with EINVAL, logs a line and changes nothing; save/load round trip; rmmod is
# refused while directories exist and clean after they are gone.
. "$HARK_TOP/tests-qemu/guest/lib.sh"

K=/sys/kernel/config/ktcpvs
# Write $3 to attribute $2 of directory $1 and expect EINVAL, a log line with $4, and the value
# unchanged.
bad_write() {
	local dir=$1 attr=$2 value=$3 log=$4 before after err
	before=$(cat "$dir/$attr")
	# bash's echo reports the errno ("write error: Invalid argument"); dash's does not.
	if err=$( { echo "$value" > "$dir/$attr"; } 2>&1); then
		die "writing '$value' to $dir/$attr should have failed"
	fi
	echo "$err" | grep -q "Invalid argument" || die "$dir/$attr '$value': not EINVAL: $err"
	dmesg | tail -n 20 | grep -qF "$log" || die "$dir/$attr '$value': no log line '$log'"
	after=$(cat "$dir/$attr")
	[ "$before" = "$after" ] || die "$dir/$attr changed from '$before' to '$after'"
	echo "refused as expected: $attr='$value' ($log)"
}
expect() { [ "$(cat "$1")" = "$2" ] || die "$1 is '$(cat "$1")', expected '$2'"; }

step "load"
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)" max_services=3

step "raw configfs: a service with defaults"
must mkdir $K/raw
expect $K/raw/scheduler wlc
expect $K/raw/mode http
expect $K/raw/listen ""
expect $K/raw/enabled 0
expect $K/raw/default_target "*"
expect $K/raw/max_header_bytes 8192
expect $K/raw/max_fails 1
expect $K/raw/fail_timeout_ms 10000
expect $K/raw/pool_idle 0
expect $K/raw/stats "active_conns=0 total_conns=0 requests=0 bytes_in=0 bytes_out=0 errors=0 refused=0 mem_bytes=0"
must mkdir $K/raw/servers $K/raw/rules
must_fail mkdir $K/raw/other 2>/dev/null
dmesg | tail -n 5 | grep -q "service raw: mkdir other: only servers and rules" || die "no log for mkdir other"
must_fail mkdir "$K/bad name" 2>/dev/null
must mkdir $K/raw/servers/a
expect $K/raw/servers/a/weight 1
expect $K/raw/servers/a/state up
expect $K/raw/servers/a/address ""
echo "[::1]:8080" > $K/raw/servers/a/address
expect $K/raw/servers/a/address "[::1]:8080"
echo 10.0.0.1:80 > $K/raw/servers/a/address
expect $K/raw/servers/a/address 10.0.0.1:80
must mkdir $K/raw/rules/010-static
must_fail mkdir $K/raw/rules/static 2>/dev/null
dmesg | tail -n 5 | grep -q "rule static: not created: rule name must be" || die "no log for bad rule name"
echo 'path_prefix=/static/ method=GET' > $K/raw/rules/010-static/pattern
echo a > $K/raw/rules/010-static/target
expect $K/raw/rules/010-static/pattern 'path_prefix=/static/ method=GET'
expect $K/raw/rules/010-static/target a

step "raw configfs: bad writes fail with EINVAL, log, change nothing"
bad_write $K/raw listen "1.2.3.4" "service raw: listen: rejected"
bad_write $K/raw listen "[::1]" "address must be"
bad_write $K/raw listen "1.2.3.4:0" "port must not be 0"
bad_write $K/raw scheduler "fastest" "unknown scheduler"
bad_write $K/raw mode "udp" "unknown mode"
bad_write $K/raw max_header_bytes 100 "service raw: max_header_bytes: rejected \"100\": number out of range"
bad_write $K/raw idle_timeout_ms -5 "not a decimal number"
bad_write $K/raw pool_idle 257 "service raw: pool_idle: rejected \"257\": number out of range"
bad_write $K/raw xff 2 "value must be 0 or 1"
bad_write $K/raw max_fails 1001 "service raw: max_fails: rejected \"1001\": number out of range"
bad_write $K/raw fail_timeout_ms 0 "service raw: fail_timeout_ms: rejected \"0\": number out of range"
bad_write $K/raw cookie "a=b" "service raw: cookie: rejected"
bad_write $K/raw default_target "nobody" "no server nobody"
bad_write $K/raw enabled 1 "set listen before enabling"
bad_write $K/raw/servers/a address "0.0.0.0:80" "server a: address: rejected"
bad_write $K/raw/servers/a address "10.0.0.1:99999" "address must be"
bad_write $K/raw/servers/a weight 70000 "server a: weight: rejected \"70000\": number out of range"
bad_write $K/raw/servers/a state "sleeping" "unknown state"
bad_write $K/raw/rules/010-static pattern "path=nope" "rule 010-static: pattern: rejected"
bad_write $K/raw/rules/010-static pattern "pth=/x" "unknown key"
bad_write $K/raw/rules/010-static target "a,ghost" "no server ghost"
bad_write $K/raw/rules/010-static target "a,,b" "server list must be"
# stats is read-only.
must_fail sh -c "echo 1 > $K/raw/stats" 2>/dev/null

step "raw configfs: enable rules"
echo 0.0.0.0:8080 > $K/raw/listen
echo 1 > $K/raw/enabled
expect $K/raw/enabled 1
dmesg | tail -n 5 | grep -q "service raw: enabled" || die "no enable log line"
must_fail sh -c "echo 1.2.3.4:80 > $K/raw/listen" 2>/dev/null
dmesg | tail -n 3 | grep -q "stop the service before changing listen" || die "no busy log"
echo tcp > $K/raw/mode
bad_write $K/raw scheduler uri-hash "mode tcp cannot use scheduler uri-hash"
echo http > $K/raw/mode
echo 0 > $K/raw/enabled

step "raw configfs: removing a targeted server takes it out of the targets"
must mkdir $K/raw/servers/b
echo b > $K/raw/default_target
echo a,b > $K/raw/rules/010-static/target
expect $K/raw/rules/010-static/target a,b
must rmdir $K/raw/servers/a
expect $K/raw/rules/010-static/target b
dmesg | tail -n 5 | grep -q "service raw: rule 010-static loses server a" || die "no loses-server log"
must mkdir $K/raw/servers/a
expect $K/raw/servers/a/address ""
# Server lists read back in name order, whatever the order of the mkdirs.
echo b,a > $K/raw/rules/010-static/target
expect $K/raw/rules/010-static/target a,b

step "raw configfs: limits"
must mkdir $K/two $K/three
must_fail mkdir $K/four 2>/dev/null
dmesg | tail -n 3 | grep -q "max_services=3 reached" || die "no max_services log"
must rmdir $K/two $K/three
# One mkdir/rmdir process for all (each process start costs about 0.5 s under TCG); mkdir
# goes on after a refusal, so the count below is what the limit let through.
mkdir $K/raw/servers/s{1..64} 2>/dev/null || true
[ "$(ls $K/raw/servers | wc -l)" = 64 ] || die "expected 64 servers, got $(ls $K/raw/servers | wc -l)"
must_fail mkdir $K/raw/servers/one-more 2>/dev/null
rmdir $K/raw/servers/s{1..64} 2>/dev/null || true

step "rmmod is refused while directories exist"
must_fail rmmod ktcpvs_rs 2>/dev/null
rmdir $K/raw/rules/010-static $K/raw/servers/* $K/raw/rules $K/raw/servers $K/raw
[ -z "$(ls -d $K/*/ 2>/dev/null)" ] || die "directories left: $(ls $K)"

# rtcpvsadm must fail with EINVAL in its message and the kernel must log $1.
cli_einval() {
	local log=$1 out
	shift
	if out=$("$RTCPVSADM" "$@" 2>&1); then die "rtcpvsadm $* should have failed"; fi
	echo "$out" | grep -q "EINVAL" || die "rtcpvsadm $*: not EINVAL: $out"
	dmesg | tail -n 20 | grep -qF "$log" || die "rtcpvsadm $*: no log line '$log'"
	echo "refused as expected: rtcpvsadm $* ($out)"
}

step "rtcpvsadm: a service with 3 servers and 3 rules"
must "$RTCPVSADM" add-service web --listen 10.0.0.1:80 --scheduler wrr --idle-timeout-ms 30000 \
	--xff 1 --cookie KTCPVS_SID --max-fails 3 --fail-timeout-ms 5000
must "$RTCPVSADM" add-server web a 10.0.0.11:8080 --weight 3
must "$RTCPVSADM" add-server web b "[fd00::12]:8080"
must "$RTCPVSADM" add-server web c 10.0.0.13:8080 --weight 0 --state drain
must "$RTCPVSADM" add-rule web 010-static --match 'path_prefix=/static/ method=GET' --target a,b
must "$RTCPVSADM" add-rule web 020-api --match 'host=*.api.example' --target c
must "$RTCPVSADM" add-rule web 005-debug --match 'header="X-Debug:on 1"' --target b
must "$RTCPVSADM" edit-service web --default-target a,b
must "$RTCPVSADM" start web
must "$RTCPVSADM" add-service tls --listen "[::]:443" --mode tcp --scheduler sh
must "$RTCPVSADM" add-server tls x 10.0.0.20:443

step "the tree, through list --json and cat"
"$RTCPVSADM" list --json --stats > /tmp/list.json || die "list --json"
$PY - /tmp/list.json <<'PY' || die "list --json does not show the configuration"
import json, sys
d = json.load(open(sys.argv[1]))
svcs = {s["name"]: s for s in d["services"]}
assert sorted(svcs) == ["tls", "web"], svcs
w = svcs["web"]
for k, v in [("listen", "10.0.0.1:80"), ("scheduler", "wrr"), ("mode", "http"),
             ("idle_timeout_ms", 30000), ("client_header_timeout_ms", 10000), ("xff", True),
             ("cookie", "KTCPVS_SID"), ("default_target", "a,b"), ("enabled", True),
             ("max_fails", 3), ("fail_timeout_ms", 5000)]:
    assert w[k] == v, (k, w[k], v)
assert w["stats"]["requests"] == 0, w["stats"]
assert [(s["name"], s["address"], s["weight"], s["state"]) for s in w["servers"]] == [
    ("a", "10.0.0.11:8080", 3, "up"), ("b", "[fd00::12]:8080", 1, "up"),
    ("c", "10.0.0.13:8080", 0, "drain")], w["servers"]
assert [(r["name"], r["match"], r["target"]) for r in w["rules"]] == [
    ("005-debug", 'header="X-Debug:on 1"', ["b"]),
    ("010-static", "path_prefix=/static/ method=GET", ["a", "b"]),
    ("020-api", "host=*.api.example", ["c"])], w["rules"]
t = svcs["tls"]
assert (t["listen"], t["mode"], t["scheduler"], t["enabled"]) == ("[::]:443", "tcp", "sh", False), t
print("list --json: ok")
PY
expect $K/web/servers/b/address "[fd00::12]:8080"
expect $K/web/servers/c/state drain
expect $K/web/rules/005-debug/pattern 'header="X-Debug:on 1"'
expect $K/web/rules/010-static/target a,b
expect $K/web/enabled 1
grep -q "^Virtual web  listen 10.0.0.1:80  scheduler wrr  mode http  enabled" < <("$RTCPVSADM" list) \
	|| die "list text"

step "rtcpvsadm: bad values fail with EINVAL, log a line, change nothing"
cli_einval "server a: address: rejected" edit-server web a --address 10.0.0.300:80
expect $K/web/servers/a/address 10.0.0.11:8080
bad_write $K/web/servers/a weight 70000 "server a: weight: rejected"
expect $K/web/servers/a/weight 3
cli_einval "service web: scheduler: rejected \"fastest\"" edit-service web --scheduler fastest
expect $K/web/scheduler wrr
cli_einval "rule 010-static: pattern: rejected" edit-rule web 010-static --match 'path_prefix=static'
expect $K/web/rules/010-static/pattern 'path_prefix=/static/ method=GET'
cli_einval "no server ghost" edit-rule web 010-static --target a,ghost
expect $K/web/rules/010-static/target a,b
cli_einval "rule 030-bad: pattern: rejected" add-rule web 030-bad --match 'pth=/x' --target a
[ ! -e $K/web/rules/030-bad ] || die "a refused add-rule left its directory"
must "$RTCPVSADM" add-service nolisten --listen ""
cli_einval "service nolisten: enabled: rejected" start nolisten
expect $K/nolisten/enabled 0
must "$RTCPVSADM" delete-service nolisten
must_fail "$RTCPVSADM" delete-server web c 2>/dev/null
[ -d $K/web/servers/c ] || die "delete-server removed a server a rule names"
must "$RTCPVSADM" edit-server web c --weight 5 --state up
expect $K/web/servers/c/weight 5

step "save, delete all, load, save: identical"
"$RTCPVSADM" save > /tmp/saved1.conf || die save
cat /tmp/saved1.conf
must_fail "$RTCPVSADM" load /tmp/saved1.conf 2>/dev/null
must "$RTCPVSADM" delete-service web
must "$RTCPVSADM" delete-service tls
[ -z "$(ls -d $K/*/ 2>/dev/null)" ] || die "services left after delete-service"
must "$RTCPVSADM" load /tmp/saved1.conf
"$RTCPVSADM" save > /tmp/saved2.conf || die save
cmp /tmp/saved1.conf /tmp/saved2.conf || { diff /tmp/saved1.conf /tmp/saved2.conf; die "save differs"; }
expect $K/web/enabled 1

step "delete everything; rmmod"
must_fail rmmod ktcpvs_rs 2>/dev/null
for s in $(ls -d $K/*/ | xargs -n1 basename); do must "$RTCPVSADM" delete-service "$s"; done
[ -z "$(ls -d $K/*/ 2>/dev/null)" ] || die "directories left"
grep -q "ktcpvs_rs: service web: removed" < <(dmesg) || die "no removal log line"
must rmmod ktcpvs_rs
must rmmod ipvs_glue
[ ! -e $K ] || die "configfs subsystem left behind"
step "done"
