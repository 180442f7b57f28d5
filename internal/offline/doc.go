// Package offline is the capture-file path: it reads pcap and pcapng files (plain or
// gzip-compressed) and runs every packet through a Go datapath that mirrors the kernel
// program in bpf/ rule for rule: the same parse, the same canonical key, the same
// update of the same per-flow state. The packets' own timestamps are the clock, so a
// replay is exact and repeatable.
package offline
