package filter_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser/filter"
	"github.com/fparser/fparser/internal/offline"
)

// fuzzFrames are a few real frames of testdata, to run compiled programs on.
func fuzzFrames(f *testing.F) [][]byte {
	var frames [][]byte
	paths, _ := filepath.Glob("../testdata/*.pcap")
	for _, p := range paths {
		src, err := offline.Open(p)
		if err != nil {
			continue
		}
		var fr offline.Frame
		for i := 0; i < 4 && src.Next(&fr) == nil; i++ {
			if fr.LinkType == offline.LinkEthernet {
				frames = append(frames, append([]byte(nil), fr.Data...))
			}
		}
		src.Close()
	}
	return frames
}

// fuzzTimeBound turns a compile that takes far longer than it should (milliseconds)
// into a failure, with room for a busy machine and the race detector.
const fuzzTimeBound = 5 * time.Second

// bounded runs f and fails the test if it does not return within fuzzTimeBound or
// allocates more than the package doc's bound.
func bounded(t *testing.T, what string, expr string, f func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(fuzzTimeBound):
		t.Fatalf("%s of %d bytes (%.100q...): not done in %v", what, len(expr), expr, fuzzTimeBound)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > allocBound {
		t.Fatalf("%s of %d bytes (%.100q...): %d bytes allocated, more than %d", what, len(expr), expr, alloc, allocBound)
	}
}

// FuzzCompile feeds arbitrary expressions to the filter compiler: it compiles them or
// refuses them with an ErrFilter, never panics, within the time and allocation
// bounds whatever their size; what it compiles passes the classic checker, runs on
// real frames, and round-trips through tcpdump -ddd's text. The seeds are the
// oracle's expressions and the hostile shapes at a few sizes, for the fuzzer to
// grow.
func FuzzCompile(f *testing.F) {
	if file, err := os.Open("testdata/expressions.txt"); err == nil {
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
				f.Add(strings.TrimPrefix(line, "!"))
			}
		}
		file.Close()
	}
	for _, h := range hostile {
		for _, size := range []int{300, 4 << 10, 64 << 10} {
			f.Add(h.build(size))
		}
	}
	frames := fuzzFrames(f)
	links := []filter.Link{filter.Ethernet, {Type: 101}, {Type: 113}, {Type: 276}, {Type: 0}, {Type: 0, BigEndian: true}}
	f.Fuzz(func(t *testing.T, expr string) {
		var flt *filter.Filter
		var err error
		bounded(t, "Parse", expr, func() { flt, err = filter.Parse(expr) })
		if err != nil {
			if !errorsIsFilter(err) {
				t.Fatalf("Parse(%q): %v, not an ErrFilter", expr, err)
			}
			return
		}
		for _, l := range links {
			var p *filter.Program
			bounded(t, fmt.Sprintf("Compile for link type %d", l.Type), expr, func() { p, err = flt.Compile(l) })
			if err != nil {
				if !errorsIsFilter(err) {
					t.Fatalf("Compile(%q, %+v): %v, not an ErrFilter", expr, l, err)
				}
				continue
			}
			if _, err := filter.NewProgram(p.Raw()); err != nil {
				t.Fatalf("%q compiled to a program the checker refuses: %v", expr, err)
			}
			raw, err := filter.ParseDDD(p.DDD())
			if err != nil || !slices.Equal(raw, p.Raw()) {
				t.Fatalf("%q: -ddd round trip: %v", expr, err)
			}
			for _, fr := range frames {
				p.Match(fr, len(fr))
				p.Match(fr[:len(fr)/2], len(fr))
			}
		}
	})
}

func errorsIsFilter(err error) bool { return errors.Is(err, filter.ErrFilter) }
