package retrytopics_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

func newPolicy(t *testing.T) *retrytopics.Policy {
	t.Helper()
	p, err := retrytopics.New(retrytopics.Config{Group: "g", Topics: []string{"orders"},
		Tiers: []time.Duration{time.Second, time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func decode(t *testing.T, r *kgo.Record) retrytopics.Meta {
	t.Helper()
	m, ok, err := retrytopics.Decode(r)
	if !ok || err != nil {
		t.Fatalf("%s: floodgate headers ok=%v err=%v", r.Topic, ok, err)
	}
	return m
}

func ownHeaders(r *kgo.Record) []string {
	var out []string
	for _, h := range r.Headers {
		if !strings.HasPrefix(h.Key, retrytopics.HeaderPrefix) {
			out = append(out, h.Key)
		}
	}
	return out
}

// TestUndeliverableTierFallsThrough: a tier move that the tier refuses
// becomes a quarantine move carrying the same metadata, reason
// handler-error, and an error naming the tier, its refusal and the
// handler's error.
func TestUndeliverableTierFallsThrough(t *testing.T) {
	p := newPolicy(t)
	tiers, lane := p.TierTopics("orders"), p.QuarantineTopic("orders")
	src := &kgo.Record{Topic: "orders", Partition: 1, Offset: 3, Key: []byte("k"), Value: []byte("value"),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}}
	move := p.Failed(src, 1, errors.New("boom")).Divert
	if move == nil || move.Topic != tiers[0] {
		t.Fatalf("first failure moved to %+v, want %s", move, tiers[0])
	}
	q := p.Undeliverable(src, move, fmt.Errorf("producing: %w", kerr.MessageTooLarge))
	if q == nil || q.Topic != lane {
		t.Fatalf("refused tier move became %+v, want a move to %s", q, lane)
	}
	if string(q.Key) != "k" || string(q.Value) != "value" || strings.Join(ownHeaders(q), ",") != "trace" {
		t.Fatalf("quarantined key %q value %q own headers %v, want the record whole", q.Key, q.Value, ownHeaders(q))
	}
	was, m := decode(t, move), decode(t, q)
	if m.Reason != retrytopics.ReasonHandlerError || !m.Due.IsZero() {
		t.Fatalf("reason %q due %v, want handler-error and no due time", m.Reason, m.Due)
	}
	if m.OriginalTopic != was.OriginalTopic || m.OriginalPartition != 1 || m.OriginalOffset != 3 ||
		m.Attempt != was.Attempt || !m.FirstFailure.Equal(was.FirstFailure) {
		t.Fatalf("metadata changed from %+v to %+v", was, m)
	}
	for _, want := range []string{tiers[0], "MESSAGE_TOO_LARGE", "boom"} {
		if !strings.Contains(m.Error, want) {
			t.Fatalf("error %q does not say %q", m.Error, want)
		}
	}

	// A record failing on a tier: its move to the next tier falls through
	// as well; a long handler error leaves room for the refusal.
	onTier := &kgo.Record{Topic: tiers[0], Key: move.Key, Value: move.Value, Headers: move.Headers}
	long := strings.Repeat("x", 2*retrytopics.MaxErrorLen)
	move2 := p.Failed(onTier, 1, errors.New(long)).Divert
	q = p.Undeliverable(onTier, move2, kerr.TopicAuthorizationFailed)
	if q == nil || q.Topic != lane {
		t.Fatalf("refused second tier move became %+v, want a move to %s", q, lane)
	}
	m = decode(t, q)
	if m.Attempt != 2 || len(m.Error) > retrytopics.MaxErrorLen ||
		!strings.Contains(m.Error, tiers[1]) || !strings.Contains(m.Error, "TOPIC_AUTHORIZATION_FAILED") || !strings.Contains(m.Error, "xxxx") {
		t.Fatalf("attempt %d, error (%d bytes) %.200q...: want attempt 2 and the tier, its refusal and the handler's error within %d bytes",
			m.Attempt, len(m.Error), m.Error, retrytopics.MaxErrorLen)
	}
	s := p.Stats()
	if s.TierFallThroughs != 2 || s.Quarantined[retrytopics.ReasonHandlerError] != 2 || s.Trimmed != 0 || s.Undeliverable != 0 {
		t.Fatalf("stats %+v, want 2 fall-throughs quarantined for handler-error", s)
	}
}

// TestUndeliverableQuarantineTrims: a quarantine move the lane refuses
// becomes a trimmed copy in the same lane (no value, no own headers, the
// key only when small) saying what was dropped and how big the record
// was; a refused trimmed copy leaves nothing to try.
func TestUndeliverableQuarantineTrims(t *testing.T) {
	p := newPolicy(t)
	lane := p.QuarantineTopic("orders")
	bigKey := make([]byte, retrytopics.MaxTrimmedKeyLen+1)
	for _, c := range []struct {
		name        string
		key         []byte
		headers     []kgo.RecordHeader
		keptKey     bool
		wantTrimmed string
	}{
		{"small key, own headers", make([]byte, retrytopics.MaxTrimmedKeyLen), []kgo.RecordHeader{{Key: "trace", Value: []byte("t")}}, true, "value,headers"},
		{"large key", bigKey, []kgo.RecordHeader{{Key: "trace", Value: []byte("t")}}, false, "value,key,headers"},
		{"no own headers", []byte("k"), nil, true, "value"},
	} {
		src := &kgo.Record{Topic: "orders", Partition: 0, Offset: 8, Key: c.key, Value: make([]byte, 1<<20), Headers: c.headers}
		q := p.Failed(src, 1, retrytopics.Permanent(errors.New("cannot parse"))).Divert
		if q == nil || q.Topic != lane {
			t.Fatalf("%s: permanent failure moved to %+v, want %s", c.name, q, lane)
		}
		tr := p.Undeliverable(src, q, kerr.MessageTooLarge)
		if tr == nil || tr.Topic != lane {
			t.Fatalf("%s: refused quarantine move became %+v, want a trimmed copy in %s", c.name, tr, lane)
		}
		if tr.Value == nil || len(tr.Value) != 0 {
			t.Fatalf("%s: trimmed value %d bytes (nil %v), want empty, not null (a tombstone)", c.name, len(tr.Value), tr.Value == nil)
		}
		if own := ownHeaders(tr); len(own) > 0 {
			t.Fatalf("%s: trimmed copy keeps own headers %v", c.name, own)
		}
		if c.keptKey && !bytes.Equal(tr.Key, c.key) || !c.keptKey && tr.Key != nil {
			t.Fatalf("%s: trimmed key %d bytes of %d, want it kept: %v", c.name, len(tr.Key), len(c.key), c.keptKey)
		}
		was, m := decode(t, q), decode(t, tr)
		if m.Trimmed != c.wantTrimmed || m.OriginalSize != consumer.RecordSize(q) {
			t.Fatalf("%s: trimmed %q original size %d, want %q and %d", c.name, m.Trimmed, m.OriginalSize, c.wantTrimmed, consumer.RecordSize(q))
		}
		if m.Reason != retrytopics.ReasonPermanent || m.OriginalTopic != "orders" || m.OriginalOffset != 8 || m.Attempt != was.Attempt {
			t.Fatalf("%s: metadata %+v, want that of %+v", c.name, m, was)
		}
		if !strings.Contains(m.Error, lane) || !strings.Contains(m.Error, "MESSAGE_TOO_LARGE") || !strings.Contains(m.Error, "cannot parse") {
			t.Fatalf("%s: error %q does not name the lane, its refusal and the handler's error", c.name, m.Error)
		}
		if again := p.Undeliverable(src, tr, kerr.MessageTooLarge); again != nil {
			t.Fatalf("%s: a refused trimmed copy became %+v, want nil", c.name, again)
		}
	}
	s := p.Stats()
	if s.Trimmed != 3 || s.Undeliverable != 3 || s.TierFallThroughs != 0 {
		t.Fatalf("stats %+v, want 3 trimmed and 3 undeliverable", s)
	}
}

// TestUndeliverableUnknown: a failed record that is not a move the policy
// made leaves nothing to try.
func TestUndeliverableUnknown(t *testing.T) {
	p := newPolicy(t)
	src := &kgo.Record{Topic: "orders", Key: []byte("k")}
	for name, failed := range map[string]*kgo.Record{
		"no floodgate headers": {Topic: p.QuarantineTopic("orders"), Key: []byte("k")},
		"tier move to an unknown topic": {Topic: "elsewhere", Headers: retrytopics.Meta{
			OriginalTopic: "orders", Attempt: 1}.Encode(nil)},
	} {
		if got := p.Undeliverable(src, failed, kerr.InvalidRecord); got != nil {
			t.Fatalf("%s: got %+v, want nil", name, got)
		}
	}
	if s := p.Stats(); s.Undeliverable != 2 {
		t.Fatalf("stats %+v, want 2 undeliverable", s)
	}
}
