package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ifaceAttachment is the datapath's programs on one interface.
type ifaceAttachment struct {
	iface *net.Interface
	links []attachment // bpf_links, and clsact filters on kernels without TCX
	where []string     // what Attached reports, e.g. "xdp (native) ingress"
}

// Interface is an interface the programs are attached to.
type Interface struct {
	Index int
	Name  string
	// Where says how, e.g. "xdp (native) ingress", "tcx egress (adopted)".
	Where []string
}

// checkMode is cfg's mode, ModeAuto when unset; it refuses a mode it does not
// know, and tc-legacy with pins.
func checkMode(cfg Config) (Mode, error) {
	mode := cfg.Mode
	if mode == "" {
		mode = ModeAuto
	}
	switch mode {
	case ModeAuto, ModeXDP, ModeXDPNative, ModeXDPGeneric, ModeTC, ModeTCLegacy:
		if mode == ModeTCLegacy && cfg.PinDir != "" {
			return "", fmt.Errorf("%w %q with a pin directory: clsact filters are not bpf_links and cannot be pinned", ErrAttachMode, mode)
		}
		return mode, nil
	}
	return "", fmt.Errorf("%w %q (want auto, xdp, xdp-native, xdp-generic, tc or tc-legacy)", ErrAttachMode, mode)
}

// Open loads the datapath and attaches it to cfg.Interface. More interfaces are
// added with Attach; Load and Attach do the same for a first interface that is not
// there yet.
func Open(cfg Config) (*Datapath, error) {
	if _, err := net.InterfaceByName(cfg.Interface); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrNoInterface, cfg.Interface)
	}
	d, err := Load(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := d.Attach(cfg.Interface); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Attach attaches the programs to the interface named name, in the configured mode,
// sharing the maps with every other interface. Attaching to an interface already
// attached does nothing but return it. On error nothing stays attached to it.
func (d *Datapath) Attach(name string) (Interface, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return Interface{}, fmt.Errorf("%w: %q", ErrNoInterface, name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := d.attachmentOf(iface.Index); i >= 0 {
		return d.ifaces[i].describe(), nil
	}
	ia := &ifaceAttachment{iface: iface}
	if err := d.attach(ia, d.mode); err != nil {
		ia.close(d.cfg.PinDir != "")
		return Interface{}, err
	}
	d.ifaces = append(d.ifaces, ia)
	return ia.describe(), nil
}

// describe is the attachment as Interfaces reports it.
func (ia *ifaceAttachment) describe() Interface {
	return Interface{Index: ia.iface.Index, Name: ia.iface.Name, Where: slices.Clone(ia.where)}
}

// attachmentOf is the position of the interface's attachment, or -1.
func (d *Datapath) attachmentOf(index int) int {
	return slices.IndexFunc(d.ifaces, func(ia *ifaceAttachment) bool { return ia.iface.Index == index })
}

func (d *Datapath) attach(ia *ifaceAttachment, mode Mode) error {
	switch mode {
	case ModeTC, ModeTCLegacy:
		if err := d.attachTC(ia, ebpf.AttachTCXIngress, "ingress", mode == ModeTCLegacy); err != nil {
			return err
		}
		return d.attachTC(ia, ebpf.AttachTCXEgress, "egress", mode == ModeTCLegacy)
	}
	if mode == ModeAuto && d.owners && isVeth(ia.iface.Name) {
		// A veth's ingress is where a container's packets arrive from the other
		// namespace with their socket still known: TC sees it and attributes
		// them, XDP cannot. A previous version's XDP link on it must go, or the
		// packets would count twice.
		if err := d.attachTC(ia, ebpf.AttachTCXIngress, "ingress", false); err != nil {
			return err
		}
		d.dropLinkPin(ia, "xdp")
		return d.attachTC(ia, ebpf.AttachTCXEgress, "egress", false)
	}
	if err := d.attachXDP(ia, mode); err != nil {
		return err
	}
	if mode == ModeAuto {
		return d.attachTC(ia, ebpf.AttachTCXEgress, "egress", false)
	}
	return nil
}

// isVeth says the interface is one end of a veth pair, from its driver's name.
func isVeth(name string) bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, name)
	return err == nil && unix.ByteSliceToString(info.Driver[:]) == "veth"
}

// attachTC attaches the TC program with TCX, or with a clsact filter where the
// kernel has no TCX or legacy is set.
func (d *Datapath) attachTC(ia *ifaceAttachment, at ebpf.AttachType, dir string, legacy bool) error {
	if !legacy {
		err := d.attachTCX(ia, at, dir)
		if err == nil || !errors.Is(err, ErrKernelTooOld) {
			return err
		}
	}
	return d.attachClsact(ia, dir)
}

