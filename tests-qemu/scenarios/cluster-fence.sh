# vms: 2
# priority: high
# alone: yes
# timeout: 900
# Corosync and Pacemaker from Debian's packages in two test VMs, with fence_hark as the STONITH
# device: both nodes come online (the times are printed), vm0 asks the fencer to reboot vm1, the
# harness power-cycles vm1 (its QEMU is killed and started again), vm1 boots, starts the cluster
# again and rejoins. The test bed that the failover scenarios build on.
. "$HARK_TOP/tests-qemu/guest/lib.sh"
. "$HARK_TOP/tests-qemu/guest/cluster.sh"

fence_xml='<primitive id="f_hark" class="stonith" type="fence_hark">
  <instance_attributes id="f_hark-ia">
    <nvpair id="f_hark-map" name="pcmk_host_map" value="hark-vm0:0;hark-vm1:1"/>
  </instance_attributes>
  <operations><op id="f_hark-mon" name="monitor" interval="60s"/></operations>
</primitive>'

cluster_conf 0 1
t0=$SECONDS
cluster_start
t_started=$((SECONDS - t0))

case "$HARK_VM.$HARK_BOOT" in
0.1)
	cluster_online 2 300 || die "two nodes not online: $(crm_mon -1 2>&1)"
	step "both nodes online $((SECONDS - t0)) s after start (this node's Pacemaker up after $t_started s)"
	must cibadmin -C -o resources -X "$fence_xml"
	until_ok 120 eval 'crm_mon -1 | grep -Eq "f_hark.*Started"' ||
		die "fence device not started: $(crm_mon -1 2>&1)"
	step "fence device started; fencing vm1 (reboot)"
	t1=$SECONDS
	must stonith_admin --reboot hark-vm1 --timeout 300
	step "stonith_admin --reboot hark-vm1 done in $((SECONDS - t1)) s"
	[ "$(harkctl power status 1)" = on ] || die "vm1 is not on after the reboot"
	must harkctl wait vm1-boot2 300 >/dev/null
	cluster_online 2 300 || die "vm1 did not rejoin: $(crm_mon -1 2>&1)"
	step "vm1 rejoined $((SECONDS - t1)) s after the fencing request"
	stonith_admin --history hark-vm1 2>&1 | tee -a "$CLUSTER_LOG/fence-history.txt"
	grep -q "reboot of hark-vm1 successful" < <(stonith_admin --history hark-vm1) ||
		die "no successful reboot of hark-vm1 in the fencing history"
	must harkctl set done yes
	cluster_stop
	;;
1.1)
	must harkctl set vm1-boot1 up
	cluster_save_logs
	harkctl wait never 900 || true
	die "vm1 was not fenced"
	;;
1.2)
	step "booted again after the fencing"
	cluster_online 2 300 || die "not online again: $(crm_mon -1 2>&1)"
	must harkctl set vm1-boot2 up
	must harkctl wait done 600 >/dev/null
	cluster_stop
	;;
esac
step "done"
