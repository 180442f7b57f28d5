package loader

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

const envChild = "FPARSER_LOADER_CHILD"

func TestOpenNoSuchInterface(t *testing.T) {
	_, err := Open(Config{Interface: "fp-none0"})
	if !errors.Is(err, ErrNoInterface) || !strings.Contains(err.Error(), `"fp-none0"`) {
		t.Errorf("error %v, want ErrNoInterface naming the interface", err)
	}
	// Names that only resemble an interface's: no pattern, path or padding
	// reaches another one.
	for _, name := range []string{"lo*", "l?", "./lo", "/sys/class/net/lo", "lo ", " lo", "LO", "lo\x00", "", "1"} {
		if d, err := Open(Config{Interface: name}); !errors.Is(err, ErrNoInterface) {
			if d != nil {
				d.Close()
			}
			t.Errorf("Open(%q): %v, want ErrNoInterface", name, err)
		}
	}
	_, err = Open(Config{Interface: "lo", Mode: "ebpf"})
	if !errors.Is(err, ErrAttachMode) {
		t.Errorf("error %v, want ErrAttachMode", err)
	}
}

// TestVerifierRejectionIsExplained: a program the verifier refuses gives ErrVerifier
// with the end of the verifier's log.
func TestVerifierRejectionIsExplained(t *testing.T) {
	requireBPF(t)
	// Reads a packet byte without checking it is there.
	_, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word),
			asm.LoadMem(asm.R0, asm.R2, 0, asm.Byte),
			asm.Return(),
		},
		License: "MIT",
	})
	err = classify("load the programs", err)
	if !errors.Is(err, ErrVerifier) || !strings.Contains(err.Error(), "last lines of the verifier log") || !strings.Contains(err.Error(), "invalid access to packet") {
		t.Errorf("error %v, want ErrVerifier with the log's last lines", err)
	}
	// The cause stays reachable: the whole log, for a caller that wants it.
	var ve *ebpf.VerifierError
	if !errors.As(fmt.Errorf("open interface x: %w", err), &ve) || len(ve.Log) == 0 {
		t.Errorf("errors.As finds no *ebpf.VerifierError in %v", err)
	}
}

// TestNotPermittedNamesCapabilities runs Load in a child that lost CAP_BPF,
// CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN.
func TestNotPermittedNamesCapabilities(t *testing.T) {
	if os.Getenv(envChild) == "noperm" {
		_, err := Load(Config{})
		if !errors.Is(err, ErrNotPermitted) || !errors.Is(err, unix.EPERM) {
			t.Fatalf("error %v, want ErrNotPermitted wrapping EPERM", err)
		}
		for _, c := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"} {
			if !strings.Contains(err.Error(), c) {
				t.Errorf("error %q does not name %s", err, c)
			}
		}
		return
	}
	requireBPF(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	cmd := exec.Command("setpriv", "--bounding-set", "-bpf,-perfmon,-net_admin,-sys_admin", "--inh-caps", "-all",
		os.Args[0], "-test.run", "^TestNotPermittedNamesCapabilities$", "-test.v")
	cmd.Env = append(os.Environ(), envChild+"=noperm")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child without capabilities: %v\n%s", err, out)
	}
}

// TestKilledProcessLeavesNothingAttached: the programs are attached with bpf_links,
// so when the process holding them is killed with SIGKILL the kernel detaches them.
// Everything runs in a network namespace of the test's own, on a veth pair with no
// address; this test binary re-executes itself there to attach and to look.
func TestKilledProcessLeavesNothingAttached(t *testing.T) {
	switch os.Getenv(envChild) {
	case "attach":
		d, err := Open(Config{Interface: os.Getenv("FPARSER_IFACE")})
		if err != nil {
			t.Fatal(err)
		}
		println("attached:", strings.Join(d.Attached(), ", "))
		select {} // until killed
	case "query":
		xdp, tcx := attachments(t, os.Getenv("FPARSER_IFACE"))
		println("attachments:", xdp, tcx)
		return
	}
	requireBPF(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	ns := "fpk-" + strconv.Itoa(os.Getpid())
	const name = "fpk0"
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "add", name, "type", "veth", "peer", "name", "fpk1"},
		{"-n", ns, "link", "set", name, "up"},
		{"-n", ns, "link", "set", "fpk1", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	inNS := func(role string) *exec.Cmd {
		c := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestKilledProcessLeavesNothingAttached$")
		c.Env = append(os.Environ(), envChild+"="+role, "FPARSER_IFACE="+name)
		return c
	}
	look := func() string {
		out, err := inNS("query").CombinedOutput()
		if err != nil {
			t.Fatalf("query: %v\n%s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "attachments:") {
				return strings.TrimSpace(strings.TrimPrefix(line, "attachments:"))
			}
		}
		t.Fatalf("query said %s", out)
		return ""
	}

	child := inNS("attach")
	stderr, _ := child.StderrPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	attached := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "attached:") {
			attached = true
			break
		}
	}
	if !attached {
		child.Wait()
		t.Fatal("the child did not attach")
	}
	if got := look(); got != "true 1" {
		t.Fatalf("while the child runs: %q, want XDP and one TCX egress program", got)
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := look()
		if got == "false 0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after kill -9: %q still attached (xdp, tcx egress)", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// attachments reports whether an XDP program is attached to the interface and how
// many TCX egress programs are.
func attachments(t *testing.T, name string) (xdp bool, tcx int) {
	out, err := exec.Command("ip", "-d", "link", "show", "dev", name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v\n%s", err, out)
	}
	i, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	res, err := link.QueryPrograms(link.QueryOptions{Target: i.Index, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(out), "prog/xdp"), len(res.Programs)
}
