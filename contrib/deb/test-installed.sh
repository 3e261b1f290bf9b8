#!/usr/bin/env bash
# Test an installed stunmap package (run as root after `dpkg -i`): the binary, the man pages
# and completions, and the systemd units — verified offline, then really run, sandbox and
# all, by a systemd started for this test in private mount and PID namespaces (so it needs no
# systemd on the machine and leaves nothing running). Traffic stays inside that namespace's own
# network (loopback only): serve listens there on its packaged default, and the check unit
# checks a closed local port and then runs `stunmap demo`, never the internet.
set -euo pipefail

units_installed=(stunmap-check.service stunmap-check.timer stunmap-serve.service)
unitdir=/usr/lib/systemd/system

step() { printf '== %s\n' "$*"; }
fail() {
    printf 'FAILED: %s\n' "$*" >&2
    exit 1
}

step "installed files"
test -x /usr/bin/stunmap || fail "no /usr/bin/stunmap"
/usr/bin/stunmap --version
for u in "${units_installed[@]}"; do test -f "$unitdir/$u" || fail "no $unitdir/$u"; done
test -f /etc/default/stunmap || fail "no /etc/default/stunmap"
test -f /etc/stunmap/self-hosted.toml || fail "no /etc/stunmap/self-hosted.toml"
for s in $(/usr/bin/stunmap --help | awk '/^Commands:/{on=1; next} on && /^  [a-z]/{print $1} /^$/{on=0}'); do
    [ "$s" = help ] && continue
    zcat "/usr/share/man/man1/stunmap.1.gz" | grep -q "stunmap\\\\-$s" || fail "stunmap.1 does not list $s"
    test -f "/usr/share/man/man1/stunmap-$s.1.gz" || fail "no man page for $s"
done
grep -q 'complete -F _stunmap' /usr/share/bash-completion/completions/stunmap || fail bash
grep -q '#compdef stunmap' /usr/share/zsh/vendor-completions/_stunmap || fail zsh
grep -q 'complete -c stunmap' /usr/share/fish/vendor_completions.d/stunmap.fish || fail fish

step "stunmap demo (installed binary)"
/usr/bin/stunmap demo --quiet >/dev/null || fail "stunmap demo exited $?"

step "systemd-analyze verify"
systemd-analyze verify --man=no "${units_installed[@]/#/$unitdir/}"
# Exposure as systemd-analyze prints it (0.0-10.0), the threshold in tenths: at most 2.0.
for u in stunmap-check.service stunmap-serve.service; do
    systemd-analyze security --offline=yes --threshold=20 "$unitdir/$u" | tail -1
done

step "the units under a systemd of their own"
# That systemd sees only the package's units and a few empty stand-ins for the targets they
# order against (SYSTEMD_UNIT_PATH), runs no generator, and has its own /run, /tmp, network
# (loopback only), host name and textfile directory: nothing of the machine's own boot
# (tmpfiles, sysctl, udev, networking) runs, and nothing it does is seen outside.
if [ -d /run/systemd/system ]; then
    fail "this machine runs systemd: test the units with its own systemctl instead"
