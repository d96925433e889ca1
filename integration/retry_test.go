package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// retryScenario builds a policy for the scenario's topic, creates its
// tiers and quarantine lane, and starts a runtime with handler h.
func (s *scenario) retryPolicy(cfg retrytopics.Config) *retrytopics.Policy {
	s.t.Helper()
	cfg.Group, cfg.Topics = s.group, []string{s.topic}
	p, err := retrytopics.New(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.c.Brokers...))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.EnsureTopics(ctx, cl); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *scenario) runPolicy(p *retrytopics.Policy, h consumer.Handler, extra ...consumer.Opt) func() {
	s.t.Helper()
	s.terminal = testkit.NewLedger(nil)
	opts := append(s.opts(append([]consumer.Opt{consumer.WithRouter(p), consumer.WithHooks(terminalMarker{s})}, extra...)...),
		consumer.Topics(p.ConsumeTopics()[1:]...))
	rt, err := consumer.New(p.Handler(func(ctx context.Context, r *kgo.Record) error {
		err := h(ctx, r)
		if err == nil && r.Topic == s.topic {
			s.terminal.Handled(r.Topic, r.Partition, r.Offset)
		}
		return err
	}), opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	return run(s.t, rt)
}

// terminalMarker marks a source record terminal once its divert (to a
// tier or the quarantine lane) was acknowledged.
type terminalMarker struct{ s *scenario }

func (m terminalMarker) OnRecordDiverted(from, _ *kgo.Record, err error) {
	if err == nil && from.Topic == m.s.topic {
		m.s.terminal.Handled(from.Topic, from.Partition, from.Offset)
	}
}

// TestRetryTiers: failing records pass two delayed tiers, never before
// their due time, while the source topic flows; every record ends handled.
func TestRetryTiers(t *testing.T) {
	c := integration.Shared(t)
	s := newScenario(t, c, 3, 1)
	p := s.retryPolicy(retrytopics.Config{Tiers: []time.Duration{time.Second, 2 * time.Second}})
	n := integration.Scale(6000)
	s.produce(testkit.NewProducer(t, c.Brokers), n, 60, 30)
	var (
		mu                   sync.Mutex
		early                int
		worst                time.Duration
		lastSource, firstDue time.Time
	)
	stop := s.runPolicy(p, func(ctx context.Context, r *kgo.Record) error {
		now := time.Now()
		m, has, err := retrytopics.Decode(r)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if !has {
			lastSource = now
			if r.Offset%100 == 7 {
				return errors.New("downstream unavailable")
			}
			s.ledger.Handled(r.Topic, r.Partition, r.Offset)
			return nil
		}
		if firstDue.IsZero() || m.Due.Before(firstDue) {
			firstDue = m.Due
		}
		if now.Before(m.Due) {
			early++
		}
		worst = max(worst, now.Sub(m.Due))
		if strings.HasSuffix(r.Topic, ".retry.1") {
			return errors.New("still unavailable")
		}
		s.ledger.Handled(m.OriginalTopic, m.OriginalPartition, m.OriginalOffset)
		return nil
	})
	s.ledger.WaitAll(t, 2*time.Minute)
	stop()
	mu.Lock()
	defer mu.Unlock()
	if early > 0 {
		t.Fatalf("%d tier records handled before their due time", early)
	}
	st := p.Stats()
	s.report("retry-tiers", 0, fmt.Sprintf("tiered=%d latest_after_due=%s source_done_before_first_due=%s",
		st.Tiered, worst.Round(time.Millisecond), firstDue.Sub(lastSource).Round(time.Millisecond)))
}

// TestRetryStorm: every record fails; retries stay within the budget and
// every record ends in the quarantine lane exactly once, with a reason.
func TestRetryStorm(t *testing.T) {
	c := integration.Shared(t)
	s := newScenario(t, c, 3, 1)
	const ratio, floor = 0.1, 5.0
	p := s.retryPolicy(retrytopics.Config{Tiers: []time.Duration{200 * time.Millisecond}, BudgetRatio: ratio, BudgetFloor: floor})
	n := integration.Scale(3000)
	s.produce(testkit.NewProducer(t, c.Brokers), n, 30, 30)
	begin := time.Now()
	stop := s.runPolicy(p, func(ctx context.Context, r *kgo.Record) error { return errors.New("outage") },
		consumer.WithOrdering(consumer.OrderNone))
	dlq := testkit.ReadTopic(t, c.Brokers, p.QuarantineTopic(s.topic), n, 2*time.Minute)
	elapsed := time.Since(begin)
	stop()
	reasons := map[retrytopics.Reason]int{}
	for _, r := range dlq {
		m, _, err := retrytopics.Decode(r)
		if err != nil {
			t.Fatalf("quarantined record does not decode: %v", err)
		}
		reasons[m.Reason]++
		s.ledger.Handled(m.OriginalTopic, m.OriginalPartition, m.OriginalOffset)
	}
	st := p.Stats()
	allowed := ratio*float64(st.FirstAttempts) + floor*(elapsed.Seconds()+10)
	if float64(st.Retries) > allowed {
		t.Fatalf("%d retries exceed the budget %.0f", st.Retries, allowed)
	}
	s.report("retry-storm", 0, fmt.Sprintf("retries=%d allowed=%.0f quarantined=%v", st.Retries, allowed, reasons))
}
