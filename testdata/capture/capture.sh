#!/usr/bin/env bash
# Records the real-traffic captures in testdata/: real clients and servers in two
# network namespaces joined by a veth pair, captured with tcpdump on the client side.
# Needs root, iproute2, tcpdump, python3, curl and bash. Every address is one of the
# namespaces' own (documentation ranges 192.0.2.0/24 and 2001:db8::/64); nothing
# leaves the machine.
#
#   sudo testdata/capture/capture.sh [OUTDIR [NAME...]]    (default: testdata/, all)
#
# With NAMEs, only those captures are recorded: the others' oracles and golden files
# pin their exact packets, so a new capture must not rewrite them.
#
# Writes http.pcap (HTTP/1.0 over IPv4 and IPv6, curl against python's http.server),
# dns.pcap (DNS-format queries over UDP to a small responder), reset.pcap (a connect
# to a closed port, answered by RST, and a connection the client aborts with RST),
# reuse.pcap (two connections from the same client port, the second after the
# first's FIN), and watch.pcap (13 s of concurrent flows at different paces, to watch
# with fparser top: curl downloads of 4, 2 and 20 kB/s from a server that paces its
# replies, over IPv4 and IPv6, UDP streams of a datagram every 100 ms and every
# 700 ms, and short HTTP and DNS exchanges coming and going).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "${1:-$here/..}" && pwd)
shift $(($# > 0 ? 1 : 0))
wanted=("$@")
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

# A VXLAN tunnel over the veth, for --decap: VNI 42, UDP 4789, carrying
# 10.42.0.0/24; static neighbours again, so no ARP goes through it either. (GRE,
# IP-in-IP and Geneve devices need kernel modules that not every kernel has.)
ip -n "$cli" link add vx0 type vxlan id 42 local 192.0.2.1 remote 192.0.2.2 dstport 4789 dev veth-c
ip -n "$srv" link add vx0 type vxlan id 42 local 192.0.2.2 remote 192.0.2.1 dstport 4789 dev veth-s
ip -n "$cli" addr add 10.42.0.1/24 dev vx0
ip -n "$srv" addr add 10.42.0.2/24 dev vx0
for ns in "$cli" "$srv"; do
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.vx0.disable_ipv6=1
	ip -n "$ns" link set vx0 up
done
vx_c=$(ip -n "$cli" -o link show vx0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
vx_s=$(ip -n "$srv" -o link show vx0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
ip -n "$cli" neigh add 10.42.0.2 lladdr "$vx_s" dev vx0 nud permanent
ip -n "$srv" neigh add 10.42.0.1 lladdr "$vx_c" dev vx0 nud permanent

# capture NAME FILTER CMD...: runs CMD in the client namespace under tcpdump, unless
# NAMEs were given and NAME is not one of them.
capture() {
	local name=$1 filter=$2
	shift 2
	if [ ${#wanted[@]} -gt 0 ] && ! printf '%s\n' "${wanted[@]}" | grep -qxF "$name"; then
		return
	fi
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
# watch.pcap: curl downloads from a server that sends its body in 1000-byte pieces
# at the pace the path asks (GET /N/MS: N pieces, one every MS ms), so that each
# download keeps a steady rate for seconds; bash's /dev/udp gives one connected
# socket, so one flow, per UDP stream, and the responder answers every datagram.
ip netns exec "$srv" python3 - 8081 <<'PY' &
import socket, sys, threading, time

def serve(c):
    with c:
        _, n, ms = c.recv(4096).split()[1].decode().split("/")
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % (int(n) * 1000))
        for _ in range(int(n)):
            c.sendall(b"w" * 1000)
            time.sleep(int(ms) / 1000)

s = socket.create_server(("::", int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
PY
pids+=($!)
sleep 1
capture watch.pcap "tcp port 8080 or tcp port 8081 or udp port 5353" bash -c '
	stream() { # HOST COUNT INTERVAL PADDING: one datagram every INTERVAL seconds
		exec 3<>"/dev/udp/$1/5353"
		local pad i
		pad=$(head -c "$4" /dev/zero | tr "\0" "z")
		for ((i = 0; i < $2; i++)); do
			# A DNS-format header (id, flags, one question), then the padding.
			printf "\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00%s" "$pad" >&3
			sleep "$3"
		done
		exec 3>&-
	}
	curl -s -o /dev/null http://192.0.2.2:8081/48/250 &
	stream 192.0.2.2 120 0.1 100 &
	sleep 1
	curl -s -o /dev/null "http://[2001:db8::2]:8081/20/500" &
	stream 2001:db8::2 16 0.7 900 &
	sleep 2
	curl -s -o /dev/null http://192.0.2.2:8081/20/50 &
	for i in 1 2 3 4; do
		curl -s -o /dev/null http://192.0.2.2:8080/index.html
		sleep 2
	done
	python3 '"$here"'/udp_client.py 192.0.2.2 5353 3
	wait'
capture vxlan.pcap "udp port 4789" bash -c '
	curl -s -o /dev/null http://10.42.0.2:8080/index.html
	python3 '"$here"'/udp_client.py 10.42.0.2 5353 2'
rm -rf "$www"
