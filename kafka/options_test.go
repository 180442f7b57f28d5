package kafka_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/fparser/fparser"
	"github.com/fparser/fparser/internal/testnet"
	"github.com/fparser/fparser/kafka"
)

// TestOptions: a flow goes out and comes back with each compression, over TLS, and
// with SASL given as a franz-go option; the host header defaults to the host's
// name.
func TestOptions(t *testing.T) {
	f := fparser.Flow{Protocol: fparser.UDP}
	send := func(t *testing.T, cluster []kfake.Opt, cfg kafka.Config, consumer ...kgo.Opt) {
		t.Helper()
		c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, kafka.DefaultTopic)}, cluster...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cfg.Brokers, cfg.Linger, cfg.CloseTimeout = c.ListenAddrs(), time.Millisecond, 10*time.Second
		p, err := kafka.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		p.Export(&f)
		if err := p.Close(); err != nil || p.Stats().Sent != 1 {
			t.Fatalf("stats %+v, %v", p.Stats(), err)
		}
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(kafka.DefaultTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, consumer...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var host string
		for host == "" && ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				for _, h := range r.Headers {
					if h.Key == "host" {
						host = string(h.Value)
					}
				}
			})
		}
		if name, _ := os.Hostname(); host != name {
			t.Errorf("host header %q, want %q", host, name)
		}
	}
	for _, codec := range []string{"zstd", "lz4", "snappy", "gzip", "none"} {
		t.Run(codec, func(t *testing.T) { send(t, nil, kafka.Config{Compression: codec}) })
	}
	t.Run("tls", func(t *testing.T) {
		server, client := tlsConfigs(t)
		send(t, []kfake.Opt{kfake.TLS(server)}, kafka.Config{TLS: client}, kgo.DialTLSConfig(client))
	})
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run("Config.SASL "+mech, func(t *testing.T) {
			consumer := kgo.SASL(plain.Auth{User: "admin", Pass: "admin"}.AsMechanism())
			send(t, []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(mech, "fparser", "secret"), kfake.Superuser("PLAIN", "admin", "admin")},
				kafka.Config{SASL: &kafka.SASL{Mechanism: strings.ToLower(mech), User: "fparser", Password: "secret"}}, consumer)
		})
	}
	t.Run("sasl", func(t *testing.T) {
		auth := kgo.SASL(plain.Auth{User: "fparser", Pass: "secret"}.AsMechanism())
		send(t, []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("PLAIN", "fparser", "secret")}, kafka.Config{Opts: []kgo.Opt{auth}}, auth)
	})
}

// tlsConfigs makes a self-signed certificate for 127.0.0.1, and the configurations
// of a server that presents it and a client that trusts it.
func tlsConfigs(t *testing.T) (server, client *tls.Config) {
	cert, pem := testnet.SelfSigned(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool}
}

// TestTLSFiles: the CA file becomes the roots, a certificate and its key the
// client's certificate; half a pair, or a file of no certificate, is refused.
func TestTLSFiles(t *testing.T) {
	cert, certPEM := testnet.SelfSigned(t)
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cfg, err := kafka.TLSFiles(certFile, certFile, keyFile)
	if err != nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || !bytes.Equal(cfg.Certificates[0].Certificate[0], cert.Certificate[0]) {
		t.Fatalf("TLSFiles: %+v, %v", cfg, err)
	}
	if _, err := kafka.TLSFiles("", certFile, ""); !errors.Is(err, kafka.ErrConfig) {
		t.Errorf("a certificate without its key: %v", err)
	}
	if _, err := kafka.TLSFiles(keyFile, "", ""); !errors.Is(err, kafka.ErrConfig) {
		t.Errorf("a CA file of no certificate: %v", err)
	}
}
