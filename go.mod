module github.com/fparser/fparser

go 1.26.8

require (
	github.com/cilium/ebpf v0.22.0
	github.com/gopacket/gopacket v1.7.7
	golang.org/x/sys v0.45.0
)

require (
	github.com/netsampler/goflow2/v2 v2.2.6
	github.com/vishvananda/netlink v1.3.1
	golang.org/x/net v0.55.0
)

require github.com/vishvananda/netns v0.0.5 // indirect

tool github.com/cilium/ebpf/cmd/bpf2go
