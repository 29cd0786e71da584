# vms: 1
# timeout: 600
# The resource agent ha/ocf/ktcpvs (ocf:hark:ktcpvs) passes ocf-tester from Debian's
# resource-agents (meta-data against the OCF DTD, validate-all, start/stop idempotence,
# probes); then by hand: monitor is 7 before start and after stop, 0 while every service of the
# file is enabled, 1 when one was disabled behind its back; a recurring depth-10 monitor (not
# a probe: CRM_meta_interval set) connects to each listen address; a service of another file
# is left alone; a bad file is a configuration error.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
A=$RTCPVSADM
agent=$HARK_TOP/ha/ocf/ktcpvs
conf=/tmp/web.conf other=/tmp/other.conf
cat >"$conf" <<CONF
virtual web {
    listen = 127.0.0.1:8080;
    server = a 127.0.0.1:9001;
    default_target = a;
    enabled = 1;
}
virtual api {
    listen = 0.0.0.0:8081;
    mode = tcp;
    server = b 127.0.0.1:9002;
    default_target = b;
    enabled = 1;
}
CONF
printf 'virtual other {\n    listen = 127.0.0.1:8090;\n    enabled = 1;\n}\n' >"$other"
export OCF_ROOT=/usr/lib/ocf OCF_RESKEY_config=$conf OCF_RESKEY_rtcpvsadm=$A
export OCF_RESOURCE_INSTANCE=p_web

step "module absent: start is 'not installed' when modprobe cannot load it"
if ! modprobe -n ktcpvs_rs 2>/dev/null; then
	ocf_expect 5 start
	ocf_expect 7 monitor
	ocf_expect 0 stop
fi
must insmod "$(ko ipvs_glue)"
must insmod "$(ko ktcpvs_rs)"
must $A load "$other"

step "ocf-tester"
out=$(ocf-tester -v -n p_web -o "config=$conf" -o "rtcpvsadm=$A" "$agent" 2>&1) || {
	echo "$out"
	die "ocf-tester failed"
}
echo "$out" | tail -n 20
[[ $out == *"$agent passed all tests"* ]] || die "ocf-tester did not pass"

step "monitor codes"
ocf_expect 7 monitor
ocf_expect 0 start
ocf_expect 0 monitor
ocf_expect 0 monitor OCF_CHECK_LEVEL=10 OCF_RESKEY_CRM_meta_interval=60000
$A list | grep -q "web" || die "web not listed"
must $A stop api
ocf_expect 1 monitor
ocf_expect 0 start
ocf_expect 0 monitor
ocf_expect 0 stop
ocf_expect 7 monitor
ocf_expect 0 stop
[ "$($A status "$other" >/dev/null; echo $?)" = 0 ] || die "the other file's service was touched"

step "depth 10 notices a listener that does not answer"
must $A load "$conf"
ocf_expect 0 monitor
must $A stop web
must $A edit-service web --listen 127.0.0.1:8071
must $A start web
r=0
out=$(OCF_CHECK_LEVEL=10 OCF_RESKEY_CRM_meta_interval=60000 "$agent" monitor 2>&1) || r=$?
[ $r = 1 ] || { ss -ltn; die "depth-10 monitor with web elsewhere: $r, want 1: $out"; }
[[ $out == *"service web: no connection to 127.0.0.1:8080"* ]] || die "depth-10 monitor: no reason given: $out"
ocf_expect 0 stop

step "configuration errors"
echo 'virtual bad { listen = ; }' >/tmp/bad.conf
ocf_expect 6 validate-all OCF_RESKEY_config=/tmp/bad.conf
ocf_expect 5 validate-all OCF_RESKEY_config=/tmp/nosuch.conf
ocf_expect 7 monitor OCF_RESKEY_config=/tmp/nosuch.conf OCF_RESKEY_CRM_meta_interval=0
must $A unload "$other"
must rmmod ktcpvs_rs
step "done"
