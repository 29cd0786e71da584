# timeout: 300
# The test bed's guest: every vCPU present, a high-resolution clocksource, and what a fork+exec
# and the boot cost (printed as "guest-speed:" lines, for Documentation/testing.md).
. "$HARK_TOP/tests-qemu/guest/lib.sh"

read -r online < /sys/devices/system/cpu/online
read -r clock < /sys/devices/system/clocksource/clocksource0/current_clocksource
read -r up _ < /proc/uptime
step "cpus online: $online; clocksource: $clock; uptime at scenario start: $up s"
[ "$online" = 0-1 ] || die "expected CPUs 0-1 online (QEMU -smp 2), got '$online'"
case "$clock" in
hpet | acpi_pm | tsc) ;;
*) die "clocksource '$clock' is not a high-resolution one" ;;
esac
dmesg_has 'smp: Brought up 1 node, 2 CPUs' || die "the boot log does not show 2 CPUs"

# fork+exec: 20 x /bin/true; the first run warms the page cache (9p, cache=loose).
/bin/true
t0=$EPOCHREALTIME
for _ in $(seq 20); do /bin/true; done
t1=$EPOCHREALTIME
per=$(( (${t1/./} - ${t0/./}) / 20 / 1000 ))
t0=$EPOCHREALTIME
$PY -c pass
t1=$EPOCHREALTIME
py=$(( (${t1/./} - ${t0/./}) / 1000 ))
echo "guest-speed: fork+exec ${per} ms, python3 -c pass ${py} ms, scenario start ${up} s after boot"
# Reading from the host root (9p): a large file cold, then from the page cache.
f=$HARK_KBUILD/vmlinux
if [ -r "$f" ]; then
	mb=$(($(stat -c %s "$f") / 1048576))
	t0=$EPOCHREALTIME; cat "$f" >/dev/null; t1=$EPOCHREALTIME
	cold=$(( (${t1/./} - ${t0/./}) / 1000 ))
	t0=$EPOCHREALTIME; cat "$f" >/dev/null; t1=$EPOCHREALTIME
	warm=$(( (${t1/./} - ${t0/./}) / 1000 ))
	echo "guest-speed: 9p read of $mb MiB: ${cold} ms cold, ${warm} ms cached"
fi
# Both CPUs run: two busy loops in parallel finish in about the time of one.
busy() { local i=0; while [ $i -lt 200000 ]; do i=$((i + 1)); done; }
t0=$EPOCHREALTIME; busy; t1=$EPOCHREALTIME
one=$(( (${t1/./} - ${t0/./}) / 1000 ))
t0=$EPOCHREALTIME; busy & busy & wait; t1=$EPOCHREALTIME
two=$(( (${t1/./} - ${t0/./}) / 1000 ))
echo "guest-speed: one busy loop ${one} ms, two in parallel ${two} ms"
step "done"
