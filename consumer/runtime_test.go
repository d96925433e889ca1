package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

func TestMain(m *testing.M) {
	if crashChild() || testkit.ServeChildCluster() {
		return
	}
	goleak.VerifyTestMain(m)
}

// run is testkit.Run, short for the tests here.
func run(t *testing.T, rt *consumer.Runtime) func() { return testkit.Run(t, rt) }

// TestBurstStaysWithinBounds produces a 100k-record burst that a slow
// handler cannot keep up with and checks the bounds at every observation.
func TestBurstStaysWithinBounds(t *testing.T) {
	const (
		n           = 100_000
		parts       = 8
		maxRecs     = 200
		maxBytes    = 32 << 10
		maxBuffered = 128 << 10
		concurrency = 16
	)
	_, brokers := testkit.Cluster(t, parts, "burst")
	produced := testkit.Produce(t, brokers, "burst", n, 1000, 100)
	ledger := testkit.NewLedger(produced)

	var running, maxRunning atomic.Int64
	hooks := &testkit.PauseCounter{}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		cur := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if cur <= m || maxRunning.CompareAndSwap(m, cur) {
				break
			}
		}
		if r.Offset%50 == 0 {
			time.Sleep(time.Millisecond) // slow enough to fill the windows
		}
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	},
		consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("burst"),
		consumer.WithOrdering(consumer.OrderKey),
		consumer.MaxConcurrency(concurrency),
		consumer.PartitionMaxRecords(maxRecs),
		consumer.PartitionMaxBytes(maxBytes),
		consumer.MaxBufferedBytes(maxBuffered),
		consumer.CommitInterval(100*time.Millisecond),
		consumer.WithHooks(hooks),
	)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)

	// Observe the bounds until everything is handled.
	observations := 0
	done := make(chan struct{})
	go func() { ledger.WaitAll(t, 3*time.Minute); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		default:
		}
		s := rt.Stats()
		observations++
		if s.BufferedBytes > maxBuffered {
			t.Fatalf("buffered %d bytes > MaxBufferedBytes %d", s.BufferedBytes, maxBuffered)
		}
		if s.Running > concurrency {
			t.Fatalf("%d handlers running > MaxConcurrency %d", s.Running, concurrency)
		}
		for _, p := range s.Partitions {
			if p.InFlightRecords > maxRecs || p.InFlightBytes > maxBytes {
				t.Fatalf("partition %d: %d records / %d bytes in flight > %d / %d", p.Partition, p.InFlightRecords, p.InFlightBytes, maxRecs, maxBytes)
			}
		}
		time.Sleep(time.Millisecond) // the sampling period, not a synchronisation
	}
	stop()
	exp, handled, dups, extra := ledger.Counts()
	t.Logf("records=%d handled=%d duplicates=%d observations=%d pauses=%d resumes=%d refetched=%d maxRunning=%d",
		exp, handled, dups, observations, hooks.Paused.Load(), hooks.Resumed.Load(), hooks.Refetched.Load(), maxRunning.Load())
	if dups != 0 || extra != 0 {
		t.Fatalf("no failure injected, yet %d duplicates and %d unexpected records", dups, extra)
	}
	if hooks.Paused.Load() == 0 || hooks.Resumed.Load() == 0 {
		t.Fatalf("partitions never paused (%d) or resumed (%d) under a burst", hooks.Paused.Load(), hooks.Resumed.Load())
	}
	if maxRunning.Load() > concurrency {
		t.Fatalf("handler saw %d concurrent calls > %d", maxRunning.Load(), concurrency)
	}
}

