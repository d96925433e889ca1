package consumer_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

// testRouter diverts failed records to divertTo and holds records until the
// Unix-ms time in their "due" header.
type testRouter struct {
	divertTo string
}

func (testRouter) Due(r *kgo.Record) time.Time {
	for _, h := range r.Headers {
		if h.Key == "due" {
			ms, _ := strconv.ParseInt(string(h.Value), 10, 64)
			return time.UnixMilli(ms)
		}
	}
	return time.Time{}
}

func (tr testRouter) Failed(r *kgo.Record, _ int, _ error) consumer.Decision {
	return consumer.Decision{Divert: &kgo.Record{Topic: tr.divertTo, Key: r.Key, Value: r.Value,
		Headers: []kgo.RecordHeader{{Key: "from-offset", Value: strconv.AppendInt(nil, r.Offset, 10)}}}}
}

func (testRouter) Undeliverable(_, _ *kgo.Record, _ error) *kgo.Record { return nil }

type divertLog struct {
	mu     sync.Mutex
	acked  int
	failed int
}

func (d *divertLog) OnRecordDiverted(_, _ *kgo.Record, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.failed++
	} else {
		d.acked++
	}
}

func (d *divertLog) counts() (acked, failed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acked, d.failed
}

// TestRouterDivertsUntilAcknowledged: failed records are produced to the
// divert topic; while that topic does not exist the produce fails and the
// commit stays before the first failed record; once it exists every failed
// record lands there and the commit reaches the end.
func TestRouterDivertsUntilAcknowledged(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, "src")
	const n = 100
	testkit.Produce(t, brokers, "src", n, 5, 10)
	var handled atomic.Int64
	dl, commits := &divertLog{}, &commitLog{}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset%10 == 3 {
			return errors.New("fails")
		}
		handled.Add(1)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("src"),
		consumer.WithRouter(testRouter{divertTo: "diverted"}), consumer.WithHooks(dl, commits),
		consumer.CommitInterval(20*time.Millisecond), consumer.RetryBackoff(10*time.Millisecond, 50*time.Millisecond),
		consumer.WithOrdering(consumer.OrderNone),
		consumer.KgoOpts(kgo.UnknownTopicRetries(0)),
	)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, time.Minute, "diverts to fail while the topic is missing", func() bool {
		_, failed := dl.counts()
		return failed >= 3 && handled.Load() == n-n/10
	})
	testkit.Eventually(t, time.Minute, "a commit up to the first failed record", func() bool { return commits.get(0) >= 3 })
	if got := commits.get(0); got != 3 {
		t.Fatalf("committed %d while the record at offset 3 was not diverted yet", got)
	}
	if err := c.CreateTopic("diverted", 1, nil); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "every failed record diverted and the commit at the end", func() bool {
		acked, _ := dl.counts()
		return acked == n/10 && commits.get(0) == n
	})
	stop()
	// The divert topic holds each failed record exactly once.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("diverted"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(seen) < n/10 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("divert topic holds %d distinct records, want %d", len(seen), n/10)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Headers[0].Value)]++ })
	}
	for off, k := range seen {
		if k != 1 {
			t.Fatalf("record from offset %s diverted %d times", off, k)
		}
	}
}

// TestRouterDueHoldsOnlyItsPartition: records of a "tier" topic are never
// handled before their due time, and while they wait the main topic flows.
func TestRouterDueHoldsOnlyItsPartition(t *testing.T) {
	_, brokers := testkit.Cluster(t, 2, "main", "tier")
	due := time.Now().Add(1500 * time.Millisecond)
	p := testkit.NewProducer(t, brokers)
	var tierRecs []*kgo.Record
	for i := 0; i < 20; i++ {
		tierRecs = append(tierRecs, &kgo.Record{Topic: "tier", Value: []byte("x"),
			Headers: []kgo.RecordHeader{{Key: "due", Value: strconv.AppendInt(nil, due.UnixMilli(), 10)}}})
	}
	if err := p.Client().ProduceSync(context.Background(), tierRecs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	mainRecs, err := p.Produce("main", 2000, 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	ledger := testkit.NewLedger(append(mainRecs, tierRecs...))
	var (
		mu        sync.Mutex
		early     []time.Duration
		lastMain  time.Time
		firstTier time.Time
	)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		now := time.Now()
		mu.Lock()
		if r.Topic == "tier" {
			if now.Before(due.Truncate(time.Millisecond)) {
				early = append(early, due.Sub(now))
			}
			if firstTier.IsZero() {
				firstTier = now
			}
		} else {
			lastMain = now
		}
		mu.Unlock()
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("main", "tier"),
		consumer.WithRouter(testRouter{divertTo: "unused"}))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	ledger.WaitAll(t, time.Minute)
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(early) > 0 {
		t.Fatalf("%d tier records handled before their due time, up to %v early", len(early), early[0])
	}
	if !lastMain.Before(firstTier) {
		t.Fatalf("main topic finished at %v, after the first tier record at %v: the wait blocked it", lastMain, firstTier)
	}
	t.Logf("main topic drained %v before the tier was due; first tier record handled %v after due",
		due.Sub(lastMain).Round(time.Millisecond), firstTier.Sub(due).Round(time.Millisecond))
}

// TestRouterDueAfterDrainedSpan: a partition whose first record not yet due
// comes when nothing else is pending, with a fetch estimate larger than
// its span (small windows, small records), still handles every record once
// it is due: the span has nothing pending to wait for, so it must not
// pause the partition (a pause no completion would lift).
func TestRouterDueAfterDrainedSpan(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "tier")
	due := time.Now().Add(time.Second)
	var recs []*kgo.Record
	for i := 0; i < 100; i++ {
		r := &kgo.Record{Topic: "tier", Value: []byte("0123456789")}
		if i >= 50 {
			r.Headers = []kgo.RecordHeader{{Key: "due", Value: strconv.AppendInt(nil, due.UnixMilli(), 10)}}
		}
		recs = append(recs, r)
	}
	if err := testkit.NewProducer(t, brokers).Client().ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ledger := testkit.NewLedger(recs)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("tier"),
		consumer.PartitionMaxRecords(10), consumer.WithRouter(testRouter{divertTo: "unused"}))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	defer stop()
	ledger.WaitAll(t, 30*time.Second)
}
