package loader

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/fparser/fparser/internal/offline"
	"github.com/fparser/fparser/internal/userspace"
)

// maxTestFrame is the longest frame BPF_PROG_TEST_RUN takes for XDP (a page, less
// headroom); longer frames are cut to it on both sides. The headers come first, so
// only the offload case, where the IP header says 0 and the frame's length counts,
// could tell; both sides see the same cut frame.
const maxTestFrame = 3000

// flowRecord is a reported flow, as compared: which flow, its final state, and the
// reason only where the datapath itself decided it (a reuse).
type flowRecord struct {
	key    userspace.Key
	state  userspace.State
	stats  userspace.FlowStats // zero when not kept
	reused bool
}

func statsOf(st *userspace.FlowStats) userspace.FlowStats {
	if st == nil {
		return userspace.FlowStats{}
	}
	return *st
}

type sideResult struct {
	records  map[flowRecord]int
	counters userspace.DatapathCounters
	// packets are the packet records per flow key, in arrival order: those of a
	// key's successive flows one after the other.
	packets map[userspace.Key][]userspace.PacketRecord
	ends    uint64 // the flows the datapath ended in place (kernel: the end events)
}

// kernelSide runs frames through the XDP program with the given clock readings and
// returns what the kernel reported: its ENDED events, then every flow left in the map.
func kernelSide(t *testing.T, d *Datapath, frames [][]byte, times []int64, places []userspace.Where) sideResult {
	t.Helper()
	events, err := d.Events()
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	var evs []Event
	readErr := make(chan error, 1)
	go func() {
		for {
			var ev Event
			if err := events.Read(&ev); err != nil {
				if errors.Is(err, ErrFlushed) {
					err = nil
				}
				readErr <- err
				return
			}
			evs = append(evs, ev)
		}
	}()
	for i, f := range frames {
		if err := d.objs.TestNow.Set(uint64(times[i])); err != nil {
			t.Fatal(err)
		}
		for _, where := range places {
			if _, err := placeProgram(t, d, where).Run(&ebpf.RunOptions{Data: f}); err != nil {
				t.Fatalf("frame %d (%d bytes) at %#x: %v", i, len(f), where, err)
			}
		}
	}
	events.Flush() // the reader takes what is left, then stops
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	want, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}

	res := sideResult{records: map[flowRecord]int{}, counters: want, packets: map[userspace.Key][]userspace.PacketRecord{}}
	for _, ev := range evs {
		switch ev.Kind {
		case EventEnded:
			res.ends++
			st := ev.State
			st.Owner = 0 // the kernel's alone: offline has no sockets
			res.records[flowRecord{ev.Key, st, ev.Stats, ev.Reason == userspace.EndReused}]++
		case EventPacket:
			res.packets[ev.Key] = append(res.packets[ev.Key], ev.Packet)
		}
	}
	d.Table().Range(func(k *userspace.Key, s *userspace.State, st *userspace.FlowStats) bool {
		state := *s
		state.Owner = 0
		res.records[flowRecord{*k, state, statsOf(st), false}]++
		return true
	})
	return res
}

// placeProgram is the program that sees a test run's packet at where: the XDP
// program for loopback's ingress (a test run's interface), TC egress's for its way
// out.
func placeProgram(t testing.TB, d *Datapath, where userspace.Where) *ebpf.Program {
	switch where {
	case 1:
		return d.objs.FparserXdp
	case 1 | userspace.WhereEgress:
		return d.objs.FparserTcEgress
	}
	t.Fatalf("no program sees packets at %#x in a test run", where)
	return nil
}

// goSide runs the same frames through the Go datapath.
func goSide(frames [][]byte, times []int64, cfg Config, places []userspace.Where) sideResult {
	tab := userspace.NewFlowTable(1024)
	eng := userspace.NewEngine(tab, cfg.Timeouts)
	eng.SetHistory(userspace.HistoryConfig{Limit: cfg.HistoryLimit})
	dp := offline.NewDatapath(eng, tab, 0)
	if cfg.Statistics {
		dp.KeepStatistics()
	}
	if cfg.TCPQuality {
		dp.KeepTCPQuality()
	}
	if cfg.Decap {
		dp.Decapsulate()
	}
	res := sideResult{records: map[flowRecord]int{}, packets: map[userspace.Key][]userspace.PacketRecord{}}
	for i, f := range frames {
		for _, where := range places {
			dp.PacketAt(f, len(f), offline.LinkEthernet, times[i], where)
		}
	}
	eng.Flush(userspace.EndEndOfCapture, func() {})
	res.counters = dp.Counters()
	for _, r := range eng.TakeEnded(nil) {
		res.records[flowRecord{r.Key, r.State, statsOf(r.Stats), r.Reason == userspace.EndReused}]++
		if r.History != nil {
			for pr := range r.History.All() {
				res.packets[r.Key] = append(res.packets[r.Key], pr)
			}
		}
	}
	return res
}

