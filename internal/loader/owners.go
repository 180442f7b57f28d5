package loader

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/fparser/fparser/internal/cgroups"
	"github.com/fparser/fparser/internal/userspace"
)

// Sender is who sent one direction of a flow from a local socket, as the kernel's TC
// programs found it: the socket's cgroup v2 id, and the process that created the
// socket (PID 0 and no Comm for one created before the datapath was loaded, or when
// the kernel refused the socket program).
type Sender struct {
	PID    uint32
	Comm   string
	Cgroup uint64
}

// The bits of userspace.State.Owner, as the kernel's attribute sets them.
const (
	ownerDecided = 1 // << direction
	ownerFound   = 4 // << direction
)

// Senders returns the senders of the flow's two directions that the kernel found,
// ok by direction; with forget it also removes them from the kernel's map, for a
// flow that ended. It reads the map only for a direction whose sender was found,
// and takes the entry only if it is this flow's: written for the direction's first
// packet, not an earlier flow's of the same key.
func (d *Datapath) Senders(k *userspace.Key, s *userspace.State, forget bool) (out [2]Sender, ok [2]bool) {
	if s.Owner&(ownerFound|ownerFound<<1) == 0 {
		return out, ok
	}
	// The flow map's gate keeps every map open while it is read: Close closes
	// the table before the maps.
	t := d.Table()
	if !t.open() {
		return out, ok
	}
	defer t.done()
	m := d.objs.Owners
	key := *(*[unsafe.Sizeof(userspace.Key{})]byte)(unsafe.Pointer(k))
	for dir := range 2 {
		if s.Owner&(ownerFound<<dir) == 0 {
			continue
		}
		key[len(key)-1] = byte(dir)
		var v fparserSender
		if err := m.Lookup(&key, &v); err != nil {
			continue
		}
		if v.Since != s.Dir[dir].First {
			continue // an earlier flow's, which its end did not remove
		}
		comm := unsafe.Slice((*byte)(unsafe.Pointer(&v.Comm[0])), len(v.Comm))
		if i := bytes.IndexByte(comm, 0); i >= 0 {
			comm = comm[:i]
		}
		out[dir], ok[dir] = Sender{PID: v.Pid, Comm: string(comm), Cgroup: v.Cgroup}, true
		if forget {
			m.Delete(&key) // gone already if another reader took it: nothing to do
		}
	}
	return out, ok
}

// sockPrograms is the program that keeps each socket's creator, loaded apart from
// the datapath: a kernel that refuses it still counts, with cgroups but no
// processes.
type sockPrograms struct {
	FparserSockCreate *ebpf.Program `ebpf:"fparser_sock_create"`
}

// sockCreatePin is the pin of the socket program's cgroup link.
const sockCreatePin = "sock-create"

// attachSockCreate loads the socket program and attaches it to the root of cgroup
// v2, so that it sees every socket created on the host, or adopts the link a
// previous process pinned. It is done at Load, once.
func (d *Datapath) attachSockCreate(spec *ebpf.CollectionSpec) error {
	var p sockPrograms
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"sock_owners": d.objs.SockOwners}}
	if err := spec.LoadAndAssign(&p, opts); err != nil {
		return classify("load the socket program", err)
	}
	defer p.FparserSockCreate.Close()
	if d.cfg.PinDir != "" {
		path := d.pinPath(sockCreatePin)
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			if err := l.Update(p.FparserSockCreate); err != nil {
				l.Close()
				return classifyAttach("swap the program of the pinned link "+path, err)
			}
			d.sockLink = l
			return nil
		}
	}
	root, err := cgroups.Mount()
	if err != nil {
		return err
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: root, Attach: ebpf.AttachCGroupInetSockCreate, Program: p.FparserSockCreate})
	if err != nil {
		return classifyAttach("attach the socket program to the cgroup "+root, err)
	}
	if d.cfg.PinDir != "" {
		if err := l.Pin(d.pinPath(sockCreatePin)); err != nil {
			l.Close()
			return fmt.Errorf("%w: pin the socket program's link: %w", ErrPin, err)
		}
	}
	d.sockLink = l
	return nil
}

// pinPath is where the pin called name goes.
func (d *Datapath) pinPath(name string) string { return filepath.Join(d.cfg.PinDir, name) }

// Attribution says whether flows are attributed to their local sockets, and when
// part of it could not be, why: not attributing, err is no cgroup v2 mounted
// (cgroups.ErrNoCgroup2) or a kernel whose TC programs may not read sockets, and
// flows are counted unattributed; attributing without processes, the socket
// program was refused and flows carry their cgroups only. All false and nil when
// Config.Owners was not asked for.
func (d *Datapath) Attribution() (attributing, processes bool, err error) {
	return d.owners, d.owners && d.sockLink != nil, d.ownersErr
}

// closeSockCreate detaches the socket program, unpinning its link first.
func (d *Datapath) closeSockCreate() error {
	l := d.sockLink
	if l == nil {
		return nil
	}
	d.sockLink = nil
	var errs []error
	if d.cfg.PinDir != "" {
		if err := l.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, l.Close())...)
}
