package retrytopics_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// sizedSetup is setup with the tier and quarantine topics created first
// with the given max.message.bytes (0: the broker's default).
func sizedSetup(t *testing.T, tierMax, laneMax string) ([]string, *retrytopics.Policy, *kadm.Client) {
	t.Helper()
	cfg := retrytopics.Config{Group: "g", Topics: []string{"orders"}, Tiers: []time.Duration{50 * time.Millisecond}}
	_, brokers := testkit.Cluster(t, 1, "orders")
	p, err := retrytopics.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	for topic, max := range map[string]string{p.TierTopics("orders")[0]: tierMax, p.QuarantineTopic("orders"): laneMax} {
		var configs map[string]*string
		if max != "" {
			configs = map[string]*string{"max.message.bytes": &max}
		}
		if _, err := adm.CreateTopic(context.Background(), 1, 1, configs, topic); err != nil {
			t.Fatalf("creating %s: %v", topic, err)
		}
	}
	if err := p.EnsureTopics(context.Background(), cl); err != nil {
		t.Fatal(err)
	}
	return brokers, p, adm
}

// produceBig writes one record to orders with 16 KiB of incompressible
// value and an own header, and returns it as acknowledged.
func produceBig(t *testing.T, brokers []string) *kgo.Record {
	t.Helper()
	r := &kgo.Record{Topic: "orders", Key: []byte("big"), Value: make([]byte, 16<<10),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}}
	rand.Read(r.Value)
	if err := testkit.NewProducer(t, brokers).Client().ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return r
}

// awaitCommitted waits until group g committed orders[0] up to offset.
func awaitCommitted(t *testing.T, adm *kadm.Client, offset int64) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, "the failed record's offset committed", func() bool {
		os, err := adm.FetchOffsets(context.Background(), "g")
		if err != nil {
			return false
		}
		o, ok := os.Lookup("orders", 0)
		return ok && o.Err == nil && o.At >= offset
	})
}

// divertErrors keeps the distinct errors of failed divert produces.
type divertErrors struct {
	mu   sync.Mutex
	errs map[string]bool
}

func (d *divertErrors) OnRecordDiverted(_, to *kgo.Record, err error) {
	if err == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.errs[to.Topic+": "+err.Error()] = true
}

// runFailing runs a handler that always fails. If the test fails, it logs
// which diverts failed and how, to tell a setup that does not provoke a
// refusal from a refusal left unanswered.
func runFailing(t *testing.T, brokers []string, p *retrytopics.Policy) {
	de := &divertErrors{errs: map[string]bool{}}
	t.Cleanup(func() {
		if t.Failed() {
			de.mu.Lock()
			defer de.mu.Unlock()
			t.Logf("failed diverts: %v; policy stats %+v", de.errs, p.Stats())
		}
	})
	start(t, brokers, p, func(ctx context.Context, r *kgo.Record) error {
		return errors.New("boom")
	}, consumer.CommitInterval(100*time.Millisecond), consumer.WithHooks(de))
}

// TestTierRefusesLargeRecord: a record too large for its retry tier falls
// through to the quarantine lane whole, with an error naming the tier, and
// its offset is committed.
func TestTierRefusesLargeRecord(t *testing.T) {
	brokers, p, adm := sizedSetup(t, "4096", "")
	big := produceBig(t, brokers)
	runFailing(t, brokers, p)
	lane := testkit.ReadTopic(t, brokers, p.QuarantineTopic("orders"), 1, 30*time.Second)
	q := lane[0]
	m := decode(t, q)
	if !bytes.Equal(q.Value, big.Value) || string(q.Key) != "big" || strings.Join(ownHeaders(q), ",") != "trace" {
		t.Fatalf("quarantined key %q, %d value bytes (equal %v), own headers %v: want the record whole",
			q.Key, len(q.Value), bytes.Equal(q.Value, big.Value), ownHeaders(q))
	}
	if m.Reason != retrytopics.ReasonHandlerError || m.OriginalTopic != "orders" || m.OriginalOffset != big.Offset || m.Trimmed != "" {
		t.Fatalf("metadata %+v", m)
	}
	for _, want := range []string{p.TierTopics("orders")[0], "MESSAGE_TOO_LARGE", "boom"} {
		if !strings.Contains(m.Error, want) {
			t.Fatalf("error %q does not say %q", m.Error, want)
		}
	}
	awaitCommitted(t, adm, big.Offset+1)
	if s := p.Stats(); s.TierFallThroughs != 1 || s.Trimmed != 0 {
		t.Fatalf("stats %+v, want one fall-through and no trim", s)
	}
}

// TestLaneRefusesLargeRecordTrimmed: a record too large for its tier and
// for the quarantine lane lands in the lane trimmed (no value, no own
// headers), saying what was dropped and how big it was, and its offset is
// committed.
func TestLaneRefusesLargeRecordTrimmed(t *testing.T) {
	brokers, p, adm := sizedSetup(t, "4096", "4096")
	big := produceBig(t, brokers)
	runFailing(t, brokers, p)
	lane := testkit.ReadTopic(t, brokers, p.QuarantineTopic("orders"), 1, 30*time.Second)
	q := lane[0]
	m := decode(t, q)
	if len(q.Value) != 0 || string(q.Key) != "big" || len(ownHeaders(q)) != 0 {
		t.Fatalf("quarantined key %q, %d value bytes, own headers %v: want the key alone", q.Key, len(q.Value), ownHeaders(q))
	}
	if m.Trimmed != "value,headers" || m.OriginalSize < consumer.RecordSize(big) {
		t.Fatalf("trimmed %q original size %d, want value,headers and at least the source record's %d",
			m.Trimmed, m.OriginalSize, consumer.RecordSize(big))
	}
	if m.Reason != retrytopics.ReasonHandlerError || m.OriginalTopic != "orders" || m.OriginalOffset != big.Offset {
		t.Fatalf("metadata %+v", m)
	}
	for _, want := range []string{p.QuarantineTopic("orders"), p.TierTopics("orders")[0], "MESSAGE_TOO_LARGE", "boom"} {
		if !strings.Contains(m.Error, want) {
			t.Fatalf("error %q does not say %q", m.Error, want)
		}
	}
	awaitCommitted(t, adm, big.Offset+1)
	if s := p.Stats(); s.TierFallThroughs != 1 || s.Trimmed != 1 || s.Undeliverable != 0 {
		t.Fatalf("stats %+v, want one fall-through and one trim", s)
	}
}
