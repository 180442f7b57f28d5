package testharness

import (
	"os/exec"
	"strings"
	"testing"
)

// Sh runs a command and fails the test, with its output, if the command fails.
func Sh(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Netns makes the network namespace name, deleted at the end of the test, and
// returns its name.
func Netns(t testing.TB, name string) string {
	t.Helper()
	Sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// End is one end of a veth pair: the namespace it is in, the interface's name, and
// its IPv4 address with the prefix length ("198.18.77.1/24").
type End struct {
	NS, Dev, Addr string
}

// Veth joins a's and b's namespaces with a veth pair, gives each end its address,
// and sets both ends and each namespace's loopback up. With wire, it first turns off
// the offloads that join or split packets (TSO, GSO, GRO, with ethtool), so that
// every packet is one frame, as on a wire, and counts can be exact.
func Veth(t testing.TB, a, b End, wire bool) {
	t.Helper()
	Sh(t, "ip", "link", "add", a.Dev, "netns", a.NS, "type", "veth", "peer", "name", b.Dev, "netns", b.NS)
	for _, e := range []End{a, b} {
		Sh(t, "ip", "-n", e.NS, "addr", "add", e.Addr, "dev", e.Dev)
		Sh(t, "ip", "-n", e.NS, "link", "set", "lo", "up")
		if wire {
			exec.Command("ip", "netns", "exec", e.NS, "ethtool", "-K", e.Dev, "tso", "off", "gso", "off", "gro", "off").Run()
		}
		Sh(t, "ip", "-n", e.NS, "link", "set", e.Dev, "up")
	}
}
