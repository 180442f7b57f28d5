#!/usr/bin/env bash
# Records the real-traffic captures in testdata/: real clients and servers in two
# network namespaces joined by a veth pair, captured with tcpdump on the client side.
# Needs root, iproute2, tcpdump, python3 and curl. Every address is one of the
# namespaces' own (documentation ranges 192.0.2.0/24 and 2001:db8::/64); nothing
# leaves the machine.
#
#   sudo testdata/capture/capture.sh [OUTDIR]      (default: testdata/)
#
# Writes http.pcap (HTTP/1.0 over IPv4 and IPv6, curl against python's http.server),
# dns.pcap (DNS-format queries over UDP to a small responder), reset.pcap (a connect
# to a closed port, answered by RST, and a connection the client aborts with RST),
# and reuse.pcap (two connections from the same client port, the second after the
# first's FIN).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "${1:-$here/..}" && pwd)
cli=fpcap-cli-$$
srv=fpcap-srv-$$
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$cli" 2>/dev/null || true
	ip netns del "$srv" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$cli"
ip netns add "$srv"
ip link add veth-c netns "$cli" type veth peer name veth-s netns "$srv"
for ns in "$cli" "$srv"; do
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0
done
ip -n "$cli" addr add 192.0.2.1/24 dev veth-c
ip -n "$srv" addr add 192.0.2.2/24 dev veth-s
ip -n "$cli" addr add 2001:db8::1/64 dev veth-c nodad
ip -n "$srv" addr add 2001:db8::2/64 dev veth-s nodad
# No offloads: each capture record is one packet as it would be on a wire.
ip netns exec "$cli" ethtool -K veth-c tso off gso off gro off 2>/dev/null || true
ip netns exec "$srv" ethtool -K veth-s tso off gso off gro off 2>/dev/null || true
ip -n "$cli" link set veth-c up
ip -n "$srv" link set veth-s up
# Static neighbours, so no ARP or neighbour discovery lands in the captures.
mac_c=$(ip -n "$cli" -o link show veth-c | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
mac_s=$(ip -n "$srv" -o link show veth-s | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
ip -n "$cli" neigh add 192.0.2.2 lladdr "$mac_s" dev veth-c nud permanent
ip -n "$cli" neigh add 2001:db8::2 lladdr "$mac_s" dev veth-c nud permanent
ip -n "$srv" neigh add 192.0.2.1 lladdr "$mac_c" dev veth-s nud permanent
ip -n "$srv" neigh add 2001:db8::1 lladdr "$mac_c" dev veth-s nud permanent
sleep 1

www=$(mktemp -d)
head -c 20000 /dev/zero | tr '\0' 'x' >"$www/page.txt"
echo '<html><body>fparser</body></html>' >"$www/index.html"
(cd "$www" && exec ip netns exec "$srv" python3 -m http.server --protocol HTTP/1.0 --bind :: 8080 >/dev/null 2>&1) &
pids+=($!)
ip netns exec "$srv" python3 "$here/udp_responder.py" 5353 &
pids+=($!)
sleep 1

# capture NAME FILTER CMD...: runs CMD in the client namespace under tcpdump.
capture() {
	local name=$1 filter=$2
	shift 2
	ip netns exec "$cli" tcpdump -q -n -i veth-c -s 0 -U -w "$out/$name" "$filter" 2>/dev/null &
	local tp=$!
	sleep 1
	ip netns exec "$cli" "$@"
	sleep 1
	kill -INT "$tp"
	wait "$tp" || true
	echo "wrote $out/$name"
}

capture http.pcap "tcp port 8080" bash -c '
	curl -s -o /dev/null http://192.0.2.2:8080/index.html
	curl -s -o /dev/null http://192.0.2.2:8080/page.txt
	curl -s -o /dev/null "http://[2001:db8::2]:8080/index.html"'
capture dns.pcap "udp port 5353" python3 "$here/udp_client.py" 192.0.2.2 5353 3
capture reset.pcap "tcp port 9 or tcp port 8080" bash -c '
	curl -s -o /dev/null http://192.0.2.2:9/ || true
	python3 '"$here"'/abort_client.py 192.0.2.2 8080'
capture reuse.pcap "tcp port 8080" bash -c '
	curl -s -o /dev/null --local-port 45000 http://192.0.2.2:8080/index.html
	sleep 0.5
	curl -s -o /dev/null --local-port 45000 http://192.0.2.2:8080/index.html'
rm -rf "$www"
