package retrytopics

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestAttemptSaturates: a tier record already at the largest attempt its
// decoder accepts fails again; the next tier receives a record that still
// decodes, with the attempt counter held at that maximum, instead of one
// that would be quarantined as undecodable.
func TestAttemptSaturates(t *testing.T) {
	p, err := New(Config{Group: "g", Topics: []string{"orders"}, Tiers: []time.Duration{time.Second, time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	tiers := p.TierTopics("orders")
	r := &kgo.Record{Topic: tiers[0], Key: []byte("k"), Headers: Meta{
		OriginalTopic: "orders", OriginalPartition: 1, OriginalOffset: 9, Attempt: math.MaxInt32,
	}.Encode(nil)}
	d := p.Failed(r, 1, errors.New("again"))
	if d.Divert == nil || d.Divert.Topic != tiers[1] {
		t.Fatalf("divert %+v, want a move to %s", d.Divert, tiers[1])
	}
	m, _, err := Decode(d.Divert)
	if err != nil {
		t.Fatalf("the record written to %s does not decode: %v", tiers[1], err)
	}
	if m.Attempt != math.MaxInt32 {
		t.Fatalf("attempt %d, want it saturated at %d", m.Attempt, math.MaxInt32)
	}
	// Many in-place attempts within one delivery saturate as well.
	d = p.Failed(r, math.MaxInt, errors.New("again"))
	if m, _, err = Decode(d.Divert); err != nil || m.Attempt != math.MaxInt32 {
		t.Fatalf("attempt %d (err %v), want %d", m.Attempt, err, math.MaxInt32)
	}
	// Encode never writes what Decode rejects.
	h := Meta{OriginalTopic: "orders", Attempt: math.MaxInt32 + 5}.Encode(nil)
	if m, _, err := Decode(&kgo.Record{Headers: h}); err != nil || m.Attempt != math.MaxInt32 {
		t.Fatalf("Encode of an attempt above the maximum: attempt %d, err %v", m.Attempt, err)
	}
}
