package integration_test

import (
	"context"
	"errors"
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
)

// TestControlTopicDeleted: a producer shedding bulk under a high signal
// goes on producing when the control topic is deleted under it: the
// signal it holds expires at its TTL, and from then on everything is
// admitted, with no call blocking past its cap; the missing topic is
// counted and reported (noticed at the reader's next metadata check).
func TestControlTopicDeleted(t *testing.T) {
	c := integration.Shared(t)
	s := newScenario(t, c, 1, 1)
	control := s.topic + ".pressure"
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner(control, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ttl = 3 * time.Second
	if _, err := lagmonitor.EnsureControlTopic(ctx, cl, control, 1, ttl); err != nil {
		t.Fatal(err)
	}
	pub, err := lagmonitor.NewPublisher(cl, control, "svc-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, lagmonitor.Signal{Topic: s.topic, Group: "svc", Level: lagmonitor.LevelHigh, Reason: "test", TTL: ttl}); err != nil {
		t.Fatal(err)
	}
	var controlErrs controlErrCount
	p, err := producer.New(producer.Brokers(c.Brokers...), producer.ControlTopic(control), producer.Topics(s.topic),
		producer.MaxWait(200*time.Millisecond), producer.WithHooks(&controlErrs),
		producer.ReaderOpts(lagmonitor.ReadMetadataInterval(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	bulk := &kgo.Record{Topic: s.topic, Value: []byte("b"), Headers: []kgo.RecordHeader{{Key: priority.Header, Value: []byte(priority.Bulk)}}}
	if err := p.ProduceSync(ctx, bulk).FirstErr(); !errors.Is(err, producer.ErrShed) {
		t.Fatalf("bulk at high: %v, want shed", err)
	}

	if _, err := kadm.NewClient(cl).DeleteTopic(ctx, control); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	var admittedAt time.Time
	testkit.Eventually(t, 30*time.Second, "bulk to be admitted again once the signal expired", func() bool {
		call := time.Now()
		err := p.ProduceSync(ctx, &kgo.Record{Topic: s.topic, Value: []byte("b"),
			Headers: []kgo.RecordHeader{{Key: priority.Header, Value: []byte(priority.Bulk)}}}).FirstErr()
		if took := time.Since(call); took > 5*time.Second {
			t.Fatalf("a produce took %v with the control topic gone", took)
		}
		if err == nil {
			admittedAt = time.Now()
			return true
		}
		if !errors.Is(err, producer.ErrShed) {
			t.Fatalf("bulk with the control topic gone: %v", err)
		}
		return false
	})
	for range 20 {
		if err := p.ProduceSync(ctx, bulk).FirstErr(); err != nil {
			t.Fatalf("after the expiry: %v", err)
		}
	}
	testkit.Eventually(t, 30*time.Second, "the deleted control topic to be reported", func() bool {
		return controlErrs.n.Load() > 0 && p.Stats().ControlErrors > 0
	})
	st := p.Stats()
	t.Logf("last control error: %v", st.LastControlError)
	t.Logf("control topic deleted; bulk admitted again %v later (signal TTL %v); control errors reported: %d; level now %v",
		admittedAt.Sub(deleted).Round(time.Millisecond), ttl, controlErrs.n.Load(), st.Topics[0].Level)
	if st.Topics[0].Level != lagmonitor.LevelOK {
		t.Fatalf("level %v after the expiry, want ok", st.Topics[0].Level)
	}
}

type controlErrCount struct{ n atomic.Int64 }

func (c *controlErrCount) OnControlError(error) { c.n.Add(1) }