// asEthernet returns a frame of another link type as the Ethernet frame that carries
// the same packet (zero addresses, the ethertype its link header names), for the XDP
// program, which only sees Ethernet. ok is false for what has no such form.
func asEthernet(f *offline.Frame) (frame []byte, ok bool) {
	d := f.Data
	var etype uint16
	var l3 []byte
	switch f.LinkType {
	case offline.LinkEthernet:
		return d, true
	case offline.LinkRaw, offline.LinkRawBSD, offline.LinkRawBSD2, offline.LinkIPv4, offline.LinkIPv6:
		if len(d) < 1 {
			return nil, false
		}
		switch d[0] >> 4 {
		case 4:
			etype = 0x0800
		case 6:
			etype = 0x86DD
		default:
			return nil, false
		}
		l3 = d
	case offline.LinkSLL:
		if len(d) < 16 {
			return nil, false
		}
		etype, l3 = binary.BigEndian.Uint16(d[14:]), d[16:]
	case offline.LinkSLL2:
		if len(d) < 20 {
			return nil, false
		}
		etype, l3 = binary.BigEndian.Uint16(d[0:]), d[20:]
	case offline.LinkNull, offline.LinkLoop:
		if len(d) < 4 {
			return nil, false
		}
		fam := binary.BigEndian.Uint32(d)
		if f.LinkType == offline.LinkNull && fam > 0xFFFF {
			fam = binary.LittleEndian.Uint32(d)
		}
		switch fam {
		case 2:
			etype = 0x0800
		case 10, 24, 28, 30:
			etype = 0x86DD
		default:
			return nil, false
		}
		l3 = d[4:]
	default:
		return nil, false
	}
	frame = make([]byte, 14, 14+len(l3))
	binary.BigEndian.PutUint16(frame[12:], etype)
	return append(frame, l3...), true
}

// readEthernetFrames reads a capture's frames as Ethernet frames, each cut to
// maxTestFrame, with the clock the Go engine would keep: timestamps clamped so they
// never go back.
func readEthernetFrames(t testing.TB, path string) (frames [][]byte, times []int64, skipped int) {
	src, err := offline.Open(path)
	if err != nil {
		t.Skipf("not a capture fparser reads: %v", err)
	}
	defer src.Close()
	var f offline.Frame
	var clock int64
	for {
		err := src.Next(&f)
		if err == io.EOF {
			break
		}
		if err != nil {
			break // a damaged tail: compare what was read
		}
		data, ok := asEthernet(&f)
		if !ok || len(data) < 14 {
			skipped++
			continue
		}
		clock = max(clock, f.Time)
		frames = append(frames, slices.Clone(data[:min(len(data), maxTestFrame)]))
		times = append(times, clock)
	}
	return frames, times, skipped
}

func differential(t *testing.T, d *Datapath, path string, places ...userspace.Where) {
	frames, times, skipped := readEthernetFrames(t, path)
	if len(frames) == 0 {
		t.Skipf("no frames that Ethernet can carry (%d skipped)", skipped)
	}
	if len(places) == 0 {
		places = []userspace.Where{1}
	}
	if len(places) > 1 {
		// A TC test run refuses a frame shorter than its network header (an
		// IPv6 one, at most): both sides leave those out.
		var keep []int
		for i, f := range frames {
			if len(f) >= 14+40 {
				keep = append(keep, i)
			}
		}
		frames, times = pick(frames, keep), pick(times, keep)
		if len(frames) == 0 {
			t.Skip("no frame long enough for a TC test run")
		}
	}
	compareSidesAt(t, d, frames, times, places)
}

// pick returns the elements of s at the indices given.
func pick[T any](s []T, indices []int) []T {
	out := make([]T, len(indices))
	for i, j := range indices {
		out[i] = s[j]
	}
	return out
}

// compareSides runs frames through both datapaths, from empty, with d's
// configuration, and compares them: counters, flows (statistics included when on),
// and with history the packet records.
func compareSides(t *testing.T, d *Datapath, frames [][]byte, times []int64) {
	compareSidesAt(t, d, frames, times, []userspace.Where{1})
}

