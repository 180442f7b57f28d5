// Package linkwatch reports network interfaces appearing, changing state and going
// away, from the kernel's rtnetlink link notifications (RTNLGRP_LINK), so that a live
// parser attaches to interfaces as they come.
//
// The kernel sends RTM_NEWLINK for many changes of a link besides its creation (its
// flags, its addresses, its carrier, its statistics...), so a caller sees repeats of
// the same state and must treat each Event as "this is the link now", not as "this
// changed". A rename is an Event with the same Index and the new Name.
package linkwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Event is one change of a link.
type Event struct {
	Index int    // interface index
	Name  string // interface name (IFLA_IFNAME)
	Up    bool   // IFF_UP is set
	Gone  bool   // RTM_DELLINK: the link was deleted
	// Resync: notifications were lost (ENOBUFS): re-list the interfaces. The kernel
	// drops what does not fit in the socket's receive buffer when many links change
	// at once, and a lost RTM_DELLINK would leave a caller attached to a link that
	// no longer exists. A Resync event has no Index or Name; it comes after every
	// notification that was queued when the loss happened, so a list made on
	// receiving it is at least as new as every Event before it.
	Resync bool
}

// recvBuffer is the socket's receive buffer, in bytes: large enough that creating
// hundreds of links at once (a container runtime starting many containers) fits
// while the caller is busy, so that Resync stays rare. A variable so that the
// tests can make it tiny, to force ENOBUFS.
var recvBuffer = 1 << 20

// firstRead is the first size of the read buffer. A link notification is a few
// kilobytes at most unless the link has many SR-IOV virtual functions; a larger one
// is truncated once (and reported as a Resync) and the buffer grows to fit.
const firstRead = 32 << 10

// eventBuffer is the channel's capacity: it smooths a burst while the caller is
// busy, and beyond it the kernel's receive buffer takes over.
const eventBuffer = 64

// Watcher reads link notifications of the calling process's network namespace.
//
// The socket belongs to the network namespace of the thread that calls Watch: the
// process's, unless the caller locked its goroutine to a thread and moved that
// thread to another namespace (setns), which is how one watches another namespace.
type Watcher struct {
	file   *os.File
	conn   syscall.RawConn
	events chan Event
	done   chan struct{} // closed by Close: the reader stops, whatever it waits for
	ended  chan struct{} // closed by the reader when it has returned

	closeOnce sync.Once
	closeErr  error

	mu  sync.Mutex
	err error // why the reader ended early; set before events is closed
}

// Watch subscribes. Events sent after Watch returns are all delivered: a caller
// that also needs the interfaces that already exist lists them (net.Interfaces)
// after Watch returns, not before, so that no link created between the list and
// the subscription is missed; one created meanwhile is both listed and reported.
//
// The socket is non-blocking and handed to Go's network poller (os.NewFile) because
// nothing else unblocks a reader promptly: closing a descriptor does not wake a
// recvfrom blocked on it in Linux, netlink sockets do not implement shutdown
// (EOPNOTSUPP), and a receive timeout would delay Close by up to the timeout and
// wake the reader for nothing meanwhile. The poller's Close wakes the reader at once.
func Watch() (*Watcher, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("linkwatch: open netlink socket: %w", err)
	}
	// The buffer is sized before the bind, so that no notification is dropped
	// for want of it between the two.
	if err := setRecvBuffer(fd, recvBuffer); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("linkwatch: bind netlink socket: %w", err)
	}
	file := os.NewFile(uintptr(fd), "rtnetlink-link")
	conn, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("linkwatch: netlink socket: %w", err)
	}
	w := &Watcher{
		file:   file,
		conn:   conn,
		events: make(chan Event, eventBuffer),
		done:   make(chan struct{}),
		ended:  make(chan struct{}),
	}
	go w.read()
	return w, nil
}

// setRecvBuffer asks for SO_RCVBUFFORCE first, which root (CAP_NET_ADMIN) may set
// beyond net.core.rmem_max, and falls back to SO_RCVBUF, which the kernel caps
// there silently: a smaller buffer only makes Resync likelier.
func setRecvBuffer(fd, size int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) == nil {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size); err != nil {
		return fmt.Errorf("linkwatch: set netlink socket's receive buffer: %w", err)
	}
	return nil
}

// Events delivers the notifications in the kernel's order. The channel is closed
// after Close, or when reading fails (Err then says why).
func (w *Watcher) Events() <-chan Event { return w.events }

