package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/cmd/fparser/testdata/naivemap"
	"github.com/fparser/fparser/internal/flowgen"
)

// The flow-heavy capture, written once per process by flowgen (and kept in the
// temporary directory between runs), and the binaries the process benchmarks run,
// built once into a directory that TestMain removes.
var (
	flowHeavy struct {
		once sync.Once
		path string
		sum  flowgen.Summary
		err  error
	}
	binaries struct {
		once sync.Once
		dir  string
		err  error
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

func flowHeavyCapture(b *testing.B) (string, flowgen.Summary) {
	flowHeavy.once.Do(func() {
		flowHeavy.path, flowHeavy.sum, flowHeavy.err = flowgen.File(flowgen.Default)
		if flowHeavy.err == nil {
			// Whatever runs first should not pay for bringing the file back into
			// the page cache, from which the kernel may have evicted it.
			_, flowHeavy.err = readAll(flowHeavy.path)
		}
	})
	if flowHeavy.err != nil {
		b.Fatal(flowHeavy.err)
	}
	return flowHeavy.path, flowHeavy.sum
}

// binary returns the path of fparser, naivemap or rusage, built by go build.
func binary(b *testing.B, name string) string {
	binaries.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			binaries.err = err
			return
		}
		if binaries.dir, err = os.MkdirTemp("", "fparser-bench-bin-"); err != nil {
			binaries.err = err
			return
		}
		for out, pkg := range map[string]string{"fparser": ".", "naivemap": "./testdata/naivemap/main", "rusage": "./testdata/rusage"} {
			cmd := exec.Command(gobin, "build", "-o", filepath.Join(binaries.dir, out), pkg)
			if msg, err := cmd.CombinedOutput(); err != nil {
				binaries.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
				return
			}
		}
	})
	if binaries.err != nil {
		b.Fatal(binaries.err)
	}
	return filepath.Join(binaries.dir, name)
}

// BenchmarkFlowHeavy replays flowgen.Default, a capture shaped like a busy link's
// (3.5 million packets, 418,000 flows that start and end over 150 s), through
// fparser, a naive Go map and the C flow exporters Debian packages, side by side in
// one run. One op is a whole replay. Every sub-benchmark reports ns/packet,
// packets/s and cpu-ns/packet (the user and system time of the process, all its
// threads together, per packet: less at the mercy of other load than the wall
// clock). Those in this process report allocations; those in a process of their
// own, started through testdata/rusage, their peak RSS (peak-MiB, with rusage's
// 2.4 MiB as the floor).
//
//	go test -run XXX -bench FlowHeavy -benchtime 1x -count 5 ./cmd/fparser
func BenchmarkFlowHeavy(b *testing.B) {
	path, sum := flowHeavyCapture(b)
	b.Run("read", func(b *testing.B) {
		inProcess(b, sum.Packets, func() error {
			n, err := readAll(path)
			if err == nil && n != sum.Packets {
				err = fmt.Errorf("%d packets read, the capture has %d", n, sum.Packets)
			}
			return err
		})
	})
	b.Run("naive-map", func(b *testing.B) {
		inProcess(b, sum.Packets, func() error {
			st, err := naivemap.Run(path, io.Discard)
			if err == nil {
				err = checkNaive(st, sum)
			}
			return err
		})
	})
	b.Run("library", func(b *testing.B) {
		inProcess(b, sum.Packets, func() error { return replayLibrary(path, sum) })
	})
	b.Run("cli-csv", func(b *testing.B) {
		inProcess(b, sum.Packets, func() error {
			var out lineCounter
			if code := run([]string{"-r", path, "-o", "csv", "-q"}, &out, io.Discard); code != 0 {
				return fmt.Errorf("fparser exited with %d", code)
			}
			if want := sum.Flows + 1; out.lines != want {
				return fmt.Errorf("%d lines of CSV, want %d (a header and a line per flow)", out.lines, want)
			}
			return nil
		})
	})
	b.Run("cli-process", func(b *testing.B) {
		subprocess(b, sum.Packets, devNull(b), nil, binary(b, "fparser"), "-r", path, "-o", "csv", "-q")
	})
	// The CLI flushes its output after every flow when it takes standard output
	// for a terminal, as it takes /dev/null, a character device too: one write(2)
	// per flow. Into a pipe, as to a file, it writes 64 KiB at a time.
	b.Run("cli-process-pipe", func(b *testing.B) {
		var out lineCounter
		subprocess(b, sum.Packets, &out, func([]byte) error {
			lines := out.lines
			out.lines = 0
			if want := sum.Flows + 1; lines != want {
				return fmt.Errorf("%d lines of CSV, want %d (a header and a line per flow)", lines, want)
			}
			return nil
		}, binary(b, "fparser"), "-r", path, "-o", "csv", "-q")
	})
	b.Run("naive-map-process", func(b *testing.B) {
		want := fmt.Sprintf("naivemap: %d packets, ", sum.Packets)
		subprocess(b, sum.Packets, devNull(b), func(out []byte) error {
			if !bytes.Contains(out, []byte(want)) {
				return fmt.Errorf("no %q in its output:\n%s", want, out)
			}
			return nil
		}, binary(b, "naivemap"), path)
	})
	b.Run("nfpcapd", func(b *testing.B) {
		bin := peer(b, "nfpcapd", "nfdump")
		// nfpcapd writes nfcapd files, one per 5 minutes of capture time, into the
		// directory; its summary says how many packets it processed.
		dir := b.TempDir()
		subprocess(b, sum.Packets, nil, processed(`Total: Processed: (\d+)`, sum.Packets), bin, "-r", path, "-w", dir)
	})
	b.Run("softflowd", func(b *testing.B) {
		bin := peer(b, "softflowd", "softflowd")
		// Without -n, softflowd builds its export datagrams and sends them nowhere.
		// -v 10 -b: IPFIX biflows, the closest to fparser's flows, IPv6 (-6)
		// included; -m: room for every flow, as fparser's table grows to hold
		// them all, instead of the default 8192 and early, forced expiry. Reading
		// a file, it ends flows only at its end, whatever -t says.
		subprocess(b, sum.Packets, nil, processed(`Packets processed: (\d+)`, sum.Packets), bin, "-r", path, "-6", "-v", "10", "-b", "-m", "1048576")
	})
}

