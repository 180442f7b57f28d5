package live

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/fparser/fparser/internal/linkwatch"
	"github.com/fparser/fparser/internal/loader"
)

// All, as an interface, chooses every interface but loopback.
const All = "all"

// ErrInterfaceGone: every interface named was deleted, and no pattern can bring
// another. The flows counted until then are ended first, with reason stopped.
var ErrInterfaceGone = errors.New("the network interface is gone")

// ErrNoInterfaceChosen: an empty list of interfaces.
var ErrNoInterfaceChosen = errors.New("no network interface chosen")

// Selection is the interfaces a live parser counts on: names, shell patterns
// (path.Match: *, ? and [...]) and All. Patterns and All also choose the
// interfaces that appear later.
type Selection struct {
	names    []string
	patterns []string
	all      bool
}

// NewSelection reads the interfaces chosen, in the order given.
func NewSelection(chosen []string) (Selection, error) {
	var s Selection
	if len(chosen) == 0 {
		return s, ErrNoInterfaceChosen
	}
	for _, c := range chosen {
		switch {
		case c == "":
			return s, fmt.Errorf("%w: an empty interface name", ErrNoInterfaceChosen)
		case c == All:
			s.all = true
		case IsPattern(c):
			if _, err := path.Match(c, ""); err != nil {
				return s, fmt.Errorf("interface pattern %q: %w", c, err)
			}
			s.patterns = append(s.patterns, c)
		default:
			s.names = append(s.names, c)
		}
	}
	return s, nil
}