fi
work=$(mktemp -d /var/lib/stunmap-unit-test.XXXXXX)
[ -d "$work" ] || fail "mktemp"
sdpid=
cleanup() {
    if [ -n "$sdpid" ]; then
        kill -KILL "$sdpid" 2>/dev/null || true
        while kill -0 "$sdpid" 2>/dev/null; do sleep 0.1; done
    fi
    # The cgroups that systemd made (it takes the top of every hierarchy for its own, as on
    # a machine without systemd it may), once empty.
    for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
        for top in "$h"/init.scope "$h"/system.slice "$h"/*.mount; do
            [ -d "$top" ] || continue
            find "$top" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
    done
    rm -rf "$work"
}
trap cleanup EXIT

# serve runs with the packaged /etc/default/stunmap (0.0.0.0:3478), inside the namespace's own
# network.
port=3478
prom=/var/lib/prometheus/node-exporter/stunmap.prom

# The unit directory of that systemd: copies of the installed units, the stand-ins, and the
# test's drop-ins.
units=$work/units
mkdir -p "$units/stunmap-serve.service.d" "$units/stunmap-check.service.d" "$work/none"
for u in "${units_installed[@]}"; do cp "$unitdir/$u" "$units/"; done
for t in stunmap-unit-test.target sysinit.target basic.target shutdown.target \
    network-online.target timers.target system.slice; do
    printf '[Unit]\nDefaultDependencies=no\n' >"$units/$t"
done
# How each run ended, as systemd judged it (ExecStopPost= with full privileges sees
# SERVICE_RESULT, EXIT_CODE and EXIT_STATUS; the unit itself could not write there).
record() {
    printf '%s\n' "ExecStopPost=+/bin/sh -c 'echo \"\$\$SERVICE_RESULT \$\$EXIT_CODE \$\$EXIT_STATUS\" >>$work/$1.exit'"
}
# serve: the packaged unit and environment file as they are.
{
    printf '[Service]\n'
    printf 'StandardOutput=append:%s/serve.log\nStandardError=append:%s/serve.log\n' "$work" "$work"
    record serve
} >"$units/stunmap-serve.service.d/test.conf"
# check, first run: the packaged ExecStart, flags from the environment file's variable,
# against a closed port of the namespace's loopback (a degraded verdict, exit 1).
check_dropin() {
    {
        printf '[Service]\nEnvironmentFile=\n'
        printf 'Environment=STUNMAP_CHECK_ARGS="--stun 127.0.0.1:9"\n'
        printf 'StandardOutput=append:%s/check.log\nStandardError=append:%s/check.log\n' "$work" "$work"
        record check
        # Second run: the lab instead of the internet; every sandbox setting stays.
        if [ "$1" = demo ]; then
            printf 'ExecStart=\nExecStart=/usr/bin/stunmap demo --quiet --prom %s\n' "$prom"
        fi
    } >"$units/stunmap-check.service.d/test.conf"
}
check_dropin check

cat >"$work/boot.sh" <<BOOT
#!/bin/sh
set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/tmp
mount -t tmpfs tmpfs /var/lib/systemd
mkdir -p /var/lib/prometheus
mount -t tmpfs tmpfs /var/lib/prometheus
mkdir -p /var/lib/prometheus/node-exporter
ip link set lo up
hostname stunmap-unit-test
export SYSTEMD_UNIT_PATH=$units
export SYSTEMD_GENERATOR_PATH=$work/none
export SYSTEMD_ENVIRONMENT_GENERATOR_PATH=$work/none
export container=stunmap-unit-test
exec /lib/systemd/systemd --system --unit=stunmap-unit-test.target
BOOT
chmod +x "$work/boot.sh"
unshare --mount --pid --net --uts --ipc --fork --mount-proc --propagation private \
    "$work/boot.sh" >"$work/systemd.log" 2>&1 &
# The namespace's PID 1, seen from here.
for _ in $(seq 100); do
    sdpid=$(pgrep -f -n "systemd --system --unit=stunmap-unit-test.target" || true)
    [ -n "$sdpid" ] && nsenter -t "$sdpid" -m -p systemctl is-system-running >/dev/null 2>&1 && break
    sleep 0.1
done
[ -n "$sdpid" ] || fail "systemd did not start: $(cat "$work/systemd.log")"
ctl() { nsenter -t "$sdpid" -m -p systemctl "$@"; }
show() { ctl show -p "$2" --value "$1"; }
inside() { nsenter -t "$sdpid" -m -n "$@"; }
echo "units seen: $(ctl list-unit-files --no-legend | awk '{print $1}' | sort | tr '\n' ' ')"

# serve: runs as a dynamic user without capabilities, answers, stops with exit 130 = success.
ctl start stunmap-serve.service
for _ in $(seq 50); do
    grep -q listening "$work/serve.log" 2>/dev/null && break
    sleep 0.1
done
inside /usr/bin/stunmap stun "127.0.0.1:$port" --count 2 --quiet >"$work/stun.out" ||
    fail "no answer from stunmap-serve.service: $(cat "$work/serve.log" "$work/stun.out")"
grep -q "127.0.0.1:" "$work/stun.out" || fail "$(cat "$work/stun.out")"
[ "$(show stunmap-serve.service ActiveState)" = active ] || fail "serve is not active"
# MainPID is a PID of the namespace: read its /proc there.
pid=$(show stunmap-serve.service MainPID)
status=$(nsenter -t "$sdpid" -m -p cat "/proc/$pid/status")
grep -q '^Name:[[:space:]]*stunmap$' <<<"$status" || fail "MainPID $pid is not stunmap: $status"
uid=$(awk '/^Uid:/{print $2}' <<<"$status")
capeff=$(awk '/^CapEff:/{print $2}' <<<"$status")
[ "$uid" != 0 ] || fail "serve runs as root"
[ "$capeff" = 0000000000000000 ] || fail "serve holds capabilities $capeff"
ctl stop stunmap-serve.service
# The last end recorded for a unit, once its NTH end is there (ExecStopPost may finish just
# after the stop or start job).
ended() {
    for _ in $(seq 50); do
        [ "$(wc -l <"$work/$1.exit" 2>/dev/null || echo 0)" -ge "$2" ] && break
        sleep 0.1
    done
    tail -n 1 "$work/$1.exit" 2>/dev/null
}
[ "$(ended serve 1)" = "success exited 130" ] ||
    fail "serve's stop ended as '$(ended serve 1)', not 'success exited 130': $(cat "$work/serve.log")"
echo "stunmap-serve.service: answered as uid $uid without capabilities; SIGTERM: $(ended serve 1)"

# check: a oneshot in its sandbox writes the textfile; a verdict's exit code is a success.
ctl start stunmap-check.service || fail "check unit: $(cat "$work/check.log")"
[ "$(ended check 1)" = "success exited 1" ] ||
    fail "check unit ended as '$(ended check 1)', not 'success exited 1': $(cat "$work/check.log")"
inside cat "$prom" >"$work/stunmap.prom" || fail "no $prom: $(cat "$work/check.log")"
grep -q '^stunmap_check_level{profile="command-line",level="relay-only"} 1' "$work/stunmap.prom" ||
    fail "not the relay-only verdict in $prom: $(cat "$work/check.log" "$work/stunmap.prom")"
echo "stunmap-check.service (packaged ExecStart, blocked STUN): $(ended check 1)"

check_dropin demo
ctl daemon-reload
ctl start stunmap-check.service || fail "check unit: $(cat "$work/check.log")"
[ "$(ended check 2)" = "success exited 0" ] ||
    fail "check unit ended as '$(ended check 2)', not 'success exited 0': $(cat "$work/check.log")"
inside cat "$prom" >"$work/stunmap.prom" || fail "no $prom: $(cat "$work/check.log")"
grep -q '^stunmap_check_success{profile="demo"} 1' "$work/stunmap.prom" ||
    fail "no demo metrics in $prom: $(cat "$work/check.log")"
if command -v turnserver >/dev/null; then
    grep -q '^stunmap_relay_rtt_median_seconds{' "$work/stunmap.prom" ||
        fail "coturn is installed but no relay RTT in $prom: $(cat "$work/check.log")"
fi
[ "$(inside stat -c %a "$prom")" = 644 ] || fail "$prom is not world-readable"
echo "stunmap-check.service (demo): $(ended check 2), $(grep -c '^stunmap_' "$work/stunmap.prom") series in $prom"

ctl start stunmap-check.timer
[ "$(show stunmap-check.timer ActiveState)" = active ] || fail "the timer is not active"
echo "stunmap-check.timer: active"
echo "package tests passed"
