// Package fparser sniffs IP traffic and reconstructs its TCP and UDP flows.
//
// A [Parser] is opened on a source: a pcap or pcapng capture file (replayed with the
// packets' own timestamps as the clock, so the result is exact and repeatable) or a
// network interface (counted by an eBPF program in the kernel). Each flow is
// bidirectional: its Src is the endpoint that initiated it. A flow ends after
// [Options].FlowTimeout without packets, Options.FinTimeout after its last packet
// once a FIN or RST was seen, when a new SYN reuses its 5-tuple, after the optional
// Options.ActiveTimeout, or when the capture ends or the parser stops ([EndReason]);
// every flow is reported exactly once, to the TCP or UDP callback, and the kill
// callback runs once after the last of them. Standard input ([Stdin]) is a capture
// source too.
//
// Errors match the sentinels below with errors.Is, and keep their cause for
// errors.As; an option the parser refuses is an [*OptionError].
//
// The API follows the original Python FParser:
//
//	FParser(source, flow_timeout, fin_timeout, filter, snaplen, log_level,
//	        tcp_callback, udp_callback, kill_callback)  ->  Open(source, &Options{...})
//	stop(), set_tcp_callback(), set_udp_callback()      ->  Stop, SetTCPCallback, SetUDPCallback
//	iterating the parser's flows, sorted                ->  Flows, FlowsSorted
//	iterating a flow's packets                          ->  Flow.History
//	find_tcp_flow(), find_udp_flow()                    ->  FindTCPFlow, FindUDPFlow
//	info()                                              ->  Info
package fparser
