#!/usr/bin/env bash
# stunmap sweep vs nmap -sT (and stunmap --raw) on the same ports in the same run.
#  (a) 10,000 closed loopback ports (40000-49999 on 127.0.0.1);
#  (b) 1,000 ports silently dropped by a firewall, in network namespaces this script creates
#      (client 100.64.0.2 -> router -> target 198.18.0.10; router drops TCP 20000-20999).
# Needs root (namespaces, raw sockets), nmap, nft, iproute2. Prints one table row per case
# with the median wall time of ROUNDS runs. Only loopback and the script's own namespaces.
#
#   cargo build --release && sudo benches/sweep_vs_nmap.sh
# CASES=a or CASES=b runs one case only.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${STUNMAP:-target/release/stunmap}
rounds=${ROUNDS:-5}
cases=${CASES:-ab}

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
[[ $cases == *b* ]] || exit 0
echo "== (b) 1,000 ports dropped by a namespace firewall, median of $rounds"
id=swb$$
c=${id}c r=${id}r t=${id}t
cleanup() { for n in $c $r $t; do ip netns del "$n" 2>/dev/null || true; done; }
trap cleanup EXIT
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
ip netns exec "$r" nft -f - <<'NFT'
table inet swb {
    chain forward {
        type filter hook forward priority filter; policy accept;
        tcp dport 20000-20999 drop
    }
}
NFT
in_c() { ip netns exec "$c" "$@"; }
row "nmap -sT -n" in_c nmap -sT -n -p 20000-20999 198.18.0.10
row "stunmap sweep (connect, 1.5 s timeout)" in_c "$bin" sweep 198.18.0.10 --udp-ports none --tcp-ports 20000-20999 --full --rate 10000000 --concurrency 1024 -q
row "stunmap sweep --raw (1.5 s timeout)" in_c "$bin" sweep 198.18.0.10 --udp-ports none --tcp-ports 20000-20999 --full --rate 10000000 --raw
