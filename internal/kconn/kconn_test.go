package kconn

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestOpts: a client built from Opts connects as the original does.
func TestOpts(t *testing.T) {
	dial := func(context.Context, string, string) (net.Conn, error) { return nil, net.ErrClosed }
	cl, err := kgo.NewClient(kgo.SeedBrokers("a:1", "b:2"), kgo.Dialer(dial), kgo.ClientID("svc"),
		kgo.WithLogger(kgo.BasicLogger(nil, kgo.LogLevelNone, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := Seeds(cl); !slices.Equal(got, []string{"a:1", "b:2"}) {
		t.Fatalf("Seeds = %v", got)
	}
	cp, err := kgo.NewClient(append(Opts(cl), kgo.SeedBrokers(Seeds(cl)...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if id, _ := cp.OptValue(kgo.ClientID).(string); id != "svc" {
		t.Fatalf("client id %q", id)
	}
	if d, _ := cp.OptValue(kgo.Dialer).(func(context.Context, string, string) (net.Conn, error)); d == nil {
		t.Fatal("dialer not copied")
	}
	if l, _ := cp.OptValue(kgo.WithLogger).(kgo.Logger); l == nil {
		t.Fatal("logger not copied")
	}

	tc := &tls.Config{ServerName: "kafka"}
	cl2, err := kgo.NewClient(kgo.SeedBrokers("a:1"), kgo.DialTLSConfig(tc))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	cp2, err := kgo.NewClient(append(Opts(cl2), kgo.SeedBrokers("a:1"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cp2.Close()
	got, _ := cp2.OptValue(kgo.DialTLSConfig).(*tls.Config)
	if got == nil || got == tc || got.ServerName != "kafka" {
		t.Fatalf("TLS config %v: want a clone of the original", got)
	}
}
