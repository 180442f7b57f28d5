package fparser_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/internal/testnet"
)

// TestLiveWithCapabilitiesOnly runs the command as user nobody with only CAP_BPF,
// CAP_NET_ADMIN and CAP_PERFMON (granted with capsh), on real traffic: it counts the
// flow exactly. As nobody without them, it refuses and names what it lacks.
func TestLiveWithCapabilitiesOnly(t *testing.T) {
	liveSkip(t)
	testharness.Require(t, testharness.HasTool("capsh"), "the capabilities test needs capsh (libcap2-bin): skipped")
	// A binary nobody may run.
	dir, err := os.MkdirTemp("", "fparser-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := buildCLI(t, dir)

	host := liveNamespacesAndServer(t)
	asNobody := func(caps bool, args string) *exec.Cmd {
		c := []string{"netns", "exec", host, "capsh"}
		if caps {
			c = append(c, "--caps=cap_setpcap,cap_setuid,cap_setgid+ep cap_bpf,cap_net_admin,cap_perfmon+eip", "--keep=1",
				"--user=nobody", "--addamb=cap_bpf,cap_net_admin,cap_perfmon")
		} else {
			c = append(c, "--user=nobody")
		}
		return exec.Command("ip", append(c, "--", "-c", "exec "+bin+" "+args)...)
	}

	// Without the capabilities: refused, naming them.
	out, err := asNobody(false, "-i "+liveIface).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CAP_BPF") || !strings.Contains(string(out), "CAP_NET_ADMIN") {
		t.Errorf("as nobody without capabilities: %v, %q", err, out)
	}

	// With them: attach, count, stop on SIGINT.
	var stdout bytes.Buffer
	stderr := &testnet.Buffer{}
	cmd := asNobody(true, "-i "+liveIface+" -o csv -v")
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testharness.WaitFor(t, 30*time.Second, "fparser's readiness line", func() bool { return strings.Contains(stderr.String(), "fparser: counting on ") })
	client := testharness.Command(host, roleCapsTraffic)
	if b, err := client.CombinedOutput(); err != nil {
		t.Fatalf("traffic: %v\n%s", err, b)
	}
	// Nothing to wait for: the traffic is request and reply, and the client waited
	// for each reply, so every packet has passed the kernel's programs, which count
	// it in the flow map on its way out or in, before it goes on; the stop reads
	// that map.
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fparser as nobody with capabilities: %v\n%s", err, stderr.String())
	}
	want := "udp," + liveHostAddr + ",41200," + livePeerAddr + ",9000,0,5,640,5,640,"
	if !strings.Contains(stdout.String(), want) {
		t.Errorf("no flow %q in\n%s\n%s", want, stdout.String(), stderr.String())
	}
	t.Logf("as nobody with CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON:\n%s%s", stdout.String(), stderr.String())
}

// roleCapsTraffic sends the traffic TestLiveWithCapabilitiesOnly counts.
var roleCapsTraffic = testharness.Role("caps-traffic", func(t testing.TB) { udpEcho(t, 41200, 5, 100) })

// buildCLI builds the command into dir and returns its path.
func buildCLI(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "fparser")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/fparser").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}
