// Package kpart tells where a kgo client's partitioner puts a record,
// ahead of kgo: floodgate's producer needs a keyed record's partition
// before it admits the record (to hold the records bound for a partition
// that lags), and a key-ordered deferred lane needs each key in one
// partition. A partitioner is a function, which cannot be inspected; it
// is asked instead, about probe records whose answers murmur2 (Kafka's
// default key hash) gives.
package kpart

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// murmur2 is kgo's key partitioner: murmur2 of the key, as Kafka's
// default partitioner computes it.
var murmur2 = kgo.StickyKeyPartitioner(nil).ForTopic("")

// Murmur2 returns the partition among n that murmur2 of key picks (what
// kgo's default partitioner, kgo.StickyKeyPartitioner(nil) and Kafka's own
// give a keyed record). n must be positive.
func Murmur2(key []byte, n int) int32 {
	return int32(murmur2.Partition(&kgo.Record{Key: key}, n))
}

// The probes: keys of every length from 0 to probeKeys-1 among each of
// probeCounts partitions, asked twice with a new batch between (a sticky
// partitioner moves then).
const probeKeys = 64

var probeCounts = []int{2, 3, 4, 6, 10, 16, 50, 100}

// CheckKeyed returns nil if tp puts every keyed probe record where
// Murmur2 of its key does (whatever the record's Partition field says),
// and keeps it there when that partition is not available
// (RequiresConsistency); otherwise what differs. A partitioner that
// panics is reported, not followed.
func CheckKeyed(tp kgo.TopicPartitioner, topic string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panicked (%v)", v)
		}
	}()
	for _, n := range probeCounts {
		for i := range probeKeys {
			key := probeKey(i)
			w := int(Murmur2(key, n))
			// A Partition set, not the key's: a manual partitioner takes it.
			r := &kgo.Record{Topic: topic, Key: key, Partition: int32((w + 1) % n)}
			if !tp.RequiresConsistency(r) {
				return fmt.Errorf("lets a keyed record go to another partition when its own is not available " +
					"(TopicPartitioner.RequiresConsistency is false)")
			}
			for range 2 {
				if got := pick(tp, r, n); got != w {
					return fmt.Errorf("puts %s in partition %d of %d, not %d", describeKey(key), got, n, w)
				}
				if nb, ok := tp.(kgo.TopicPartitionerOnNewBatch); ok {
					nb.OnNewBatch()
				}
			}
		}
	}
	return nil
}

// IsManual reports whether tp puts every probe record, keyed or not, in
// the partition its Partition field names (kgo.ManualPartitioner).
func IsManual(tp kgo.TopicPartitioner, topic string) (manual bool) {
	defer func() {
		if recover() != nil {
			manual = false
		}
	}()
	for _, n := range probeCounts {
		for i := range probeKeys {
			var key []byte
			if i%2 == 1 {
				key = probeKey(i)
			}
			r := &kgo.Record{Topic: topic, Key: key, Partition: int32((i*7 + 1) % n)}
			if pick(tp, r, n) != int(r.Partition) {
				return false
			}
		}
	}
	return true
}

func probeKey(i int) []byte {
	key := make([]byte, i) // not nil: the empty key is a key
	for j := range key {
		key[j] = byte(31*i + j)
	}
	return key
}

// describeKey names a probe key in an error.
func describeKey(key []byte) string {
	if len(key) == 0 {
		return "the empty key"
	}
	return fmt.Sprintf("the key %x", key)
}

// pick asks tp for r's partition among n, as kgo does: by backup if tp
// partitions so (none buffered here).
func pick(tp kgo.TopicPartitioner, r *kgo.Record, n int) int {
	if b, ok := tp.(kgo.TopicBackupPartitioner); ok {
		return b.PartitionByBackup(r, n, &noBackup{n: n})
	}
	return tp.Partition(r, n)
}

// noBackup is a kgo.TopicBackupIter over n partitions with nothing
// buffered.
type noBackup struct{ i, n int }

func (b *noBackup) Next() (int, int64) { b.i++; return b.i - 1, 0 }
func (b *noBackup) Rem() int           { return b.n - b.i }
