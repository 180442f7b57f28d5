// Package clickhouse writes fparser's flows into a ClickHouse table, with the
// official client (clickhouse-go) over the native protocol: one row per flow, in
// batch inserts with an explicit column list, into the table that
// deploy/clickhouse.sql creates. That schema works on every server from 18.16 on:
// see it for how addresses and times are stored.
//
// # Delivery
//
// Export adds a flow to the batch being built; a batch of Config.BatchSize flows is
// inserted at once, and Flush inserts a batch that is not full. An insert that fails
// is tried again, after 100 ms, then twice as long each time up to 5 s, for up to
// Config.RetryFor; then its flows count as failed. Every flow given to Export is
// counted once (Delivered): sent when the insert that carries it succeeded, failed
// when it was given up on. A writer is a sink.Exporter: behind a sink.Queue, a
// server that is down makes the queue fill, not the caller wait.
package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/fparser/fparser"
)

// DefaultTable is the table flows go to unless Config.Table says otherwise: the one
// deploy/clickhouse.sql creates.
const DefaultTable = "fparser_flows"

// Columns are the columns every row fills, in the order of the insert.
var Columns = []string{
	"first_seen", "first_seen_ns", "last_seen", "last_seen_ns", "protocol",
	"src_ip", "src_port", "dst_ip", "dst_port", "vlan_id",
	"src2dst_packets", "src2dst_bytes", "dst2src_packets", "dst2src_bytes",
	"src2dst_tcp_flags", "dst2src_tcp_flags", "end_reason",
	"src2dst_interface", "dst2src_interface", "duplicate_packets",
	"pid", "process", "cgroup", "community_id", "host",
}

// Config says where and how to write.
type Config struct {
	// Addr is the servers' native protocol addresses, host:port each (port 9000
	// by default on a server).
	Addr []string
	// Database and Table name the table. Defaults "default" and DefaultTable.
	Database, Table string
	// Username and Password authenticate. Default user "default", no password.
	Username, Password string
	// TLS, when set, connects with it.
	TLS *tls.Config
	// BatchSize is how many flows an insert carries at most. Default 10,000.
	BatchSize int
	// RetryFor is how long an insert that fails is tried again. Default 30 s.
	RetryFor time.Duration
	// DialTimeout bounds a connect. Default 5 s.
	DialTimeout time.Duration
	// Host fills the host column. Default the host's name.
	Host string
}

// ErrConfig is a bad configuration; errors.Is finds it.
var ErrConfig = errors.New("clickhouse: bad configuration")

// Writer writes flows to one table. Export, Flush, Cut and Shutdown are for one
// goroutine at a time (Cut may come while Export waits); Delivered and Err may be
// called from any.
type Writer struct {
	conn    driver.Conn
	insert  string // the INSERT with its column list
	table   string // database.table
	where   string // table and servers, for errors
	host    string
	size    int
	retry   time.Duration
	batch   []fparser.Flow // built by Export, inserted when full or by Flush
	ctx     context.Context
	cancel  context.CancelFunc
	closed  bool
	sent    atomic.Uint64
	failed  atomic.Uint64
	inserts atomic.Uint64
	retries atomic.Uint64
	errOnce sync.Once
	err     atomic.Pointer[error]
}