// IsPattern says a chosen interface is a shell pattern rather than a name.
func IsPattern(name string) bool { return strings.ContainsAny(name, `*?[\`) }

// Dynamic says interfaces that appear later can be chosen too.
func (s Selection) Dynamic() bool { return s.all || len(s.patterns) > 0 }

// Names are the interfaces chosen by name.
func (s Selection) Names() []string { return s.names }

// Matches says whether the interface called name is chosen.
func (s Selection) Matches(name string) bool {
	if slices.Contains(s.names, name) {
		return true
	}
	if s.all && name != "lo" {
		return true
	}
	for _, p := range s.patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// String is the selection as given, for messages.
func (s Selection) String() string {
	parts := slices.Clone(s.names)
	parts = append(parts, s.patterns...)
	if s.all {
		parts = append(parts, All)
	}
	return strings.Join(parts, ", ")
}

// attachedIface is what the live loop knows of an interface it attached to.
type attachedIface struct {
	name  string
	down  bool
	wasUp bool // since attached
}

// interfaces attaches the datapath to the chosen interfaces as they come and
// releases what is left of the programs of those that go. It belongs to one
// goroutine: Open's, then Run's.
type interfaces struct {
	sel      Selection
	d        *loader.Datapath
	log      *slog.Logger
	watch    *linkwatch.Watcher // nil when the watcher could not start
	attached map[int]*attachedIface
	names    *interfaceNames // every interface attached to, for the flows' names
	// refused are the interfaces a pattern chose that refused the programs, by
	// index, with their names: tried again only under another name or index, not
	// at each notification of the same link.
	refused map[int]string
}

// attachAll attaches to every chosen interface there is now. A name that is not
// there, or where attaching fails, is an error; an interface matched by a pattern
// that refuses the programs is logged and passed over.
func (ifs *interfaces) attachAll() error {
	for _, name := range ifs.sel.names {
		if _, err := net.InterfaceByName(name); err != nil {
			return fmt.Errorf("%w: %q", loader.ErrNoInterface, name)
		}
	}
	list, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list the network interfaces: %w", err)
	}
	for _, name := range ifs.sel.names {
		if err := ifs.attach(name); err != nil {
			return err
		}
	}
	for _, ifc := range list {
		if !slices.Contains(ifs.sel.names, ifc.Name) && ifs.sel.Matches(ifc.Name) {
			ifs.attachLogged(ifc.Index, ifc.Name)
		}
	}
	if len(ifs.attached) == 0 {
		ifs.log.Info("no interface matches yet: waiting for one to appear", "interfaces", ifs.sel.String())
	}
	return nil
}

// attach attaches the programs to one interface and logs it.
func (ifs *interfaces) attach(name string) error {
	began := time.Now()
	ifc, err := ifs.d.Attach(name)
	if err != nil || ifs.attached[ifc.Index] != nil {
		return err
	}
	link, _ := net.InterfaceByIndex(ifc.Index)
	down := link != nil && link.Flags&net.FlagUp == 0
	ifs.attached[ifc.Index] = &attachedIface{name: name, down: down, wasUp: !down}
	ifs.names.set(ifc.Index, name)
	ifs.log.Info("attached", "interface", name, "where", strings.Join(ifc.Where, ", "), "took", time.Since(began).Round(time.Microsecond))
	return nil
}

// events is the watcher's channel, nil (never ready) without a watcher.
func (ifs *interfaces) events() <-chan linkwatch.Event {
	if ifs.watch == nil {
		return nil
	}
	return ifs.watch.Events()
}

// handle acts on a change of a link. It returns ErrInterfaceGone once no
// interface is left and none can come.
func (ifs *interfaces) handle(ev linkwatch.Event) error {
	if ev.Resync {
		return ifs.resync()
	}
	known := ifs.attached[ev.Index]
	switch {
	case known != nil && (ev.Gone || ev.Name != known.name):
		// Deleted, or renamed: what the kernel left of the programs goes; a new
		// name that is chosen is attached again below.
		ifs.forget(ev.Index, ev.Gone)
		if !ev.Gone && ifs.sel.Matches(ev.Name) {
			ifs.attachLogged(ev.Index, ev.Name)
		}
	case known != nil:
		down := !ev.Up
		switch {
		case down && !known.down:
			ifs.log.Warn("the interface is down: no packet arrives until it is up again; flows go on timing out", "interface", known.name)
		case !down && known.down && known.wasUp:
			ifs.log.Warn("the interface is up again", "interface", known.name)
		case !down && known.down:
			ifs.log.Info("the interface is up", "interface", known.name)
		}
		known.down = down
		known.wasUp = known.wasUp || !down
	case ev.Gone:
		delete(ifs.refused, ev.Index)
	case ifs.sel.Matches(ev.Name):
		ifs.attachLogged(ev.Index, ev.Name)
	}
	return ifs.leftNone()
}

// attachLogged attaches to an interface a pattern chose; a failure is logged once,
// as the interface may be gone again already, or refuse the programs for good.
func (ifs *interfaces) attachLogged(index int, name string) {
	if ifs.refused[index] == name {
		return
	}
	if err := ifs.attach(name); err != nil {
		ifs.refused[index] = name
		ifs.log.Warn("not counting on this interface: "+err.Error(), "interface", name)
	}
}

// forget releases the programs of an interface that went away; its flows stay.
func (ifs *interfaces) forget(index int, deleted bool) {
	name := ifs.attached[index].name
	delete(ifs.attached, index)
	if _, err := ifs.d.DetachInterface(index); err != nil {
		ifs.log.Warn("releasing the programs of a departed interface: "+err.Error(), "interface", name)
	}
	what := "the interface was renamed"
	if deleted {
		what = "the interface was deleted"
	}
	ifs.log.Warn(what+": detached; its flows are kept and end by their timeouts", "interface", name)
}

// resync lists the interfaces again: after the watcher lost notifications, and
// every second when there is no watcher.
func (ifs *interfaces) resync() error {
	list, err := net.Interfaces()
	if err != nil {
		ifs.log.Warn("list the network interfaces: " + err.Error())
		return nil
	}
	present := map[int]net.Interface{}
	for _, ifc := range list {
		present[ifc.Index] = ifc
	}
	for index := range ifs.refused {
		if _, ok := present[index]; !ok {
			delete(ifs.refused, index)
		}
	}
	for index, a := range ifs.attached {
		ifc, ok := present[index]
		if !ok || ifc.Name != a.name {
			ifs.forget(index, !ok)
			continue
		}
		ifs.handle(linkwatch.Event{Index: index, Name: ifc.Name, Up: ifc.Flags&net.FlagUp != 0})
	}
	for _, ifc := range list {
		if ifs.attached[ifc.Index] == nil && ifs.sel.Matches(ifc.Name) {
			ifs.attachLogged(ifc.Index, ifc.Name)
		}
	}
	return ifs.leftNone()
}

// leftNone is ErrInterfaceGone when no interface is attached and the selection has
// no pattern that could bring one.
func (ifs *interfaces) leftNone() error {
	if len(ifs.attached) > 0 || ifs.sel.Dynamic() {
		return nil
	}
	names := ifs.sel.String()
	ifs.log.Error("the interface was deleted: stopping", "interface", names)
	return fmt.Errorf("%s: %w", names, ErrInterfaceGone)
}

// close stops the watcher.
func (ifs *interfaces) close() {
	if ifs.watch != nil {
		ifs.watch.Close()
	}
}
