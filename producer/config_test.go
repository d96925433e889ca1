package producer

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

func TestConfigErrors(t *testing.T) {
	base := []Opt{Brokers("127.0.0.1:1"), ControlTopic(ctl), Topics("orders")}
	gold, err := priority.NewOrder("gold", "silver")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field string
		opts  []Opt
	}{
		{"ControlTopic", []Opt{ControlTopic("")}},
		{"ControlTopic", []Opt{ControlTopic("bad name")}},
		{"Topics", []Opt{opt(func(c *cfg) { c.topics = nil })}},
		{"Topics", []Opt{Topics("a/b")}},
		{"Topics", []Opt{Topics(ctl)}},
		{"ClassOrder", []Opt{ClassOrder(priority.Order{})}},
		{"DefaultClass", []Opt{ClassOrder(gold)}},
		{"DefaultClass", []Opt{DefaultClass("vip")}},
		{"WithPolicy", []Opt{ClassOrder(gold), DefaultClass("gold"), WithPolicy(DefaultPolicy(priority.Default))}},
		{"Policy[high][critical]", []Opt{WithPolicy(DefaultPolicy(priority.Default).With(lagmonitor.LevelHigh, priority.Critical, Shed))}},
		{"Policy[critical][bulk]", []Opt{WithPolicy(DefaultPolicy(priority.Default).With(lagmonitor.LevelCritical, priority.Bulk, Defer))}},
		{"MaxWait", []Opt{MaxWait(-time.Second)}},
		{"StartupTimeout", []Opt{StartupTimeout(0)}},
		{"Measure", []Opt{Measure(0, time.Second)}},
		{"Measure", []Opt{Measure(time.Second, 0)}},
		{"MinShare", []Opt{MinShare(0)}},
		{"MinShare", []Opt{MinShare(1.5)}},
		{"Headroom", []Opt{Headroom(0.5)}},
		{"NoRateFractions", []Opt{NoRateFractions(0.8, 0, 0.2)}},
		{"Ramp", []Opt{Ramp(-time.Second)}},
		{"RetryAfter", []Opt{RetryAfter(0)}},
		{"Clock", []Opt{Clock(nil)}},
		{"WithHooks", []Opt{WithHooks(nil)}},
		{"Brokers", []Opt{opt(func(c *cfg) { c.brokers = nil })}},
	}
	for _, c := range cases {
		p, err := New(append(append([]Opt{}, base...), c.opts...)...)
		if p != nil {
			p.Close()
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want an ErrInvalidConfig naming it", c.field, err)
		}
	}
	// The policy's order is the producer's when only the policy is given.
	p, err := New(append(base, WithPolicy(DefaultPolicy(gold)), DefaultClass("silver"))...)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()

	// Wrap takes no Brokers or KgoOpts, nor a nil client.
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := Wrap(cl, ControlTopic(ctl), Topics("orders"), Brokers("x:1")); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Brokers") {
		t.Errorf("Wrap with Brokers: %v", err)
	}
	if _, err := Wrap(nil, ControlTopic(ctl), Topics("orders")); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Wrap(nil): %v", err)
	}
}

// lines counts a logger's lines by message.
type lines struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *lines) Level() kgo.LogLevel { return kgo.LogLevelInfo }
func (l *lines) Log(_ kgo.LogLevel, msg string, _ ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = make(map[string]int)
	}
	l.n[msg]++
}
func (l *lines) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[msg]
}

// TestWrapLogsSampled: a wrapped client's logger gets the producer's
// lines, a burst of refusals as one; Close leaves the client open.
func TestWrapLogsSampled(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	publish(t, pub, signal(lagmonitor.LevelCritical, 1e6))
	log := new(lines)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p, err := Wrap(cl, ControlTopic(ctl), Topics("orders"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := p.ProduceSync(testCtx(t), rec(priority.Bulk)).FirstErr(); !errors.Is(err, ErrShed) {
			t.Fatalf("bulk at critical: %v", err)
		}
	}
	if n := log.count("floodgate producer: record shed"); n != 1 {
		t.Errorf("100 records shed in a burst logged %d lines, want 1", n)
	}
	if n := log.count("floodgate producer: pressure level changed"); n != 1 {
		t.Errorf("the level change logged %d lines, want 1", n)
	}
	p.Close()
	if p.Client() != cl {
		t.Fatal("Client is not the wrapped client")
	}
	if err := cl.ProduceSync(testCtx(t), &kgo.Record{Topic: "orders", Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("the wrapped client after Close: %v", err)
	}
}

// deferrer takes records, or fails them with fail.
type deferrer struct {
	mu   sync.Mutex
	recs []*kgo.Record
	ds   []Decision
	fail error
}

func (d *deferrer) Defer(_ context.Context, r *kgo.Record, dec Decision, promise func(*kgo.Record, error)) {
	d.mu.Lock()
	d.recs, d.ds = append(d.recs, r), append(d.ds, dec)
	fail := d.fail
	d.mu.Unlock()
	go promise(r, fail) // from another goroutine, as a real lane would
}

// TestDeferSeam: a Defer cell hands the record to the Deferrer, with the
// decision; the caller's promise gets the Deferrer's result; a failure
// sheds the record.
func TestDeferSeam(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	publish(t, pub, signal(lagmonitor.LevelCritical, 1e6))
	pol := DefaultPolicy(priority.Default).With(lagmonitor.LevelCritical, priority.Bulk, Defer)
	d := new(deferrer)
	p := start(t, e.brokers, WithPolicy(pol), WithDeferrer(d))

	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); err != nil {
		t.Fatalf("a deferred record: %v, want nil", err)
	}
	d.mu.Lock()
	if len(d.recs) != 1 || d.ds[0].Outcome != OutcomeDeferred || d.ds[0].Action != Defer || d.ds[0].Level != lagmonitor.LevelCritical || d.ds[0].Instance == "" {
		t.Fatalf("deferrer got %d records, decision %+v", len(d.recs), d.ds)
	}
	d.fail = errors.New("the deferred lane is down")
	d.mu.Unlock()
	res := p.ProduceSync(testCtx(t), rec(priority.Bulk))
	err := res.FirstErr()
	var re *RefusedError
	if !errors.Is(err, ErrShed) || !errors.As(err, &re) || re.Err == nil || !strings.Contains(err.Error(), "lane is down") {
		t.Fatalf("a record the deferrer failed: %v, want ErrShed with its cause", err)
	}
	if st := p.Stats(); st.Deferred != 1 || st.DeferFailed != 1 || st.Shed != 1 {
		t.Fatalf("stats %+v", st.Counts)
	}
	// Not deferred at high: the cell says shed.
	publish(t, pub, signal(lagmonitor.LevelHigh, 1e6))
	waitLevel(t, p, lagmonitor.LevelHigh)
	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); !errors.Is(err, ErrShed) {
		t.Fatalf("bulk at high (shed cell): %v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.recs) != 2 {
		t.Fatalf("the deferrer got %d records, want 2 (none at high)", len(d.recs))
	}
}

// TestWrapTLSClient: a client that dials TLS is wrapped; its reader
// connects with the same TLS config (kgo refuses a dialer beside it).
func TestWrapTLSClient(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.DialTLSConfig(&tls.Config{ServerName: "kafka"}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p, err := Wrap(cl, ControlTopic(ctl), Topics("orders"))
	if err != nil {
		t.Fatalf("Wrap of a TLS client: %v", err)
	}
	p.Close()
}
