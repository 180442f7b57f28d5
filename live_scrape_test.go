package fparser_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testharness"
	"github.com/fparser/fparser/metrics"
)

// The scrape test's load. 50,000 flows of 10 packets at 100,000 packets/s is 5 s of
// traffic: a reader kept from the engine's lock for more than half a second
// overflows the default ring buffer (4 MiB, 80 bytes a record), and go test stays
// short. Under the race detector, which makes the reader and every scraper about ten
// times dearer, two cores cannot serve that rate and the scrapers both, whatever the
// locks: there the test sends 20,000 packets/s and runs fewer scrapers, still in
// tight loops, so that the race detector watches the same paths. (At 40,000 the
// reader under the race detector fell behind by a few percent of the records when
// the other packages' tests ran beside it on two cores, with or without scrapers.)
var (
	scrapeFlows = raceScaled(50000, 20000)
	scrapeRate  = raceScaled(100000, 20000)
)

const (
	scrapePackets = 10 // per flow, and the history's length: every packet is recorded
	// Flows iterates every flow, its history copied under the engine's lock a chunk
	// at a time: one caller, back to back.
	scrapeFlowsEvery = time.Millisecond
	// Close must not wait on the scrapers for longer.
	scrapeCloseLimit = 5 * time.Second
)

// Callers in tight loops: /metrics over HTTP, Info, and Find of the generator's
// flows. The race detector makes every scrape about ten times dearer, and on two
// cores as many scrapers in tight loops would take all the CPU from the reader of
// the ring buffer, whatever the locks: under it the test runs one or two of each,
// the reader then having a fair share of the CPU when other tests run beside it.
var (
	scrapeHTTPCallers = raceScaled(64, 2)
	scrapeInfoCallers = raceScaled(8, 1)
	scrapeFindCallers = raceScaled(2, 1)
)

func raceScaled(n, underRace int) int {
	if raceDetector {
		return underRace
	}
	return n
}

// scrapeResult is what the parser's side reports. Gen… are the generator's flows,
// to peerDst.
type scrapeResult struct {
	Accepted, Stored, NotStored, EventsLost uint64
	Reported, ReportedPackets, Incomplete   uint64
	GenFlows, GenPackets, GenShort          uint64
	GenMaxPackets                           uint64
	Scrapes, ScrapeErrors                   uint64
	InfoCalls, FindCalls, FlowsRuns         uint64
	Seconds, CloseSeconds                   float64 // from ready to closed; Close alone
	PeakRSSKiB                              int
}

