package ipfix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// retireEvery is how many messages a send writes between asking the kernel what the
// collector has acknowledged: a syscall per message would cost a fifth of the
// exporter's time. Stats, a failure and Close always ask.
const retireEvery = 32

// ackGrace is how long, before it gives up on a TCP connection for a timeout, the
// exporter waits for acknowledgements that the collector's host may delay: Linux
// delays one by up to 200 ms. Without it, a message the collector's host had taken
// could count as not sent.
const ackGrace = 250 * time.Millisecond

// maxRetryInterval caps the wait before the exporter tries a failed collector again;
// a failure more than this after the one before starts again from RetryInterval.
const maxRetryInterval = time.Minute

// installLocked makes conn the connection, a new transport session: sequence
// numbers start again from 0 and the templates are due. mu held, or no one else
// has the exporter yet.
func (e *Exporter) installLocked(conn net.Conn) {
	e.smu.Lock()
	defer e.smu.Unlock()
	e.conn, e.connTemplates, e.seq, e.failure = conn, false, 0, nil
	e.raw, e.wrote, e.pending, e.head = nil, 0, e.pending[:0], 0
	if sc, ok := conn.(syscall.Conn); ok {
		e.raw, _ = sc.SyscallConn()
	}
}

// downLocked returns why nothing is to be sent now, or nil.
func (e *Exporter) downLocked() error {
	switch {
	case e.closed:
		return fmt.Errorf("ipfix: exporter to %s: %w", e.cfg.Address, net.ErrClosed)
	case e.conn == nil, time.Now().Before(e.resumeAt):
		return fmt.Errorf("ipfix: collector taken as down, message not sent: %w", e.failure)
	}
	return nil
}

// writeLocked writes b, a finished message carrying records and flows, and counts
// it. It waits at most the write timeout; a failure is counted, recorded and
// returned.
func (e *Exporter) writeLocked(b []byte, records, flows int, templates bool) error {
	if err := e.downLocked(); err != nil {
		e.smu.Lock()
		e.stats.notSent(records, flows)
		e.smu.Unlock()
		return err
	}
	h := b[:16]
	binary.BigEndian.PutUint16(h[0:], 10)
	binary.BigEndian.PutUint16(h[2:], uint16(len(b)))
	binary.BigEndian.PutUint32(h[4:], uint32(e.now().Unix()))
	binary.BigEndian.PutUint32(h[8:], e.seq)
	binary.BigEndian.PutUint32(h[12:], e.cfg.ObservationDomain)

	conn := e.conn
	e.smu.Lock()
	deadline := time.Now().Add(e.writeTimeout)
	if e.closing && e.closeBy.Before(deadline) {
		deadline = e.closeBy
	}
	conn.SetWriteDeadline(deadline) // on a closed connection, Write fails too
	e.writing, e.deadline = conn, deadline
	e.smu.Unlock()

	n, err := conn.Write(b)
	if err != nil && e.tcp && errors.Is(err, os.ErrDeadlineExceeded) {
		e.awaitAcks()
	}

	e.smu.Lock()
	defer e.smu.Unlock()
	e.writing = nil
	e.wrote += uint64(n)
	if err == nil {
		// Sequence numbers count the data records sent, so a collector can count
		// what it missed.
		e.seq += uint32(records)
		e.written++
		e.writtenRecords += uint64(records)
		e.sinceTmpl++
		if templates {
			e.connTemplates = true
		}
		if e.tcp {
			e.pending = append(e.pending, pending{e.wrote, records, flows})
			if (len(e.pending)-e.head)%retireEvery == 0 {
				e.retireLocked()
			}
		} else {
			e.stats.sent(records, flows)
			e.lastSent, e.canTakeBack = pending{records: records, flows: flows}, true
		}
		return nil
	}
	e.stats.Errors++
	e.stats.notSent(records, flows)
	err = fmt.Errorf("ipfix: send to %s over %s: %w", e.cfg.Address, e.cfg.Network, err)
	e.noteLocked(err)
	switch {
	case e.tcp:
		// Whatever the cause, the stream may hold part of the message now.
		e.dropLocked(err)
	case errors.Is(err, syscall.ECONNREFUSED):
		e.takeBackLocked()
	case errors.Is(err, os.ErrDeadlineExceeded):
		e.failure = err
		e.resumeAt = time.Now().Add(e.nextRetryLocked())
	}
	return err
}

// awaitAcks waits up to ackGrace for the collector to acknowledge the messages
// written on the connection. mu held, smu not.
func (e *Exporter) awaitAcks() {
	for deadline := time.Now().Add(ackGrace); ; time.Sleep(5 * time.Millisecond) {
		e.smu.Lock()
		e.retireLocked()
		left := len(e.pending) - e.head
		e.smu.Unlock()
		if left == 0 || !time.Now().Before(deadline) {
			return
		}
	}
}

// noteLocked keeps the first error, for Close.
func (e *Exporter) noteLocked(err error) {
	if e.err == nil {
		e.err = err
	}
}

