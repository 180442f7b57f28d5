package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fparser/fparser/internal/testharness"
)

// TestServiceUnit: deploy/fparser.service passes systemd-analyze verify with no
// complaint (with its ExecStart pointed at a fresh build), and keeps the promises
// docs/service.md makes of it: not root, the three capabilities and no other, pins
// under /sys/fs/bpf, restart on failure, metrics on loopback, JSON logs, every
// option one this fparser takes.
func TestServiceUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "fparser.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	settings := map[string][]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], v)
		}
	}
	const caps = "CAP_BPF CAP_NET_ADMIN CAP_PERFMON"
	for k, want := range map[string]string{
		"User": "fparser", "AmbientCapabilities": caps, "CapabilityBoundingSet": caps,
		"Restart": "on-failure", "NoNewPrivileges": "yes",
	} {
		if got := settings[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
	start := strings.Fields(strings.Join(settings["ExecStart"], ""))
	if len(start) == 0 || start[0] != "/usr/local/bin/fparser" {
		t.Fatalf("ExecStart %v: want /usr/local/bin/fparser and its options", start)
	}
	line := strings.Join(start, " ")
	for _, want := range []string{"-i all", "--pin /sys/fs/bpf/fparser", "--metrics 127.0.0.1:", "--log-format json", "-o json"} {
		if !strings.Contains(line, want) {
			t.Errorf("ExecStart %q lacks %q", line, want)
		}
	}
	// The options are this fparser's: they parse (-i all needs no interface to
	// exist here; nothing is opened).
	if _, err := parseArgs(start[1:], &strings.Builder{}); err != nil {
		t.Errorf("ExecStart's options: %v", err)
	}

	if !testharness.HasTool("systemd-analyze") {
		testharness.Skip(t, "no systemd-analyze (Debian's systemd package): the unit's verification skipped")
	}
	bin := buildCommand(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "fparser.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/fparser", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
