package retrytopics_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/dlq"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// TestQuarantineReplayRoundTrip: records fail until the downstream is
// fixed and end in the quarantine lane; a replay sends them back to the
// source, where they are handled. One record keeps failing: the loop guard
// stops it after MaxReplays replays, and it stays accounted for in the lane.
func TestQuarantineReplayRoundTrip(t *testing.T) {
	brokers, p := setup(t, 2, retrytopics.Config{Group: "g", Topics: []string{"orders"}, Tiers: []time.Duration{50 * time.Millisecond}})
	const n, poison = 200, "k7"
	testkit.Produce(t, brokers, "orders", n, n, 10) // keys k0..k199, one each
	var (
		mu         sync.Mutex
		fixed      bool
		afterFixed = map[string]int{} // successes of replayed records by key
	)
	start(t, brokers, p, func(ctx context.Context, r *kgo.Record) error {
		m, _, _ := retrytopics.Decode(r)
		mu.Lock()
		defer mu.Unlock()
		if !fixed || string(r.Key) == poison {
			return errors.New("downstream broken")
		}
		if r.Topic == "orders" && m.ReplayCount > 0 {
			afterFixed[string(r.Key)]++
		}
		return nil
	})
	lane := p.QuarantineTopic("orders")
	testkit.ReadTopic(t, brokers, lane, n, time.Minute)
	mu.Lock()
	fixed = true
	mu.Unlock()

	replayed := 0
	for round := 1; round <= 3; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		st, err := dlq.Replay(ctx, brokers, dlq.ReplayConfig{Topic: lane, ResumeGroup: "replay", Rate: math.Inf(1), MaxReplays: 2})
		cancel()
		if err != nil {
			t.Fatalf("replay %d: %v", round, err)
		}
		t.Logf("replay %d: %+v", round, st)
		replayed += st.Replayed
		if round == 3 && st.LoopGuarded != 1 {
			t.Fatalf("round 3: loop guard stopped %d entries, want the 1 poison record", st.LoopGuarded)
		}
		// The poison record fails again and is quarantined again: wait for it.
		testkit.ReadTopic(t, brokers, lane, n+min(round, 2), time.Minute)
	}
	// Every original record was replayed once, the poison one twice.
	if replayed != n+1 {
		t.Fatalf("replayed %d entries, want %d", replayed, n+1)
	}
	// Every other record was handled once after its replay.
	testkit.Eventually(t, time.Minute, "replayed records handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(afterFixed) == n-1
	})
	mu.Lock()
	for k, c := range afterFixed {
		if c != 1 || k == poison {
			t.Errorf("replayed %s handled %d times", k, c)
		}
	}
	mu.Unlock()
	// The lane holds every original once, the poison record three times
	// (first failure, and after each of its two replays).
	perKey := map[string]int{}
	for _, r := range testkit.ReadTopic(t, brokers, lane, n+2, time.Minute) {
		perKey[string(r.Key)]++
	}
	for k, c := range perKey {
		if k == poison && c != 3 || k != poison && c != 1 {
			t.Fatalf("key %s quarantined %d times", k, c)
		}
	}
	if len(perKey) != n {
		t.Fatalf("lane holds %d distinct keys, want %d", len(perKey), n)
	}
}
