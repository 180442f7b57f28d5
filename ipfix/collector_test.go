package ipfix_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/kerneltest"
	"github.com/fparser/fparser/internal/testpackets"
	"github.com/fparser/fparser/ipfix"
)

// freeUDPPort returns a port on 127.0.0.1 that nothing listens on.
func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// listening reports whether something listens on UDP port on 127.0.0.1.
func listening(port int) bool {
	b, err := os.ReadFile("/proc/net/udp")
	return err == nil && strings.Contains(string(b), fmt.Sprintf("0100007F:%04X", port))
}

// nfdumpRow is a flow as nfdump prints it with rowFormat, and as fparser's flow
// is written for comparison.
const rowFormat = "fmt:%pr,%sa,%sp,%da,%dp,%ipkt,%ibyt,%opkt,%obyt"

func rowOf(proto fparser.Protocol, src, dst endpoint, inP, inB, outP, outB uint64) string {
	return fmt.Sprintf("%d,%s,%d,%s,%d,%d,%d,%d,%d", uint8(proto), src.addr, src.port, dst.addr, dst.port, inP, inB, outP, outB)
}

type endpoint struct {
	addr string
	port uint16
}

// TestNfcapdRoundTrip exports every flow of the test captures to nfdump's nfcapd on
// loopback, reads the records back with nfdump, and compares: protocol, addresses,
// ports, and packets and bytes in each direction. Biflow and uniflow.
func TestNfcapdRoundTrip(t *testing.T) {
	for _, tool := range []string{"nfcapd", "nfdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			kerneltest.Skip(t, "the collector round trip needs nfdump's %s (apt-get install nfdump): skipped", tool)
		}
	}
	flows := replay(t, testpackets.Files(t), 20)
	for _, uniflow := range []bool{false, true} {
		t.Run(map[bool]string{false: "biflow", true: "uniflow"}[uniflow], func(t *testing.T) {
			dir := t.TempDir()
			port := freeUDPPort(t)
			cmd := exec.Command("nfcapd", "-w", dir, "-p", strconv.Itoa(port), "-b", "127.0.0.1", "-t", "3600")
			var log strings.Builder
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			for i := 0; !listening(port); i++ {
				if i == 100 {
					t.Fatal("nfcapd did not start listening")
				}
				time.Sleep(50 * time.Millisecond)
			}
			e, err := ipfix.Dial(ipfix.Config{Address: fmt.Sprintf("127.0.0.1:%d", port), Uniflow: uniflow, ObservationDomain: 7})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for i := range flows {
				f := &flows[i]
				if err := e.Export(f); err != nil {
					t.Fatal(err)
				}
				src := endpoint{f.Src.Addr().String(), f.Src.Port()}
				dst := endpoint{f.Dst.Addr().String(), f.Dst.Port()}
				if uniflow {
					if f.Fwd.Packets > 0 {
						want = append(want, rowOf(f.Protocol, src, dst, f.Fwd.Packets, f.Fwd.Bytes, 0, 0))
					}
					if f.Rev.Packets > 0 {
						want = append(want, rowOf(f.Protocol, dst, src, f.Rev.Packets, f.Rev.Bytes, 0, 0))
					}
				} else {
					want = append(want, rowOf(f.Protocol, src, dst, f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes))
				}
				if i%8 == 7 {
					// Loopback UDP drops what the collector's socket buffer
					// cannot hold: pace the messages.
					e.Flush()
					time.Sleep(2 * time.Millisecond)
				}
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			st := e.Stats()
			time.Sleep(300 * time.Millisecond)
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			// nfcapd checks the sequence numbers and the messages' structure.
			if !strings.Contains(log.String(), "Sequence Errors: 0, Bad Packets: 0") {
				t.Errorf("nfcapd's log:\n%s", log.String())
			}

			files, _ := filepath.Glob(filepath.Join(dir, "nfcapd.*"))
			if len(files) == 0 {
				t.Fatalf("nfcapd wrote no file in %s", dir)
			}
			out, err := exec.Command("nfdump", "-R", dir, "-q", "-N", "-6", "-o", rowFormat).Output()
			if err != nil {
				t.Fatalf("nfdump: %v", err)
			}
			var got []string
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				fields := strings.Split(sc.Text(), ",")
				for i := range fields {
					fields[i] = strings.TrimSpace(fields[i])
				}
				got = append(got, strings.Join(fields, ","))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				missing, extra := diff(want, got), diff(got, want)
				t.Logf("nfcapd's log:\n%s", log.String())
				t.Fatalf("nfdump read %d records, fparser exported %d; %d missing, e.g. %q; %d unexpected, e.g. %q",
					len(got), len(want), len(missing), first(missing), len(extra), first(extra))
			}
			t.Logf("%d flows exported in %d messages (%d records); nfdump read back %d records, all equal", len(flows), st.Messages, st.Records, len(got))
		})
	}
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
