// Package fparser sniffs IP traffic and reconstructs its TCP and UDP flows.
//
// A [Parser] is opened on a source: a pcap or pcapng capture file (replayed with the
// packets' own timestamps as the clock, so the result is exact and repeatable) or a
// network interface (counted by an eBPF program in the kernel). Each flow is
// bidirectional: its Src is the endpoint that initiated it. A flow ends after
// FlowTimeout without packets, FinTimeout after its last packet once a FIN or RST was
// seen, when a new SYN reuses its 5-tuple, after the optional ActiveTimeout, or when
// the capture ends or the parser stops; every flow is reported exactly once, to the
// TCP or UDP callback, and the kill callback runs once after the last of them.
//
// The API follows the original Python FParser:
//
//	FParser(source, flow_timeout, fin_timeout, filter, snaplen, log_level,
//	        tcp_callback, udp_callback, kill_callback)  ->  Open(source, &Options{...})
//	stop(), set_tcp_callback(), set_udp_callback()      ->  Stop, SetTCPCallback, SetUDPCallback
//	flow iteration, find_tcp_flow(), find_udp_flow()    ->  Flows, FindTCPFlow, FindUDPFlow
//	info()                                              ->  Info
package fparser
