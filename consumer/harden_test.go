package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/partition"
)

// logCapture is a kgo.Logger keeping the runtime's own lines (those that
// start with "floodgate:") at warn level and above.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (*logCapture) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l *logCapture) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if !strings.HasPrefix(msg, "floodgate:") {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%s %s %v", level, msg, keyvals))
}

// find returns the first line containing all of subs, or "".
func (l *logCapture) find(subs ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		return line
	}
	return ""
}

// commitChecker fails the test when an offset is committed past a record
// the ledger never saw reach a terminal state (handled). Topics here have
// contiguous offsets from 0.
type commitChecker struct {
	t      *testing.T
	ledger *testkit.Ledger
	mu     sync.Mutex
	last   map[int32]int64
}

func newCommitChecker(t *testing.T, l *testkit.Ledger) *commitChecker {
	return &commitChecker{t: t, ledger: l, last: map[int32]int64{}}
}

func (c *commitChecker) OnCommit(offsets map[string]map[int32]kgo.EpochOffset, err error) {
	for topic, ps := range offsets {
		for p, eo := range ps {
			if prefix := c.ledger.HandledPrefix(topic, p); eo.Offset > prefix {
				c.t.Errorf("committed %s[%d]@%d, but offset %d was never handled", topic, p, eo.Offset, prefix)
			}
			if err == nil {
				c.mu.Lock()
				c.last[p] = eo.Offset
				c.mu.Unlock()
			}
		}
	}
}

func (c *commitChecker) committed(p int32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last[p]
}

// stuckLog is a HookStuck recording what it was told.
type stuckLog struct {
	mu  sync.Mutex
	all []consumer.StuckRecord
}

func (s *stuckLog) OnStuck(r consumer.StuckRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, r)
}

func (s *stuckLog) get() []consumer.StuckRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]consumer.StuckRecord(nil), s.all...)
}

// partStats returns the stats of one partition, if owned.
func partStats(rt *consumer.Runtime, topic string, p int32) (consumer.PartitionStats, bool) {
	for _, ps := range rt.Stats().Partitions {
		if ps.Topic == topic && ps.Partition == p {
			return ps, true
		}
	}
	return consumer.PartitionStats{}, false
}

// TestRewrapSkipsNothing: a wrapped runtime stopped with records queued
// leaves the client at its first record not yet handled, so that a second
// runtime wrapping the same client handles every record and never commits
// past one it did not handle.
func TestRewrapSkipsNothing(t *testing.T) {
	const n = 1000
	_, brokers := testkit.Cluster(t, 1, "rw")
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "rw", n, 10, 10))
	checker := newCommitChecker(t, ledger)
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("rw"), kgo.ConsumeTopics("rw"),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}, consumer.GroupOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var handledA atomic.Int64
	a, err := consumer.Wrap(cl, func(ctx context.Context, r *kgo.Record) error {
		time.Sleep(time.Millisecond) // slow: the window fills while it works
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		handledA.Add(1)
		return nil
	}, consumer.WithOrdering(consumer.OrderKey), consumer.MaxConcurrency(2),
		consumer.PartitionMaxRecords(400), consumer.WithHooks(checker))
	if err != nil {
		t.Fatal(err)
	}
	stopA := run(t, a)
	testkit.Eventually(t, time.Minute, "runtime A to handle 50 records", func() bool { return handledA.Load() >= 50 })
	stopA()
	if _, handled := ledger.Progress(); handled == n {
		t.Fatal("runtime A handled everything before it stopped: the test did not leave records queued")
	}

	b, err := consumer.Wrap(cl, func(ctx context.Context, r *kgo.Record) error {
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.CommitInterval(20*time.Millisecond), consumer.WithHooks(checker))
	if err != nil {
		t.Fatalf("wrapping the client again: %v", err)
	}
	stopB := run(t, b)
	ledger.WaitAll(t, time.Minute)
	testkit.Eventually(t, time.Minute, "runtime B to commit the end of the partition", func() bool { return checker.committed(0) == n })
	stopB()
}

