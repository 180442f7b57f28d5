package ipfix

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// unacknowledged returns how many bytes written on the TCP connection its peer has
// not acknowledged yet. The count holds after the connection has failed: the bytes
// a reset threw away are among them.
func unacknowledged(c syscall.RawConn) (uint64, error) {
	var n int
	var err error
	if cerr := c.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); cerr != nil {
		return 0, cerr
	}
	if err != nil || n < 0 {
		return 0, err
	}
	return uint64(n), nil
}

// tcpClose is TCP_CLOSE, the state a connection is in once reset.
const tcpClose = 7

// reset says the TCP connection has ended without our closing it: nothing more will
// be acknowledged.
func reset(c syscall.RawConn) bool {
	var closed bool
	c.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		closed = err == nil && info.State == tcpClose
	})
	return closed
}
