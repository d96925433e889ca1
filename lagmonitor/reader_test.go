package lagmonitor_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"go.uber.org/goleak"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

func TestMain(m *testing.M) {
	if testkit.ServeChildCluster() {
		return
	}
	goleak.VerifyTestMain(m)
}

// fakeClock is a reader clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := new(fakeClock)
	c.set(t)
	return c
}
func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

func newReader(t testing.TB, brokers []string, topics []string, opts ...lagmonitor.ReaderOpt) *lagmonitor.Reader {
	t.Helper()
	r, err := lagmonitor.NewReader(brokers, ctl, topics, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// seqs returns "instance:seq" of signals, in order.
func seqs(ss []lagmonitor.Signal) []string {
	out := []string{}
	for _, s := range ss {
		out = append(out, fmt.Sprintf("%s/%s:%d", s.Group, s.Instance, s.Seq))
	}
	return out
}

func waitSignals(t *testing.T, r *lagmonitor.Reader, topic string, now func() time.Time, want ...string) {
	t.Helper()
	var got []string
	testkit.Eventually(t, 15*time.Second, fmt.Sprintf("signals for %s: want %v", topic, want), func() bool {
		got = seqs(r.Signals(topic, now()))
		return slices.Equal(got, want)
	})
}

func TestReaderFollowsLatestPerInstance(t *testing.T) {
	_, brokers := controlTopic(t, 8)
	cl := publishClient(t, brokers)
	p1, p2, p3 := newPublisher(t, cl, "i-1"), newPublisher(t, cl, "i-2"), newPublisher(t, cl, "i-3")
	publish := func(p *lagmonitor.Publisher, topic, group string, lvl lagmonitor.Level) {
		t.Helper()
		if _, err := p.Publish(ctx(t), sig(topic, group, lvl)); err != nil {
			t.Fatal(err)
		}
	}
	// Before the reader starts: it must catch up on these.
	publish(p1, "orders", "g1", lagmonitor.LevelElevated) // i-1 seq 1
	publish(p1, "orders", "g1", lagmonitor.LevelHigh)     // i-1 seq 2
	publish(p2, "orders", "g1", lagmonitor.LevelOK)       // i-2 seq 1
	publish(p3, "orders", "g2", lagmonitor.LevelCritical) // i-3 seq 1
	publish(p2, "payments", "g1", lagmonitor.LevelHigh)   // i-2 seq 2, another topic

	r := newReader(t, brokers, []string{"orders"})
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if !st.CaughtUp || !slices.Equal(st.Partitions, []int32{lagmonitor.PartitionFor("orders", 8)}) {
		t.Errorf("after Start: caught up %v, partitions %v (want [%d])", st.CaughtUp, st.Partitions, lagmonitor.PartitionFor("orders", 8))
	}
	got := r.Signals("orders", time.Now())
	if want := []string{"g1/i-1:2", "g1/i-2:1", "g2/i-3:1"}; !slices.Equal(seqs(got), want) {
		t.Fatalf("after Start, signals %v, want %v", seqs(got), want)
	}
	if got[0].Level != lagmonitor.LevelHigh || got[2].Level != lagmonitor.LevelCritical {
		t.Errorf("levels %v %v, want the latest: high, critical", got[0].Level, got[2].Level)
	}
	if r.Signals("payments", time.Now()) != nil {
		t.Error("signals for a topic the reader does not follow")
	}

	// Following: a new signal replaces the instance's last; a
	// tombstone removes it.
	publish(p1, "orders", "g1", lagmonitor.LevelOK) // i-1 seq 3
	waitSignals(t, r, "orders", time.Now, "g1/i-1:3", "g1/i-2:1", "g2/i-3:1")
	if err := p2.Tombstone(ctx(t), "orders", "i-2", "g1"); err != nil {
		t.Fatal(err)
	}
	waitSignals(t, r, "orders", time.Now, "g1/i-1:3", "g2/i-3:1")

	st = r.Stats()
	if st.Accepted != 5 || st.Tombstones != 1 || st.Live != 2 || st.Malformed+st.Unauthenticated+st.Replayed+st.Future != 0 {
		t.Errorf("stats %+v: want 5 accepted, 1 tombstone, 2 live, none rejected", st)
	}
}

func TestReaderReadsOnlyItsPartitions(t *testing.T) {
	const parts = 8
	_, brokers := controlTopic(t, parts)
	pa := lagmonitor.PartitionFor("orders", parts)
	other := topicInPartition(t, parts, func(p int32) bool { return p != pa })
	same := topicInPartition(t, parts, func(p int32) bool { return p == pa })
	if same == "orders" {
		t.Fatal("no other topic in orders' partition")
	}
	cl := publishClient(t, brokers)
	p := newPublisher(t, cl, "i-1")
	for i := 0; i < 20; i++ {
		if _, err := p.Publish(ctx(t), sig(other, "g", lagmonitor.LevelHigh)); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range []string{same, same, "orders"} {
		if _, err := p.Publish(ctx(t), sig(topic, "g", lagmonitor.LevelHigh)); err != nil {
			t.Fatal(err)
		}
	}
	r := newReader(t, brokers, []string{"orders"})
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Read != 3 || st.Ignored != 2 || st.Accepted != 1 {
		t.Errorf("read %d, ignored %d, accepted %d; want 3 read (orders' partition only), 2 ignored (%s shares it), 1 accepted",
			st.Read, st.Ignored, st.Accepted, same)
	}
	if r.Signals(other, time.Now()) != nil || r.Signals(same, time.Now()) != nil {
		t.Error("signals kept for topics not followed")
	}
}

func TestReaderExpiry(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	cl := publishClient(t, brokers)
	p := newPublisher(t, cl, "i-1")
	t0 := time.Now().Truncate(time.Millisecond)
	clock := newFakeClock(t0)

	old := sig("orders", "old", lagmonitor.LevelCritical)
	old.IssuedAt, old.TTL = t0.Add(-time.Minute), 15*time.Second // expired when read
	if _, err := p.Publish(ctx(t), old); err != nil {
		t.Fatal(err)
	}
	live := sig("orders", "g", lagmonitor.LevelHigh)
	live.IssuedAt, live.TTL = t0, 15*time.Second
	if _, err := p.Publish(ctx(t), live); err != nil {
		t.Fatal(err)
	}

	r := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadClock(clock.now))
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Accepted != 1 || st.Expired != 1 || st.Live != 1 {
		t.Errorf("at t0: %+v; want 1 accepted, 1 expired (read expired), 1 live", st)
	}
	if got := seqs(r.Signals("orders", t0.Add(-time.Minute))); !slices.Equal(got, []string{"g/i-1:2"}) {
		t.Errorf("an expired signal was kept: signals at its issue time %v", got)
	}
	if got := seqs(r.Signals("orders", t0.Add(15*time.Second-time.Millisecond))); !slices.Equal(got, []string{"g/i-1:2"}) {
		t.Errorf("just before its TTL: %v", got)
	}
	if got := r.Signals("orders", t0.Add(15*time.Second)); got != nil {
		t.Errorf("at its TTL: %v; want none (fail-open)", seqs(got))
	}
	clock.add(16 * time.Second)
	if st := r.Stats(); st.Expired != 2 || st.Live != 0 {
		t.Errorf("past the TTL: expired %d live %d; want 2 and 0", st.Expired, st.Live)
	}
}

// waitClosed fails the test unless ch is closed within 15s.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatalf("Changed not closed within 15s after %s", what)
	}
}

