package loader

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// clsactFilter is a program attached the legacy way, as a direct-action filter on
// the clsact qdisc, for kernels before TCX (6.6). Unlike a bpf_link it outlives the
// process if the process is killed; Close removes it.
type clsactFilter struct {
	filter *netlink.BpfFilter
	dir    string // "ingress" or "egress"
}

// update replaces the filter's program; the kernel swaps it atomically.
func (c *clsactFilter) update(p *programs) error {
	f := *c.filter
	f.Fd = p.tc(c.dir).FD()
	if err := netlink.FilterReplace(&f); err != nil {
		return err
	}
	c.filter = &f
	return nil
}

func (c *clsactFilter) Close() error {
	// ENODEV: the interface, and the filter with it, is gone.
	if err := netlink.FilterDel(c.filter); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("remove the clsact filter: %w", err)
	}
	return nil
}

// fparser's filters use this priority and handle, so that Close removes only them.
const (
	clsactPriority = 0xfa
	clsactHandle   = 0xfa
)

// attachClsact attaches the TC program to the interface's clsact qdisc, creating
// the qdisc when it is missing.
func (d *Datapath) attachClsact(ia *ifaceAttachment, dir string) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ia.iface.Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return classifyAttach("add a clsact qdisc to "+ia.iface.Name, err)
	}
	parent := uint32(netlink.HANDLE_MIN_INGRESS)
	if dir == "egress" {
		parent = netlink.HANDLE_MIN_EGRESS
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ia.iface.Index,
			Parent:    parent,
			Handle:    clsactHandle,
			Priority:  clsactPriority,
			Protocol:  unix.ETH_P_ALL,
		},
		Fd:           d.objs.tc(dir).FD(),
		Name:         "fparser_tc_" + dir,
		DirectAction: true,
	}
	if err := netlink.FilterReplace(filter); err != nil {
		return classifyAttach("attach a clsact "+dir+" filter to "+ia.iface.Name, err)
	}
	ia.links = append(ia.links, &clsactFilter{filter: filter, dir: dir})
	ia.where = append(ia.where, "tc (clsact) "+dir)
	return nil
}