// TestOrdering checks each ordering mode's promise and that it does allow
// the concurrency it promises.
func TestOrdering(t *testing.T) {
	for _, mode := range []consumer.Ordering{consumer.OrderPartition, consumer.OrderKey, consumer.OrderNone} {
		t.Run(mode.String(), func(t *testing.T) {
			const n, parts, keys = 6000, 3, 12
			_, brokers := testkit.Cluster(t, parts, "ord")
			produced := testkit.Produce(t, brokers, "ord", n, keys, 10)
			ledger := testkit.NewLedger(produced)

			type laneKey struct {
				p   int32
				key string
			}
			var (
				mu        sync.Mutex
				lastOff   = map[laneKey]int64{}
				active    = map[laneKey]int{}
				perPart   = map[int32]int{}
				maxInPart int
				violation error
			)
			lk := func(r *kgo.Record) laneKey {
				switch mode {
				case consumer.OrderPartition:
					return laneKey{p: r.Partition}
				case consumer.OrderKey:
					return laneKey{r.Partition, string(r.Key)}
				}
				return laneKey{r.Partition, fmt.Sprint(r.Offset)}
			}
			rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
				k := lk(r)
				mu.Lock()
				if last, ok := lastOff[k]; ok && r.Offset <= last && violation == nil {
					violation = fmt.Errorf("lane %v: offset %d handled after %d", k, r.Offset, last)
				}
				lastOff[k] = r.Offset
				active[k]++
				if active[k] > 1 && violation == nil {
					violation = fmt.Errorf("lane %v: %d records handled concurrently", k, active[k])
				}
				perPart[r.Partition]++
				maxInPart = max(maxInPart, perPart[r.Partition])
				mu.Unlock()
				if r.Offset%10 == 0 {
					time.Sleep(50 * time.Microsecond) // let other lanes overlap
				} else {
					runtime.Gosched()
				}
				mu.Lock()
				active[k]--
				perPart[r.Partition]--
				mu.Unlock()
				ledger.Handled(r.Topic, r.Partition, r.Offset)
				return nil
			},
				consumer.Brokers(brokers...), consumer.Group("g-"+mode.String()), consumer.Topics("ord"),
				consumer.WithOrdering(mode), consumer.MaxConcurrency(8),
				consumer.PartitionMaxRecords(300),
			)
			if err != nil {
				t.Fatal(err)
			}
			stop := run(t, rt)
			ledger.WaitAll(t, 2*time.Minute)
			stop()
			mu.Lock()
			defer mu.Unlock()
			if violation != nil {
				t.Fatal(violation)
			}
			switch {
			case mode == consumer.OrderPartition && maxInPart != 1:
				t.Fatalf("per-partition ordering ran %d records of one partition at once", maxInPart)
			case mode != consumer.OrderPartition && maxInPart < 2:
				t.Fatalf("%s ordering never ran two records of one partition at once", mode)
			}
			if _, _, dups, _ := ledger.Counts(); dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
		})
	}
}

// commitLog is a hook recording the highest committed offset per partition.
type commitLog struct {
	mu  sync.Mutex
	max map[int32]int64
}

func (c *commitLog) OnCommit(offsets map[string]map[int32]kgo.EpochOffset, err error) {
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max == nil {
		c.max = map[int32]int64{}
	}
	for _, ps := range offsets {
		for p, eo := range ps {
			c.max[p] = max(c.max[p], eo.Offset)
		}
	}
}

func (c *commitLog) get(p int32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max[p]
}

// TestFailuresRetriedInPlace checks that errors and panics are retried in
// place, that the partition waits, and that nothing at or after the failing
// record is committed until it succeeds.
func TestFailuresRetriedInPlace(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "fail")
	produced := testkit.Produce(t, brokers, "fail", 200, 10, 10)
	ledger := testkit.NewLedger(produced)
	const badOffset = 50
	var (
		attempts atomic.Int64
		commits  = &commitLog{}
		release  = make(chan struct{})
		badDone  atomic.Bool
		afterBad atomic.Bool
	)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset > badOffset && !badDone.Load() {
			afterBad.Store(true)
		}
		if r.Offset == badOffset {
			switch a := attempts.Add(1); {
			case a == 1:
				panic("boom")
			case a < 4:
				return errors.New("transient")
			case a == 4:
				<-release
			}
			badDone.Store(true)
		}
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	},
		consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("fail"),
		consumer.CommitInterval(20*time.Millisecond),
		consumer.RetryBackoff(time.Millisecond, 5*time.Millisecond),
		consumer.WithHooks(commits),
	)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, time.Minute, "the failing record's fourth attempt", func() bool { return attempts.Load() >= 4 })
	testkit.Eventually(t, time.Minute, "a commit up to the failing record", func() bool { return commits.get(0) >= badOffset })
	if w := commits.get(0); w != badOffset {
		t.Fatalf("committed %d while offset %d was failing", w, badOffset)
	}
	close(release)
	ledger.WaitAll(t, time.Minute)
	testkit.Eventually(t, time.Minute, "final commit", func() bool { return commits.get(0) == 200 })
	stop()
	if afterBad.Load() {
		t.Fatal("a record after the failing one was handled before it succeeded (per-partition order)")
	}
}