func TestReaderChanged(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	cl := publishClient(t, brokers)
	p := newPublisher(t, cl, "i-1")
	t0 := time.Now().Truncate(time.Millisecond)
	clock := newFakeClock(t0)
	r := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadClock(clock.now))
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	ch := r.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before anything changed")
	default:
	}

	// A signal accepted closes it; the next call returns a new one.
	s := sig("orders", "g", lagmonitor.LevelHigh)
	s.IssuedAt, s.TTL = t0, 15*time.Second
	if _, err := p.Publish(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ch, "a signal accepted")
	if lvl := r.Pressure("orders", clock.now()).Level; lvl != lagmonitor.LevelHigh {
		t.Fatalf("after the change, level %v; want high", lvl)
	}
	ch = r.Changed()
	select {
	case <-ch:
		t.Fatal("the next Changed is already closed")
	default:
	}

	// A tombstone that removes a signal closes it.
	if err := p.Tombstone(ctx(t), "orders", "i-1", "g"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ch, "a tombstone")
	if lvl := r.Pressure("orders", clock.now()).Level; lvl != lagmonitor.LevelOK {
		t.Fatalf("after the tombstone, level %v; want ok", lvl)
	}

	// A signal expiring closes it, as the reader notices (Stats sweeps).
	s.IssuedAt = t0
	if _, err := p.Publish(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	waitSignals(t, r, "orders", clock.now, "g/i-1:3") // the tombstone took seq 2
	ch = r.Changed()
	clock.add(16 * time.Second)
	r.Stats()
	waitClosed(t, ch, "a signal expired")
}

