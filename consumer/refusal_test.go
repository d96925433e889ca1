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

// TestRefusalsStayRare: with producer batches well below the window, a
// partition pauses before a fetch would overflow its window, so records are
// almost never refused (each refusal rewinds the client, restarting the
// fetch session for every partition). Only the first fetches, made before
// the runtime knows the record size, may overflow.
func TestRefusalsStayRare(t *testing.T) {
	const n, parts, window = 40_000, 8, 1000
	_, brokers := testkit.Cluster(t, parts, "rr")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(16<<10), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 200)
	for i := 0; i < n; i++ {
		cl.Produce(context.Background(), &kgo.Record{Topic: "rr", Key: fmt.Appendf(nil, "k%d", i%100), Value: value}, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	var handled atomic.Int64
	pc := &testkit.PauseCounter{}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset%4 == 0 {
			time.Sleep(100 * time.Microsecond) // slow enough to fill the windows
		}
		handled.Add(1)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("rr"), consumer.Topics("rr"),
		consumer.PartitionMaxRecords(window), consumer.MaxConcurrency(4), consumer.WithHooks(pc))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	testkit.Eventually(t, 2*time.Minute, "every record handled", func() bool { return handled.Load() >= n })
	stop()
	s := rt.Stats()
	t.Logf("pauses=%d session_restarts=%d refetched=%d", pc.Paused.Load(), s.SessionRestarts, s.Refetched)
	if pc.Paused.Load() < 3*parts {
		t.Fatalf("only %d pauses: the windows never filled, the test exercised nothing", pc.Paused.Load())
	}
	if s.SessionRestarts > 3 {
		t.Fatalf("%d session restarts for %d pauses: windows overflowed instead of pausing first", s.SessionRestarts, pc.Paused.Load())
	}
}
