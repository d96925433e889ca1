package deferred

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// TestRelayFromRetryTier: a record a relay's retrytopics router moved to a
// tier goes, from the tier, to the destination of the deferred topic it
// failed on, without the tier's metadata and the lane's headers, with its
// own; a record of another topic has no destination.
func TestRelayFromRetryTier(t *testing.T) {
	r := &Relay{dest: map[string]string{"orders.deferred": "orders"}}
	own := []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}, {Key: priority.Header, Value: []byte("bulk")}}
	deferredHs := append([]kgo.RecordHeader{{Key: HeaderTopic, Value: []byte("orders")}}, own...)
	tier := &kgo.Record{Topic: "orders.deferred.retry-5s",
		Headers: retrytopics.Meta{OriginalTopic: "orders.deferred", OriginalPartition: 0, OriginalOffset: 7, Attempt: 1}.Encode(deferredHs)}
	if dest, ok := r.destOf(tier); !ok || dest != "orders" {
		t.Fatalf("tier record: destination %q, %v; want orders", dest, ok)
	}
	got := relayedHeaders(tier.Headers)
	if len(got) != len(own) {
		t.Fatalf("relayed headers %v, want only the record's own %v", got, own)
	}
	for i := range own {
		if got[i].Key != own[i].Key || string(got[i].Value) != string(own[i].Value) {
			t.Fatalf("relayed headers %v, want %v", got, own)
		}
	}
	other := &kgo.Record{Topic: "payments.retry-5s",
		Headers: retrytopics.Meta{OriginalTopic: "payments", Attempt: 1}.Encode(nil)}
	if dest, ok := r.destOf(other); ok {
		t.Fatalf("a tier record of another topic got destination %q", dest)
	}
	if _, ok := r.destOf(&kgo.Record{Topic: "elsewhere"}); ok {
		t.Fatal("a record of no deferred topic got a destination")
	}
}