// rawProducer produces records to ctl as they are given, partitioned as a
// publisher would.
func rawProducer(t *testing.T, brokers []string) func(r *kgo.Record) {
	cl := publishClient(t, brokers)
	return func(r *kgo.Record) {
		t.Helper()
		r.Topic = ctl
		if err := cl.ProduceSync(ctx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReaderRejects(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	produce := rawProducer(t, brokers)
	signer := mustSigner(t, "k1", keyA)
	now := time.Now()
	record := func(seq uint64, mutate func(*lagmonitor.Signal)) *kgo.Record {
		s := sig("orders", "g", lagmonitor.LevelHigh)
		s.Instance, s.Seq, s.IssuedAt = "i-1", seq, now
		if mutate != nil {
			mutate(&s)
		}
		k, v, err := lagmonitor.Encode(&s)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: ctl, Key: k, Value: v}
	}
	signed := func(r *kgo.Record) *kgo.Record { r.Topic = ctl; signer.Sign(r); return r }

	var mu sync.Mutex
	var reasons []lagmonitor.RejectReason
	r := newReader(t, brokers, []string{"orders"},
		lagmonitor.ReadVerifier(mustVerifier(t, true, map[string][]byte{"k1": keyA})),
		lagmonitor.ReadOnReject(func(rj lagmonitor.Rejection) {
			mu.Lock()
			defer mu.Unlock()
			reasons = append(reasons, rj.Reason)
			if rj.Err == nil || len(rj.Key) == 0 {
				t.Errorf("rejection without error or key: %+v", rj)
			}
		}))
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}

	first := signed(record(5, nil))
	produce(first)                                                                             // accepted
	produce(record(6, nil))                                                                    // unauthenticated: unsigned
	produce(func() *kgo.Record { r := signed(record(7, nil)); r.Value[10]++; return r }())     // unauthenticated: forged
	produce(&kgo.Record{Key: first.Key, Value: first.Value, Headers: first.Headers})           // replayed: the same record again
	produce(signed(record(4, nil)))                                                            // replayed: an older seq
	produce(signed(&kgo.Record{Key: first.Key, Value: []byte(`{"version":1}`)}))               // malformed
	produce(signed(&kgo.Record{Key: []byte("no-slashes"), Value: first.Value}))                // malformed key
	produce(signed(record(8, func(s *lagmonitor.Signal) { s.IssuedAt = now.Add(time.Hour) }))) // future
	produce(&kgo.Record{Key: first.Key})                                                       // unauthenticated: unsigned tombstone
	last := signed(record(9, func(s *lagmonitor.Signal) { s.Level = lagmonitor.LevelCritical }))
	produce(last) // accepted

	waitSignals(t, r, "orders", time.Now, "g/i-1:9")
	st := r.Stats()
	if st.Read != 10 || st.Accepted != 2 || st.Unauthenticated != 3 || st.Replayed != 2 || st.Malformed != 2 || st.Future != 1 || st.Tombstones != 0 {
		t.Errorf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []lagmonitor.RejectReason{"unauthenticated", "unauthenticated", "replayed", "replayed", "malformed", "malformed", "future", "unauthenticated"}
	if !slices.Equal(reasons, want) {
		t.Errorf("rejections reported %v, want %v", reasons, want)
	}
}

func TestReaderRejectHookPanics(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	produce := rawProducer(t, brokers)
	produce(&kgo.Record{Key: []byte("bad"), Value: []byte("{}")})
	r := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadOnReject(func(lagmonitor.Rejection) { panic("boom") }))
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the hook's panic was not reported as the last error", func() bool {
		err := r.Stats().LastError
		return err != nil && strings.Contains(err.Error(), "boom")
	})
	if st := r.Stats(); st.Malformed != 1 {
		t.Errorf("malformed %d, want 1", st.Malformed)
	}
}

