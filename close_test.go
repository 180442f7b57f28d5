package fparser_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fparser/fparser"
)

// waitDone fails the test if the parser has not finished within a minute: a method
// called from a callback that waits for the callback itself would hang it forever.
func waitDone(t *testing.T, p *fparser.Parser) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(time.Minute):
		t.Fatal("the parser has not finished after a minute: a callback hangs")
	}
}

// TestCloseFromACallbackReturnsAnError: Close called from a callback stops the parser
// and returns ErrInCallback at once, instead of waiting for the callback it is called
// from; so do Wait, WaitContext and Run, from a flow's callback and from the kill
// callback. The flows active then end as stopped, and the rest of the capture is not
// read.
func TestCloseFromACallbackReturnsAnError(t *testing.T) {
	const n = 100
	path := manyFlows(t, n)
	var p *fparser.Parser
	errs := map[string]error{}
	reasons := map[fparser.EndReason]int{}
	var delivered uint64
	p, err := fparser.New(path, &fparser.Options{
		FlowTimeout: 2 * time.Second,
		Logger:      discard(),
		OnUDP: func(f fparser.Flow) {
			reasons[f.EndReason]++
			delivered += f.PacketCount()
			if len(errs) == 0 {
				errs["Close"] = p.Close()
				errs["Wait"] = p.Wait()
				errs["WaitContext"] = p.WaitContext(context.Background())
				errs["Run"] = p.Run(context.Background())
			}
		},
		OnKill: func() {
			errs["Close from OnKill"] = p.Close()
			errs["Wait from OnKill"] = p.Wait()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	waitDone(t, p)
	for _, m := range []string{"Close", "Wait", "WaitContext", "Run", "Close from OnKill", "Wait from OnKill"} {
		if !errors.Is(errs[m], fparser.ErrInCallback) {
			t.Errorf("%s called from a callback returned %v, want ErrInCallback", m, errs[m])
		}
	}
	in := p.Info()
	// The first flow ends when the third packet's time comes; the second, active,
	// ends as stopped.
	if reasons[fparser.EndIdle] != 1 || reasons[fparser.EndStopped] != 1 || in.PacketsSeen != 2 || delivered != in.PacketsAccepted {
		t.Errorf("ended %v after %d of %d packets, %d delivered of %d accepted; want one idle flow, one stopped, after 2 packets, all delivered",
			reasons, in.PacketsSeen, n, delivered, in.PacketsAccepted)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close after the end: %v", err)
	}
}

// TestCloseFromAnotherGoroutineWaits: Close called on a goroutine a callback started
// is not the callback's own call: it waits until the parser has finished, and
// returns nil.
func TestCloseFromAnotherGoroutineWaits(t *testing.T) {
	path := manyFlows(t, 100)
	type result struct {
		err      error
		finished bool // the parser had finished when Close returned
	}
	closed := make(chan result, 1)
	var p *fparser.Parser
	started := false
	p, err := fparser.New(path, &fparser.Options{
		FlowTimeout: 2 * time.Second,
		OnUDP: func(fparser.Flow) {
			if started {
				return
			}
			started = true
			go func() {
				err := p.Close()
				select {
				case <-p.Done():
					closed <- result{err, true}
				default:
					closed <- result{err, false}
				}
			}()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	waitDone(t, p)
	select {
	case r := <-closed:
		if r.err != nil || !r.finished {
			t.Errorf("Close from another goroutine returned %v, the parser finished: %v; want nil, true", r.err, r.finished)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close from another goroutine has not returned a minute after the parser finished")
	}
}

// TestMethodsFromACallback: the parser's other methods, called from a flow's callback
// and from the kill callback, return what they say, and the parser runs to its end.
func TestMethodsFromACallback(t *testing.T) {
	const n = 50
	path := manyFlows(t, n)
	var p *fparser.Parser
	flows := 0
	var onUDP func(fparser.Flow)
	onUDP = func(f fparser.Flow) {
		flows++
		in := p.Info()
		active := 0
		for range p.FlowsSorted(fparser.ByPackets) {
			active++
		}
		for range p.Flows() {
			active--
		}
		ended := 0
		for _, k := range in.FlowsEnded {
			ended += int(k)
		}
		// A flow a second, one packet each, a flow timeout of 2 s: at most one is
		// active when another ends.
		if active != 0 || in.UDPFlows > 1 || in.UDPFlows+ended != int(in.PacketsSeen) || flows > ended {
			t.Errorf("flow %d: Flows and FlowsSorted differ by %d; %d active, %d ended, %d packets", flows, active, in.UDPFlows, ended, in.PacketsSeen)
		}
		if _, ok := p.FindFlow(fparser.UDP, 0, f.Src, f.Dst); ok {
			t.Errorf("flow %d: FindFlow finds the flow that ended", flows)
		}
		if read, size := p.Progress(); read <= 0 || read > size {
			t.Errorf("flow %d: Progress %d of %d", flows, read, size)
		}
		if err := p.SetFilter("udp"); err != nil {
			t.Errorf("flow %d: SetFilter: %v", flows, err)
		}
		p.SetTCPCallback(nil)
		p.SetUDPCallback(onUDP)
		p.Start()
		select {
		case <-p.Done():
			t.Errorf("flow %d: Done is closed while a callback runs", flows)
		default:
		}
	}
	killed := false
	p, err := fparser.New(path, &fparser.Options{
		FlowTimeout: 2 * time.Second,
		OnUDP:       onUDP,
		OnKill: func() {
			killed = true
			in := p.Info()
			n := 0
			for range p.Flows() {
				n++
			}
			if read, size := p.Progress(); n != 0 || in.UDPFlows != 0 || read != size {
				t.Errorf("in OnKill: %d flows, Info %d; read %d of %d", n, in.UDPFlows, read, size)
			}
			p.Stop()
			select {
			case <-p.Done():
				t.Error("Done is closed while the kill callback runs")
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	waitDone(t, p)
	if err := p.Wait(); err != nil || flows != n || !killed {
		t.Errorf("Wait: %v; %d flows delivered, want %d; kill callback ran: %v", err, flows, n, killed)
	}
}
