package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ErrPin: the pin directory cannot be used.
var ErrPin = errors.New("cannot pin in this directory")

// pinnedMaps are the maps a restarted process adopts: the flows and their events,
// the fragments, the counters, the flows' senders and the sockets' creators. The
// scratch map holds nothing between packets.
var pinnedMaps = []string{"flows", "frags", "stats", "events", "owners", "sock_owners"}

// preparePin checks that dir can hold pins (it must be on a BPF filesystem), creates
// it, and marks the maps to pin there. It reports whether a previous process left
// its maps in it.
func preparePin(dir string, spec *ebpf.CollectionSpec) (adopt bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("%w: %w", ErrPin, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return false, fmt.Errorf("%w: %w", ErrPin, err)
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return false, fmt.Errorf("%w: %s is not on a BPF filesystem (mount one with: mount -t bpf bpf DIR)", ErrPin, dir)
	}
	for _, name := range pinnedMaps {
		spec.Maps[name].Pinning = ebpf.PinByName
	}
	_, err = os.Stat(filepath.Join(dir, "flows"))
	return err == nil, nil
}

// linkPin is where the link of an attachment is pinned: one per interface and
// hook, named after both, so that a restarted process finds each interface's own.
func (d *Datapath) linkPin(ia *ifaceAttachment, hook string) string {
	return filepath.Join(d.cfg.PinDir, linkPinPrefix+ia.iface.Name+"-"+hook)
}

const linkPinPrefix = "link-"

// adoptLink loads the link a previous process pinned for the interface's hook and
// swaps in this process's program, so that the interface is never without one. ok
// is false when there is no such pin, or when the pinned link is no longer attached
// to this interface (a namesake made since): that pin is removed.
func (d *Datapath) adoptLink(ia *ifaceAttachment, hook string, prog *ebpf.Program) (l link.Link, ok bool, err error) {
	if d.cfg.PinDir == "" {
		return nil, false, nil
	}
	path := d.linkPin(ia, hook)
	l, err = link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		// Versions that counted on one interface named the pin after the hook
		// alone: adopt it under its new name if it is this interface's.
		legacy := filepath.Join(d.cfg.PinDir, linkPinPrefix+hook)
		if l, err = link.LoadPinnedLink(legacy, nil); err != nil {
			return nil, false, nil
		}
		if linkIfindex(l) != ia.iface.Index || l.Unpin() != nil || l.Pin(path) != nil {
			l.Close()
			return nil, false, nil
		}
	}
	if err != nil {
		return nil, false, classifyAttach("adopt the pinned link "+path, err)
	}
	if linkIfindex(l) != ia.iface.Index {
		l.Unpin()
		l.Close()
		return nil, false, nil
	}
	if err := l.Update(prog); err != nil {
		l.Close()
		return nil, false, classifyAttach("swap the program of the pinned link "+path, err)
	}
	return l, true, nil
}

// linkIfindex is the interface a link is attached to, 0 when it is attached to none
// (its interface was deleted) or the kernel does not say.
func linkIfindex(l link.Link) int {
	info, err := l.Info()
	if err != nil {
		return 0
	}
	if x := info.XDP(); x != nil {
		return int(x.Ifindex)
	}
	if t := info.TCX(); t != nil {
		return int(t.Ifindex)
	}
	return 0
}

// dropLinkPin detaches and unpins the link a previous process pinned for the
// interface's hook, if there is one: a hook this process does not use there.
func (d *Datapath) dropLinkPin(ia *ifaceAttachment, hook string) {
	if d.cfg.PinDir == "" {
		return
	}
	if l, err := link.LoadPinnedLink(d.linkPin(ia, hook), nil); err == nil {
		l.Unpin()
		l.Close()
	}
}

// pinLink pins a new link for the interface's hook, when pinning.
func (d *Datapath) pinLink(ia *ifaceAttachment, hook string, l link.Link) error {
	if d.cfg.PinDir == "" {
		return nil
	}
	if err := l.Pin(d.linkPin(ia, hook)); err != nil {
		return fmt.Errorf("%w: pin link %s on %s: %w", ErrPin, hook, ia.iface.Name, err)
	}
	return nil
}

// PruneLinkPins removes the pinned links a previous process left for interfaces
// this datapath is not attached to (gone, or no longer chosen), which detaches
// them, and returns their pins' names.
func (d *Datapath) PruneLinkPins() ([]string, error) {
	if d.cfg.PinDir == "" {
		return nil, nil
	}
	d.mu.Lock()
	keep := map[string]bool{}
	for _, ia := range d.ifaces {
		for _, hook := range []string{"xdp", "tcx-ingress", "tcx-egress"} {
			keep[d.linkPin(ia, hook)] = true
		}
	}
	d.mu.Unlock()
	pins, err := filepath.Glob(filepath.Join(d.cfg.PinDir, linkPinPrefix+"*"))
	if err != nil {
		return nil, err
	}
	var pruned []string
	var errs []error
	for _, path := range pins {
		if keep[path] {
			continue
		}
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			// Not a link (or not ours to read): leave it, and say so.
			errs = append(errs, fmt.Errorf("%w: read %s: %w", ErrPin, path, err))
			continue
		}
		errs = append(errs, l.Unpin(), l.Close())
		pruned = append(pruned, filepath.Base(path))
	}
	return pruned, errors.Join(errs...)
}

// unpin removes every pin, so that a clean stop leaves nothing behind.
func (d *Datapath) unpin() error {
	if d.cfg.PinDir == "" {
		return nil
	}
	var errs []error
	for _, m := range []*ebpf.Map{d.objs.Flows, d.objs.Frags, d.objs.Stats, d.objs.Events, d.objs.Owners, d.objs.SockOwners} {
		if m != nil {
			errs = append(errs, m.Unpin())
		}
	}
	// Pins of links this process did not adopt (their interfaces are gone) would
	// keep the directory.
	if _, err := d.PruneLinkPins(); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(d.cfg.PinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