func TestReaderRestartedInstanceIsNotReplay(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	cl := publishClient(t, brokers)
	r := newReader(t, brokers, []string{"orders"})
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	first := newPublisher(t, cl, lagmonitor.NewInstanceID("svc"))
	for range 3 {
		if _, err := first.Publish(ctx(t), sig("orders", "g", lagmonitor.LevelHigh)); err != nil {
			t.Fatal(err)
		}
	}
	// The process restarts: a new id, sequences from 1 again.
	second := newPublisher(t, cl, lagmonitor.NewInstanceID("svc"))
	if _, err := second.Publish(ctx(t), sig("orders", "g", lagmonitor.LevelCritical)); err != nil {
		t.Fatal(err)
	}
	if err := first.Tombstone(ctx(t), "orders", first.Instance(), "g"); err != nil {
		t.Fatal(err)
	}
	waitSignals(t, r, "orders", time.Now, "g/"+second.Instance()+":1")
	if st := r.Stats(); st.Replayed != 0 || st.Accepted != 4 {
		t.Errorf("replayed %d accepted %d; want 0 and 4", st.Replayed, st.Accepted)
	}
}

func TestReaderTombstoneThenReplay(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	produce := rawProducer(t, brokers)
	s := sig("orders", "g", lagmonitor.LevelCritical)
	s.Instance, s.Seq, s.IssuedAt = "i-1", 3, time.Now()
	k, v, err := lagmonitor.Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(t, brokers, []string{"orders"})
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	produce(&kgo.Record{Key: k, Value: v})
	produce(&kgo.Record{Key: k}) // tombstone
	produce(&kgo.Record{Key: k, Value: v})
	testkit.Eventually(t, 10*time.Second, "three records read", func() bool { return r.Stats().Read == 3 })
	if got := r.Signals("orders", time.Now()); got != nil {
		t.Errorf("the signal replayed after its tombstone came back: %v", seqs(got))
	}
	if st := r.Stats(); st.Replayed != 1 {
		t.Errorf("replayed %d, want 1", st.Replayed)
	}
}

func TestReaderMissingControlTopic(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1)
	var reported atomic.Int64
	r := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadMetadataInterval(50*time.Millisecond),
		lagmonitor.ReadOnError(func(err error) {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				reported.Add(1)
			}
		}))
	err := r.Start(ctx(t))
	if !errors.Is(err, kerr.UnknownTopicOrPartition) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Start without a control topic: %v", err)
	}
	if st := r.Stats(); st.CaughtUp || !errors.Is(st.LastError, kerr.UnknownTopicOrPartition) || st.Errors == 0 || reported.Load() == 0 {
		t.Errorf("stats %+v, %d reported: want the missing topic counted and reported", st, reported.Load())
	}
	// The topic appears: the reader finds it and follows it.
	cl := publishClient(t, brokers)
	if _, err := lagmonitor.EnsureControlTopic(ctx(t), cl, ctl, 4, time.Minute); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, cl, "i-1")
	if _, err := p.Publish(ctx(t), sig("orders", "g", lagmonitor.LevelHigh)); err != nil {
		t.Fatal(err)
	}
	waitSignals(t, r, "orders", time.Now, "g/i-1:1")
	if !r.Stats().CaughtUp {
		t.Error("not caught up once the topic exists")
	}
}

