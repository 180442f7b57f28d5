// Package chtest starts a ClickHouse server for a test: the one the host has
// installed (Debian's clickhouse-server, 18.16 on Debian 12, or newer), with a
// configuration of its own in a temporary folder, listening on loopback ports that
// were free. A test without a server skips, saying so (fails, under CI).
package chtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fparser/fparser/internal/testharness"
)

// Server is a running ClickHouse server. The test's end stops it.
type Server struct {
	Native string // host:port of the native protocol
	HTTP   string // host:port of the HTTP interface
	Dir    string // its data and logs

	cmd    []string
	proc   *os.Process
	exited chan error
}

// binary finds the server's program: clickhouse-server, or clickhouse with the
// server command.
func binary() ([]string, bool) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return []string{p}, true
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return []string{p, "server"}, true
	}
	return nil, false
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts a server, and waits until it answers over HTTP. Without a server
// program, the test skips.
func Start(t testing.TB) *Server {
	t.Helper()
	cmd, ok := binary()
	testharness.Require(t, ok, "no clickhouse-server on this host (Debian: apt-get install clickhouse-server): skipped")
	dir := t.TempDir()
	native, web := freePort(t), freePort(t)
	s := &Server{Native: net.JoinHostPort("127.0.0.1", strconv.Itoa(native)), HTTP: net.JoinHostPort("127.0.0.1", strconv.Itoa(web)), Dir: dir}
	// 18.16 reads <yandex>; newer servers take it too.
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>%[1]s/server.log</log><errorlog>%[1]s/server.err.log</errorlog><console>0</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%[2]d</tcp_port>
    <http_port>%[3]d</http_port>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>5368709120</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <!-- The Kafka engine's new consumer group reads a topic from its start, as deploy/clickhouse-kafka.sql asks. -->
    <kafka><auto_offset_reset>smallest</auto_offset_reset></kafka>
</yandex>
`, dir, native, web)
	users := `<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
`
	for name, content := range map[string]string{"config.xml": config, "users.xml": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.cmd = cmd
	s.run(t)
	t.Cleanup(s.Stop)
	return s
}

// run starts the server's process and waits until it answers.
func (s *Server) run(t testing.TB) {
	t.Helper()
	args := append(s.cmd[1:], "--config-file="+filepath.Join(s.Dir, "config.xml"))
	srv := exec.Command(s.cmd[0], args...)
	srv.Dir = s.Dir
	out, err := os.OpenFile(filepath.Join(s.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stdout, srv.Stderr = out, out
	if err := srv.Start(); err != nil {
		t.Fatalf("start %s: %v", s.cmd[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait(); out.Close() }()
	s.proc, s.exited = srv.Process, exited
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if _, err := s.Query(ctx, "SELECT 1"); err == nil {
			return
		}
		select {
		case err := <-exited:
			s.proc = nil
			log, _ := os.ReadFile(filepath.Join(s.Dir, "server.err.log"))
			stdout, _ := os.ReadFile(filepath.Join(s.Dir, "stdout.log"))
			t.Fatalf("clickhouse-server ended: %v\n%s\n%s", err, log, stdout)
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(s.Dir, "server.err.log"))
			t.Fatalf("clickhouse-server did not answer in 60 s\n%s", log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the server's process, the one the test started, and waits for it;
// Resume starts it again, on the same ports and data.
func (s *Server) Stop() {
	if s.proc == nil {
		return
	}
	s.proc.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.proc.Kill()
		<-s.exited
	}
	s.proc = nil
}

// Resume starts a stopped server again, and waits until it answers.
func (s *Server) Resume(t testing.TB) { s.run(t) }

// Query runs a statement over the HTTP interface and returns its output, in
// ClickHouse's default format for it (TabSeparated for a SELECT).
func (s *Server) Query(ctx context.Context, query string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.HTTP+"/", strings.NewReader(query))
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// Exec runs each statement of a script: statements end with a semicolon at the end
// of a line, and lines that start with -- are comments.
func (s *Server) Exec(ctx context.Context, script string) error {
	var stmt strings.Builder
	for _, line := range strings.Split(script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		stmt.WriteString(line)
		stmt.WriteByte('\n')
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			q := strings.TrimSuffix(strings.TrimSpace(stmt.String()), ";")
			if _, err := s.Query(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
			stmt.Reset()
		}
	}
	if rest := strings.TrimSpace(stmt.String()); rest != "" {
		return fmt.Errorf("a statement without its semicolon: %s", rest)
	}
	return nil
}
