package deferred

import "testing"

// TestKeysRelease: a key is held while in flight and until the relay's
// committed offset passes its last record; offsets that do not advance
// release nothing, and count follows the keys held.
func TestKeysRelease(t *testing.T) {
	k := newKeys()
	k.handing("orders", []byte("a"))
	k.handing("orders", []byte("b"))
	if k.count() != 2 || !k.holds("orders", []byte("a")) {
		t.Fatalf("in flight: %d held", k.count())
	}
	k.handed("orders", "orders.deferred", []byte("a"), 0, 5, true)
	k.handed("orders", "orders.deferred", []byte("b"), 1, 7, true)
	k.seen("orders", "orders.deferred", []byte("c"), 0, 9)
	if k.count() != 3 {
		t.Fatalf("deferred: %d held, want 3", k.count())
	}
	k.setCommitted("orders", "orders.deferred", map[int32]int64{0: 5, 1: 7})
	if k.count() != 3 {
		t.Fatalf("committed up to the last records: %d held, want 3", k.count())
	}
	k.setCommitted("orders", "orders.deferred", map[int32]int64{0: 6, 1: 7})
	if k.holds("orders", []byte("a")) || !k.holds("orders", []byte("b")) || !k.holds("orders", []byte("c")) || k.count() != 2 {
		t.Fatalf("committed past a: a %v, b %v, c %v, %d held", k.holds("orders", []byte("a")),
			k.holds("orders", []byte("b")), k.holds("orders", []byte("c")), k.count())
	}
	k.setCommitted("orders", "orders.deferred", map[int32]int64{0: 3, 1: 2}) // behind: ignored
	k.seen("orders", "orders.deferred", []byte("d"), 0, 5)                   // delivered already
	if k.holds("orders", []byte("d")) || k.count() != 2 {
		t.Fatalf("a record behind the commit is held, or an offset went back: %d held", k.count())
	}
	k.setCommitted("orders", "orders.deferred", map[int32]int64{0: 10, 1: 8})
	if k.count() != 0 {
		t.Fatalf("committed past everything: %d held", k.count())
	}
	k.handing("orders", []byte("e"))
	k.handed("orders", "orders.deferred", []byte("e"), 0, -1, false)
	if k.count() != 0 {
		t.Fatalf("a failed deferral is held: %d", k.count())
	}
}

// TestKeysSeveralPartitions: a key whose records sit in several deferred
// partitions (its partition changed with the topic's partition count, or
// another producer put it elsewhere) stays held until the relay committed
// past its last record in every one of them, whatever the order in which
// they were learnt and committed.
func TestKeysSeveralPartitions(t *testing.T) {
	k := newKeys()
	k.seen("orders", "orders.deferred", []byte("k"), 0, 5)
	k.seen("orders", "orders.deferred", []byte("k"), 2, 3)
	k.handing("orders", []byte("k"))
	k.handed("orders", "orders.deferred", []byte("k"), 2, 4, true)
	k.seen("orders", "orders.deferred", []byte("k"), 2, 1) // older, on a partition known
	k.setCommitted("orders", "orders.deferred", map[int32]int64{2: 5})
	if !k.holds("orders", []byte("k")) {
		t.Fatal("k released with its record at 0@5 not delivered (partition 2 delivered past its last)")
	}
	k.setCommitted("orders", "orders.deferred", map[int32]int64{0: 5})
	if !k.holds("orders", []byte("k")) {
		t.Fatal("k released with 0@5 not delivered (committed up to it, not past)")
	}
	k.setCommitted("orders", "orders.deferred", map[int32]int64{0: 6})
	if k.holds("orders", []byte("k")) || k.count() != 0 {
		t.Fatalf("k held after every partition was delivered past its records: %d held", k.count())
	}

	// The other order: the partition learnt first is delivered first.
	k.seen("orders", "orders.deferred", []byte("j"), 1, 7)
	k.seen("orders", "orders.deferred", []byte("j"), 0, 9)
	k.setCommitted("orders", "orders.deferred", map[int32]int64{1: 8})
	if !k.holds("orders", []byte("j")) {
		t.Fatal("j released with its record at 0@9 not delivered")
	}
	k.setCommitted("orders", "orders.deferred", map[int32]int64{0: 10})
	if k.count() != 0 {
		t.Fatalf("j held after both partitions were delivered: %d held", k.count())
	}
}
