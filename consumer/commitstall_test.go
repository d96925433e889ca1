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

// TestFailingCommitsBoundExposure: while commits fail, a partition stops
// admitting once it completed MaxUncommitted records since its last
// successful commit; the failure shows in Stats and in the client's log,
// and everything goes on once commits succeed again.
func TestFailingCommitsBoundExposure(t *testing.T) {
	const n, bound, window = 20_000, 500, 100
	c, brokers := testkit.Cluster(t, 1, "cf")
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "cf", n, 10, 10))
	checker := newCommitChecker(t, ledger)
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Topic: "cf", Err: kerr.OffsetMetadataTooLarge, Count: -1})
	logs := &logCapture{}
	var handled atomic.Int64
	firstFail := &firstFailure{commitChecker: checker, handled: &handled, at: -1}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		handled.Add(1)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("cf"), consumer.Topics("cf"),
		consumer.PartitionMaxRecords(window), consumer.CommitInterval(20*time.Millisecond),
		consumer.MaxUncommitted(bound, time.Hour), consumer.WithHooks(firstFail),
		consumer.KgoOpts(kgo.WithLogger(logs)))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, time.Minute, "the partition to pause for commit_stalled", func() bool {
		ps, ok := partStats(rt, "cf", 0)
		return ok && ps.Paused.Has(partition.CommitStalled)
	})
	s := rt.Stats()
	if s.CommitErr == nil || !errors.Is(s.CommitErr, kerr.OffsetMetadataTooLarge) || s.CommitFailures == 0 {
		t.Fatalf("Stats: CommitErr %v, CommitFailures %d: the failing commits are not reported", s.CommitErr, s.CommitFailures)
	}
	if s.SinceCommit < 0 || s.LastCommit.IsZero() {
		t.Fatalf("Stats: LastCommit %v, SinceCommit %v", s.LastCommit, s.SinceCommit)
	}
	// The runtime learns that commits fail from the first failed commit
	// (one CommitInterval in): what was handled by then is not held to
	// the bound. The pause takes effect at the next poll or commit: at
	// most a window and a fetch beyond the bound, or beyond what was
	// handled at that first failure.
	atFail := firstFail.get()
	if atFail < 0 {
		t.Fatal("no failed commit reached the commit hook")
	}
	if h := handled.Load(); h > max(bound, atFail)+3*window {
		t.Fatalf("%d records handled while no commit succeeded (%d at the first failed commit): more than MaxUncommitted %d plus what was in flight", h, atFail, bound)
	}
	if line := logs.find("WARN", "commit failed", "OFFSET_METADATA_TOO_LARGE"); line == "" {
		t.Fatalf("the failing commit was not logged at warn; logged: %q", logs.lines)
	}
	fault.Remove()
	ledger.WaitAll(t, time.Minute)
	testkit.Eventually(t, time.Minute, "the commit to reach the end", func() bool { return checker.committed(0) == n })
	if s := rt.Stats(); s.CommitErr != nil {
		t.Fatalf("CommitErr still %v after commits succeed", s.CommitErr)
	}
	stop()
}

// firstFailure is a commitChecker that also notes how many records were
// handled when the first commit failed (-1: none failed yet).
type firstFailure struct {
	*commitChecker
	handled *atomic.Int64
	mu      sync.Mutex
	at      int64
}

func (f *firstFailure) OnCommit(offsets map[string]map[int32]kgo.EpochOffset, err error) {
	f.commitChecker.OnCommit(offsets, err)
	f.mu.Lock()
	if err != nil && f.at < 0 {
		f.at = f.handled.Load()
	}
	f.mu.Unlock()
}

func (f *firstFailure) get() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at
}

// holdCommits makes the cluster hold every OffsetCommit until release is
// closed (as a classic group's rebalance holds them).
func holdCommits(c *kfake.Cluster, release <-chan struct{}) {
	c.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
}

// TestHeldCommitsBoundExposure: commits that hang (neither succeed nor
// fail) pause a partition once its oldest uncommitted completion is older
// than the MaxUncommitted age.
func TestHeldCommitsBoundExposure(t *testing.T) {
	const n = 5000
	c, brokers := testkit.Cluster(t, 1, "ch")
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "ch", n, 10, 10))
	checker := newCommitChecker(t, ledger)
	release := make(chan struct{})
	var once atomic.Bool
	t.Cleanup(func() {
		if once.CompareAndSwap(false, true) {
			close(release)
		}
	})
	holdCommits(c, release)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		time.Sleep(100 * time.Microsecond)
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("ch"), consumer.Topics("ch"),
		consumer.PartitionMaxRecords(50), consumer.CommitInterval(50*time.Millisecond),
		consumer.CommitTimeout(time.Minute), consumer.MaxUncommitted(1_000_000, 300*time.Millisecond),
		consumer.WithHooks(checker))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, time.Minute, "the partition to pause for commit_stalled while its commit hangs", func() bool {
		ps, ok := partStats(rt, "ch", 0)
		return ok && ps.Paused.Has(partition.CommitStalled)
	})
	if _, h := ledger.Progress(); h == n {
		t.Fatal("everything was handled before the pause: the test did not exercise the bound")
	}
	once.Store(true)
	close(release)
	ledger.WaitAll(t, time.Minute)
	testkit.Eventually(t, time.Minute, "the commit to reach the end", func() bool { return checker.committed(0) == n })
	stop()
}

// TestStopBoundedWhileCommitsHang: a stop with no handler running returns
// within CommitTimeout and a few seconds even when every commit hangs.
func TestStopBoundedWhileCommitsHang(t *testing.T) {
	const commitTimeout = time.Second
	c, brokers := testkit.Cluster(t, 1, "sb")
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "sb", 100, 10, 10))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	holdCommits(c, release)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("sb"), consumer.Topics("sb"),
		consumer.CommitInterval(20*time.Millisecond), consumer.CommitTimeout(commitTimeout))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(ctx) }()
	ledger.WaitAll(t, time.Minute)
	testkit.Eventually(t, time.Minute, "a commit to be held", func() bool { return rt.Stats().SinceCommit > 2*commitTimeout })
	cancel()
	bound := commitTimeout + 10*time.Second
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(bound):
		t.Fatalf("Run did not return within %v of its context ending, with no handler running", bound)
	}
}
