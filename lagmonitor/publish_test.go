package lagmonitor_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
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

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

const ctl = "floodgate-control"

// publishClient returns a client that can publish to ctl, closed when the
// test ends.
func publishClient(t testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(lagmonitor.Partitioner(ctl, nil))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// controlTopic creates ctl with n partitions on a fresh kfake cluster.
func controlTopic(t testing.TB, n int32) (*kfake.Cluster, []string) {
	t.Helper()
	c, brokers := testkit.Cluster(t, 1)
	cl := publishClient(t, brokers)
	if _, err := lagmonitor.EnsureControlTopic(ctx(t), cl, ctl, n, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return c, brokers
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func newPublisher(t testing.TB, cl *kgo.Client, instance string, opts ...lagmonitor.PublisherOpt) *lagmonitor.Publisher {
	t.Helper()
	p, err := lagmonitor.NewPublisher(cl, ctl, instance, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sig returns a valid signal for topic and group, to be stamped by a
// publisher. Its TTL is far longer than any wait in the tests, so that no
// signal leaves by expiring where a test expects a tombstone or a newer
// signal to replace it.
func sig(topic, group string, lvl lagmonitor.Level) lagmonitor.Signal {
	return lagmonitor.Signal{Topic: topic, Group: group, Level: lvl, OffsetLag: 10, DrainRate: 5, TTL: 10 * time.Minute}
}

func TestPublishPartitionsByTopic(t *testing.T) {
	const parts = 8
	_, brokers := controlTopic(t, parts)
	cl := publishClient(t, brokers)
	p1, p2 := newPublisher(t, cl, "i-1"), newPublisher(t, cl, "i-2")
	topics := []string{"orders", "payments", "audit", "clicks", "users", "mail"}
	var sent []lagmonitor.Signal
	for round := 0; round < 2; round++ {
		for _, topic := range topics {
			for _, p := range []*lagmonitor.Publisher{p1, p2} {
				s, err := p.Publish(ctx(t), sig(topic, "g", lagmonitor.LevelElevated))
				if err != nil {
					t.Fatal(err)
				}
				sent = append(sent, s)
			}
		}
	}
	for i, s := range sent[:4] { // i-1, i-2, i-1, i-2 on the first two topics
		if want := uint64(i/2 + 1); s.Seq != want || s.Version != lagmonitor.SignalVersion || s.IssuedAt.IsZero() {
			t.Errorf("signal %d stamped seq %d version %d issued %v, want seq %d", i, s.Seq, s.Version, s.IssuedAt, want)
		}
	}
	spread := map[int32]bool{}
	for i, r := range testkit.ReadTopic(t, brokers, ctl, len(sent), 30*time.Second) {
		got, tomb, err := lagmonitor.Decode(r.Key, r.Value)
		if err != nil || tomb {
			t.Fatalf("record %d: %v (tombstone %v)", i, err, tomb)
		}
		if want := lagmonitor.PartitionFor(got.Topic, parts); r.Partition != want {
			t.Errorf("signal for %s in partition %d, PartitionFor says %d", got.Topic, r.Partition, want)
		}
		spread[r.Partition] = true
		found := false
		for _, s := range sent {
			if s.Instance == got.Instance && s.Seq == got.Seq {
				found = reflect.DeepEqual(s.Topic, got.Topic) && s.Level == got.Level && s.IssuedAt.UnixMilli() == got.IssuedAt.UnixMilli()
			}
		}
		if !found {
			t.Errorf("record %d decodes to %+v, which was not published", i, got)
		}
	}
	if len(spread) < 2 {
		t.Errorf("%d topics all in one partition of %d: the test shows nothing", len(topics), parts)
	}
}

func TestPublisherNeedsPartitioner(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1)
	plain, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	other, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner("other-control", nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for name, cl := range map[string]*kgo.Client{"default partitioner": plain, "partitioner for another topic": other, "nil client": nil} {
		if _, err := lagmonitor.NewPublisher(cl, ctl, "i-1"); !errors.Is(err, lagmonitor.ErrInvalidConfig) {
			t.Errorf("%s: NewPublisher returned %v, want ErrInvalidConfig", name, err)
		}
	}
	good := publishClient(t, brokers)
	for _, c := range []struct {
		name, topic, instance string
		opts                  []lagmonitor.PublisherOpt
	}{
		{"illegal control topic", "bad topic", "i-1", nil},
		{"instance with /", ctl, "i/1", nil},
		{"timeout 0", ctl, "i-1", []lagmonitor.PublisherOpt{lagmonitor.PublishTimeout(0)}},
		{"nil clock", ctl, "i-1", []lagmonitor.PublisherOpt{lagmonitor.PublishClock(nil)}},
	} {
		if _, err := lagmonitor.NewPublisher(good, c.topic, c.instance, c.opts...); !errors.Is(err, lagmonitor.ErrInvalidConfig) {
			t.Errorf("%s: NewPublisher returned %v, want ErrInvalidConfig", c.name, err)
		}
	}
}

func TestPublishSignedAndTombstone(t *testing.T) {
	_, brokers := controlTopic(t, 4)
	cl := publishClient(t, brokers)
	signer := mustSigner(t, "k1", keyA)
	at := time.UnixMilli(1_767_225_600_000)
	p := newPublisher(t, cl, "i-1", lagmonitor.PublishSigner(signer), lagmonitor.PublishClock(func() time.Time { return at }))
	s, err := p.Publish(ctx(t), sig("orders", "g", lagmonitor.LevelCritical))
	if err != nil {
		t.Fatal(err)
	}
	if !s.IssuedAt.Equal(at) {
		t.Errorf("IssuedAt %v, want the publisher's clock %v", s.IssuedAt, at)
	}
	if err := p.Tombstone(ctx(t), "orders", "i-1", "g"); err != nil {
		t.Fatal(err)
	}
	rs := testkit.ReadTopic(t, brokers, ctl, 2, 30*time.Second)
	v := mustVerifier(t, true, map[string][]byte{"k1": keyA})
	for _, r := range rs {
		if err := v.Verify(r); err != nil {
			t.Errorf("offset %d: %v", r.Offset, err)
		}
	}
	if rs[1].Value != nil || string(rs[1].Key) != "orders/i-1/g" {
		t.Errorf("tombstone record: key %q value %q", rs[1].Key, rs[1].Value)
	}
	if rs[0].Partition != rs[1].Partition {
		t.Errorf("tombstone in partition %d, its signal in %d", rs[1].Partition, rs[0].Partition)
	}
}

func TestPublishRefuses(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	cl := publishClient(t, brokers)
	p := newPublisher(t, cl, "i-1")
	bad := sig("orders", "g", lagmonitor.LevelOK)
	bad.OffsetLag = -1
	if _, err := p.Publish(ctx(t), bad); !errors.Is(err, lagmonitor.ErrInvalidSignal) {
		t.Errorf("negative lag: %v, want ErrInvalidSignal", err)
	}
	other := sig("orders", "g", lagmonitor.LevelOK)
	other.Instance = "i-2"
	if _, err := p.Publish(ctx(t), other); !errors.Is(err, lagmonitor.ErrInvalidSignal) {
		t.Errorf("another instance's signal: %v, want ErrInvalidSignal", err)
	}
	if err := p.Tombstone(ctx(t), "orders", "i/2", "g"); !errors.Is(err, lagmonitor.ErrInvalidSignal) {
		t.Errorf("tombstone for an instance with '/': %v, want ErrInvalidSignal", err)
	}
	s, err := p.Publish(ctx(t), sig("orders", "g", lagmonitor.LevelOK))
	if err != nil {
		t.Fatal(err)
	}
	if s.Seq <= 1 {
		// Gaps are allowed; what matters is that nothing refused was
		// written: the topic holds exactly one record.
		t.Logf("seq %d", s.Seq)
	}
	end, err := kadm.NewClient(cl).ListEndOffsets(ctx(t), ctl)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := end.Lookup(ctl, 0); o.Offset != 1 {
		t.Errorf("control topic end offset %d, want 1: a refused signal was written", o.Offset)
	}
}

func TestPublishFollowsNewPartitions(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	cl := publishClient(t, brokers)
	p := newPublisher(t, cl, "i-1")
	topic := topicInPartition(t, 8, func(p int32) bool { return p != 0 })
	if _, err := p.Publish(ctx(t), sig(topic, "g", lagmonitor.LevelHigh)); err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(cl).CreatePartitions(ctx(t), 7, ctl); err != nil {
		t.Fatal(err)
	}
	cl.ForceMetadataRefresh()
	testkit.Eventually(t, 30*time.Second, "the client's metadata never showed the control topic's 8th partition", func() bool {
		leader, _, err := cl.PartitionLeader(ctl, 7)
		if err != nil || leader < 0 {
			cl.ForceMetadataRefresh()
			return false
		}
		return true
	})
	if _, err := p.Publish(ctx(t), sig(topic, "g", lagmonitor.LevelHigh)); err != nil {
		t.Fatal(err)
	}
	rs := testkit.ReadTopic(t, brokers, ctl, 2, 30*time.Second)
	parts := map[int64]int32{}
	for _, r := range rs {
		s, _, err := lagmonitor.Decode(r.Key, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		parts[int64(s.Seq)] = r.Partition
	}
	if parts[1] != 0 || parts[2] != lagmonitor.PartitionFor(topic, 8) {
		t.Errorf("seq 1 in partition %d (want 0 of 1), seq 2 in %d (want %d of 8)", parts[1], parts[2], lagmonitor.PartitionFor(topic, 8))
	}
}

// topicInPartition returns a topic name whose signals go to a partition
// of n that ok accepts.
func topicInPartition(t testing.TB, n int, ok func(int32) bool) string {
	t.Helper()
	for i := range 1000 {
		topic := fmt.Sprintf("topic-%d", i)
		if ok(lagmonitor.PartitionFor(topic, n)) {
			return topic
		}
	}
	t.Fatal("no topic name found")
	return ""
}

func TestEnsureControlTopic(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1)
	cl := publishClient(t, brokers)
	st, err := lagmonitor.EnsureControlTopic(ctx(t), cl, ctl, 6, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cleanup.policy": "compact,delete", "retention.ms": "80000", "segment.ms": "60000", "message.timestamp.type": "LogAppendTime"}
	if !st.Created || st.Partitions != 6 || !reflect.DeepEqual(st.Configs, want) || len(st.Warnings) != 0 {
		t.Errorf("creating: %+v", st)
	}
	again, err := lagmonitor.EnsureControlTopic(ctx(t), cl, ctl, 12, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.Partitions != 6 || !reflect.DeepEqual(again.Configs, want) || len(again.Warnings) != 0 {
		t.Errorf("existing topic: %+v; want it found as created, unchanged", again)
	}

	// A topic made by someone else without compaction, and stamped by
	// its producers, is accepted, with a warning for each.
	resp, err := kadm.NewClient(cl).CreateTopic(ctx(t), 3, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}, "ctl-delete")
	if err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	st, err = lagmonitor.EnsureControlTopic(ctx(t), cl, "ctl-delete", 6, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if st.Created || st.Partitions != 3 || len(st.Warnings) != 2 || !strings.Contains(st.Warnings[0], "without compact") ||
		!strings.Contains(st.Warnings[1], "message.timestamp.type=CreateTime, not LogAppendTime") {
		t.Errorf("existing delete-only topic: %+v", st)
	}

	for name, args := range map[string]struct {
		topic string
		parts int32
		ttl   time.Duration
	}{"no partitions": {"c1", 0, time.Minute}, "no ttl": {"c1", 1, 0}, "ttl of a day": {"c1", 1, 24 * time.Hour}, "bad name": {"c 1", 1, time.Minute}} {
		if _, err := lagmonitor.EnsureControlTopic(ctx(t), cl, args.topic, args.parts, args.ttl); !errors.Is(err, lagmonitor.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

// hideControlTopic makes the broker answer UNKNOWN_TOPIC_OR_PARTITION to
// the first n lookups of ctl made once after() holds, as a broker whose
// metadata does not show a new topic yet; it returns the count of the
// lookups made once after() held.
func hideControlTopic(t *testing.T, c *kfake.Cluster, brokers []string, after func() bool, n int32) *atomic.Int32 {
	t.Helper()
	host, port, err := net.SplitHostPort(brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	nport, _ := strconv.Atoi(port)
	var lookups atomic.Int32
	c.ControlKey(int16(kmsg.Metadata), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.MetadataRequest)
		if len(req.Topics) != 1 || req.Topics[0].Topic == nil || *req.Topics[0].Topic != ctl || !after() || lookups.Add(1) > n {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = 0, host, int32(nport)
		resp.Brokers = append(resp.Brokers, b)
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic, rt.ErrorCode = kmsg.StringPtr(ctl), kerr.UnknownTopicOrPartition.Code
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	return &lookups
}

// TestEnsureControlTopicCreatedMeanwhile races another creator: the lookup
// finds no topic, the create fails with TOPIC_ALREADY_EXISTS, and the
// broker's metadata does not hold the new topic yet for one more lookup
// (what a real cluster answers when monitors start together).
// EnsureControlTopic waits for the topic instead of failing.
func TestEnsureControlTopicCreatedMeanwhile(t *testing.T) {
	c, brokers := testkit.Cluster(t, 4, ctl)
	lookups := hideControlTopic(t, c, brokers, func() bool { return true }, 2)
	st, err := lagmonitor.EnsureControlTopic(ctx(t), publishClient(t, brokers), ctl, 6, time.Minute)
	if err != nil {
		t.Fatalf("EnsureControlTopic: %v", err)
	}
	if st.Created || st.Partitions != 4 {
		t.Errorf("status %+v, want the topic found as the other client made it (4 partitions)", st)
	}
	if n := lookups.Load(); n < 3 {
		t.Errorf("%d lookups of the control topic, want the two refused and one more", n)
	}
}

// TestEnsureControlTopicServedWhenCreated: a broker may not serve a topic
// for a moment after creating it (the cause of a reader failing CI on
// Kafka 4.1.1 with UNKNOWN_TOPIC_OR_PARTITION right after the test made
// the topic). EnsureControlTopic returns once it is served, so that a
// reader started next finds it.
func TestEnsureControlTopicServedWhenCreated(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1)
	var created atomic.Bool
	c.ControlKey(int16(kmsg.CreateTopics), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		created.Store(true) // kfake creates it once this returns
		return nil, nil, false
	})
	lookups := hideControlTopic(t, c, brokers, created.Load, 2)
	st, err := lagmonitor.EnsureControlTopic(ctx(t), publishClient(t, brokers), ctl, 3, time.Minute)
	if err != nil {
		t.Fatalf("EnsureControlTopic: %v", err)
	}
	if !st.Created || st.Partitions != 3 {
		t.Errorf("status %+v, want the topic created with 3 partitions", st)
	}
	if n := lookups.Load(); n < 3 {
		t.Fatalf("%d lookups of the control topic after creating it, want the two refused and one that found it", n)
	}
	r, err := lagmonitor.NewReader(brokers, ctl, []string{"orders"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Start(ctx(t)); err != nil {
		t.Fatalf("a reader started after EnsureControlTopic: %v", err)
	}
}

// TestPublishBoundedWhileBrokerSilent: the broker takes the produce
// request and does not answer (as one that dies with it in flight). An
// idempotent client cannot fail a record it has sent, yet Publish and
// Tombstone return within their timeout, with DeadlineExceeded; once the
// broker answers, the signal it held is written after all.
func TestPublishBoundedWhileBrokerSilent(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, ctl)
	cl := publishClient(t, brokers)
	release := make(chan struct{})
	var held atomic.Int32
	testkit.OnProduceTo(t, c, ctl, func() *kerr.Error {
		held.Add(1)
		c.SleepControl(func() { <-release })
		return nil
	})
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	t.Cleanup(letGo)
	p := newPublisher(t, cl, "svc-1", lagmonitor.PublishTimeout(200*time.Millisecond))

	returned := func(what string, f func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s while the broker holds the request: %v, want an error wrapping context.DeadlineExceeded", what, err)
			}
		case <-time.After(30 * time.Second):
			letGo()
			t.Fatalf("%s did not return within 30s while the broker held its request (its timeout is 200ms)", what)
		}
	}
	returned("Publish", func() error {
		s := testSignal()
		s.Instance = ""
		_, err := p.Publish(ctx(t), s)
		return err
	})
	returned("Tombstone", func() error { return p.Tombstone(ctx(t), "orders", "svc-1", "billing") })
	if held.Load() == 0 {
		t.Fatal("no produce request reached the broker: the test held nothing")
	}
	letGo()
	// The signal was sent, so it is written once the broker answers; the
	// tombstone waited behind it in the client, which failed it.
	recs := testkit.ReadTopic(t, brokers, ctl, 1, 30*time.Second)
	if s, _, err := lagmonitor.Decode(recs[0].Key, recs[0].Value); err != nil || s.Seq != 1 {
		t.Errorf("after the broker answered: signal %d (%v), want signal 1 written after all", s.Seq, err)
	}
}

func TestEnsureControlTopicNotAuthorized(t *testing.T) {
	for _, code := range []*kerr.Error{kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed} {
		c, brokers := testkit.Cluster(t, 1)
		c.ControlKey(int16(kmsg.CreateTopics), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			req := kreq.(*kmsg.CreateTopicsRequest)
			resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
			for _, rt := range req.Topics {
				st := kmsg.NewCreateTopicsResponseTopic()
				st.Topic, st.ErrorCode = rt.Topic, code.Code
				resp.Topics = append(resp.Topics, st)
			}
			return resp, nil, true
		})
		cl := publishClient(t, brokers)
		_, err := lagmonitor.EnsureControlTopic(ctx(t), cl, ctl, 3, time.Minute)
		if !errors.Is(err, code) {
			t.Errorf("%s: EnsureControlTopic returned %v, want it wrapped", code.Message, err)
			continue
		}
		if !strings.Contains(err.Error(), "needs CREATE on topic") {
			t.Errorf("%s: the error does not name the ACL: %v", code.Message, err)
		}
	}
}

func TestNewInstanceID(t *testing.T) {
	a, b := lagmonitor.NewInstanceID("billing/eu west"), lagmonitor.NewInstanceID("billing/eu west")
	if a == b {
		t.Errorf("two incarnations got one id %q", a)
	}
	if !strings.HasPrefix(a, "billing_eu_west-") || strings.Contains(a, "/") {
		t.Errorf("id %q", a)
	}
	if !strings.HasPrefix(lagmonitor.NewInstanceID(""), "floodgate-") {
		t.Error("an empty prefix is not floodgate")
	}
	topic, inst, group, err := lagmonitor.ParseKey(lagmonitor.Key("orders", a, "g/1"))
	if err != nil || topic != "orders" || inst != a || group != "g/1" {
		t.Errorf("key of %q parses as %q %q %q %v", a, topic, inst, group, err)
	}
	s := testSignal()
	s.Instance = a
	if _, _, err := lagmonitor.Encode(&s); err != nil {
		t.Errorf("the id is not a valid instance: %v", err)
	}
}

// A tombstone of the publisher's own instance takes the next seq from the
// counter of its signals, and carries it and its issue time in headers
// (decimal text); one for another instance carries the issue time alone.
func TestPublishTombstoneSeq(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	cl := publishClient(t, brokers)
	at := time.UnixMilli(1_767_225_600_123)
	p := newPublisher(t, cl, "i-1", lagmonitor.PublishSigner(mustSigner(t, "k1", keyA)), lagmonitor.PublishClock(func() time.Time { return at }))
	for range 2 {
		if _, err := p.Publish(ctx(t), sig("orders", "g", lagmonitor.LevelHigh)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Tombstone(ctx(t), "orders", "i-1", "g"); err != nil {
		t.Fatal(err)
	}
	if err := p.Tombstone(ctx(t), "orders", "dead-7", "g"); err != nil {
		t.Fatal(err)
	}
	s, err := p.Publish(ctx(t), sig("orders", "g", lagmonitor.LevelHigh))
	if err != nil {
		t.Fatal(err)
	}
	if s.Seq != 4 {
		t.Errorf("the signal after the tombstone has seq %d, want 4 (the tombstone took 3)", s.Seq)
	}
	rs := testkit.ReadTopic(t, brokers, ctl, 5, 30*time.Second)
	for i, want := range []struct{ seq, at string }{{"3", "1767225600123"}, {"", "1767225600123"}} {
		r := rs[2+i]
		if r.Value != nil || header(r, lagmonitor.SeqHeader) != want.seq || header(r, lagmonitor.IssuedAtHeader) != want.at {
			t.Errorf("tombstone %d: value %q, headers %+v; want seq %q, issued at %s", i, r.Value, r.Headers, want.seq, want.at)
		}
		if v, err := mustVerifier(t, true, map[string][]byte{"k1": keyA}, lagmonitor.VerifyRequireV2()).VerifyVersion(r); v != 2 || err != nil {
			t.Errorf("tombstone %d: version %d, %v", i, v, err)
		}
		seq, issued, err := lagmonitor.ParseTombstoneHeaders(r.Headers)
		if err != nil || (seq == 3) != (i == 0) || !issued.Equal(at) {
			t.Errorf("tombstone %d parses to seq %d, issued %v, %v", i, seq, issued, err)
		}
	}
	bad := newPublisher(t, cl, "i-2", lagmonitor.PublishClock(func() time.Time { return time.Time{} }))
	if err := bad.Tombstone(ctx(t), "orders", "i-2", "g"); !errors.Is(err, lagmonitor.ErrInvalidSignal) {
		t.Errorf("a tombstone issued at the zero time: %v, want ErrInvalidSignal", err)
	}
}

func TestParseTombstoneHeaders(t *testing.T) {
	h := func(kv ...string) []kgo.RecordHeader {
		var hs []kgo.RecordHeader
		for i := 0; i < len(kv); i += 2 {
			hs = append(hs, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return hs
	}
	seq, at, err := lagmonitor.ParseTombstoneHeaders(h("other", "x", lagmonitor.SeqHeader, "9007199254740991", lagmonitor.IssuedAtHeader, "1767225600123"))
	if err != nil || seq != lagmonitor.MaxSafeInteger || at.UnixMilli() != 1767225600123 {
		t.Errorf("valid headers: %d %v %v", seq, at, err)
	}
	if seq, at, err := lagmonitor.ParseTombstoneHeaders(nil); seq != 0 || !at.IsZero() || err != nil {
		t.Errorf("no headers (an earlier release's tombstone): %d %v %v", seq, at, err)
	}
	for _, hs := range [][]kgo.RecordHeader{
		h(lagmonitor.SeqHeader, "0"), h(lagmonitor.SeqHeader, "-1"), h(lagmonitor.SeqHeader, "+1"), h(lagmonitor.SeqHeader, "01"),
		h(lagmonitor.SeqHeader, ""), h(lagmonitor.SeqHeader, "1e3"), h(lagmonitor.SeqHeader, "9007199254740992"),
		h(lagmonitor.SeqHeader, "1", lagmonitor.SeqHeader, "2"),
		h(lagmonitor.IssuedAtHeader, "1767225600"), h(lagmonitor.IssuedAtHeader, "17672256001230"), h(lagmonitor.IssuedAtHeader, " 1767225600123"),
		h(lagmonitor.IssuedAtHeader, "1767225600123", lagmonitor.IssuedAtHeader, "1767225600123"),
	} {
		if _, _, err := lagmonitor.ParseTombstoneHeaders(hs); !errors.Is(err, lagmonitor.ErrMalformed) {
			t.Errorf("%+v: %v, want ErrMalformed", hs, err)
		}
	}
}
