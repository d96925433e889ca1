package consumer_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/partition"
)

// fallbackRouter diverts every failed record to first; when that cannot
// succeed it answers with a copy for fallback (once), then nothing.
type fallbackRouter struct {
	first, fallback string
	mu              sync.Mutex
	asked           []error
}

func (*fallbackRouter) Due(*kgo.Record) time.Time { return time.Time{} }

func (f *fallbackRouter) Failed(r *kgo.Record, _ int, _ error) consumer.Decision {
	return consumer.Decision{Divert: &kgo.Record{Topic: f.first, Key: r.Key, Value: r.Value}}
}

func (f *fallbackRouter) Undeliverable(r, failed *kgo.Record, err error) *kgo.Record {
	f.mu.Lock()
	f.asked = append(f.asked, err)
	f.mu.Unlock()
	if f.fallback == "" || failed.Topic == f.fallback {
		return nil
	}
	return &kgo.Record{Topic: f.fallback, Key: r.Key, Value: []byte("trimmed")}
}

func (f *fallbackRouter) errs() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.asked...)
}

func newCluster(t *testing.T, topics map[string]map[string]string) (*kfake.Cluster, []string) {
	t.Helper()
	c, brokers := testkit.Cluster(t, 1)
	for name, cfg := range topics {
		if err := c.CreateTopic(name, 1, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return c, brokers
}

// TestDivertTooLargeFallsBack: a divert its topic refuses for good
// (MESSAGE_TOO_LARGE) is not retried forever: the router's replacement is
// produced instead and the record reaches its terminal state.
func TestDivertTooLargeFallsBack(t *testing.T) {
	_, brokers := newCluster(t, map[string]map[string]string{
		"src": nil, "small": {"max.message.bytes": "2000"}, "fallback": nil,
	})
	big := make([]byte, 8000)
	p := testkit.NewProducer(t, brokers)
	if err := p.Client().ProduceSync(context.Background(), &kgo.Record{Topic: "src", Value: big}, &kgo.Record{Topic: "src", Value: []byte("ok")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	router := &fallbackRouter{first: "small", fallback: "fallback"}
	commits := &commitLog{}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if len(r.Value) > 100 {
			return errors.New("too big to handle")
		}
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("src"),
		consumer.WithRouter(router), consumer.WithHooks(commits),
		consumer.CommitInterval(20*time.Millisecond), consumer.RetryBackoff(time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, time.Minute, "the commit to pass both records", func() bool { return commits.get(0) == 2 })
	stop()
	errs := router.errs()
	if len(errs) != 1 || !errors.Is(errs[0], kerr.MessageTooLarge) {
		t.Fatalf("Undeliverable asked %d times with %v, want once with MESSAGE_TOO_LARGE", len(errs), errs)
	}
	got := testkit.ReadTopic(t, brokers, "fallback", 1, 30*time.Second)
	if string(got[0].Value) != "trimmed" {
		t.Fatalf("fallback topic holds %q", got[0].Value)
	}
}

// TestDivertUndeliverablePausesLoudly: when the router has nothing else to
// try, the partition pauses (divert_failed), the record is reported as
// stuck and logged at error level, nothing is committed past it; once the
// cause is fixed the retried produce succeeds and the partition goes on.
func TestDivertUndeliverablePausesLoudly(t *testing.T) {
	c, brokers := newCluster(t, map[string]map[string]string{"src": nil, "dlq": nil})
	const n = 50
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "src", n, 5, 10))
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "dlq", Err: kerr.TopicAuthorizationFailed, Count: -1})
	router := &fallbackRouter{first: "dlq"}
	commits, stuck, logs := &commitLog{}, &stuckLog{}, &logCapture{}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset == 10 {
			return errors.New("fails")
		}
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("src"),
		consumer.WithRouter(router), consumer.WithHooks(commits, stuck),
		consumer.CommitInterval(20*time.Millisecond), consumer.RetryBackoff(time.Millisecond, 100*time.Millisecond),
		consumer.KgoOpts(kgo.WithLogger(logs)))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	var ps consumer.PartitionStats
	testkit.Eventually(t, time.Minute, "the partition to pause for divert_failed", func() bool {
		var ok bool
		ps, ok = partStats(rt, "src", 0)
		return ok && ps.Paused.Has(partition.DivertFailed)
	})
	if s := ps.Stuck; s == nil || s.Offset != 10 || s.DivertTopic != "dlq" || !errors.Is(s.Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("Stats.Stuck = %+v, want offset 10 diverting to dlq with TOPIC_AUTHORIZATION_FAILED", ps.Stuck)
	}
	if got := stuck.get(); len(got) == 0 || got[0].Reason != partition.DivertFailed || got[0].Offset != 10 {
		t.Fatalf("HookStuck got %+v", got)
	}
	if logs.find("ERROR", "cannot be moved", "TOPIC_AUTHORIZATION_FAILED") == "" {
		t.Fatalf("the undeliverable divert was not logged at error level; logged %q", logs.lines)
	}
	testkit.Eventually(t, time.Minute, "a commit up to the stuck record", func() bool { return commits.get(0) >= 10 })
	if got := commits.get(0); got != 10 {
		t.Fatalf("committed %d past the record whose divert failed", got)
	}
	fault.Remove()
	testkit.Eventually(t, time.Minute, "the partition to resume and the commit to reach the end", func() bool {
		ps, _ := partStats(rt, "src", 0)
		return commits.get(0) == n && !ps.Paused.Has(partition.DivertFailed)
	})
	stop()
	if got := testkit.ReadTopic(t, brokers, "dlq", 1, 30*time.Second); len(got) != 1 {
		t.Fatalf("dlq holds %d records", len(got))
	}
}

