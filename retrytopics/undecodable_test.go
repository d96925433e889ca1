package retrytopics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestUndecodableOnTierNamesSource: a record whose floodgate headers do not
// decode on a retry tier is quarantined in its source's lane with the
// source as original topic (replay sends it there, not to the tier), and
// the error text says which tier record it was.
func TestUndecodableOnTierNamesSource(t *testing.T) {
	p, err := New(Config{Group: "g", Topics: []string{"orders", "refunds"}, Tiers: []time.Duration{time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	tier := p.TierTopics("refunds")[0]
	r := &kgo.Record{Topic: tier, Partition: 2, Offset: 77, Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: HeaderDue, Value: []byte("soon")}}}
	_, _, derr := Decode(r)
	d := p.Failed(r, 1, errors.Join(ErrUndecodable, derr))
	if d.Divert == nil || d.Divert.Topic != p.QuarantineTopic("refunds") {
		t.Fatalf("divert %+v, want the quarantine lane of refunds", d.Divert)
	}
	m, _, err := Decode(d.Divert)
	if err != nil {
		t.Fatalf("quarantined record does not decode: %v", err)
	}
	if m.Reason != ReasonUndecodable || m.OriginalTopic != "refunds" {
		t.Fatalf("reason %q, original topic %q; want undecodable from refunds", m.Reason, m.OriginalTopic)
	}
	if where := tier + "[2]@77"; !strings.Contains(m.Error, where) || !strings.Contains(m.Error, "soon") {
		t.Fatalf("error %q does not name the tier record %s and its bad header", m.Error, where)
	}
	// On a source topic the record's own location is its origin.
	r = &kgo.Record{Topic: "orders", Partition: 1, Offset: 5, Headers: r.Headers}
	m, _, err = Decode(p.Failed(r, 1, ErrUndecodable).Divert)
	if err != nil || m.OriginalTopic != "orders" || m.OriginalPartition != 1 || m.OriginalOffset != 5 {
		t.Fatalf("source record: %+v, err %v", m, err)
	}
}
