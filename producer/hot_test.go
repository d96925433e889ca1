package producer_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/kpart"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

// keyFor returns a key that murmur2 puts in partition p of n.
func keyFor(p int32, n int, salt string) []byte {
	for i := 0; ; i++ {
		k := fmt.Appendf(nil, "%s-%d", salt, i)
		if kpart.Murmur2(k, n) == p {
			return k
		}
	}
}

// TestHotPartitionHeldApart: a consumer that handles partition 0 of four
// slowly while the others keep up. Its monitor names partition 0 hot
// (high) over a rest at ok; a pressure-aware producer then sheds the
// bulk records bound for partition 0 (keyed: it computes their partition
// as kgo's partitioner will) and admits those bound for the other
// partitions. Unkeyed bulk records, whose partition it cannot know, are
// shed by the topic's worst level; with SteerUnkeyed they are admitted
// by the rest's level and land on the other partitions.
func TestHotPartitionHeldApart(t *testing.T) {
	const topic, control, n = "orders", "floodgate.pressure", 4
	_, brokers := testkit.Cluster(t, n, topic)
	gate := make(chan struct{})
	defer close(gate)
	var slow atomic.Bool
	slow.Store(true)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Partition == 0 && slow.Load() {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("billing"), consumer.Topics(topic),
		consumer.KgoOpts(lagmonitor.ClientOpts(control)...))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, rt)
	mon, err := lagmonitor.New(rt, lagmonitor.Config{Group: "billing", ControlTopic: control,
		Thresholds: lagmonitor.Thresholds{Elevated: lagmonitor.Mark{TimeLag: 300 * time.Millisecond}, High: lagmonitor.Mark{TimeLag: time.Second},
			Critical: lagmonitor.Mark{TimeLag: time.Hour}, ExitFraction: 0.5, Dwell: time.Second},
		EvalInterval: 50 * time.Millisecond, Heartbeat: 500 * time.Millisecond, TTL: 5 * time.Second, RefreshInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	monDone := make(chan error, 1)
	go func() { monDone <- mon.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-monDone; err != nil {
			t.Error(err)
		}
	}()
	start := func(opts ...producer.Opt) *producer.Producer {
		p, err := producer.New(append([]producer.Opt{producer.Brokers(brokers...), producer.ControlTopic(control), producer.Topics(topic),
			producer.MaxWait(50 * time.Millisecond), producer.Measure(200*time.Millisecond, time.Second)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		if err := p.Start(sctx); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain, steered := start(), start(producer.SteerUnkeyed())
	// Traffic on every partition; partition 0's falls behind.
	for i := range 20 {
		for p := int32(0); p < n; p++ {
			rec := &kgo.Record{Topic: topic, Key: keyFor(p, n, fmt.Sprint("warm", i))}
			if err := plain.ProduceSync(producer.WithClass(context.Background(), priority.Critical), rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	testkit.Eventually(t, time.Minute, "both producers to see partition 0 hot at high over a rest at ok", func() bool {
		for _, p := range []*producer.Producer{plain, steered} {
			ts := p.Stats().Topics[0]
			if len(ts.Hot) != 1 || ts.Hot[0].Partition != 0 || ts.Hot[0].Level != lagmonitor.LevelHigh || ts.RestLevel != lagmonitor.LevelOK {
				return false
			}
		}
		return true
	})
	bulk := producer.WithClass(context.Background(), priority.Bulk)
	produce := func(p *producer.Producer, key []byte) (int32, error) {
		res := p.ProduceSync(bulk, &kgo.Record{Topic: topic, Key: key, Value: []byte("v")})
		return res[0].Record.Partition, res[0].Err
	}
	if _, err := produce(plain, keyFor(0, n, "hot")); !errors.Is(err, producer.ErrShed) {
		t.Errorf("a bulk record bound for the hot partition: %v, want shed (its level is high)", err)
	}
	for p := int32(1); p < n; p++ {
		if got, err := produce(plain, keyFor(p, n, "cool")); err != nil || got != p {
			t.Errorf("a bulk record bound for partition %d: partition %d, %v; want admitted (the rest is at ok)", p, got, err)
		}
	}
	if _, err := produce(plain, nil); !errors.Is(err, producer.ErrShed) {
		t.Errorf("an unkeyed bulk record without steering: %v, want shed by the topic's worst level", err)
	}
	for range 20 {
		if got, err := produce(steered, nil); err != nil || got == 0 {
			t.Fatalf("an unkeyed bulk record, steered: partition %d, %v; want admitted, not on the hot partition 0", got, err)
		}
	}
	slow.Store(false)
}
