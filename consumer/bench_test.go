package consumer_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

// BenchmarkRuntimeVsRaw consumes the same pre-produced topic on the same
// broker, alternately with a raw franz-go poll loop and with the runtime
// (no-op handler), each pass with a fresh group, and reports the records/s
// and the CPU time per record of each, and the ratio of their rates. The
// broker runs in another process, so that its work is neither counted in
// this process's CPU time nor competes with the client inside one Go
// runtime: the cluster FLOODGATE_KAFKA_BROKERS names (real Kafka), or else
// kfake in a child process. A pass is timed from creating the client to
// handling the last record; the final commit and close are left out of
// both.
//
//	go test -run '^$' -bench RuntimeVsRaw -benchtime 5x ./consumer/
func BenchmarkRuntimeVsRaw(b *testing.B) {
	for _, mode := range []consumer.Ordering{consumer.OrderPartition, consumer.OrderKey, consumer.OrderNone} {
		b.Run("ordering="+mode.String(), func(b *testing.B) {
			const n, parts = 500_000, 8
			brokers, topic := benchTopic(b, parts)
			testkit.Produce(b, brokers, topic, n, 1000, 100)

			var raw, rt pass
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				raw.add(rawPass(b, brokers, topic, fmt.Sprintf("raw-%s-%d", topic, i), n))
				rt.add(runtimePass(b, brokers, topic, fmt.Sprintf("rt-%s-%d", topic, i), n, mode))
			}
			records := float64(n * b.N)
			b.ReportMetric(records/raw.wall.Seconds(), "raw-records/s")
			b.ReportMetric(records/rt.wall.Seconds(), "runtime-records/s")
			b.ReportMetric(raw.wall.Seconds()/rt.wall.Seconds(), "ratio")
			b.ReportMetric(float64(raw.cpu.Nanoseconds())/records, "raw-cpu-ns/record")
			b.ReportMetric(float64(rt.cpu.Nanoseconds())/records, "runtime-cpu-ns/record")
			b.ReportMetric(0, "ns/op") // a pass is not an op anyone compares
		})
	}
}

// pass sums the wall and CPU time of passes.
type pass struct{ wall, cpu time.Duration }

func (p *pass) add(q pass) { p.wall += q.wall; p.cpu += q.cpu }

// benchTopic returns the brokers and a new topic of parts partitions: on
// the cluster FLOODGATE_KAFKA_BROKERS names, or on kfake in a child
// process.
func benchTopic(b *testing.B, parts int32) (brokers []string, topic string) {
	env := os.Getenv("FLOODGATE_KAFKA_BROKERS")
	if env == "" {
		return testkit.ChildCluster(b, parts, "bench"), "bench"
	}
	brokers, topic = strings.Split(env, ","), fmt.Sprintf("bench-%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if resp, err := kadm.NewClient(cl).CreateTopic(ctx, parts, -1, nil, topic); err != nil || resp.Err != nil {
		b.Fatalf("creating %s: %v %v", topic, err, resp.Err)
	}
	return brokers, topic
}

// rawPass is what a franz-go user writes without floodgate: poll, handle
// each record inline, autocommit.
func rawPass(b *testing.B, brokers []string, topic, group string, n int) pass {
	start, cpu := time.Now(), testkit.CPUTime()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
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
	took := pass{time.Since(start), testkit.CPUTime() - cpu}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		b.Fatal(err)
	}
	return took
}

func runtimePass(b *testing.B, brokers []string, topic, group string, n int, mode consumer.Ordering) pass {
	start, cpu := time.Now(), testkit.CPUTime()
	var seen atomic.Int64
	done := make(chan struct{})
	rt, err := consumer.New(func(_ context.Context, r *kgo.Record) error {
		noop(r)
		if seen.Add(1) == int64(n) {
			close(done)
		}
		return nil
	}, consumer.Brokers(brokers...), consumer.Group(group), consumer.Topics(topic), consumer.WithOrdering(mode))
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
	took := pass{time.Since(start), testkit.CPUTime() - cpu}
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