func TestReaderNotAuthorized(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, ctl),
		kfake.EnableSASL(), kfake.Superuser("PLAIN", "admin", "admin"), kfake.EnableACLs(),
		kfake.User("PLAIN", "producer", "pw", kfake.ACL{ // may describe the cluster, not read the control topic
			Resource: kmsg.ACLResourceTypeCluster, Name: "kafka-cluster", Pattern: kmsg.ACLResourcePatternTypeLiteral,
			Operation: kmsg.ACLOperationDescribe, Allow: true,
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sasl := kgo.SASL(plain.Auth{User: "producer", Pass: "pw"}.AsMechanism())
	r := newReader(t, c.ListenAddrs(), []string{"orders"}, lagmonitor.ReadKgoOpts(sasl))
	err = r.Start(ctx(t))
	if !errors.Is(err, kerr.TopicAuthorizationFailed) || !strings.Contains(err.Error(), "needs DESCRIBE and READ on topic") {
		t.Fatalf("Start without rights: %v", err)
	}
	if st := r.Stats(); !errors.Is(st.LastError, kerr.TopicAuthorizationFailed) || st.CaughtUp {
		t.Errorf("stats %+v", st)
	}
	r.Close()

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), sasl)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	_, err = lagmonitor.EnsureControlTopic(ctx(t), cl, "other-control", 1, time.Minute)
	if !errors.Is(err, kerr.TopicAuthorizationFailed) && !errors.Is(err, kerr.ClusterAuthorizationFailed) || !strings.Contains(err.Error(), "needs CREATE on topic") {
		t.Errorf("EnsureControlTopic without rights: %v", err)
	}
}

func TestReaderStartupTimeout(t *testing.T) {
	c, brokers := controlTopic(t, 1)
	cl := publishClient(t, brokers)
	p := newPublisher(t, cl, "i-1")
	if _, err := p.Publish(ctx(t), sig("orders", "g", lagmonitor.LevelHigh)); err != nil {
		t.Fatal(err)
	}
	// Every fetch fails (retriably) until the test lets them through.
	var block atomic.Bool
	block.Store(true)
	testkit.FailFetches(c, &block)

	r := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadStartupTimeout(300*time.Millisecond))
	err := r.Start(ctx(t))
	if !errors.Is(err, lagmonitor.ErrStartupTimeout) {
		t.Fatalf("Start with fetches failing: %v, want ErrStartupTimeout", err)
	}
	if st := r.Stats(); st.CaughtUp || !errors.Is(st.LastError, lagmonitor.ErrStartupTimeout) || r.Signals("orders", time.Now()) != nil {
		t.Errorf("after the timeout: %+v", st)
	}
	block.Store(false)
	waitSignals(t, r, "orders", time.Now, "g/i-1:1")
	if !r.Stats().CaughtUp {
		t.Error("not caught up once fetches work")
	}
}

func TestReaderFollowsNewPartitions(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	topic := topicInPartition(t, 8, func(p int32) bool { return p != 0 })
	cl := publishClient(t, brokers, kgo.MetadataMinAge(10*time.Millisecond))
	p := newPublisher(t, cl, "i-1")
	r := newReader(t, brokers, []string{topic}, lagmonitor.ReadMetadataInterval(50*time.Millisecond))
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx(t), sig(topic, "g", lagmonitor.LevelHigh)); err != nil {
		t.Fatal(err)
	}
	waitSignals(t, r, topic, time.Now, "g/i-1:1")
	if _, err := kadm.NewClient(cl).CreatePartitions(ctx(t), 7, ctl); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the publisher's client never saw 8 partitions", func() bool {
		leader, _, err := cl.PartitionLeader(ctl, 7)
		if err != nil || leader < 0 {
			cl.ForceMetadataRefresh()
			return false
		}
		return true
	})
	if _, err := p.Publish(ctx(t), sig(topic, "g", lagmonitor.LevelCritical)); err != nil {
		t.Fatal(err)
	}
	waitSignals(t, r, topic, time.Now, "g/i-1:2")
	if got, want := r.Stats().Partitions, []int32{0, lagmonitor.PartitionFor(topic, 8)}; !reflect.DeepEqual(got, want) {
		t.Errorf("partitions read %v, want %v (the old one kept, the new one added)", got, want)
	}
}

