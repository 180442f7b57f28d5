package fparser_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testnet"
)

// TestLiveSignalDuringStartup stops fparser -i and fparser top -i, attached the legacy
// way (clsact filters, which outlive a killed process), with SIGINT or SIGTERM during
// their start-up: 10 times the instant the first filter is attached, where a process
// without its handler yet dies and leaves the filter, then 50 ms apart from the start
// until one comes after the attach. Each must end within seconds and leave no filter
// behind. One case starts fparser with SIGINT ignored, as a shell without job control
// starts a command run with &, where an early SIGINT was lost.
func TestLiveSignalDuringStartup(t *testing.T) {
	liveSkip(t)
	testharness.Require(t, testharness.HasTool("script"), "the start-up signal test needs script (bsdutils), for top's terminal: skipped")
	bin := buildCLI(t, t.TempDir())
	host, _ := liveNamespaces(t)
	ns, err := netns.GetFromName(host)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	dev, err := nl.LinkByName(liveIface)
	if err != nil {
		t.Fatal(err)
	}
	filters := func() int {
		n := 0
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			f, _ := nl.FilterList(dev, parent) // no clsact qdisc yet: none
			n += len(f)
		}
		return n
	}
	if n := filters(); n != 0 {
		t.Fatalf("%d filters before", n)
	}
	run := fmt.Sprintf("exec ip netns exec %s %s -i %s --attach tc-legacy", host, bin, liveIface)
	for _, c := range []struct {
		name    string
		command []string
		sig     syscall.Signal
		ignored bool // SIGINT ignored from the start
	}{
		{"SIGINT", []string{"sh", "-c", run}, syscall.SIGINT, false},
		{"SIGTERM", []string{"sh", "-c", run}, syscall.SIGTERM, false},
		{"SIGINT inherited as ignored", []string{"sh", "-c", `trap "" INT; ` + run}, syscall.SIGINT, true},
		{"top, SIGINT", []string{"script", "-qec", strings.Replace(run, " -i ", " top -i ", 1), "/dev/null"}, syscall.SIGINT, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			const atAttach = 10
			for try := 0; try < 100; try++ {
				cmd := exec.Command(c.command[0], c.command[1:]...)
				var out testnet.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				pid := cmd.Process.Pid
				if c.command[0] == "script" {
					pid = childOf(t, pid)
				}
				if c.ignored {
					// Until the handler is in place, SIGINT is ignored; what
					// runs before it (the Go runtime's start) has nothing
					// attached, and no test can tell it from a lost signal.
					testharness.WaitFor(t, 5*time.Second, "fparser's SIGINT handler", func() bool {
						exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
						return exe == bin && catches(pid, syscall.SIGINT)
					})
				}
				var when string
				if try < atAttach {
					when = "at the first filter"
					for filters() == 0 && len(done) == 0 {
					}
				} else {
					// The signal's moment is what the test varies: this
					// sleep waits for nothing.
					delay := time.Duration(try-atAttach) * 50 * time.Millisecond
					time.Sleep(delay)
					when = fmt.Sprintf("%v after the start", delay)
				}
				attached := filters() > 0
				syscall.Kill(pid, c.sig)
				select {
				case err := <-done:
					if n := filters(); n != 0 {
						t.Fatalf("%s %s (attached: %v): fparser ended (%v) and left %d filters\noutput:\n%s", c.sig, when, attached, err, n, &out)
					}
				case <-time.After(20 * time.Second):
					syscall.Kill(pid, syscall.SIGKILL)
					<-done
					t.Fatalf("%s %s (attached: %v): still running 20 s later\noutput:\n%s", c.sig, when, attached, &out)
				}
				if try >= atAttach && attached {
					t.Logf("%d starts: stopped at the first filter %d times, then from 0 to %s: nothing left attached", try+1, atAttach, when)
					return
				}
			}
		})
	}
}

// childOf returns the only child of process pid, once it has one.
func childOf(t testing.TB, pid int) int {
	t.Helper()
	path := filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(pid), "children")
	var child int
	testharness.WaitFor(t, 5*time.Second, "a child of "+strconv.Itoa(pid), func() bool {
		b, _ := os.ReadFile(path)
		f := strings.Fields(string(b))
		if len(f) == 1 {
			child, _ = strconv.Atoi(f[0])
		}
		return child != 0
	})
	return child
}

// catches reports whether process pid has a handler for sig.
func catches(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if mask, ok := strings.CutPrefix(l, "SigCgt:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return err == nil && m&(1<<(sig-1)) != 0
		}
	}
	return false
}
