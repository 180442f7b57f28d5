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
// the fragments, the counters. The scratch map holds nothing between packets.
var pinnedMaps = []string{"flows", "frags", "stats", "events"}

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

// linkPin is where the link of an attachment is pinned.
func (d *Datapath) linkPin(name string) string { return filepath.Join(d.cfg.PinDir, "link-"+name) }

// adoptLink loads the link a previous process pinned under name and swaps in this
// process's program, so that the interface is never without one. ok is false when
// there is no such pin.
func (d *Datapath) adoptLink(name string, prog *ebpf.Program) (l link.Link, ok bool, err error) {
	if d.cfg.PinDir == "" {
		return nil, false, nil
	}
	l, err = link.LoadPinnedLink(d.linkPin(name), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, classifyAttach("adopt the pinned link "+d.linkPin(name), err)
	}
	if err := l.Update(prog); err != nil {
		l.Close()
		return nil, false, classifyAttach("swap the program of the pinned link "+d.linkPin(name), err)
	}
	return l, true, nil
}

// pinLink pins a new link under name, when pinning.
func (d *Datapath) pinLink(name string, l link.Link) error {
	if d.cfg.PinDir == "" {
		return nil
	}
	if err := l.Pin(d.linkPin(name)); err != nil {
		return fmt.Errorf("%w: pin link %s: %w", ErrPin, name, err)
	}
	return nil
}

// unpin removes every pin, so that a clean stop leaves nothing behind.
func (d *Datapath) unpin() error {
	if d.cfg.PinDir == "" {
		return nil
	}
	var errs []error
	for _, m := range []*ebpf.Map{d.objs.Flows, d.objs.Frags, d.objs.Stats, d.objs.Events} {
		if m != nil {
			errs = append(errs, m.Unpin())
		}
	}
	if err := os.Remove(d.cfg.PinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
