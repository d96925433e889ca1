package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// TestRefusedProduceNotQuarantined: a service consumes a topic with a
// retry tier and a quarantine lane, and produces each record onwards as
// bulk through a floodgate producer. For its first seconds the onward
// topic's consumers say high, so the producer sheds the service's
// records (retry after 200ms). The refusals are pressure, not failures:
// no record reaches the tier or the quarantine lane, no retry budget is
// spent, and every record is produced onwards once the pressure lifts.
// (Before refusals were told apart, every record of this run was
// quarantined.)
func TestRefusedProduceNotQuarantined(t *testing.T) {
	c := integration.Shared(t)
	s := newScenario(t, c, 3, 1)
	out, control := s.topic+".out", s.topic+".pressure"
	integration.CreateTopic(t, c.Brokers, out, 3, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner(control, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := lagmonitor.EnsureControlTopic(ctx, cl, control, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	pub, err := lagmonitor.NewPublisher(cl, control, "downstream-1")
	if err != nil {
		t.Fatal(err)
	}
	say := func(level lagmonitor.Level) {
		t.Helper()
		if _, err := pub.Publish(ctx, lagmonitor.Signal{Topic: out, Group: "downstream", Level: level, Reason: "test", TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	say(lagmonitor.LevelHigh)

	p, err := producer.New(producer.Brokers(c.Brokers...), producer.ControlTopic(control), producer.Topics(out),
		producer.RetryAfter(200*time.Millisecond), producer.Ramp(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the producer to see the onward topic at high", func() bool {
		return p.Stats().Topics[0].Level == lagmonitor.LevelHigh
	})

	policy := s.retryPolicy(retrytopics.Config{Tiers: []time.Duration{time.Second}})
	const n = 300
	s.produce(testkit.NewProducer(t, c.Brokers), n, 30, 20)
	var refused, produced atomic.Int64
	var lifted atomic.Bool
	var liftedAt atomic.Int64
	stop := s.runPolicy(policy, func(ctx context.Context, r *kgo.Record) error {
		onward := &kgo.Record{Topic: out, Key: r.Key, Value: r.Value,
			Headers: []kgo.RecordHeader{{Key: priority.Header, Value: []byte(priority.Bulk)}}}
		if err := p.ProduceSync(ctx, onward).FirstErr(); err != nil {
			if errors.Is(err, producer.ErrShed) {
				refused.Add(1)
			}
			return fmt.Errorf("producing onwards: %w", err)
		}
		produced.Add(1)
		s.ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	})
	testkit.Eventually(t, time.Minute, "the service's produce to be refused", func() bool { return refused.Load() > 0 })
	time.AfterFunc(3*time.Second, func() {
		say(lagmonitor.LevelOK)
		liftedAt.Store(time.Now().UnixNano())
		lifted.Store(true)
	})
	s.ledger.WaitAll(t, 2*time.Minute)
	t.Logf("all handled %v after the pressure lifted; producer counts %+v", time.Since(time.Unix(0, liftedAt.Load())), p.Stats().Topics[0].Counts)
	stop()
	if !lifted.Load() {
		t.Fatal("every record was handled before the pressure lifted")
	}

	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, append(policy.TierTopics(s.topic), policy.QuarantineTopic(s.topic))...)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("listing %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		if o.Offset != 0 {
			t.Errorf("%d records on %s/%d: a refused produce was routed as a failure", o.Offset, o.Topic, o.Partition)
		}
	})
	st := policy.Stats()
	if st.Retries != 0 || st.Tiered != 0 {
		t.Fatalf("retry stats %+v: the refusals spent the retry budget", st)
	}
	if got := produced.Load(); got < n {
		t.Fatalf("%d records produced onwards, want %d", got, n)
	}
	s.report("refused-produce", 0, fmt.Sprintf("refused=%d produced_onwards=%d quarantined=0", refused.Load(), produced.Load()))
}
