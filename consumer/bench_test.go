package consumer_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

// BenchmarkRuntimeVsRaw consumes the same pre-produced topic on the same
// kfake cluster, alternately with a raw franz-go poll loop and with the
// runtime (no-op handler), each pass with a fresh group, and reports the
// records/s of each and their ratio. Both run in this one process. A pass
// is timed from creating the client to handling the last record; the final
// commit and close are left out of both.
//
//	go test -run '^$' -bench RuntimeVsRaw -benchtime 5x ./consumer/
func BenchmarkRuntimeVsRaw(b *testing.B) {
	for _, mode := range []consumer.Ordering{consumer.OrderPartition, consumer.OrderKey, consumer.OrderNone} {
		b.Run("ordering="+mode.String(), func(b *testing.B) {
			const n, parts = 500_000, 8
			_, brokers := testkit.Cluster(b, parts, "bench")
			testkit.Produce(b, brokers, "bench", n, 1000, 100)

			var rawDur, rtDur time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rawDur += rawPass(b, brokers, fmt.Sprintf("raw-%d", i), n)
				rtDur += runtimePass(b, brokers, fmt.Sprintf("rt-%d", i), n, mode)
			}
			raw := float64(n*b.N) / rawDur.Seconds()
			rt := float64(n*b.N) / rtDur.Seconds()
			b.ReportMetric(raw, "raw-records/s")
			b.ReportMetric(rt, "runtime-records/s")
			b.ReportMetric(rt/raw, "ratio")
			b.ReportMetric(0, "ns/op") // a pass is not an op anyone compares
		})
	}
}

// rawPass is what a franz-go user writes without floodgate: poll, handle
// each record inline, autocommit.
func rawPass(b *testing.B, brokers []string, group string, n int) time.Duration {
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics("bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	seen := 0
	for seen < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("raw pass: %d of %d records: %v", seen, n, err)
		}
		fs.EachRecord(func(r *kgo.Record) { noop(r); seen++ })
	}
	took := time.Since(start)
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		b.Fatal(err)
	}
	return took
}

func runtimePass(b *testing.B, brokers []string, group string, n int, mode consumer.Ordering) time.Duration {
	start := time.Now()
	var seen atomic.Int64
	done := make(chan struct{})
	rt, err := consumer.New(func(_ context.Context, r *kgo.Record) error {
		noop(r)
		if seen.Add(1) == int64(n) {
			close(done)
		}
		return nil
	}, consumer.Brokers(brokers...), consumer.Group(group), consumer.Topics("bench"), consumer.WithOrdering(mode))
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(context.Background()) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("runtime pass: %d of %d records after 5m", seen.Load(), n)
	}
	took := time.Since(start)
	if err := rt.Close(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return took
}

var sink atomic.Int64

func noop(r *kgo.Record) { sink.Add(int64(len(r.Value))) }
