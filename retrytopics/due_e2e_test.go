package retrytopics_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// TestHostileDueDoesNotHoldTier: records written to a tier by a hostile
// producer, one due ten years ahead and one stamped ten years ahead, sit at
// the head of the tier partition; the genuine retries behind them are
// still handled, and so are the hostile records, each once its clamped due
// time has passed.
func TestHostileDueDoesNotHoldTier(t *testing.T) {
	brokers, p := setup(t, 1, retrytopics.Config{Group: "g", Topics: []string{"orders"},
		Tiers: []time.Duration{100 * time.Millisecond}, ClockSkew: 200 * time.Millisecond})
	tier := p.TierTopics("orders")[0]
	decade := 10 * 365 * 24 * time.Hour
	now := time.Now()
	hostile := func(key string, ts, due time.Time) *kgo.Record {
		return &kgo.Record{Topic: tier, Key: []byte(key), Timestamp: ts, Headers: retrytopics.Meta{
			OriginalTopic: "orders", OriginalPartition: 0, OriginalOffset: 1 << 40, Attempt: 1, Due: due,
		}.Encode(nil)}
	}
	cl := testkit.NewProducer(t, brokers).Client()
	if err := cl.ProduceSync(context.Background(),
		hostile("far-due", time.Time{}, now.Add(decade)),
		hostile("far-timestamp", now.Add(decade), now.Add(decade+time.Second)),
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	testkit.Produce(t, brokers, "orders", n, n, 10) // keys k0..k19, fail once each
	var (
		mu      sync.Mutex
		onTier  = map[string]bool{}
		changed = make(chan struct{}, 1)
	)
	start(t, brokers, p, func(ctx context.Context, r *kgo.Record) error {
		if r.Topic == "orders" {
			return errors.New("fails on the source")
		}
		mu.Lock()
		onTier[string(r.Key)] = true
		mu.Unlock()
		select {
		case changed <- struct{}{}:
		default:
		}
		return nil
	})
	expect := []string{"far-due", "far-timestamp"}
	for i := range n {
		expect = append(expect, fmt.Sprint("k", i))
	}
	deadline := time.After(time.Minute)
	for {
		var missing []string
		mu.Lock()
		for _, k := range expect {
			if !onTier[k] {
				missing = append(missing, k)
			}
		}
		mu.Unlock()
		if len(missing) == 0 {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("after a minute %d of %d tier records not handled (%v): the hostile head holds the tier", len(missing), len(expect), missing)
		}
	}
}
