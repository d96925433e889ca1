package deferred

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const ctl = "floodgate.pressure"

func testCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// env is a kfake cluster with the topic "orders" (3 partitions), a
// control topic, and a publisher of group billing's signals on orders.
type env struct {
	cluster *kfake.Cluster
	brokers []string
	pub     *lagmonitor.Publisher
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c, brokers := testkit.Cluster(t, 3, "orders")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner(ctl, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if _, err := lagmonitor.EnsureControlTopic(testCtx(t), cl, ctl, 4, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	pub, err := lagmonitor.NewPublisher(cl, ctl, "billing-1")
	if err != nil {
		t.Fatal(err)
	}
	return &env{cluster: c, brokers: brokers, pub: pub}
}

// level publishes group billing's level on orders, live for the test.
func (e *env) level(t *testing.T, l lagmonitor.Level) {
	t.Helper()
	s := lagmonitor.Signal{Topic: "orders", Group: "billing", Level: l, Reason: "test: " + l.String(), TTL: 10 * time.Minute}
	if _, err := e.pub.Publish(testCtx(t), s); err != nil {
		t.Fatal(err)
	}
}

func (e *env) client(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// lane starts a lane on cl; it closes with the test.
func (e *env) lane(t *testing.T, cl *kgo.Client, cfg Config) *Lane {
	t.Helper()
	if cfg.Topics == nil {
		cfg.Topics = []string{"orders"}
	}
	l, err := NewLane(cl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if err := l.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return l
}

// producer wraps cl, deferring bulk where the default policy sheds it.
func (e *env) producer(t *testing.T, cl *kgo.Client, lane *Lane, opts ...producer.Opt) *producer.Producer {
	t.Helper()
	p, err := producer.Wrap(cl, append([]producer.Opt{producer.ControlTopic(ctl), producer.Topics("orders"),
		producer.WithPolicy(producer.DefaultPolicy(priority.Default).DeferringShed()), producer.WithDeferrer(lane)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitLevel(t *testing.T, p *producer.Producer, want lagmonitor.Level) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, fmt.Sprintf("the producer to see level %s on orders", want), func() bool {
		return p.Stats().Topics[0].Level == want
	})
}

// relay runs a relay until the test ends or stop is called.
func (e *env) relay(t *testing.T, cfg RelayConfig) (r *Relay, stop func()) {
	t.Helper()
	cfg.Brokers, cfg.ControlTopic = e.brokers, ctl
	if cfg.Topics == nil {
		cfg.Topics = []string{"orders"}
	}
	cfg.ConsumerOpts = append([]consumer.Opt{consumer.CommitInterval(100 * time.Millisecond)}, cfg.ConsumerOpts...)
	r, err := NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay.Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// rec returns a record of class on orders.
func rec(class priority.Class, key, value string) *kgo.Record {
	r := &kgo.Record{Topic: "orders", Value: []byte(value),
		Headers: []kgo.RecordHeader{{Key: priority.Header, Value: []byte(class)}, {Key: "app", Value: []byte("kept")}}}
	if key != "" {
		r.Key = []byte(key)
	}
	return r
}

// produceAll produces rs and fails the test on any error.
func produceAll(t *testing.T, p *producer.Producer, rs ...*kgo.Record) {
	t.Helper()
	if err := p.ProduceSync(testCtx(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// endOffsets returns the sum of topic's end offsets.
func endOffsets(t *testing.T, cl *kgo.Client, topic string) int64 {
	t.Helper()
	offs, err := kadm.NewClient(cl).ListEndOffsets(testCtx(t), topic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	offs.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// values counts each value read from topic (n records expected).
func values(t *testing.T, brokers []string, topic string, n int) (map[string]int, []*kgo.Record) {
	t.Helper()
	rs := testkit.ReadTopic(t, brokers, topic, n, time.Minute)
	m := make(map[string]int, len(rs))
	for _, r := range rs {
		m[string(r.Value)]++
	}
	return m, rs
}

// TestDeferThenRelay: at high, bulk records are deferred (their promises
// succeed, nothing reaches orders) while critical ones flow; the relay
// holds them while the level stays high and delivers each exactly once
// when it returns to ok: deferred headers stripped, the record's own
// kept, a fresh timestamp.
func TestDeferThenRelay(t *testing.T) {
	e := newEnv(t)
	e.level(t, lagmonitor.LevelHigh)
	cl := e.client(t)
	lane := e.lane(t, cl, Config{})
	p := e.producer(t, cl, lane)
	waitLevel(t, p, lagmonitor.LevelHigh)

	const n = 100
	var rs []*kgo.Record
	for i := range n {
		r := rec(priority.Bulk, fmt.Sprintf("k%d", i%7), fmt.Sprintf("bulk-%d", i))
		r.Timestamp = time.UnixMilli(1_600_000_000_000 + int64(i))
		rs = append(rs, r)
	}
	produceAll(t, p, rs...)
	produceAll(t, p, rec(priority.Critical, "c", "critical-0"))
	if st := p.Stats(); st.Deferred != n || st.Topics[0].Classes[2].Deferred != n {
		t.Fatalf("producer stats: %d deferred, want %d", st.Deferred, n)
	}
	if got := endOffsets(t, cl, "orders"); got != 1 {
		t.Fatalf("orders holds %d records at high, want only the critical one", got)
	}
	if st := lane.Stats(); st.Deferred != n || st.Failed != 0 {
		t.Fatalf("lane stats %+v", st)
	}
	_, parked := values(t, e.brokers, "orders.deferred", n)
	m, ok, err := Decode(parked[0])
	if !ok || err != nil || m.Topic != "orders" || m.Class != priority.Bulk || m.Level != lagmonitor.LevelHigh ||
		m.Instance != "billing-1" || m.Group != "billing" || m.Seq == 0 || m.At.IsZero() || m.Timestamp.Year() != 2020 || m.Reason == "" {
		t.Fatalf("deferred headers: %+v ok=%v err=%v", m, ok, err)
	}

	relay, _ := e.relay(t, RelayConfig{})
	testkit.Eventually(t, 15*time.Second, "the relay to pause orders.deferred at high", func() bool {
		return slices.Equal(relay.Stats().Paused, []string{"orders"})
	})
	if got := endOffsets(t, cl, "orders"); got != 1 {
		t.Fatalf("the relay delivered at high: orders holds %d records", got)
	}

	okAt := time.Now()
	e.level(t, lagmonitor.LevelOK)
	testkit.Eventually(t, 30*time.Second, "the relay to deliver every deferred record", func() bool {
		return endOffsets(t, cl, "orders") == n+1
	})
	got, delivered := values(t, e.brokers, "orders", n+1)
	for i := range n {
		if c := got[fmt.Sprintf("bulk-%d", i)]; c != 1 {
			t.Errorf("bulk-%d delivered %d times", i, c)
		}
	}
	for _, r := range delivered {
		if string(r.Value) == "critical-0" {
			continue
		}
		for _, h := range r.Headers {
			if strings.HasPrefix(h.Key, "floodgate-deferred-") {
				t.Fatalf("relayed record keeps %s", h.Key)
			}
		}
		if len(r.Headers) != 2 || r.Headers[1].Key != "app" {
			t.Fatalf("relayed record's headers %v, want its own (priority, app)", r.Headers)
		}
		if r.Timestamp.Before(okAt.Add(-time.Second)) {
			t.Fatalf("relayed record stamped %v, before the level returned to ok (%v)", r.Timestamp, okAt)
		}
	}
	if st := relay.Stats(); st.Relayed != n || st.Malformed != 0 || len(st.Paused) != 0 {
		t.Fatalf("relay stats %+v", st)
	}
}

// TestAtLeastOnceAcrossRestarts: a producer defers records and goes away;
// another defers more; a relay delivers some and stops; another
// delivers the rest: every deferred record reaches orders at least once.
func TestAtLeastOnceAcrossRestarts(t *testing.T) {
	e := newEnv(t)
	e.level(t, lagmonitor.LevelCritical)
	const half = 150
	for gen := range 2 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
		if err != nil {
			t.Fatal(err)
		}
		lane, err := NewLane(cl, Config{Topics: []string{"orders"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := lane.Start(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		p, err := producer.Wrap(cl, producer.ControlTopic(ctl), producer.Topics("orders"),
			producer.WithPolicy(producer.DefaultPolicy(priority.Default).DeferringShed()), producer.WithDeferrer(lane))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		waitLevel(t, p, lagmonitor.LevelCritical)
		for i := range half {
			produceAll(t, p, rec(priority.Bulk, "", fmt.Sprintf("gen%d-%d", gen, i)))
		}
		p.Close()
		lane.Close()
		cl.Close()
	}
	cl := e.client(t)
	if got := endOffsets(t, cl, "orders.deferred"); got != 2*half {
		t.Fatalf("orders.deferred holds %d records, want %d", got, 2*half)
	}
	e.level(t, lagmonitor.LevelOK)

	r1, stop1 := e.relay(t, RelayConfig{Rate: 200})
	testkit.Eventually(t, 30*time.Second, "the first relay to deliver some", func() bool { return r1.Stats().Relayed >= 50 })
	stop1()
	first := r1.Stats().Relayed
	if first >= 2*half {
		t.Fatalf("the first relay delivered all %d records before it was stopped: raise the count", first)
	}
	r2, _ := e.relay(t, RelayConfig{})
	testkit.Eventually(t, 30*time.Second, "the second relay to deliver the rest", func() bool {
		return int64(first+r2.Stats().Relayed) >= 2*half && endOffsets(t, cl, "orders") >= 2*half
	})
	total := int(endOffsets(t, cl, "orders"))
	got, _ := values(t, e.brokers, "orders", total)
	dups := 0
	for gen := range 2 {
		for i := range half {
			switch c := got[fmt.Sprintf("gen%d-%d", gen, i)]; {
			case c == 0:
				t.Errorf("gen%d-%d lost", gen, i)
			case c > 1:
				dups += c - 1
			}
		}
	}
	t.Logf("relays delivered %d then %d; %d duplicates in orders (at least once)", first, r2.Stats().Relayed, dups)
}

// TestKeyOrdered: while key k has a deferred record, its later records
// (even critical ones, which the level admits) are deferred behind it, in
// order, and other keys flow; a lane started afresh holds k too; once the
// relay delivered and committed k's records, k flows directly again, and
// orders holds k's records in the order they were produced.
func TestKeyOrdered(t *testing.T) {
	e := newEnv(t)
	e.level(t, lagmonitor.LevelHigh)
	cl := e.client(t)
	lane := e.lane(t, cl, Config{KeyOrdered: true, PollInterval: 50 * time.Millisecond})
	p := e.producer(t, cl, lane)
	waitLevel(t, p, lagmonitor.LevelHigh)

	produceAll(t, p, rec(priority.Bulk, "k", "k-1"))
	if !lane.Holds("orders", []byte("k")) || lane.Holds("orders", []byte("other")) {
		t.Fatal("after deferring k-1: k not held, or another key held")
	}
	produceAll(t, p, rec(priority.Critical, "k", "k-2"), rec(priority.Critical, "other", "other-1"))
	if got := endOffsets(t, cl, "orders"); got != 1 {
		t.Fatalf("orders holds %d records; want only other-1 (k-2 is held behind k-1)", got)
	}
	if st := p.Stats(); st.Deferred != 2 {
		t.Fatalf("producer deferred %d, want 2 (k-1, k-2)", st.Deferred)
	}

	// A lane started afresh (a restarted producer) reads orders.deferred
	// and holds k.
	cl2 := e.client(t)
	lane2 := e.lane(t, cl2, Config{KeyOrdered: true, PollInterval: 50 * time.Millisecond})
	if !lane2.Holds("orders", []byte("k")) || lane2.Stats().HeldKeys != 1 {
		t.Fatalf("a new lane holds k: %v (%d keys)", lane2.Holds("orders", []byte("k")), lane2.Stats().HeldKeys)
	}

	e.level(t, lagmonitor.LevelOK)
	waitLevel(t, p, lagmonitor.LevelOK)
	produceAll(t, p, rec(priority.Critical, "k", "k-3")) // still held: behind k-1, k-2
	e.relay(t, RelayConfig{})
	testkit.Eventually(t, 30*time.Second, "the relay to deliver k's records and both lanes to release k", func() bool {
		return !lane.Holds("orders", []byte("k")) && !lane2.Holds("orders", []byte("k"))
	})
	produceAll(t, p, rec(priority.Critical, "k", "k-4"))
	if st := p.Stats(); st.Deferred != 3 {
		t.Fatalf("producer deferred %d, want 3 (k-1, k-2, k-3; k-4 direct)", st.Deferred)
	}
	_, rs := values(t, e.brokers, "orders", 5)
	var order []string
	for _, r := range rs {
		if string(r.Key) == "k" {
			order = append(order, string(r.Value))
		}
	}
	if want := []string{"k-1", "k-2", "k-3", "k-4"}; !slices.Equal(order, want) {
		t.Fatalf("k's records in orders: %v, want %v", order, want)
	}
}

// TestRelayMalformed: records written to the deferred topic by another
// tool (no deferred headers, malformed ones, another destination named)
// reach the topic's destination, counted.
func TestRelayMalformed(t *testing.T) {
	e := newEnv(t)
	cl := e.client(t)
	e.lane(t, cl, Config{}) // creates orders.deferred
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	rs := []*kgo.Record{
		{Topic: "orders.deferred", Value: []byte("bare")},
		{Topic: "orders.deferred", Value: []byte("bad-at"), Headers: []kgo.RecordHeader{h(HeaderAt, "yesterday")}},
		{Topic: "orders.deferred", Value: []byte("twice"), Headers: []kgo.RecordHeader{h(HeaderTopic, "orders"), h(HeaderTopic, "orders")}},
		{Topic: "orders.deferred", Value: []byte("elsewhere"), Headers: []kgo.RecordHeader{h(HeaderTopic, "payments")}},
		{Topic: "orders.deferred", Value: []byte("bad-utf8"), Headers: []kgo.RecordHeader{h(HeaderLevel, "\xff")}},
	}
	if err := cl.ProduceSync(testCtx(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	relay, _ := e.relay(t, RelayConfig{WithoutSignal: true}) // no monitor here
	testkit.Eventually(t, 30*time.Second, "the relay to deliver the foreign records", func() bool {
		return endOffsets(t, cl, "orders") == int64(len(rs))
	})
	got, _ := values(t, e.brokers, "orders", len(rs))
	for _, r := range rs {
		if got[string(r.Value)] != 1 {
			t.Errorf("%s delivered %d times", r.Value, got[string(r.Value)])
		}
	}
	if st := relay.Stats(); st.Malformed != 4 || st.LastErr == nil {
		t.Fatalf("relay stats %+v: want 4 malformed (all but the bare record) and the last reported", st)
	}
}

// TestConfigErrors: each invalid field is named.
func TestConfigErrors(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, c := range []struct {
		field string
		cfg   Config
	}{
		{"Topics", Config{}},
		{"Topics", Config{Topics: []string{"a b"}}},
		{"Suffix", Config{Topics: []string{"a"}, Suffix: "/x"}},
		{"Suffix", Config{Topics: []string{"a", "a.d"}, Suffix: ".d"}},
		{"StartTimeout", Config{Topics: []string{"a"}, StartTimeout: -1}},
		{"PollInterval", Config{Topics: []string{"a"}, PollInterval: -1}},
		{"Partitions", Config{Topics: []string{"a"}, Partitions: -1}},
		{"ReplicationFactor", Config{Topics: []string{"a"}, ReplicationFactor: -2}},
	} {
		_, err := NewLane(cl, c.cfg)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.field)
		}
	}
	if _, err := NewLane(nil, Config{Topics: []string{"a"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil client: %v", err)
	}
	base := RelayConfig{Brokers: []string{"127.0.0.1:1"}, ControlTopic: ctl, Topics: []string{"a"}}
	for _, c := range []struct {
		field string
		edit  func(*RelayConfig)
	}{
		{"Brokers", func(c *RelayConfig) { c.Brokers = nil }},
		{"ControlTopic", func(c *RelayConfig) { c.ControlTopic = "" }},
		{"Topics", func(c *RelayConfig) { c.Topics = nil }},
		{"Rate", func(c *RelayConfig) { c.Rate = -1 }},
		{"SuggestedShare", func(c *RelayConfig) { c.SuggestedShare = 2 }},
	} {
		cfg := base
		c.edit(&cfg)
		_, err := NewRelay(cfg)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("relay %s: %v, want an error naming it", c.field, err)
		}
	}
}

// TestStartNeedsDestination: without the destination, the deferred
// topic's size is unknown: Start says so, unless Partitions is set.
func TestStartNeedsDestination(t *testing.T) {
	e := newEnv(t)
	cl := e.client(t)
	l, err := NewLane(cl, Config{Topics: []string{"missing"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Start(testCtx(t)); err == nil || !strings.Contains(err.Error(), `"missing"`) || !strings.Contains(err.Error(), "Partitions") {
		t.Fatalf("Start: %v", err)
	}
	l2 := e.lane(t, cl, Config{Topics: []string{"missing"}, Partitions: 2})
	if got := l2.DeferredTopic("missing"); got != "missing.deferred" {
		t.Fatal(got)
	}
	offs, err := kadm.NewClient(cl).ListEndOffsets(testCtx(t), "missing.deferred")
	if err != nil || len(offs["missing.deferred"]) != 2 {
		t.Fatalf("missing.deferred: %v %v", offs, err)
	}
}
