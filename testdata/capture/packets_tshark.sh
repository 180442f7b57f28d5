#!/usr/bin/env bash
# packets_tshark.sh CAPTURE > CAPTURE.packets.csv
#
# The per-packet oracle for the flow history: for every TCP or UDP packet of
# CAPTURE, tshark's reading of the fields fparser keeps (reassembly off, so each
# frame stands alone, and the outermost IP header). TestPacketHistoryMatchesTshark
# compares fparser's Flow.Packets with these rows.
set -euo pipefail
cap=$1
tshark -r "$cap" -n -o ip.defragment:FALSE -o ipv6.defragment:FALSE \
	-Y 'tcp or udp' -T fields -E separator=, -E occurrence=f \
	-e frame.time_epoch -e ip.src -e ipv6.src -e tcp.srcport -e udp.srcport \
	-e ip.dst -e ipv6.dst -e tcp.dstport -e udp.dstport \
	-e ip.id -e ip.ttl -e ipv6.hlim -e ip.len -e ipv6.plen \
	-e tcp.flags -e tcp.seq_raw -e tcp.ack_raw -e tcp.window_size_value