// compareSidesAt is compareSides with each frame seen at each of places in turn.
func compareSidesAt(t *testing.T, d *Datapath, frames [][]byte, times []int64, places []userspace.Where) {
	clearMaps(t, d)
	kern := kernelSide(t, d, frames, times, places)
	gos := goSide(frames, times, d.cfg, places)
	kc, gc := kern.counters, gos.counters
	kc.RingbufFailed, kc.LostInserts, kc.RecordsLost = 0, 0, 0
	// Whether the next packet of a flow past its timeout ends it in place (a
	// restart) or a sweep ended it before (a new flow) depends on when sweeps run:
	// the Go side sweeps as its clock moves, the kernel side here never.
	kc.Restarts, gc.Restarts = 0, 0
	if kern.counters.Restarts != kern.ends {
		t.Errorf("the kernel counted %d restarts and sent %d ends", kern.counters.Restarts, kern.ends)
	}
	if kern.counters.RingbufFailed != 0 || kern.counters.LostInserts != 0 || kern.counters.RecordsLost != 0 {
		t.Errorf("kernel lost %d events, %d inserts and %d records", kern.counters.RingbufFailed, kern.counters.LostInserts, kern.counters.RecordsLost)
	}
	if len(places) == 2 && kern.counters.Accepted != 2*kern.counters.Duplicates {
		t.Errorf("every packet seen twice: %d accepted, %d of them duplicates; want half", kern.counters.Accepted, kern.counters.Duplicates)
	}
	comparePackets(t, kern.packets, gos.packets)
	if kc != gc {
		t.Errorf("counters differ:\nkernel %+v\n    go %+v", kc, gc)
	}
	var diffs []string
	for r, n := range gos.records {
		if kern.records[r] != n {
			diffs = append(diffs, fmt.Sprintf("go %d, kernel %d: %s", n, kern.records[r], describe(r)))
		}
	}
	for r, n := range kern.records {
		if _, ok := gos.records[r]; !ok {
			diffs = append(diffs, fmt.Sprintf("go 0, kernel %d: %s", n, describe(r)))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Errorf("%d flow records differ (of %d):\n  %s", len(diffs), len(gos.records), strings.Join(diffs[:min(6, len(diffs))], "\n  "))
	}
}

// comparePackets compares the packet records of each flow key.
func comparePackets(t *testing.T, kern, gos map[userspace.Key][]userspace.PacketRecord) {
	t.Helper()
	var diffs []string
	n := 0
	for k, g := range gos {
		n += len(g)
		if kr := kern[k]; !slices.Equal(kr, g) {
			i := 0
			for i < min(len(kr), len(g)) && kr[i] == g[i] {
				i++
			}
			diffs = append(diffs, fmt.Sprintf("%v - %v proto %d: go %d records, kernel %d, first difference at %d", k.EndpointA(), k.EndpointB(), k.Proto, len(g), len(kr), i))
		}
	}
	for k, kr := range kern {
		if _, ok := gos[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%v - %v proto %d: go 0 records, kernel %d", k.EndpointA(), k.EndpointB(), k.Proto, len(kr)))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Errorf("packet records of %d flow keys differ (of %d keys, %d records):\n  %s", len(diffs), len(gos), n, strings.Join(diffs[:min(6, len(diffs))], "\n  "))
	}
}

func describe(r flowRecord) string {
	return fmt.Sprintf("proto %d %v - %v vlan %d reused=%v state %+v", r.key.Proto, r.key.EndpointA(), r.key.EndpointB(), r.key.VLAN, r.reused, r.state)
}

func clearMaps(t testing.TB, d *Datapath) {
	emptyMap(t, d.objs.Flows)
	emptyMap(t, d.objs.Frags)
	zero := make([]uint64, ebpf.MustPossibleCPU())
	for i := range uint32(statCount) {
		if err := d.objs.Stats.Put(i, zero); err != nil {
			t.Fatal(err)
		}
	}
}

func loadForTest(t testing.TB, cfg Config) *Datapath {
	requireBPF(t)
	cfg.testClock = true
	d, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestDifferentialTestdata: every capture in testdata, through the kernel and through
// Go, gives the same flows (statistics, TCP quality and tunnels included), counters,
// and reuse events: with
// the default timeouts, and with timeouts short enough that the datapath ends flows
// itself on idle, FIN and active timeouts; and with the packet history on, the same
// packet records, all of them or the first 3 of each flow.
func TestDifferentialTestdata(t *testing.T) {
	paths, _ := filepath.Glob("../../testdata/*.pcap*")
	short := userspace.Timeouts{Idle: 2 * time.Second, FIN: 100 * time.Millisecond, Active: 5 * time.Second}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"default", Config{Timeouts: userspace.DefaultTimeouts}},
		{"short", Config{Timeouts: short}},
		{"statistics", Config{Timeouts: userspace.DefaultTimeouts, Statistics: true}},
		{"statistics-short", Config{Timeouts: short, Statistics: true}},
		{"quality", Config{Timeouts: userspace.DefaultTimeouts, TCPQuality: true}},
		{"quality-statistics-short", Config{Timeouts: short, Statistics: true, TCPQuality: true}},
		{"decap", Config{Timeouts: userspace.DefaultTimeouts, Decap: true}},
		{"decap-quality-statistics-history-short", Config{Timeouts: short, Decap: true, Statistics: true, TCPQuality: true, HistoryLimit: 3}},
		{"history", Config{Timeouts: userspace.DefaultTimeouts, HistoryLimit: -1, Statistics: true}},
		{"history-3-short", Config{Timeouts: short, HistoryLimit: 3}},
		// Every packet seen twice, arriving and then leaving, as by a router:
		// counted once, and once a duplicate.
		{"seen-twice", Config{Timeouts: short, HistoryLimit: 3, Statistics: true}},
		// The same with attribution, which must change no count.
		{"seen-twice-processes", Config{Timeouts: short, HistoryLimit: 3, Statistics: true, Owners: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := loadForTest(t, tc.cfg)
			places := []userspace.Where{1}
			if strings.HasPrefix(tc.name, "seen-twice") {
				places = append(places, 1|userspace.WhereEgress)
			}
			for _, p := range paths {
				if strings.HasSuffix(p, ".csv") {
					continue
				}
				t.Run(filepath.Base(p), func(t *testing.T) { differential(t, d, p, places...) })
			}
		})
	}
}

// TestDifferentialCorpus runs every capture of ../shared/corpus, when present.
func TestDifferentialCorpus(t *testing.T) {
	manifest := filepath.Join("..", "..", "..", "shared", "corpus", "MANIFEST.tsv")
	f, err := os.Open(manifest)
	if err != nil {
		t.Skip("no ../shared/corpus beside the module: corpus differential skipped")
	}
	defer f.Close()
	to := userspace.Timeouts{Idle: 30 * time.Second, FIN: 5 * time.Second}
	// With tunnels opened, statistics, the TCP quality, and the first 8 packets of
	// each flow: every capture's records fit in the ring buffer while the test runs.
	d := loadForTest(t, Config{Timeouts: to, Decap: true, Statistics: true, TCPQuality: true, HistoryLimit: 8})
	sc := bufio.NewScanner(f)
	sc.Scan()
	for sc.Scan() {
		path := strings.SplitN(sc.Text(), "\t", 2)[0]
		t.Run(path, func(t *testing.T) { differential(t, d, filepath.Join(filepath.Dir(manifest), path)) })
	}
}

// FuzzDifferential mutates frames and checks that the kernel and Go count each the
// same way: a frame is sent twice, a second apart, so that both the creation and the
// update of its flow are compared.
func FuzzDifferential(f *testing.F) {
	paths, _ := filepath.Glob("../../testdata/*.pcap*")
	for _, p := range paths {
		if strings.HasSuffix(p, ".csv") {
			continue
		}
		src, err := offline.Open(p)
		if err != nil {
			continue
		}
		var fr offline.Frame
		for src.Next(&fr) == nil {
			if fr.LinkType == offline.LinkEthernet {
				f.Add(slices.Clone(fr.Data))
			}
		}
		src.Close()
	}
	to := userspace.Timeouts{Idle: 2 * time.Second, FIN: 500 * time.Millisecond}
	d := loadForTest(f, Config{Timeouts: to, Decap: true, Statistics: true, TCPQuality: true, HistoryLimit: -1})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > maxTestFrame {
			t.Skip("BPF_PROG_TEST_RUN takes 14 to a page of bytes")
		}
		base := int64(1e18)
		compareSides(t, d, [][]byte{frame, frame}, []int64{base, base + 1e9})
	})
}

// emptyMap removes every entry of a hash map.
func emptyMap(t testing.TB, m *ebpf.Map) {
	var keys [][]byte
	var k, v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, slices.Clone(k))
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Fatal(err)
		}
	}
}
