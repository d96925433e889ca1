package retrytopics_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup starts kfake with the source topic, builds the policy, creates its
// topics and returns the brokers.
func setup(t *testing.T, parts int32, cfg retrytopics.Config) ([]string, *retrytopics.Policy) {
	t.Helper()
	_, brokers := testkit.Cluster(t, parts, cfg.Topics...)
	p, err := retrytopics.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := p.EnsureTopics(context.Background(), cl); err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureTopics(context.Background(), cl); err != nil {
		t.Fatalf("EnsureTopics twice: %v", err)
	}
	return brokers, p
}

func start(t *testing.T, brokers []string, p *retrytopics.Policy, h consumer.Handler, opts ...consumer.Opt) func() {
	t.Helper()
	rt, err := consumer.New(p.Handler(h), append(append([]consumer.Opt{
		consumer.Brokers(brokers...), consumer.Group("g"),
	}, p.Opts()...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Run(t, rt)
}

// TestTiersNeverEarlyNeverBlocking: failing records go through two delayed
// tiers and are never handled before their due time, while the source
// topic keeps flowing; every record ends handled.
func TestTiersNeverEarlyNeverBlocking(t *testing.T) {
	tiers := []time.Duration{time.Second, 1500 * time.Millisecond}
	brokers, p := setup(t, 2, retrytopics.Config{Group: "g", Topics: []string{"orders"}, Tiers: tiers})
	produced := testkit.Produce(t, brokers, "orders", 4000, 40, 20)
	ledger := testkit.NewLedger(produced)
	var (
		mu                 sync.Mutex
		late               []time.Duration
		early              []string
		lastSource, firstT time.Time
	)
	start(t, brokers, p, func(ctx context.Context, r *kgo.Record) error {
		now := time.Now()
		m, has, err := retrytopics.Decode(r)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if !has {
			lastSource = now
			if r.Offset%100 == 0 { // fails here and on tier 1, succeeds on tier 2
				return errors.New("downstream unavailable")
			}
			ledger.Handled(r.Topic, r.Partition, r.Offset)
			return nil
		}
		if firstT.IsZero() {
			firstT = now
		}
		if now.Before(m.Due) {
			early = append(early, fmt.Sprintf("%s@%d %v early", r.Topic, r.Offset, m.Due.Sub(now)))
		}
		late = append(late, now.Sub(m.Due))
		if strings.HasSuffix(r.Topic, ".retry.1") {
			return errors.New("still unavailable")
		}
		ledger.Handled(m.OriginalTopic, m.OriginalPartition, m.OriginalOffset)
		return nil
	})
	ledger.WaitAll(t, time.Minute)
	mu.Lock()
	defer mu.Unlock()
	if len(early) > 0 {
		t.Fatalf("%d tier records handled early: %v", len(early), early[:min(5, len(early))])
	}
	if !lastSource.Before(firstT) {
		t.Fatalf("the source topic finished at %v, after the first tier record (%v): tiers blocked it", lastSource, firstT)
	}
	var worst time.Duration
	for _, l := range late {
		worst = max(worst, l)
	}
	s := p.Stats()
	t.Logf("tier handlings=%d, latest %v after due; stats %+v", len(late), worst, s)
	if s.Tiered != 80 { // 40 failures on the source, 40 on tier 1
		t.Fatalf("tiered %d records, want 80", s.Tiered)
	}
}

// TestFailureStormStaysWithinBudget: every record fails; retries stay
// within the budget and every record ends quarantined with a reason.
func TestFailureStormStaysWithinBudget(t *testing.T) {
	const n, ratio, floor = 3000, 0.1, 5.0
	brokers, p := setup(t, 3, retrytopics.Config{
		Group: "g", Topics: []string{"orders"}, Tiers: []time.Duration{50 * time.Millisecond},
		InPlaceRetries: 1, InPlaceBackoff: time.Millisecond,
		BudgetRatio: ratio, BudgetFloor: floor, BudgetWindow: 10 * time.Second,
	})
	testkit.Produce(t, brokers, "orders", n, 50, 20)
	begin := time.Now()
	var calls sync.Map
	start(t, brokers, p, func(ctx context.Context, r *kgo.Record) error {
		calls.Store(fmt.Sprint(r.Topic, r.Partition, r.Offset), true)
		return errors.New("outage")
	}, consumer.WithOrdering(consumer.OrderNone))
	dlq := testkit.ReadTopic(t, brokers, p.QuarantineTopic("orders"), n, time.Minute)
	elapsed := time.Since(begin)
	reasons := map[retrytopics.Reason]int{}
	seen := map[string]bool{}
	for _, r := range dlq {
		m, _, err := retrytopics.Decode(r)
		if err != nil {
			t.Fatalf("quarantined record does not decode: %v", err)
		}
		reasons[m.Reason]++
		k := fmt.Sprint(m.OriginalPartition, "/", m.OriginalOffset)
		if seen[k] {
			t.Fatalf("record %s quarantined twice", k)
		}
		seen[k] = true
	}
	s := p.Stats()
	allowed := ratio*float64(s.FirstAttempts) + floor*(elapsed.Seconds()+10)
	t.Logf("elapsed %v, quarantined by reason %v, stats %+v, retries allowed <= %.0f", elapsed.Round(time.Millisecond), reasons, s, allowed)
	if float64(s.Retries) > allowed {
		t.Fatalf("%d retries exceed the budget %.0f", s.Retries, allowed)
	}
	if len(seen) != n {
		t.Fatalf("%d distinct records quarantined, want %d", len(seen), n)
	}
	if reasons[retrytopics.ReasonBudgetExhausted] == 0 {
		t.Fatal("no record was quarantined for a spent budget in a 100% failure storm")
	}
}

// TestMalformedHeadersQuarantined: records a hostile producer wrote with
// floodgate headers that do not decode are quarantined as undecodable,
// never handled, and keep their headers under a renamed key; the one
// written to a tier names the source as its original topic and the tier in
// its error.
func TestMalformedHeadersQuarantined(t *testing.T) {
	brokers, p := setup(t, 1, retrytopics.Config{Group: "g", Topics: []string{"orders"}, Tiers: []time.Duration{time.Second}})
	hostile := [][]kgo.RecordHeader{
		{{Key: retrytopics.HeaderAttempt, Value: []byte("abc")}},
		{{Key: retrytopics.HeaderDue, Value: []byte("-5")}},
		{{Key: "floodgate-evil", Value: []byte{0xff}}},
		{{Key: retrytopics.HeaderOriginalTopic, Value: []byte("a")}, {Key: retrytopics.HeaderOriginalTopic, Value: []byte("b")}},
	}
	cl := testkit.NewProducer(t, brokers).Client()
	var recs []*kgo.Record
	for i, h := range hostile {
		recs = append(recs, &kgo.Record{Topic: "orders", Key: []byte(fmt.Sprint("bad", i)), Headers: h})
	}
	// One on the tier topic as well: it must not hold the partition.
	recs = append(recs, &kgo.Record{Topic: p.TierTopics("orders")[0], Key: []byte("bad-tier"),
		Headers: []kgo.RecordHeader{{Key: retrytopics.HeaderDue, Value: []byte("soon")}}})
	recs = append(recs, &kgo.Record{Topic: "orders", Key: []byte("good")})
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	handled := make(chan string, 10)
	start(t, brokers, p, func(ctx context.Context, r *kgo.Record) error {
		handled <- string(r.Key)
		return nil
	})
	dlq := testkit.ReadTopic(t, brokers, p.QuarantineTopic("orders"), len(hostile)+1, time.Minute)
	for _, r := range dlq {
		m, _, err := retrytopics.Decode(r)
		if err != nil || m.Reason != retrytopics.ReasonUndecodable || m.Error == "" {
			t.Fatalf("quarantined %s: meta %+v err %v", r.Key, m, err)
		}
		if m.OriginalTopic != "orders" {
			t.Fatalf("quarantined %s with original topic %q: replay would not send it to orders", r.Key, m.OriginalTopic)
		}
		if string(r.Key) == "bad-tier" && !strings.Contains(m.Error, p.TierTopics("orders")[0]) {
			t.Fatalf("quarantined %s: error %q does not name its tier", r.Key, m.Error)
		}
		kept := false
		for _, h := range r.Headers {
			kept = kept || strings.HasPrefix(h.Key, "x-floodgate-malformed.")
		}
		if !kept {
			t.Fatalf("quarantined %s lost its malformed headers", r.Key)
		}
	}
	select {
	case k := <-handled:
		if k != "good" {
			t.Fatalf("handler saw %q, a record with malformed headers", k)
		}
	case <-time.After(time.Minute):
		t.Fatal("the good record was never handled")
	}
}

// TestPermanentSkipsTiers: a permanent error goes straight to quarantine.
func TestPermanentSkipsTiers(t *testing.T) {
	brokers, p := setup(t, 1, retrytopics.Config{Group: "g", Topics: []string{"orders"}, Tiers: []time.Duration{time.Hour}})
	testkit.Produce(t, brokers, "orders", 10, 1, 5)
	start(t, brokers, p, func(ctx context.Context, r *kgo.Record) error {
		if r.Offset == 4 {
			return retrytopics.Permanent(errors.New("cannot parse"))
		}
		return nil
	})
	dlq := testkit.ReadTopic(t, brokers, p.QuarantineTopic("orders"), 1, time.Minute)
	m, _, err := retrytopics.Decode(dlq[0])
	if err != nil || m.Reason != retrytopics.ReasonPermanent || m.OriginalOffset != 4 || m.Attempt != 1 || !strings.Contains(m.Error, "cannot parse") {
		t.Fatalf("meta %+v err %v", m, err)
	}
	if s := p.Stats(); s.Tiered != 0 {
		t.Fatalf("permanent error went to a tier: %+v", s)
	}
}

func TestConfigNamesField(t *testing.T) {
	for field, cfg := range map[string]retrytopics.Config{
		"Group":          {Topics: []string{"t"}},
		"Topics":         {Group: "g"},
		"InPlaceRetries": {Group: "g", Topics: []string{"t"}, InPlaceRetries: -1},
		"Tiers":          {Group: "g", Topics: []string{"t"}, Tiers: []time.Duration{0}},
		"BudgetRatio":    {Group: "g", Topics: []string{"t"}, BudgetRatio: -1},
	} {
		if _, err := retrytopics.New(cfg); !errors.Is(err, retrytopics.ErrInvalidConfig) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func TestTierDelay(t *testing.T) {
	p, err := retrytopics.New(retrytopics.Config{Group: "g", Topics: []string{"orders"}, Tiers: []time.Duration{time.Second, time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]time.Duration{"orders.g.retry.1": time.Second, "orders.g.retry.2": time.Minute} {
		if d, ok := p.TierDelay(topic); !ok || d != want {
			t.Errorf("TierDelay(%s) = %v %v, want %v", topic, d, ok, want)
		}
	}
	for _, topic := range []string{"orders", "orders.g.dlq", "other"} {
		if _, ok := p.TierDelay(topic); ok {
			t.Errorf("TierDelay(%s) says it is a tier", topic)
		}
	}
}

// TestPriorityRecordRetried: a failed record carrying its priority class
// goes to its tier (not to quarantine as undecodable), class and all.
func TestPriorityRecordRetried(t *testing.T) {
	p, err := retrytopics.New(retrytopics.Config{Group: "g", Topics: []string{"orders"}, Tiers: []time.Duration{time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	r := &kgo.Record{Topic: "orders", Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "floodgate-priority", Value: []byte("bulk")}}}
	d := p.Failed(r, 1, errors.New("boom"))
	if d.Divert == nil || d.Divert.Topic != "orders.g.retry.1" {
		t.Fatalf("decision %+v, want a divert to the tier", d)
	}
	var prio string
	for _, h := range d.Divert.Headers {
		if h.Key == "floodgate-priority" {
			prio = string(h.Value)
		}
	}
	if prio != "bulk" {
		t.Fatalf("the tier record lost its class: %v", d.Divert.Headers)
	}
}