// TestLiveScrapesLoseNoRecord counts flows with packet records while the parser is
// scraped at any rate: /metrics, Info and Find in tight loops from before the
// first packet until the parser is closed. Reading the kernel's map for them must
// never keep the reader of the ring buffer from the engine, so no record is lost
// and no history is incomplete.
func TestLiveScrapesLoseNoRecord(t *testing.T) {
	liveSkip(t)
	began := time.Now()
	host, peer := liveNamespaces(t)
	parser := testharness.Command(host, roleScrapeParser)
	parser.Stderr = os.Stderr
	stdin, err := parser.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := testharness.Start(t, parser, "scrape parser ready")
	// Whatever the code under test does, the test ends.
	watchdog := time.AfterFunc(time.Minute, func() { parser.Process.Kill() })
	defer watchdog.Stop()
	var said strings.Builder // the parser's output, for a failure's message
	next := func(prefix string) (string, bool) {
		for lines.Scan() {
			said.WriteString(lines.Text() + "\n")
			if rest, ok := strings.CutPrefix(strings.TrimSpace(lines.Text()), prefix); ok {
				return rest, true
			}
		}
		return "", false
	}

	gen := testharness.Command(peer, roleScrapeGenerator)
	b, err := gen.CombinedOutput()
	if err != nil {
		t.Fatalf("generator: %v\n%s", err, b)
	}
	var sent, dropped uint64
	var seconds float64
	for _, l := range strings.Split(string(b), "\n") {
		fmt.Sscanf(strings.TrimSpace(l), "scrape sent %d dropped %d in %f", &sent, &dropped, &seconds)
	}
	if sent != uint64(scrapeFlows*scrapePackets) {
		t.Fatalf("the generator sent %d frames, not %d:\n%s", sent, scrapeFlows*scrapePackets, b)
	}
	fmt.Fprintf(stdin, "sent %d dropped %d\n", sent, dropped)
	j, ok := next("scrape result ")
	if !ok {
		t.Fatalf("no result from the parser:\n%s", &said)
	}
	var res scrapeResult
	if err := json.Unmarshal([]byte(j), &res); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() { // the rest of its output, read before Wait
		said.WriteString(lines.Text() + "\n")
	}
	if err := parser.Wait(); err != nil {
		t.Errorf("the parser's side failed: %v\n%s", err, &said)
	}

	t.Logf("sent %d frames in %.1f s (%.0f k/s), %d dropped by the veth; accepted %d; records %d stored, %d not; %d events lost; %d flows reported (%d the generator's, with %d packets), %d incomplete",
		sent, seconds, float64(sent)/seconds/1e3, dropped, res.Accepted, res.Stored, res.NotStored, res.EventsLost,
		res.Reported, res.GenFlows, res.GenPackets, res.Incomplete)
	t.Logf("in %.1f s: %d scrapes (%.0f/s), %d Info calls (%.0f/s), %d Find calls (%.0f/s), %d Flows iterations; Close took %.2f s; parser's peak RSS %d MiB; test %v",
		res.Seconds, res.Scrapes, float64(res.Scrapes)/res.Seconds, res.InfoCalls, float64(res.InfoCalls)/res.Seconds,
		res.FindCalls, float64(res.FindCalls)/res.Seconds, res.FlowsRuns, res.CloseSeconds, res.PeakRSSKiB>>10, time.Since(began).Round(100*time.Millisecond))

	if res.NotStored != 0 || res.Incomplete != 0 || res.GenShort != 0 {
		t.Errorf("%d packet records lost, %d flows incomplete, %d of the generator's flows with fewer records than packets", res.NotStored, res.Incomplete, res.GenShort)
	}
	// No flow has more than scrapePackets packets, so every accepted packet is
	// recorded, and counted in a reported flow.
	if res.Stored != res.Accepted || res.ReportedPackets != res.Accepted {
		t.Errorf("accepted %d packets, stored %d records, reported %d packets", res.Accepted, res.Stored, res.ReportedPackets)
	}
	// The veth's drop counter also counts frames the host's stack dropped after the
	// XDP hook: it bounds what the parser may have missed. A flow is missing only
	// if all its packets are.
	if res.GenPackets > sent || res.GenPackets+dropped < sent || res.GenMaxPackets > scrapePackets ||
		res.GenFlows > uint64(scrapeFlows) || res.GenFlows+dropped/scrapePackets < uint64(scrapeFlows) {
		t.Errorf("the generator's flows: %d reported with %d packets, at most %d each; %d flows of %d packets sent, %d frames dropped",
			res.GenFlows, res.GenPackets, res.GenMaxPackets, scrapeFlows, scrapePackets, dropped)
	}
	if res.Scrapes < uint64(raceScaled(500, 50)) || res.InfoCalls < uint64(raceScaled(100, 10)) || res.FindCalls < 1000 || res.FlowsRuns < 3 || res.ScrapeErrors != 0 {
		t.Errorf("the scrapers hardly ran: %d scrapes (%d failed), %d Info calls, %d Find calls, %d Flows iterations",
			res.Scrapes, res.ScrapeErrors, res.InfoCalls, res.FindCalls, res.FlowsRuns)
	}
	if res.CloseSeconds > scrapeCloseLimit.Seconds() {
		t.Errorf("Close took %.1f s under the scrapers, which were stopped after %v", res.CloseSeconds, scrapeCloseLimit)
	}
}

// The roles of TestLiveScrapesLoseNoRecord.
var (
	roleScrapeParser    = testharness.Role("scrape-parser", liveScrapesParser)
	roleScrapeGenerator = testharness.Role("scrape-gen", liveScrapesGenerator)
)

