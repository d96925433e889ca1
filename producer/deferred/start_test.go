package deferred

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

// TestKeyOrderedStartPastDeleted: the records of a deferred partition
// past the relay's committed offset (none) were deleted (retention,
// DeleteRecords): its log start offset is its end offset, there is
// nothing to read, and Start returns at once, holding nothing.
func TestKeyOrderedStartPastDeleted(t *testing.T) {
	e := newEnv(t)
	cl := e.client(t)
	e.lane(t, cl, Config{}) // creates orders.deferred
	r := &kgo.Record{Topic: "orders.deferred", Partition: 0, Key: []byte("k"), Value: []byte("v")}
	if err := cl.ProduceSync(testCtx(t), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: "orders.deferred", Partition: r.Partition, At: r.Offset + 1})
	if resp, err := kadm.NewClient(cl).DeleteRecords(testCtx(t), del); err != nil || resp.Error() != nil {
		t.Fatalf("DeleteRecords: %v %v", err, resp.Error())
	}
	l := keyOrderedLane(t, cl)
	if err := l.Start(testCtx(t)); err != nil {
		t.Fatalf("Start with the deferred records deleted: %v", err)
	}
	if l.Holds("orders", []byte("k")) {
		t.Fatal("the lane holds k, whose deferred record was deleted")
	}
}

// TestKeyOrderedStartPastMarker: a deferred partition ends with a
// transaction's commit marker, which is not a record: Start reads up to
// it all the same, and holds the key of the transaction's record.
func TestKeyOrderedStartPastMarker(t *testing.T) {
	e := newEnv(t)
	cl := e.client(t)
	e.lane(t, cl, Config{}) // creates orders.deferred
	tx, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.TransactionalID("deferred-test"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	r := &kgo.Record{Topic: "orders.deferred", Partition: 0, Key: []byte("k"), Value: []byte("v")}
	if err := tx.ProduceSync(testCtx(t), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.EndTransaction(testCtx(t), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	l := keyOrderedLane(t, cl)
	if err := l.Start(testCtx(t)); err != nil {
		t.Fatalf("Start with a commit marker last: %v", err)
	}
	if !l.Holds("orders", []byte("k")) || l.Stats().HeldKeys != 1 {
		t.Fatalf("the lane holds k: %v (%d keys held)", l.Holds("orders", []byte("k")), l.Stats().HeldKeys)
	}
}

// TestStartRetry: a key-ordered lane whose Start failed is not started:
// it refuses to defer (rather than hold the keys it defers for ever) and
// its Start may be called again.
func TestStartRetry(t *testing.T) {
	e := newEnv(t)
	cl := e.client(t)
	l, err := NewLane(cl, Config{Topics: []string{"orders"}, KeyOrdered: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Start(cancelled); err == nil {
		t.Fatal("Start with a cancelled context succeeded")
	}
	refused := make(chan error, 1)
	l.Defer(testCtx(t), rec(priority.Bulk, "k", "v"), producer.Decision{Topic: "orders"}, func(_ *kgo.Record, err error) { refused <- err })
	if got := <-refused; !errors.Is(got, ErrNotStarted) {
		t.Fatalf("Defer after a failed Start: %v, want ErrNotStarted", got)
	}
	if l.Holds("orders", []byte("k")) {
		t.Fatal("the lane holds a key it refused to defer")
	}
	if err := l.Start(testCtx(t)); err != nil {
		t.Fatalf("Start again: %v", err)
	}
	done := make(chan error, 1)
	l.Defer(testCtx(t), rec(priority.Bulk, "k", "v"), producer.Decision{Topic: "orders"}, func(_ *kgo.Record, err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatalf("Defer after Start: %v", err)
	}
	if !l.Holds("orders", []byte("k")) {
		t.Fatal("the started lane does not hold the key it deferred")
	}
	if err := l.Start(testCtx(t)); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("a second Start of a started lane: %v, want ErrAlreadyStarted", err)
	}
}

// keyOrderedLane returns a key-ordered lane of orders, not started, closed
// at the test's end.
func keyOrderedLane(t *testing.T, cl *kgo.Client) *Lane {
	t.Helper()
	l, err := NewLane(cl, Config{Topics: []string{"orders"}, KeyOrdered: true, StartTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}