func (d *Datapath) attachXDP(ia *ifaceAttachment, mode Mode) error {
	try := []link.XDPAttachFlags{link.XDPDriverMode, link.XDPGenericMode}
	switch mode {
	case ModeXDPNative:
		try = try[:1]
	case ModeXDPGeneric:
		try = try[1:]
	}
	if l, ok, err := d.adoptLink(ia, "xdp", d.objs.FparserXdp); err != nil || ok {
		if ok {
			ia.links = append(ia.links, xdpLink{l})
			ia.where = append(ia.where, "xdp ingress (adopted)")
		}
		return err
	}
	var errs []error
	for _, flags := range try {
		l, err := link.AttachXDP(link.XDPOptions{Program: d.objs.FparserXdp, Interface: ia.iface.Index, Flags: flags})
		if err == nil {
			ia.links = append(ia.links, xdpLink{l})
			if err := d.pinLink(ia, "xdp", l); err != nil {
				return err
			}
			kind := "native"
			if flags == link.XDPGenericMode {
				kind = "generic"
			}
			ia.where = append(ia.where, "xdp ("+kind+") ingress")
			return nil
		}
		errs = append(errs, err)
	}
	return classifyAttach("attach XDP to "+ia.iface.Name, errors.Join(errs...))
}

func (d *Datapath) attachTCX(ia *ifaceAttachment, at ebpf.AttachType, dir string) error {
	if l, ok, err := d.adoptLink(ia, "tcx-"+dir, d.objs.tc(dir)); err != nil || ok {
		if ok {
			ia.links = append(ia.links, tcxLink{l, dir})
			ia.where = append(ia.where, "tcx "+dir+" (adopted)")
		}
		return err
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ia.iface.Index, Program: d.objs.tc(dir), Attach: at})
	if err != nil {
		return classifyAttach("attach TCX "+dir+" to "+ia.iface.Name, err)
	}
	ia.links = append(ia.links, tcxLink{l, dir})
	ia.where = append(ia.where, "tcx "+dir)
	return d.pinLink(ia, "tcx-"+dir, l)
}

// Interfaces are the interfaces the programs are attached to, in the order
// attached.
func (d *Datapath) Interfaces() []Interface {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Interface, len(d.ifaces))
	for i, ia := range d.ifaces {
		out[i] = ia.describe()
	}
	return out
}

// Attached describes where the programs are attached, e.g. "xdp (native) ingress",
// on every interface, each description after the interface's name when there are
// several.
func (d *Datapath) Attached() []string {
	ifaces := d.Interfaces()
	var out []string
	for _, ifc := range ifaces {
		for _, w := range ifc.Where {
			if len(ifaces) > 1 {
				w = ifc.Name + ": " + w
			}
			out = append(out, w)
		}
	}
	return out
}

// DetachInterface detaches the programs from the interface with this index and
// removes their pins; the flows it counted stay in the maps. It reports whether the
// programs were attached there. An interface that was deleted took the programs
// with it: this releases what is left of them.
func (d *Datapath) DetachInterface(index int) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := d.attachmentOf(index)
	if i < 0 {
		return false, nil
	}
	ia := d.ifaces[i]
	d.ifaces = slices.Delete(d.ifaces, i, i+1)
	return true, ia.close(d.cfg.PinDir != "")
}

// Detach detaches the programs from every interface (a pinned link is unpinned
// first, or it would stay); the maps stay readable until Close.
func (d *Datapath) Detach() error {
	d.mu.Lock()
	var errs []error
	for _, ia := range d.ifaces {
		errs = append(errs, ia.close(d.cfg.PinDir != ""))
	}
	d.ifaces = nil
	d.mu.Unlock()
	err := errors.Join(errs...)
	if err == nil {
		d.MarkQuiet()
	}
	return err
}

// close detaches the interface's programs, unpinning their links first.
func (ia *ifaceAttachment) close(pinned bool) error {
	var errs []error
	for _, l := range ia.links {
		if p, ok := l.(interface{ Unpin() error }); ok && pinned {
			if err := p.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		errs = append(errs, l.Close())
	}
	ia.links = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach from %s: %w", ia.iface.Name, err)
	}
	return nil
}

// MarkQuiet says that no program writes the maps any more: Detach succeeded, or the
// interfaces went away with them. A stop may then read the flows and remove them in
// separate calls (Table.Remove).
func (d *Datapath) MarkQuiet() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.quiet = true
	if d.table != nil {
		d.table.quiet.Store(true)
	}
}
