package ipfix

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/fparser/fparser"
)

// TestRetryDoubles: each failure within a minute of the one before doubles the wait
// before the next try, from RetryInterval up to a minute; a failure longer after
// the last starts again from RetryInterval.
func TestRetryDoubles(t *testing.T) {
	e := &Exporter{cfg: Config{RetryInterval: time.Second}}
	var got []time.Duration
	for range 9 {
		got = append(got, e.nextRetryLocked())
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("waits %v, want %v seconds", got, want)
		}
	}
	e.lastFailure = time.Now().Add(-61 * time.Second)
	if d := e.nextRetryLocked(); d != time.Second {
		t.Errorf("a failure more than a minute after the last: wait %v, want 1s", d)
	}
}

// TestUDPResumesAfterTimeout: over UDP a send that waited WriteTimeout (here, on a
// pipe that nothing reads) is counted as not sent, and for RetryInterval the next
// messages are counted as not sent without a try; then the exporter sends again.
func TestUDPResumesAfterTimeout(t *testing.T) {
	f := fparser.Flow{Protocol: fparser.UDP, Src: netip.MustParseAddrPort("192.0.2.1:5353"), Dst: netip.MustParseAddrPort("192.0.2.2:53")}
	f.Fwd.Packets = 1
	for _, retry := range []time.Duration{time.Hour, time.Millisecond} {
		cfg, err := Config{Address: "192.0.2.9:4739", WriteTimeout: 20 * time.Millisecond, RetryInterval: retry}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		ours, collector := net.Pipe()
		e := newExporter(cfg, ours)
		e.Export(&f)
		if err := e.Flush(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Flush to a collector that reads nothing: %v", err)
		}
		if retry == time.Hour {
			e.Export(&f)
			if err := e.Flush(); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Flush while the collector is down: %v; want the timeout as its cause", err)
			}
			if st := e.Stats(); st.Errors != 1 || st.NotSentMessages != 2 || st.NotSentFlows != 2 || st.Messages != 0 {
				t.Errorf("Stats %+v: want 2 messages not sent, one send tried", st)
			}
			e.Close()
			continue
		}
		go io.Copy(io.Discard, collector) // the collector reads now
		sent := false
		for start := time.Now(); !sent && time.Since(start) < time.Minute; {
			e.Export(&f)
			sent = e.Flush() == nil
		}
		if st := e.Stats(); !sent || st.Messages != 1 || st.Flows != 1 {
			t.Errorf("no send after the retry interval: Stats %+v", st)
		}
		e.Close()
		collector.Close()
	}
}