// retireLocked counts as sent the messages the collector has acknowledged. While a
// write is in progress the kernel holds bytes that wrote does not count yet: the
// acknowledged part then looks smaller than it is, never larger. smu held.
func (e *Exporter) retireLocked() {
	if !e.tcp || e.head == len(e.pending) || e.raw == nil {
		return
	}
	q, err := unacknowledged(e.raw)
	if err != nil {
		return
	}
	var acked uint64
	if e.wrote > q {
		acked = e.wrote - q
	}
	for e.head < len(e.pending) && e.pending[e.head].end <= acked {
		p := e.pending[e.head]
		e.stats.sent(p.records, p.flows)
		e.head++
	}
	switch {
	case e.head == len(e.pending):
		e.pending, e.head = e.pending[:0], 0
	case e.head >= 1024 && 2*e.head >= len(e.pending):
		e.pending = e.pending[:copy(e.pending, e.pending[e.head:])]
		e.head = 0
	}
}

// dropLocked gives up on the TCP connection: what the collector acknowledged is
// sent, the rest is not; the connection is reset, so that none of the rest arrives
// after all; a reconnect is due after the retry interval. mu and smu held.
func (e *Exporter) dropLocked(cause error) {
	e.retireLocked()
	for _, p := range e.pending[e.head:] {
		e.stats.notSent(p.records, p.flows)
	}
	if tc, ok := e.conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	e.conn.Close()
	e.conn, e.connTemplates, e.failure = nil, false, cause
	e.raw, e.wrote, e.pending, e.head = nil, 0, e.pending[:0], 0
	if !e.closing {
		e.redials.Add(1)
		go e.redial(e.nextRetryLocked())
	}
}

// takeBackLocked counts the last message counted as sent over UDP as not sent: a
// refusal reported that one was. smu held.
func (e *Exporter) takeBackLocked() {
	if !e.canTakeBack {
		return
	}
	p := e.lastSent
	e.stats.Messages--
	e.stats.Records -= uint64(p.records)
	e.stats.Flows -= uint64(p.flows)
	e.stats.notSent(p.records, p.flows)
	e.canTakeBack = false
}

// nextRetryLocked returns how long to wait after a failure now: RetryInterval, or
// twice the last wait when the last failure is recent. mu held.
func (e *Exporter) nextRetryLocked() time.Duration {
	now := time.Now()
	limit := max(e.cfg.RetryInterval, maxRetryInterval)
	if e.lastFailure.IsZero() || now.Sub(e.lastFailure) > limit {
		e.retry = e.cfg.RetryInterval
	} else {
		e.retry = min(2*e.retry, limit)
	}
	e.lastFailure = now
	return e.retry
}

// redial connects to the collector again after delay, and again after each failure,
// in the background: no Export waits for a connect. Close ends it.
func (e *Exporter) redial(delay time.Duration) {
	defer e.redials.Done()
	for {
		t := time.NewTimer(delay)
		select {
		case <-e.quit:
			t.Stop()
			return
		case <-t.C:
		}
		d := net.Dialer{Timeout: e.cfg.DialTimeout}
		conn, err := d.DialContext(e.ctx, e.cfg.Network, e.cfg.Address)
		e.mu.Lock()
		if err == nil && !e.closingNow() {
			e.installLocked(conn)
			e.mu.Unlock()
			return
		}
		if conn != nil {
			conn.Close()
		}
		if e.closingNow() {
			e.mu.Unlock()
			return
		}
		e.smu.Lock()
		e.stats.Errors++
		e.smu.Unlock()
		e.failure = fmt.Errorf("ipfix: connect to collector %s over %s: %w", e.cfg.Address, e.cfg.Network, err)
		delay = e.nextRetryLocked()
		e.mu.Unlock()
	}
}

func (e *Exporter) closingNow() bool {
	e.smu.Lock()
	defer e.smu.Unlock()
	return e.closing
}

// cutLocked makes a send in progress give up by t at the latest. smu held.
func (e *Exporter) cutLocked(t time.Time) {
	if e.writing != nil && t.Before(e.deadline) {
		e.deadline = t
		e.writing.SetWriteDeadline(t)
	}
}

// finishLocked ends the connection for Close. Over TCP it waits until the collector
// has acknowledged everything, the connection fails, or Close's deadline passes;
// what is not acknowledged then is counted as not sent. mu held.
func (e *Exporter) finishLocked() error {
	if e.conn == nil {
		return nil
	}
	if !e.tcp {
		e.smu.Lock()
		defer e.smu.Unlock()
		err := e.conn.Close()
		e.conn, e.raw = nil, nil
		if err != nil {
			return fmt.Errorf("ipfix: close: %w", err)
		}
		return nil
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		e.smu.Lock()
		e.retireLocked()
		left := len(e.pending) - e.head
		var err error
		switch {
		case left == 0:
			cerr := e.conn.Close()
			e.conn, e.raw = nil, nil
			e.smu.Unlock()
			if cerr != nil {
				return fmt.Errorf("ipfix: close: %w", cerr)
			}
			return nil
		case e.raw != nil && reset(e.raw):
			err = fmt.Errorf("ipfix: close: the collector at %s reset the connection with %d messages unacknowledged: %w", e.cfg.Address, left, syscall.ECONNRESET)
		case !time.Now().Before(e.closeBy.Add(ackGrace)):
			err = fmt.Errorf("ipfix: close: the collector at %s did not acknowledge %d messages in time: %w", e.cfg.Address, left, os.ErrDeadlineExceeded)
		}
		if err != nil {
			e.stats.Errors++
			e.dropLocked(err)
			e.smu.Unlock()
			return err
		}
		sleep := min(wait, time.Until(e.closeBy.Add(ackGrace)))
		e.smu.Unlock()
		time.Sleep(sleep)
	}
}
