#!/usr/bin/env bash
# stunmap sweep vs nmap -sT (and stunmap --raw) on the same ports in the same run.
#  (a) 10,000 closed loopback ports (40000-49999 on 127.0.0.1);
#  (b) 1,000 ports silently dropped by a firewall, in network namespaces this script creates
#      (client 100.64.0.2 -> router -> target 198.18.0.10; router drops TCP 20000-20999);
#  (c) a mixed range, 443-4000, through a router that passes 443-1023 (to a STUN listener
#      behind a redirect on the target), resets 2000-2999 and drops the rest: stunmap with
#      its defaults and tuned, nmap -sT with its defaults.
# Needs root (namespaces, raw sockets), nmap, nft, iproute2. Prints one table row per case
# with the median wall time of ROUNDS runs. Only loopback and the script's own namespaces.
#
#   cargo build --release && sudo benches/sweep_vs_nmap.sh
# CASES=a, CASES=bc, ... runs those cases only.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${STUNMAP:-target/release/stunmap}
rounds=${ROUNDS:-5}
cases=${CASES:-abc}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Wall time of one run; EPOCHREALTIME (bash 5) reads the clock without starting a process.
timeit() { local s e; s=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || true; e=$EPOCHREALTIME; awk -v s="$s" -v e="$e" 'BEGIN { print e - s }'; }

row() { # name, then the command
    local name=$1; shift
    local t; t=$(for _ in $(seq "$rounds"); do timeit "$@"; done | median)
    printf '%-44s %8.4f s\n' "$name" "$t"
}

if [[ $cases == *a* ]]; then
echo "== (a) 10,000 closed loopback ports, median of $rounds"
row "nmap -sT -n" nmap -sT -n -p 40000-49999 127.0.0.1
# --no-stun: nmap -sT sends nothing on open ports either (and on loopback a rare TCP
# self-connect, source port = destination port, would otherwise add the 1 s STUN timeout).
row "stunmap sweep (connect, --no-stun)" "$bin" sweep 127.0.0.1 --udp-ports none --tcp-ports 40000-49999 --full --rate 10000000 --concurrency 1024 --no-stun -q
row "stunmap sweep --raw" "$bin" sweep 127.0.0.1 --udp-ports none --tcp-ports 40000-49999 --full --rate 10000000 --raw

fi
ids=()
cleanup() {
    [[ -n ${serve_pid:-} ]] && kill "$serve_pid" 2>/dev/null || true
    for n in "${ids[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT
# lab ID: client ${ID}c -> router ${ID}r -> target ${ID}t; the router's forward rules on stdin.
lab() {
    local c=${1}c r=${1}r t=${1}t
    ids+=("$c" "$r" "$t")
    for n in $c $r $t; do ip netns add "$n"; ip -n "$n" link set lo up; done
    ip -n "$c" link add lan type veth peer name lan0 netns "$r"
    ip -n "$r" link add wan0 type veth peer name wan netns "$t"
    ip -n "$c" addr add 100.64.0.2/24 dev lan; ip -n "$c" link set lan up
    ip -n "$r" addr add 100.64.0.1/24 dev lan0; ip -n "$r" link set lan0 up
    ip -n "$r" addr add 198.18.0.1/24 dev wan0; ip -n "$r" link set wan0 up
    ip -n "$t" addr add 198.18.0.10/24 dev wan; ip -n "$t" link set wan up
    ip -n "$c" route add default via 100.64.0.1
    ip -n "$t" route add 100.64.0.0/24 via 198.18.0.1
    ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
    ip netns exec "$r" nft -f -
}

if [[ $cases == *b* ]]; then
echo "== (b) 1,000 ports dropped by a namespace firewall, median of $rounds"
lab swb$$ <<'NFT'
table inet swb {
    chain forward {
        type filter hook forward priority filter; policy accept;
        tcp dport 20000-20999 drop
    }
}
NFT
in_c() { ip netns exec "swb$$c" "$@"; }
row "nmap -sT -n" in_c nmap -sT -n -p 20000-20999 198.18.0.10
row "stunmap sweep (connect)" in_c "$bin" sweep 198.18.0.10 --udp-ports none --tcp-ports 20000-20999 --full --rate 10000000 --concurrency 1024 -q
row "stunmap sweep --raw" in_c "$bin" sweep 198.18.0.10 --udp-ports none --tcp-ports 20000-20999 --full --rate 10000000 --raw
fi

if [[ $cases == *c* ]]; then
echo "== (c) 443-4000 through a mixed router (open, reset, dropped), median of $rounds"
lab swc$$ <<'NFT'
table inet swc {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "wan0" accept
        tcp dport 443-1023 accept
        udp dport 443-1023 accept
        tcp dport 2000-2999 reject with tcp reset
    }
}
NFT
ip netns exec "swc$$t" nft -f - <<'NFT'
table ip redir {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        tcp dport != 3478 redirect to :3478
        udp dport != 3478 redirect to :3478
    }
}
NFT
ip netns exec "swc$$t" "$bin" serve --listen 198.18.0.10:3478 --max-tcp 4096 >/dev/null 2>&1 &
serve_pid=$!
sleep 0.5
in_c() { ip netns exec "swc$$c" "$@"; }
row "nmap -sT -n -Pn (defaults)" in_c nmap -sT -n -Pn -p 443-4000 198.18.0.10
row "stunmap sweep --full (defaults)" in_c "$bin" sweep 198.18.0.10 --tcp-ports 443-4000 --full -q
row "stunmap sweep --full, tuned" in_c "$bin" sweep 198.18.0.10 --tcp-ports 443-4000 --full --rate 10000000 --concurrency 1024 -q
fi
