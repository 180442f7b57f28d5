package main

import (
	"sync/atomic"

	"github.com/fparser/fparser"
)

// batchSize is how many flows the parser's callback gathers before it hands them to
// the writer goroutine: one channel operation per batch rather than per flow.
const batchSize = 256

// maxBatches is how many batches there may be: one filling, one being written, the
// others waiting for the writer goroutine. The callback, and so the parser, then waits
// for the writer to give one back; a fixed set, so none is allocated after the first.
const maxBatches = 6

// flowQueue formats and writes flows on a goroutine of its own, so that the parser's
// goroutine goes on counting meanwhile; flows are written in the order put received
// them. put is for one goroutine, the parser's callbacks.
type flowQueue struct {
	out     *flowWriter
	live    bool   // flush whenever the queue is empty: each flow shows as it ends
	size    int    // flows per batch: 1 on a terminal, to show each flow as it ends
	onError func() // called once, on the writer goroutine, when a write fails
	batch   []fparser.Flow
	batches int // made so far
	full    chan []fparser.Flow
	free    chan []fparser.Flow // written batches, back for put to fill again
	done    chan struct{}
	failed  atomic.Bool // a write failed: put drops what comes
	err     error       // the first write error, for close
}

// startFlowQueue starts the writer goroutine. out belongs to it until close returns.
// A live queue hands each flow over as it comes and flushes the output whenever it
// has written all it was given, as tcpdump -l does: flows end in sweeps, so a flow
// waits for the rest of its sweep at most. A replay's queue hands flows over in
// batches and leaves flushing to the writer's buffer.
func startFlowQueue(out *flowWriter, live bool, onError func()) *flowQueue {
	q := &flowQueue{
		out:     out,
		live:    live,
		size:    batchSize,
		onError: onError,
		full:    make(chan []fparser.Flow, maxBatches),
		free:    make(chan []fparser.Flow, maxBatches),
		done:    make(chan struct{}),
	}
	if out.flush || live {
		q.size = 1
	}
	q.batch, q.batches = make([]fparser.Flow, 0, q.size), 1
	go q.run()
	return q
}

func (q *flowQueue) put(f *fparser.Flow) {
	if q.failed.Load() {
		return // nowhere to write: the parser is stopping
	}
	q.batch = append(q.batch, *f)
	if len(q.batch) < q.size {
		return
	}
	q.full <- q.batch
	select {
	case q.batch = <-q.free:
	default:
		if q.batches < maxBatches {
			q.batches++
			q.batch = make([]fparser.Flow, 0, q.size)
		} else {
			q.batch = <-q.free
		}
	}
}

// close hands over the last flows, waits until the writer goroutine has written them
// all and ended, and returns the first write error.
func (q *flowQueue) close() error {
	if len(q.batch) > 0 {
		q.full <- q.batch
	}
	q.batch = nil
	close(q.full)
	<-q.done
	return q.err
}

func (q *flowQueue) run() {
	defer close(q.done)
	for batch := range q.full {
		for i := range batch {
			if q.err != nil {
				break
			}
			if err := q.out.write(&batch[i]); err != nil {
				q.err = err
				q.failed.Store(true)
				q.onError()
			}
		}
		clear(batch) // let go of the flows' packet histories
		q.free <- batch[:0]
		if q.live && q.err == nil && len(q.full) == 0 {
			if err := q.out.Flush(); err != nil {
				q.err = err
				q.failed.Store(true)
				q.onError()
			}
		}
	}
}