// TestStuckRecordBoundsSpan: in key and no ordering a record that keeps
// failing lets the records behind it complete, but the partition stops
// admitting once the span from it to the newest admitted record reaches
// PartitionMaxSpan, and the stuck record is reported.
func TestStuckRecordBoundsSpan(t *testing.T) {
	for _, mode := range []consumer.Ordering{consumer.OrderKey, consumer.OrderNone} {
		t.Run(mode.String(), func(t *testing.T) {
			const n, maxRecs, maxSpan = 20_000, 100, 1000
			_, brokers := testkit.Cluster(t, 1, "st")
			ledger := testkit.NewLedger(testkit.Produce(t, brokers, "st", n, 100, 10))
			checker := newCommitChecker(t, ledger)
			stuck := &stuckLog{}
			logs := &logCapture{}
			var fixed atomic.Bool
			var handled atomic.Int64
			rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
				if r.Offset == 0 && !fixed.Load() {
					return errors.New("offset 0 keeps failing")
				}
				ledger.Handled(r.Topic, r.Partition, r.Offset)
				handled.Add(1)
				return nil
			}, consumer.Brokers(brokers...), consumer.Group("st"), consumer.Topics("st"),
				consumer.WithOrdering(mode), consumer.PartitionMaxRecords(maxRecs), consumer.PartitionMaxSpan(maxSpan),
				consumer.RetryBackoff(time.Millisecond, 5*time.Millisecond), consumer.CommitInterval(20*time.Millisecond),
				consumer.WithHooks(stuck, checker), consumer.KgoOpts(kgo.WithLogger(logs)))
			if err != nil {
				t.Fatal(err)
			}
			stop := run(t, rt)
			var ps consumer.PartitionStats
			testkit.Eventually(t, time.Minute, "the partition to pause for span_full", func() bool {
				var ok bool
				ps, ok = partStats(rt, "st", 0)
				return ok && ps.Paused.Has(partition.SpanFull)
			})
			if ps.Span > maxSpan {
				t.Fatalf("span %d > PartitionMaxSpan %d", ps.Span, maxSpan)
			}
			if h := handled.Load(); h >= maxSpan {
				t.Fatalf("%d records handled behind a stuck offset 0: more than the span bound %d", h, maxSpan)
			}
			if s := ps.Stuck; s == nil || s.Offset != 0 || s.Attempts < 1 || s.Err == nil || s.Reason != partition.SpanFull {
				t.Fatalf("Stats.Stuck = %+v, want offset 0 with its attempts and error", s)
			}
			if got := stuck.get(); len(got) == 0 || got[0].Offset != 0 || got[0].Topic != "st" {
				t.Fatalf("HookStuck got %+v, want the record at offset 0", got)
			}
			if line := logs.find("WARN", "PartitionMaxSpan", "offset 0"); line == "" {
				t.Fatalf("nothing logged at warn about the stuck record; got %q", logs.lines)
			}
			if c := checker.committed(0); c != 0 {
				t.Fatalf("committed offset %d past the stuck record", c)
			}
			fixed.Store(true)
			ledger.WaitAll(t, time.Minute)
			testkit.Eventually(t, time.Minute, "the commit to reach the end", func() bool { return checker.committed(0) == n })
			stop()
		})
	}
}

// failRouter records what it is asked and diverts to a topic.
type failRouter struct {
	to     string
	mu     sync.Mutex
	failed []error
}

func (*failRouter) Due(*kgo.Record) time.Time { return time.Time{} }

func (f *failRouter) Failed(r *kgo.Record, _ int, err error) consumer.Decision {
	f.mu.Lock()
	f.failed = append(f.failed, err)
	f.mu.Unlock()
	return consumer.Decision{Divert: &kgo.Record{Topic: f.to, Value: r.Value}}
}

func (*failRouter) Undeliverable(_, _ *kgo.Record, _ error) *kgo.Record { return nil }

// TestCancelledHandlerNotRouted: a handler that returns its cancelled
// context's error at shutdown is aborted, not handed to the router (which
// would divert it to a retry tier while the next owner handles it too).
func TestCancelledHandlerNotRouted(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "cx", "cx-retry")
	testkit.Produce(t, brokers, "cx", 1, 1, 1)
	router := &failRouter{to: "cx-retry"}
	started := make(chan struct{})
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}, consumer.Brokers(brokers...), consumer.Group("cx"), consumer.Topics("cx"),
		consumer.WithRouter(router), consumer.ShutdownTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("the handler never ran")
	}
	stop()
	router.mu.Lock()
	defer router.mu.Unlock()
	if len(router.failed) != 0 {
		t.Fatalf("the router was asked about %d failures (%v) of a record aborted by shutdown", len(router.failed), router.failed)
	}
	if s := rt.Stats(); s.Diverted != 0 {
		t.Fatalf("%d records diverted at shutdown", s.Diverted)
	}
}
