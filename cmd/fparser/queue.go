package main

import (
	"sync/atomic"

	"github.com/fparser/fparser"
)

// batchSize is how many flows the parser's callback gathers before it hands them to
// the writer goroutine: one channel operation per batch rather than per flow.
const batchSize = 256

// queueDepth is how many batches may wait for the writer goroutine before the
// callback, and so the parser, waits for it.
const queueDepth = 4

// flowQueue formats and writes flows on a goroutine of its own, so that the parser's
// goroutine goes on counting meanwhile; flows are written in the order put received
// them. put is for one goroutine, the parser's callbacks.
type flowQueue struct {
	out     *flowWriter
	size    int    // flows per batch: 1 on a terminal, to show each flow as it ends
	onError func() // called once, on the writer goroutine, when a write fails
	batch   []fparser.Flow
	full    chan []fparser.Flow
	free    chan []fparser.Flow // written batches, back for put to fill again
	done    chan struct{}
	failed  atomic.Bool // a write failed: put drops what comes
	err     error       // the first write error, for close
}

// startFlowQueue starts the writer goroutine. out belongs to it until close returns.
func startFlowQueue(out *flowWriter, onError func()) *flowQueue {
	q := &flowQueue{
		out:     out,
		size:    batchSize,
		onError: onError,
		full:    make(chan []fparser.Flow, queueDepth),
		free:    make(chan []fparser.Flow, queueDepth+1),
		done:    make(chan struct{}),
	}
	if out.flush {
		q.size = 1
	}
	q.batch = make([]fparser.Flow, 0, q.size)
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
		q.batch = make([]fparser.Flow, 0, q.size)
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
		select {
		case q.free <- batch[:0]:
		default:
		}
	}
}