// TestGracefulStopCommitsEverything: after Run returns, a new member of the
// group sees nothing left to handle.
func TestGracefulStopCommitsEverything(t *testing.T) {
	_, brokers := testkit.Cluster(t, 4, "stop")
	produced := testkit.Produce(t, brokers, "stop", 2000, 10, 10)
	ledger := testkit.NewLedger(produced)
	mk := func() *consumer.Runtime {
		rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
			ledger.Handled(r.Topic, r.Partition, r.Offset)
			return nil
		}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("stop"), consumer.CommitInterval(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	rt := mk()
	stop := run(t, rt)
	ledger.WaitAll(t, time.Minute)
	stop()
	if err := rt.Close(); err != nil {
		t.Fatalf("Close after Run: %v", err)
	}
	// A second runtime must find every offset committed.
	more := testkit.Produce(t, brokers, "stop", 40, 10, 10)
	for _, r := range more {
		ledger.Expect(r.Topic, r.Partition, r.Offset)
	}
	rt2 := mk()
	stop2 := run(t, rt2)
	ledger.WaitAll(t, time.Minute)
	stop2()
	if _, _, dups, _ := ledger.Counts(); dups != 0 {
		t.Fatalf("graceful stop left %d records uncommitted (handled twice)", dups)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "c")
	testkit.Produce(t, brokers, "c", 1, 1, 1)
	handled := make(chan struct{}, 1)
	rt, err := consumer.New(func(context.Context, *kgo.Record) error {
		handled <- struct{}{}
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("c"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(ctx) }()
	select {
	case <-handled:
	case <-time.After(30 * time.Second):
		t.Fatal("no record handled within 30s")
	}
	if err := rt.Run(ctx); !errors.Is(err, consumer.ErrAlreadyRunning) {
		t.Fatalf("second Run = %v, want ErrAlreadyRunning", err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run after Close: %v", err)
	}
	if err := rt.Run(ctx); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestCloseBeforeRun(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "c")
	rt, err := consumer.New(func(context.Context, *kgo.Record) error { return nil },
		consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Run(context.Background()); !errors.Is(err, consumer.ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

// TestStatsKnowsReadCommitted: lag is measured against the last stable
// offset for a read_committed client, so the runtime must know it is one.
func TestStatsKnowsReadCommitted(t *testing.T) {
	for _, rc := range []bool{false, true} {
		opts := []consumer.Opt{consumer.Brokers("127.0.0.1:1"), consumer.Group("g"), consumer.Topics("t")}
		if rc {
			opts = append(opts, consumer.KgoOpts(kgo.FetchIsolationLevel(kgo.ReadCommitted())))
		}
		rt, err := consumer.New(func(context.Context, *kgo.Record) error { return nil }, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := rt.Stats().ReadCommitted; got != rc {
			t.Errorf("ReadCommitted = %v, want %v", got, rc)
		}
		rt.Close()
	}
}

// TestStatsForLag: what the lag monitor reads: the next record to complete
// and its timestamp, the end offsets the fetches saw, and the completions.
func TestStatsForLag(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "sl")
	produced := testkit.Produce(t, brokers, "sl", 100, 1, 10)
	release := make(chan struct{})
	var done atomic.Int64
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset == 10 {
			<-release
		}
		done.Add(1)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("sl"), consumer.Topics("sl"),
		consumer.WithOrdering(consumer.OrderNone))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, time.Minute, "all but offset 10 handled", func() bool { return done.Load() == 99 })
	ps, ok := partStats(rt, "sl", 0)
	if !ok {
		t.Fatal("no stats for sl[0]")
	}
	if ps.Next != 10 || !ps.OldestTimestamp.Equal(produced[10].Timestamp.Truncate(time.Millisecond)) {
		t.Errorf("Next %d OldestTimestamp %v, want 10 and %v", ps.Next, ps.OldestTimestamp, produced[10].Timestamp)
	}
	if ps.HighWatermark != 100 || ps.FetchedAt.IsZero() || ps.Completed != 99 {
		t.Errorf("HighWatermark %d FetchedAt %v Completed %d, want 100, set, 99", ps.HighWatermark, ps.FetchedAt, ps.Completed)
	}
	if got := rt.Assigned()["sl"]; len(got) != 1 || got[0] != 0 {
		t.Errorf("Assigned = %v", rt.Assigned())
	}
	close(release)
	testkit.Eventually(t, time.Minute, "the next record to complete to be the end", func() bool {
		ps, _ := partStats(rt, "sl", 0)
		return ps.Next == 100 && ps.OldestTimestamp.IsZero() && ps.Completed == 100
	})
	stop()
}

// TestOnStopRunsBeforeTheClientCloses: a part that produces with the
// runtime's client gets its last word in when Run stops.
func TestOnStopRunsBeforeTheClientCloses(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "os", "last")
	rt, err := consumer.New(func(context.Context, *kgo.Record) error { return nil },
		consumer.Brokers(brokers...), consumer.Group("os"), consumer.Topics("os"))
	if err != nil {
		t.Fatal(err)
	}
	var produced error = errors.New("OnStop never ran")
	rt.OnStop(func(ctx context.Context) {
		produced = rt.Client().ProduceSync(ctx, &kgo.Record{Topic: "last", Value: []byte("bye")}).FirstErr()
	})
	stop := run(t, rt)
	stop()
	if produced != nil {
		t.Fatalf("producing in OnStop: %v", produced)
	}
	if got := testkit.ReadTopic(t, brokers, "last", 1, 30*time.Second); string(got[0].Value) != "bye" {
		t.Fatalf("last holds %q", got[0].Value)
	}
}