// Err is the error that closed Events early, nil after Close (and while Events is
// open): a caller that sees Events closed without having called Close learns from
// it that it no longer hears of links, and can fall back to polling.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops the watcher and closes Events; safe to call more than once and from
// any goroutine. It returns once the reader has ended, so that nothing is sent on
// Events after it. A Watcher whose Events ended early still holds its socket until
// Close.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		// Wakes the reader if it waits for the socket. The descriptor itself is
		// closed only once the reader's receive has returned, so it cannot be
		// reused under it.
		if err := w.file.Close(); err != nil {
			w.closeErr = fmt.Errorf("linkwatch: close netlink socket: %w", err)
		}
	})
	<-w.ended
	return w.closeErr
}

// closing says whether Close was called: an error then is Close's doing, not one
// to report.
func (w *Watcher) closing() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// read is the reader goroutine: it receives the datagrams and sends their events
// until Close, or until the socket fails.
func (w *Watcher) read() {
	defer close(w.ended)
	defer close(w.events)
	buf := make([]byte, firstRead)
	lost := false // notifications were lost: a Resync is due once the queue is empty
	for {
		var (
			n, flags int
			from     unix.Sockaddr
			rerr     error
			drained  bool
		)
		err := w.conn.Read(func(fd uintptr) bool {
			// MSG_TRUNC makes netlink return the datagram's whole length, so
			// that a truncated one is told apart and the buffer can grow.
			n, _, flags, from, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_TRUNC)
			if rerr == unix.EAGAIN {
				// With a loss pending, the queue being empty is the moment
				// to report it: everything queued before it has been sent.
				drained = lost
				return lost
			}
			return true
		})
		if err == nil {
			err = rerr
		}
		switch {
		case w.closing():
			return
		case drained:
			lost = false
			if !w.send(Event{Resync: true}) {
				return
			}
			continue
		case err == unix.EINTR:
			continue
		case err == unix.ENOBUFS:
			// The kernel reports the overflow before what is still queued, which
			// is older than the loss: the Resync waits until that is sent.
			lost = true
			continue
		case err != nil:
			w.fail(fmt.Errorf("linkwatch: receive link notification: %w", err))
			return
		}
		if n > len(buf) || flags&unix.MSG_TRUNC != 0 {
			buf = make([]byte, max(n, 2*len(buf)))
			lost = true
			continue
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			// Not from the kernel: another process (with CAP_NET_ADMIN) may
			// send to the group, and what it says is no link's state.
			continue
		}
		events, err := parse(buf[:n])
		if err != nil {
			// A malformed datagram hides the notifications it held.
			lost = true
		}
		for _, ev := range events {
			if !w.send(ev) {
				return
			}
		}
	}
}

// send delivers ev, or gives up and says so if Close is called meanwhile: the
// caller may have stopped reading.
func (w *Watcher) send(ev Event) bool {
	select {
	case w.events <- ev:
		return true
	case <-w.done:
		return false
	}
}

func (w *Watcher) fail(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

// errMalformed is parse's error for a datagram that does not hold whole messages.
var errMalformed = errors.New("linkwatch: malformed link notification")

// parse returns the link events of one datagram from the kernel, in its order. It
// returns the events it could read with an error if part of the datagram could not
// be read.
func parse(b []byte) ([]Event, error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	var events []Event
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != unix.RTM_NEWLINK && m.Header.Type != unix.RTM_DELLINK {
			continue // NLMSG_DONE, NLMSG_NOOP, and what the group may carry besides
		}
		if len(m.Data) < unix.SizeofIfInfomsg {
			return events, errMalformed
		}
		// struct ifinfomsg: family (1 byte), pad (1), type (2), index (4),
		// flags (4), change (4), in the host's byte order.
		if m.Data[0] != unix.AF_UNSPEC {
			// A bridge sends RTM_NEWLINK and RTM_DELLINK of family AF_BRIDGE
			// to the same group when a port joins or leaves it: the port is
			// not deleted, and its state comes in an AF_UNSPEC message.
			continue
		}
		ev := Event{
			Index: int(int32(binary.NativeEndian.Uint32(m.Data[4:8]))),
			Up:    binary.NativeEndian.Uint32(m.Data[8:12])&unix.IFF_UP != 0,
			Gone:  m.Header.Type == unix.RTM_DELLINK,
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return events, fmt.Errorf("%w: %w", errMalformed, err)
		}
		for _, a := range attrs {
			if a.Attr.Type == unix.IFLA_IFNAME {
				ev.Name = cString(a.Value)
			}
		}
		events = append(events, ev)
	}
	return events, nil
}

// cString is the string up to the first NUL: the kernel terminates IFLA_IFNAME.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