func TestReaderConfig(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1)
	for name, c := range map[string]struct {
		seeds  []string
		topics []string
		opts   []lagmonitor.ReaderOpt
	}{
		"no seeds":           {nil, []string{"orders"}, nil},
		"no topics":          {brokers, nil, nil},
		"illegal topic":      {brokers, []string{"a b"}, nil},
		"nil clock":          {brokers, []string{"orders"}, []lagmonitor.ReaderOpt{lagmonitor.ReadClock(nil)}},
		"zero timeout":       {brokers, []string{"orders"}, []lagmonitor.ReaderOpt{lagmonitor.ReadStartupTimeout(0)}},
		"negative lookback":  {brokers, []string{"orders"}, []lagmonitor.ReaderOpt{lagmonitor.ReadLookback(-time.Second)}},
		"negative skew":      {brokers, []string{"orders"}, []lagmonitor.ReaderOpt{lagmonitor.ReadMaxClockSkew(-time.Second)}},
		"zero meta interval": {brokers, []string{"orders"}, []lagmonitor.ReaderOpt{lagmonitor.ReadMetadataInterval(0)}},
		"consumer group":     {brokers, []string{"orders"}, []lagmonitor.ReaderOpt{lagmonitor.ReadKgoOpts(kgo.ConsumerGroup("g"))}},
		"consume topics":     {brokers, []string{"orders"}, []lagmonitor.ReaderOpt{lagmonitor.ReadKgoOpts(kgo.ConsumeTopics(ctl))}},
	} {
		if _, err := lagmonitor.NewReader(c.seeds, ctl, c.topics, c.opts...); !errors.Is(err, lagmonitor.ErrInvalidConfig) {
			t.Errorf("%s: NewReader returned %v, want ErrInvalidConfig", name, err)
		}
	}
	r := newReader(t, brokers, []string{"orders", "orders", "audit"})
	if got := r.Topics(); !slices.Equal(got, []string{"audit", "orders"}) {
		t.Errorf("topics %v", got)
	}
	r.Close()
	r.Close()
	if err := r.Start(ctx(t)); !errors.Is(err, lagmonitor.ErrReaderClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	_, brokers = controlTopic(t, 1)
	r = newReader(t, brokers, []string{"orders"})
	if err := r.Start(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx(t)); !errors.Is(err, lagmonitor.ErrReaderClosed) {
		t.Errorf("second Start: %v", err)
	}
}

func TestReaderLookback(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	produce := rawProducer(t, brokers)
	now := time.Now()
	for i, age := range []time.Duration{10 * time.Minute, 5 * time.Minute, time.Second} {
		s := sig("orders", "g", lagmonitor.LevelHigh)
		s.Instance, s.Seq, s.IssuedAt, s.TTL = fmt.Sprintf("i-%d", i), 1, now.Add(-age), lagmonitor.MaxTTL
		k, v, err := lagmonitor.Encode(&s)
		if err != nil {
			t.Fatal(err)
		}
		produce(&kgo.Record{Key: k, Value: v, Timestamp: now.Add(-age)})
	}
	for _, c := range []struct {
		lookback time.Duration
		want     []string
	}{
		{lagmonitor.DefaultLookback, []string{"g/i-2:1"}},
		{6 * time.Minute, []string{"g/i-1:1", "g/i-2:1"}},
		{0, []string{"g/i-0:1", "g/i-1:1", "g/i-2:1"}},
	} {
		r := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadLookback(c.lookback), lagmonitor.ReadMaxTTL(lagmonitor.MaxTTL))
		if err := r.Start(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if got := seqs(r.Signals("orders", now)); !slices.Equal(got, c.want) {
			t.Errorf("lookback %v: signals %v, want %v", c.lookback, got, c.want)
		}
		if st := r.Stats(); st.Read != uint64(len(c.want)) {
			t.Errorf("lookback %v: read %d records, want %d", c.lookback, st.Read, len(c.want))
		}
		r.Close()
	}
}

func TestReaderCloseDuringStart(t *testing.T) {
	c, brokers := controlTopic(t, 1)
	cl := publishClient(t, brokers)
	if _, err := newPublisher(t, cl, "i-1").Publish(ctx(t), sig("orders", "g", lagmonitor.LevelHigh)); err != nil {
		t.Fatal(err)
	}
	// Every fetch fails (kfake drops the connection), so that Start
	// waits for the end offsets until Close.
	fetched := make(chan struct{}, 1)
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case fetched <- struct{}{}:
		default:
		}
		return nil, errors.New("fetch refused"), true
	})
	r := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadStartupTimeout(time.Minute))
	errc := make(chan error, 1)
	go func() { errc <- r.Start(context.Background()) }()
	select {
	case <-fetched:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader did not fetch within 10s")
	}
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, lagmonitor.ErrReaderClosed) {
			t.Errorf("Start interrupted by Close: %v, want ErrReaderClosed", err)
		}
	case <-time.After(30 * time.Second): // well below the startup timeout
		t.Fatal("Start did not return within 30s of Close")
	}
}