// TestDivertLargeRecordFitsTopic: a client built by New produces a record
// of 1,010,000 bytes (above kgo's default batch cap, within the topic's
// max.message.bytes of 1,048,588) to the divert topic.
func TestDivertLargeRecordFitsTopic(t *testing.T) {
	_, brokers := newCluster(t, map[string]map[string]string{"src": nil, "dlq": nil})
	p, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchMaxBytes(2<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	big := make([]byte, 1_010_000)
	if err := p.ProduceSync(context.Background(), &kgo.Record{Topic: "src", Value: big}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	router := &fallbackRouter{first: "dlq"}
	commits := &commitLog{}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error { return errors.New("fails") },
		consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("src"),
		consumer.WithRouter(router), consumer.WithHooks(commits), consumer.CommitInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, time.Minute, "the large record diverted and committed", func() bool { return commits.get(0) == 1 })
	stop()
	if errs := router.errs(); len(errs) != 0 {
		t.Fatalf("the divert was refused: %v", errs)
	}
}

// TestDivertBatchTooLargeRetried: the broker refuses a whole batch with
// MESSAGE_TOO_LARGE when small records batched together pass the topic's
// limit (a wrapped client keeps kgo's default batch cap, above this
// topic's); each record alone fits, so it is retried, not given up.
func TestDivertBatchTooLargeRetried(t *testing.T) {
	const n = 60
	_, brokers := newCluster(t, map[string]map[string]string{"src": nil, "small": {"max.message.bytes": "1200"}})
	testkit.Produce(t, brokers, "src", n, n, 200)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("src"),
		kgo.ProducerLinger(20 * time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression())}, consumer.GroupOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	router := &fallbackRouter{first: "small"}
	commits := &commitLog{}
	// Every handler fails at the same moment, so that the diverts are
	// batched together.
	var arrived atomic.Int64
	all := make(chan struct{})
	rt, err := consumer.Wrap(cl, func(context.Context, *kgo.Record) error {
		if arrived.Add(1) == n {
			close(all)
		}
		<-all
		return errors.New("fails")
	},
		consumer.WithRouter(router), consumer.WithHooks(commits), consumer.WithOrdering(consumer.OrderNone),
		consumer.MaxConcurrency(n), consumer.CommitInterval(20*time.Millisecond), consumer.RetryBackoff(time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, time.Minute, "every record diverted and committed", func() bool { return commits.get(0) == n })
	stop()
	if errs := router.errs(); len(errs) != 0 {
		t.Fatalf("Undeliverable asked %d times (%v) about records that each fit the topic", len(errs), errs[0])
	}
	if got := testkit.ReadTopic(t, brokers, "small", n, 30*time.Second); len(got) != n {
		t.Fatalf("small holds %d records, want %d", len(got), n)
	}
}