// peer returns the path of a C flow exporter, or skips.
func peer(b *testing.B, name, pkg string) string {
	bin, err := exec.LookPath(name)
	if err != nil {
		b.Skipf("%s is not installed (Debian package %s): no comparison with it", name, pkg)
	}
	return bin
}

// processed checks that a peer's output says it processed every packet.
func processed(pattern string, want uint64) func([]byte) error {
	re := regexp.MustCompile(pattern)
	return func(out []byte) error {
		m := re.FindSubmatch(out)
		if m == nil {
			return fmt.Errorf("no %q in its output:\n%s", pattern, out)
		}
		if n, _ := strconv.ParseUint(string(m[1]), 10, 64); n != want {
			return fmt.Errorf("it processed %d packets, the capture has %d", n, want)
		}
		return nil
	}
}

// inProcess times replay, run in this process, and reports per packet.
func inProcess(b *testing.B, packets uint64, replay func() error) {
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		if err := replay(); err != nil {
			b.Fatal(err)
		}
	}
	report(b, packets, processCPU(b)-cpu0)
}

// subprocess times a command, started by rusage, and reports per packet and its
// peak RSS. Its standard output goes to stdout (a file as it is, another writer
// through a pipe), or when stdout is nil, with its standard error, to check, if not
// nil.
func subprocess(b *testing.B, packets uint64, stdout io.Writer, check func([]byte) error, name string, args ...string) {
	launcher := binary(b, "rusage")
	var cpu time.Duration
	var peak int64
	for b.Loop() {
		var out bytes.Buffer
		cmd := exec.Command(launcher, append([]string{name}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if stdout != nil {
			cmd.Stdout = stdout
		}
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v\n%s", cmd, err, out.Bytes())
		}
		if check != nil {
			if err := check(out.Bytes()); err != nil {
				b.Fatalf("%s: %v", cmd, err)
			}
		}
		m := usageLine.FindSubmatch(out.Bytes())
		if m == nil {
			b.Fatalf("%s: no usage in its output:\n%s", cmd, out.Bytes())
		}
		rss, _ := strconv.ParseInt(string(m[1]), 10, 64)
		user, _ := strconv.ParseInt(string(m[2]), 10, 64)
		sys, _ := strconv.ParseInt(string(m[3]), 10, 64)
		peak = max(peak, rss)
		cpu += time.Duration(user + sys)
	}
	report(b, packets, cpu)
	b.ReportMetric(float64(peak)/1024, "peak-MiB")
}

var usageLine = regexp.MustCompile(`rusage: maxrss-kib=(\d+) user-ns=(\d+) sys-ns=(\d+)`)

func devNull(b *testing.B) *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

func report(b *testing.B, packets uint64, cpu time.Duration) {
	perPacket := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(packets)
	b.ReportMetric(perPacket, "ns/packet")
	b.ReportMetric(1e9/perPacket, "packets/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(packets), "cpu-ns/packet")
}

// processCPU is the user and system time this process has taken so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readAll reads the capture with pcapgo's zero-copy reader and nothing else: the
// floor of any reader built on it.
func readAll(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	var n uint64
	for {
		_, _, err := r.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("%s: packet %d: %w", path, n+1, err)
		}
		n++
	}
}

// checkNaive checks the naive map's counts: one flow per 5-tuple, so a connection
// that reuses the ports of a finished one is not a flow of its own.
func checkNaive(st naivemap.Stats, sum flowgen.Summary) error {
	if st.Packets != sum.Packets || st.Flows != sum.Flows-sum.Reused {
		return fmt.Errorf("naive map: %d packets, %d flows; the capture has %d packets, %d flows of which %d reuse a 5-tuple", st.Packets, st.Flows, sum.Packets, sum.Flows, sum.Reused)
	}
	return nil
}

// replayLibrary replays the capture through the public API with callbacks that only
// count, and checks that every packet the generator wrote was accepted and reported
// once, in the flows it meant to write.
func replayLibrary(path string, sum flowgen.Summary) error {
	var flows int
	var packets uint64
	count := func(f fparser.Flow) {
		flows++
		packets += f.PacketCount()
	}
	p, err := fparser.Open(path, &fparser.Options{OnTCP: count, OnUDP: count})
	if err != nil {
		return err
	}
	if err := p.Wait(); err != nil {
		return err
	}
	info := p.Info()
	if info.PacketsAccepted != sum.Packets || packets != sum.Packets || flows != sum.Flows {
		return fmt.Errorf("library: %d packets accepted, %d reported in %d flows; the capture has %d packets in %d flows", info.PacketsAccepted, packets, flows, sum.Packets, sum.Flows)
	}
	return nil
}

// lineCounter counts the lines written to it, for io.Discard's price plus that of
// counting newlines: 2 ms of a replay's 1.5 s.
type lineCounter struct{ lines int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}