// New makes a writer. It connects when it first inserts: a server that is down
// makes inserts fail and be tried again, rather than New.
func New(cfg Config) (*Writer, error) {
	if len(cfg.Addr) == 0 {
		return nil, fmt.Errorf("%w: no server address", ErrConfig)
	}
	db, table := cfg.Database, cfg.Table
	if db == "" {
		db = "default"
	}
	if table == "" {
		table = DefaultTable
	}
	for _, name := range []string{db, table} {
		if !identifier(name) {
			return nil, fmt.Errorf("%w: %q: want a name of letters, digits and _", ErrConfig, name)
		}
	}
	user := cfg.Username
	if user == "" {
		user = "default"
	}
	host := cfg.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	conn, err := ch.Open(&ch.Options{
		Addr:        cfg.Addr,
		Auth:        ch.Auth{Database: db, Username: user, Password: cfg.Password},
		TLS:         cfg.TLS,
		DialTimeout: orDefault(cfg.DialTimeout, 5*time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	w := &Writer{
		conn:   conn,
		insert: fmt.Sprintf("INSERT INTO %s.%s (%s)", db, table, strings.Join(Columns, ", ")),
		table:  db + "." + table,
		where:  fmt.Sprintf("table %s.%s on %s", db, table, strings.Join(cfg.Addr, ",")),
		host:   host,
		size:   orDefault(cfg.BatchSize, 10_000),
		retry:  orDefault(cfg.RetryFor, 30*time.Second),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.batch = make([]fparser.Flow, 0, w.size)
	return w, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// identifier says name can go into the INSERT as it is.
func identifier(name string) bool {
	for i, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return name != ""
}

// Export adds a flow to the batch, and inserts the batch when it is full. It
// returns the insert's error when that batch was given up on.
func (w *Writer) Export(f *fparser.Flow) error {
	if w.closed {
		w.failed.Add(1)
		return fmt.Errorf("clickhouse: %s: writer closed", w.where)
	}
	w.batch = append(w.batch, *f)
	if len(w.batch) < w.size {
		return nil
	}
	return w.Flush()
}

// Flush inserts the flows given to Export since the last insert, trying again as
// the package doc says. It returns the error when they were given up on.
func (w *Writer) Flush() error {
	if len(w.batch) == 0 {
		return nil
	}
	err := w.insertBatch(w.ctx)
	clear(w.batch) // let go of the flows' histories
	w.batch = w.batch[:0]
	return err
}

// insertBatch inserts w.batch, trying again until RetryFor has passed or ctx is
// done, and counts its flows.
func (w *Writer) insertBatch(ctx context.Context) error {
	deadline := time.Now().Add(w.retry)
	wait := 100 * time.Millisecond
	for {
		err := w.send(ctx)
		if err == nil {
			w.sent.Add(uint64(len(w.batch)))
			w.inserts.Add(1)
			return nil
		}
		err = fmt.Errorf("clickhouse: insert %d flows into %s: %w", len(w.batch), w.where, err)
		if ctx.Err() != nil || !time.Now().Add(wait).Before(deadline) {
			w.failed.Add(uint64(len(w.batch)))
			w.errOnce.Do(func() { w.err.Store(&err) })
			return err
		}
		w.retries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// send makes one insert of w.batch.
func (w *Writer) send(ctx context.Context) error {
	b, err := w.conn.PrepareBatch(ctx, w.insert)
	if err != nil {
		return err
	}
	for i := range w.batch {
		f := &w.batch[i]
		if err := b.Append(
			f.FirstSeen.UTC(), uint64(f.FirstSeen.UnixNano()), f.LastSeen.UTC(), uint64(f.LastSeen.UnixNano()), uint8(f.Protocol),
			Addr16(f.Src.Addr()), f.Src.Port(), Addr16(f.Dst.Addr()), f.Dst.Port(), f.VLAN,
			f.Fwd.Packets, f.Fwd.Bytes, f.Rev.Packets, f.Rev.Bytes,
			uint8(f.Fwd.Flags), uint8(f.Rev.Flags), f.EndReason.String(),
			f.Fwd.Interface, f.Rev.Interface, f.DuplicatePackets,
			uint32(f.Process.PID), f.Process.Name, f.Process.Cgroup, f.CommunityID(), w.host,
		); err != nil {
			b.Abort()
			return err
		}
	}
	return b.Send()
}

// Addr16 is an address as the table stores it: IPv6 as its 16 bytes, IPv4 mapped
// (::ffff:a.b.c.d), as a string of 16 bytes, which a FixedString(16) column takes.
func Addr16(a netip.Addr) string {
	b := a.As16()
	return string(b[:])
}

// Delivered counts the flows whose fate is known: sent and failed. It makes the
// writer a sink.Exporter.
func (w *Writer) Delivered() (sent, failed uint64) { return w.sent.Load(), w.failed.Load() }

// Table is the table written to, as database.table.
func (w *Writer) Table() string { return w.table }

// Inserts is how many inserts succeeded.
func (w *Writer) Inserts() uint64 { return w.inserts.Load() }

// Retries is how many times an insert that failed was to be tried again.
func (w *Writer) Retries() uint64 { return w.retries.Load() }

// Err is the first insert given up on, naming the table and the servers, or nil.
func (w *Writer) Err() error {
	if e := w.err.Load(); e != nil {
		return *e
	}
	return nil
}

// Cut makes an insert that waits, or waits to try again, give up now, and every
// later one at once.
func (w *Writer) Cut() { w.cancel() }

// Shutdown inserts what Export holds back, trying until ctx is done at the latest,
// and closes the connection. It returns the first insert given up on.
func (w *Writer) Shutdown(ctx context.Context) error {
	if w.closed {
		return w.Err()
	}
	if len(w.batch) > 0 {
		ctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(w.ctx, cancel) // Cut cuts this too
		w.insertBatch(ctx)
		stop()
		cancel()
		clear(w.batch)
		w.batch = w.batch[:0]
	}
	w.closed = true
	w.cancel()
	w.conn.Close()
	return w.Err()
}

// Close is Shutdown with no deadline but Config.RetryFor.
func (w *Writer) Close() error { return w.Shutdown(context.Background()) }