// liveScrapesParser counts with packet records in the host namespace while its
// scrapers run, until the test says what was sent; then it waits until the kernel
// has counted that, closes, and reports.
func liveScrapesParser(t testing.TB) {
	var mu sync.Mutex
	var res scrapeResult
	count := func(f fparser.Flow) {
		mu.Lock()
		defer mu.Unlock()
		res.Reported++
		res.ReportedPackets += f.PacketCount()
		if f.HistoryIncomplete() {
			res.Incomplete++
		}
		if f.Protocol == fparser.UDP && f.Dst == peerDst {
			res.GenFlows++
			res.GenPackets += f.PacketCount()
			res.GenMaxPackets = max(res.GenMaxPackets, f.PacketCount())
			if uint64(f.HistoryLen()) != f.PacketCount() {
				res.GenShort++
			}
		}
	}
	p, err := fparser.Open(liveIface, &fparser.Options{Attach: "xdp", Packets: scrapePackets, FlowTimeout: time.Hour, OnTCP: count, OnUDP: count, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metrics.Serve("127.0.0.1:0", metrics.NewCollector(p, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(n int, do func(i int)) {
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; ; i += n {
					select {
					case <-stop:
						return
					default:
						do(i)
					}
				}
			}()
		}
	}
	var scrapes, scrapeErrors, infoCalls, findCalls, flowsRuns atomic.Uint64
	url := "http://" + srv.Addr().String() + "/metrics"
	// One kept-alive connection per caller: a tight loop of new ones would run out
	// of ports.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: scrapeHTTPCallers}}
	loop(scrapeHTTPCallers, func(int) {
		resp, err := client.Get(url)
		if err != nil {
			scrapeErrors.Add(1)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			scrapeErrors.Add(1)
			return
		}
		scrapes.Add(1)
	})
	loop(scrapeInfoCallers, func(int) {
		p.Info()
		infoCalls.Add(1)
	})
	loop(scrapeFindCallers, func(i int) {
		p.FindUDPFlow(peerSource(i%scrapeFlows), peerDst)
		findCalls.Add(1)
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(scrapeFlowsEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for range p.Flows() {
				}
				flowsRuns.Add(1)
			}
		}
	}()
	ready := time.Now()
	fmt.Println("scrape parser ready")

	var sent, dropped uint64
	if _, err := fmt.Fscanf(os.Stdin, "sent %d dropped %d\n", &sent, &dropped); err != nil {
		t.Fatalf("reading what was sent: %v", err)
	}
	// Frames may still be on their way through the veth: until the kernel has
	// counted every frame that certainly arrived, or 5 s. A frame missing after that
	// is the checks' to report.
	testharness.Poll(5*time.Second, func() bool { return p.Info().PacketsAccepted+dropped >= sent })
	closing := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err = <-closed:
		close(stop)
	case <-time.After(scrapeCloseLimit):
		// The records lost are counted by now; what is left to see is how long
		// Close takes.
		close(stop)
		err = <-closed
	}
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	wg.Wait()

	in := p.Info()
	mu.Lock()
	defer mu.Unlock()
	res.Accepted, res.Stored, res.NotStored, res.EventsLost = in.PacketsAccepted, in.StoredTCPPackets+in.StoredUDPPackets, in.PacketsNotStored, in.EventsLost
	res.Scrapes, res.ScrapeErrors = scrapes.Load(), scrapeErrors.Load()
	res.InfoCalls, res.FindCalls, res.FlowsRuns = infoCalls.Load(), findCalls.Load(), flowsRuns.Load()
	res.Seconds, res.CloseSeconds = end.Sub(ready).Seconds(), end.Sub(closing).Seconds()
	res.PeakRSSKiB = peakRSS()
	j, _ := json.Marshal(res)
	fmt.Printf("scrape result %s\n", j)
}

// liveScrapesGenerator sends scrapeFlows UDP flows of scrapePackets packets from the
// peer namespace at scrapeRate, interleaved: packet j of every flow before packet
// j+1 of any, so that the map holds every flow from the first second on.
func liveScrapesGenerator(t testing.TB) {
	s := newPeerSender(t)
	dropped0 := txDropped(t)
	began := time.Now()
	failed := 0
	for n := range scrapeFlows * scrapePackets {
		// Paced in small bursts: the veth's ring holds a few hundred frames. The
		// sleep sets the rate; it waits for nothing.
		if n%64 == 0 {
			if ahead := time.Duration(n)*time.Second/time.Duration(scrapeRate) - time.Since(began); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		for s.send(n%scrapeFlows) != nil {
			if failed++; failed > 1000 {
				t.Fatalf("sending frame %d: too many failed sends", n)
			}
		}
	}
	fmt.Printf("scrape sent %d dropped %d in %f\n", scrapeFlows*scrapePackets, txDropped(t)-dropped0, time.Since(began).Seconds())
	t.Logf("%d sends failed and were retried", failed)
}
