package deferred

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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
	l, err := NewLane(cl, Config{Topics: []string{"orders"}, KeyOrdered: true, StartTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
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
	l, err := NewLane(cl, Config{Topics: []string{"orders"}, KeyOrdered: true, StartTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if err := l.Start(testCtx(t)); err != nil {
		t.Fatalf("Start with a commit marker last: %v", err)
	}
	if !l.Holds("orders", []byte("k")) || l.Stats().HeldKeys != 1 {
		t.Fatalf("the lane holds k: %v (%d keys held)", l.Holds("orders", []byte("k")), l.Stats().HeldKeys)
	}
}
