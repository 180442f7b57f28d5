package flowfmt

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser"
)

// TestEncoder: a JSON line holds Fields in order (FeatureFields after them with
// Features), a CSV line as many values as the header names, and once the buffer has
// room, appending a flow allocates nothing.
func TestEncoder(t *testing.T) {
	f := fparser.Flow{Protocol: fparser.TCP, Src: netip.MustParseAddrPort("192.0.2.1:40000"), Dst: netip.MustParseAddrPort("[2001:db8::1]:443"),
		FirstSeen: time.Date(2026, 12, 6, 6, 0, 0, 5, time.UTC), LastSeen: time.Date(2026, 12, 6, 6, 0, 1, 0, time.UTC),
		Fwd: fparser.Counters{Packets: 3, Bytes: 180, Flags: 0x12, Interface: `eth"0`}, Process: fparser.Process{PID: 7, Name: "a,b", Cgroup: "/x"}}
	for _, features := range []bool{false, true} {
		e := Encoder{Features: features}
		line := e.AppendJSON(nil, &f)
		dec := json.NewDecoder(strings.NewReader(string(line)))
		dec.Token()
		var keys []string
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			keys = append(keys, k.(string))
			var v json.RawMessage
			dec.Decode(&v)
		}
		want := slices.Clone(Fields)
		if features {
			want = append(want, FeatureFields...)
		}
		if !slices.Equal(keys, want) {
			t.Errorf("features %v: JSON keys %v, want %v", features, keys, want)
		}
		header, row := string(e.AppendCSVHeader(nil)), string(e.AppendCSV(nil, &f))
		// The process name "a,b" is quoted: one comma more in the row than values.
		if got, want := strings.Count(row, ",")-1, strings.Count(header, ","); got != want {
			t.Errorf("features %v: CSV row %q has %d separators, header %d", features, row, got, want)
		}
		buf := make([]byte, 0, 4096)
		if n := testing.AllocsPerRun(100, func() { buf = e.AppendJSON(buf[:0], &f); buf = e.AppendCSV(buf[:0], &f) }); n != 0 {
			t.Errorf("features %v: %v allocations a flow", features, n)
		}
	}
}
