package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/partition"
	"github.com/floodgate-kafka/floodgate/producer"
)

// A floodgate producer's refusal is a downstream refusal as it is.
var _ consumer.Refusal = (*producer.RefusedError)(nil)

// TestRefusalIsPressureNotFailure: while the handler's downstream refuses
// its records for pressure, no record is handed to the router (diverted
// or quarantined) nor counted as a failure; the partitions pause with the
// reason DownstreamPressure, so that they stop fetching; once the
// downstream takes records again, every record is handled and the
// partitions resume.
func TestRefusalIsPressureNotFailure(t *testing.T) {
	_, brokers := testkit.Cluster(t, 2, "rf", "rf-retry")
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "rf", 400, 8, 10))
	var refusing atomic.Bool
	refusing.Store(true)
	var refused atomic.Int64
	router := &failRouter{to: "rf-retry"}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if refusing.Load() {
			refused.Add(1)
			return fmt.Errorf("calling the stock service: %w", consumer.Refused(errors.New("HTTP 503"), 20*time.Millisecond))
		}
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("rf"), consumer.Topics("rf"),
		consumer.PartitionMaxRecords(50), consumer.WithRouter(router))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	defer stop()

	held := func() bool {
		s := rt.Stats()
		if len(s.Partitions) != 2 {
			return false
		}
		for _, p := range s.Partitions {
			if !p.Paused.Has(partition.DownstreamPressure) || p.Refusing == 0 {
				return false
			}
		}
		return len(rt.Client().PauseFetchPartitions(nil)["rf"]) == 2
	}
	testkit.Eventually(t, 30*time.Second, "both partitions to pause for their downstream's refusals", held)
	// Refusals keep coming while the downstream refuses; the partitions
	// stay paused through them.
	for n := refused.Load(); refused.Load() < n+20; {
		if !held() {
			t.Fatalf("a partition resumed while its downstream refused: %+v", rt.Stats().Partitions)
		}
		time.Sleep(5 * time.Millisecond) // polling the refusals, not synchronising
	}
	s := rt.Stats()
	if s.Refusals == 0 || s.Failures != 0 || s.Diverted != 0 {
		t.Fatalf("while refused: refusals %d, failures %d, diverted %d; want refusals > 0, no failure, nothing diverted",
			s.Refusals, s.Failures, s.Diverted)
	}
	for _, p := range s.Partitions {
		if p.DownstreamLevel != 0 || p.LastRefusal.IsZero() {
			t.Fatalf("partition %d: downstream level %d, last refusal %v; want 0 (unsaid) and a time", p.Partition, p.DownstreamLevel, p.LastRefusal)
		}
	}

	refusing.Store(false)
	ledger.WaitAll(t, time.Minute)
	testkit.Eventually(t, 30*time.Second, "the partitions to resume", func() bool {
		for _, p := range rt.Stats().Partitions {
			if p.Paused.Has(partition.DownstreamPressure) || p.Refusing != 0 {
				return false
			}
		}
		return true
	})
	s = rt.Stats()
	router.mu.Lock()
	asked := len(router.failed)
	router.mu.Unlock()
	t.Logf("refused %d handler calls; stats: handled %d, refusals %d, failures %d", refused.Load(), s.Handled, s.Refusals, s.Failures)
	if asked != 0 || s.Failures != 0 || s.Diverted != 0 {
		t.Fatalf("the router was asked about %d records, %d failures, %d diverted: a refusal is not a failure", asked, s.Failures, s.Diverted)
	}
	if s.Refusals != uint64(refused.Load()) {
		t.Fatalf("Stats.Refusals %d, the handler refused %d times", s.Refusals, refused.Load())
	}
}

// TestRefusalThenFailure: a record refused and then failing is a failure
// from then on (routed as any), and its partition no longer waits on its
// downstream; a producer's refusal, wrapped, names its level.
func TestRefusalThenFailure(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "rff", "rff-retry")
	testkit.Produce(t, brokers, "rff", 1, 1, 1)
	var calls atomic.Int64
	levels := make(chan int, 1)
	router := &failRouter{to: "rff-retry"}
	var rt *consumer.Runtime
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		switch n := calls.Add(1); {
		case n == 1:
			return fmt.Errorf("producing the invoice: %w", &producer.RefusedError{Kind: producer.ErrShed,
				Decision: producer.Decision{Topic: "invoices", Level: lagmonitor.LevelHigh}, RetryAfter: time.Millisecond})
		case n == 2:
			p, _ := partStats(rt, "rff", 0)
			levels <- p.DownstreamLevel
			if p.Refusing != 1 || !p.Paused.Has(partition.DownstreamPressure) {
				return fmt.Errorf("on the retry after a refusal: refusing %d, paused %v", p.Refusing, p.Paused)
			}
			return errors.New("the invoice is malformed")
		}
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("rff"), consumer.Topics("rff"), consumer.WithRouter(router))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	defer stop()
	testkit.ReadTopic(t, brokers, "rff-retry", 1, time.Minute)
	select {
	case got := <-levels:
		if got != int(lagmonitor.LevelHigh) {
			t.Fatalf("a partition refused at %s reports downstream level %d", lagmonitor.LevelHigh, got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the refused record was not tried again within 30s")
	}
	router.mu.Lock()
	failed := router.failed
	router.mu.Unlock()
	if len(failed) != 1 || failed[0].Error() != "the invoice is malformed" {
		t.Fatalf("the router was asked about %v, want only the failure that followed the refusal", failed)
	}
	testkit.Eventually(t, 30*time.Second, "the partition to stop waiting on its downstream", func() bool {
		p, ok := partStats(rt, "rff", 0)
		return ok && p.Refusing == 0 && !p.Paused.Has(partition.DownstreamPressure)
	})
	if s := rt.Stats(); s.Refusals != 1 || s.Failures != 1 {
		t.Fatalf("refusals %d, failures %d; want 1 and 1", s.Refusals, s.Failures)
	}
}

// TestRefusedRecordSurvivesStop: a record refused until the runtime stops
// is aborted, not committed: the next runtime of the group handles it.
func TestRefusedRecordSurvivesStop(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "rfs")
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "rfs", 20, 1, 1))
	var refusedOnce atomic.Bool
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset == 10 {
			refusedOnce.Store(true)
			return consumer.Refused(errors.New("HTTP 429"), time.Hour) // capped at the retry backoff's max
		}
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("rfs"), consumer.Topics("rfs"),
		consumer.ShutdownTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, 30*time.Second, "offset 10 to be refused", refusedOnce.Load)
	stop()

	rt2, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("rfs"), consumer.Topics("rfs"))
	if err != nil {
		t.Fatal(err)
	}
	defer run(t, rt2)()
	ledger.WaitAll(t, time.Minute)
}

// TestRefusedWraps: Refused marks an error of one's own as a refusal that
// errors.Is still sees through; a plain error is not one.
func TestRefusedWraps(t *testing.T) {
	if err := consumer.Refused(nil, time.Second); err != nil {
		t.Fatalf("Refused(nil) = %v", err)
	}
	cause := errors.New("HTTP 503")
	err := fmt.Errorf("wrapped: %w", consumer.Refused(cause, 3*time.Second))
	r, ok := consumer.AsRefusal(err)
	if !ok || !errors.Is(err, cause) || r.RefusalRetryAfter() != 3*time.Second || r.RefusalLevel() != 0 {
		t.Fatalf("AsRefusal(%v) = %v, %v; errors.Is(cause) %v", err, r, ok, errors.Is(err, cause))
	}
	if _, ok := consumer.AsRefusal(cause); ok {
		t.Fatal("a plain error read as a refusal")
	}
}
