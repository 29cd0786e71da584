# vms: 1
# timeout: 600
# disk: 32M
# The resource agent ha/ocf/drbd_rs (ocf:hark:drbd_rs) passes ocf-tester from Debian's
# resource-agents (meta-data against the OCF DTD, validate-all, start/stop/promote/demote
# idempotence, probes); then by hand: monitor is 7 stopped, 0 Secondary, 8 Primary, a missing
# resource is a configuration error, a probe of it is "not running".
. "$HARK_TOP/tests-qemu/guest/lib.sh"
write_drbd_conf
A=$RDRBDADM
agent=$HARK_TOP/ha/ocf/drbd_rs
export OCF_ROOT=/usr/lib/ocf OCF_RESKEY_drbd_resource=r0 OCF_RESKEY_rdrbdadm=$A OCF_RESKEY_wfc_timeout=0
export OCF_RESOURCE_INSTANCE=p_drbd

step "metadata with UpToDate data (primary --force once), resource down"
must insmod "$(ko drbd_rs)"
must $A create-md r0
must $A up r0
must $A primary --force r0
must $A secondary r0
must $A down r0

step "ocf-tester"
out=$(ocf-tester -v -n p_drbd -o drbd_resource=r0 -o "rdrbdadm=$A" -o wfc_timeout=0 "$agent" 2>&1) || {
	echo "$out"
	die "ocf-tester failed"
}
echo "$out" | tail -n 25
[[ $out == *"$agent passed all tests"* ]] || die "ocf-tester did not pass"

step "monitor codes"
ocf_expect 7 monitor
ocf_expect 0 start
ocf_expect 0 monitor
ocf_expect 0 promote
ocf_expect 8 monitor
[[ "$($A status r0)" == *role:Primary* ]] || die "rdrbdadm status after promote: $($A status r0)"
ocf_expect 0 start
ocf_expect 0 monitor
ocf_expect 0 promote
ocf_expect 0 stop
ocf_expect 7 monitor
ocf_expect 0 stop
ocf_expect 6 validate-all OCF_RESKEY_drbd_resource=nosuch
ocf_expect 7 monitor OCF_RESKEY_drbd_resource=nosuch OCF_RESKEY_CRM_meta_interval=0
ocf_expect 6 validate-all OCF_RESKEY_CRM_meta_promoted_max=2
step "done"
