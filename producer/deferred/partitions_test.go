package deferred

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

// TestKeyOrderedNeedsKeyPartitioner: a key-ordered lane needs a client
// that puts each key's records in the partition murmur2 of the key picks
// (kgo's default, its key partitioners with the default hasher); NewLane
// refuses any other, naming the option, and a lane that is not
// key-ordered takes any.
func TestKeyOrderedNeedsKeyPartitioner(t *testing.T) {
	crc := kgo.SaramaHasher(crc32.ChecksumIEEE)
	for _, c := range []struct {
		name string
		p    kgo.Partitioner // nil: the client's default
		ok   bool
	}{
		{"default", nil, true},
		{"StickyKeyPartitioner(nil)", kgo.StickyKeyPartitioner(nil), true},
		{"UniformBytesPartitioner with keys", kgo.UniformBytesPartitioner(1<<10, false, true, nil), true},
		{"RoundRobinPartitioner", kgo.RoundRobinPartitioner(), false},
		{"LeastBackupPartitioner", kgo.LeastBackupPartitioner(), false},
		{"StickyPartitioner", kgo.StickyPartitioner(), false},
		{"ManualPartitioner", kgo.ManualPartitioner(), false},
		{"UniformBytesPartitioner without keys", kgo.UniformBytesPartitioner(1<<10, true, false, nil), false},
		{"StickyKeyPartitioner(crc32)", kgo.StickyKeyPartitioner(crc), false},
		{"a partitioner that panics", kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
			return func(*kgo.Record, int) int { panic("boom") }
		}), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}
			if c.p != nil {
				opts = append(opts, kgo.RecordPartitioner(c.p))
			}
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			_, err = NewLane(cl, Config{Topics: []string{"orders"}, KeyOrdered: true})
			switch {
			case c.ok && err != nil:
				t.Fatalf("NewLane: %v", err)
			case !c.ok && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "KeyOrdered") ||
				!strings.Contains(err.Error(), "kgo.RecordPartitioner")):
				t.Fatalf("NewLane: %v, want ErrInvalidConfig naming KeyOrdered and kgo.RecordPartitioner", err)
			}
			if !c.ok {
				t.Log(err)
			}
			if _, err := NewLane(cl, Config{Topics: []string{"orders"}}); err != nil {
				t.Fatalf("a lane that is not key-ordered: %v", err)
			}
		})
	}
}

// TestKeyOrderedPartitionsGrew: the deferred topic had one partition when
// k-1 was deferred; it has four when a producer started since defers k-2,
// which lands in another partition. The relay delivers partitions
// independently: once its group committed past k-2 but not past k-1, k is
// still held; once past both, it is released.
func TestKeyOrderedPartitionsGrew(t *testing.T) {
	e := newEnv(t)
	cfg := Config{KeyOrdered: true, Partitions: 1, PollInterval: 50 * time.Millisecond}
	cl1 := e.client(t)
	lane1 := e.lane(t, cl1, cfg)
	key := keyNotIn(0, 4)
	deferSync(t, lane1, key, "k-1")

	adm := kadm.NewClient(cl1)
	if resp, err := adm.UpdatePartitions(testCtx(t), 4, "orders.deferred"); err != nil || resp.Error() != nil {
		t.Fatalf("growing orders.deferred to 4 partitions: %v %v", err, resp.Error())
	}
	lane2 := e.lane(t, e.client(t), cfg) // a producer started since: its client sees 4 partitions
	if !lane2.Holds("orders", []byte(key)) {
		t.Fatal("a lane started afresh does not hold k (k-1 on partition 0)")
	}
	deferSync(t, lane2, key, "k-2")
	p := int32(keyPartition(key, 4))
	if offs := partitionEnds(t, cl1, "orders.deferred"); offs[0] != 1 || offs[p] != 1 {
		t.Fatalf("orders.deferred's end offsets %v: want k-1 on partition 0, k-2 on %d", offs, p)
	}

	commitRelay(t, cl1, map[int32]int64{p: 1}) // k-2 delivered, k-1 not
	testkit.Eventually(t, 15*time.Second, "the lane to read the relay's commit on partition "+fmt.Sprint(p), func() bool {
		return lane2.keys.committedAt("orders.deferred", p) == 1
	})
	if !lane2.Holds("orders", []byte(key)) {
		t.Fatal("k released with k-1 undelivered on partition 0 (the relay committed past k-2 on another partition)")
	}
	commitRelay(t, cl1, map[int32]int64{0: 1})
	testkit.Eventually(t, 15*time.Second, "both lanes to release k once the relay committed past k-1 and k-2", func() bool {
		return !lane1.Holds("orders", []byte(key)) && !lane2.Holds("orders", []byte(key))
	})
}

// TestKeyOrderedFollowsNewPartitions: partitions added to a deferred
// topic while a lane runs are followed too: a key another producer
// deferred on one is held.
func TestKeyOrderedFollowsNewPartitions(t *testing.T) {
	e := newEnv(t)
	cl := e.client(t)
	lane := e.lane(t, cl, Config{KeyOrdered: true, Partitions: 1, PollInterval: 50 * time.Millisecond})
	if resp, err := kadm.NewClient(cl).UpdatePartitions(testCtx(t), 3, "orders.deferred"); err != nil || resp.Error() != nil {
		t.Fatalf("growing orders.deferred to 3 partitions: %v %v", err, resp.Error())
	}
	other, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	r := &kgo.Record{Topic: "orders.deferred", Partition: 2, Key: []byte("k"), Value: []byte("v")}
	if err := other.ProduceSync(testCtx(t), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the lane to hold k, deferred on partition 2, added after the lane started", func() bool {
		return lane.Holds("orders", []byte("k"))
	})
}

// deferSync defers a bulk record of key on orders through l and waits for
// its promise.
func deferSync(t *testing.T, l *Lane, key, value string) {
	t.Helper()
	done := make(chan error, 1)
	l.Defer(testCtx(t), rec(priority.Bulk, key, value), producer.Decision{Topic: "orders"}, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("deferring %s: %v", value, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("deferring %s: no promise after 30s", value)
	}
}

// keyPartition is the partition of n that murmur2 of key picks.
func keyPartition(key string, n int) int {
	return kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: []byte(key)}, n)
}

// keyNotIn returns a key that murmur2 puts in another partition of n than p.
func keyNotIn(p, n int) string {
	for i := 0; ; i++ {
		if k := fmt.Sprintf("k%d", i); keyPartition(k, n) != p {
			return k
		}
	}
}

// partitionEnds returns topic's end offsets by partition.
func partitionEnds(t *testing.T, cl *kgo.Client, topic string) map[int32]int64 {
	t.Helper()
	offs, err := kadm.NewClient(cl).ListEndOffsets(testCtx(t), topic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int32]int64)
	offs.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// commitRelay commits offsets of orders.deferred in the relay's group, as
// a relay does once it delivered the records below them.
func commitRelay(t *testing.T, cl *kgo.Client, offsets map[int32]int64) {
	t.Helper()
	var os kadm.Offsets
	for p, o := range offsets {
		os.Add(kadm.Offset{Topic: "orders.deferred", Partition: p, At: o, LeaderEpoch: -1})
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CommitOffsets(ctx, DefaultGroup, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("committing %v in %s: %v", offsets, DefaultGroup, err)
	}
}

// committedAt is the relay's committed offset of part on deferredTopic as
// k last read it, -1 if none.
func (k *keys) committedAt(deferredTopic string, part int32) int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.committed[deferredTopic][part]; ok {
		return c
	}
	return -1
}
