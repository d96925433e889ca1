package deferred

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A key-ordered lane needs each key's deferred records in one partition
// of its deferred topic, the one murmur2 of the key picks (as Kafka's
// and kgo's default partitioners do), so that the relay, which keeps each
// partition's order, delivers them in order, and so that every producer
// deferring the key puts it in the same partition. The lane produces
// through a client it is given (the producer's), whose partitioner it
// cannot change; and a partitioner is a function, which cannot be
// inspected. checkKeyPartitioner therefore asks the client's partitioner
// where it puts keys of every length from 0 to probeKeys-1 among each of
// probeCounts partitions, twice with a new batch between (a sticky
// partitioner moves then), and compares with murmur2's answers. A
// partitioner that agrees on all of them hashes keys with murmur2.
const probeKeys = 64

var probeCounts = []int{2, 3, 4, 6, 10, 16, 50, 100}

// checkKeyPartitioner returns a configuration error naming KeyOrdered and
// kgo.RecordPartitioner if cl's partitioner puts a keyed record of one of
// deferredTopics elsewhere than murmur2 of its key does.
func checkKeyPartitioner(cl *kgo.Client, deferredTopics []string) error {
	p, _ := cl.OptValue(kgo.RecordPartitioner).(kgo.Partitioner)
	if p == nil {
		return configErr("KeyOrdered", "the client has no partitioner (kgo.RecordPartitioner)")
	}
	for _, dt := range deferredTopics {
		if err := probePartitioner(p.ForTopic(dt), kgo.StickyKeyPartitioner(nil).ForTopic(dt), dt); err != nil {
			return configErr("KeyOrdered", "the client's partitioner (kgo.RecordPartitioner), asked about %s, %v; "+
				"a key-ordered lane needs each key's deferred records in the one partition murmur2 of the key picks, "+
				"as kgo's default partitioner, kgo.StickyKeyPartitioner(nil) and kgo.UniformBytesPartitioner with keys "+
				"and a nil hasher do: give the lane a client that partitions so", dt, err)
		}
	}
	return nil
}

// probePartitioner compares tp's answers with want's for the probe keys,
// and returns what differs; a partitioner that panics is reported, not
// followed.
func probePartitioner(tp, want kgo.TopicPartitioner, topic string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panicked (%v)", v)
		}
	}()
	for _, n := range probeCounts {
		for i := range probeKeys {
			key := make([]byte, i) // not nil: the empty key is a key
			for j := range key {
				key[j] = byte(31*i + j)
			}
			// A Partition set, not the key's: a manual partitioner takes it.
			r := &kgo.Record{Topic: topic, Key: key, Partition: int32((want.Partition(&kgo.Record{Key: key}, n) + 1) % n)}
			if !tp.RequiresConsistency(r) {
				return fmt.Errorf("lets a keyed record go to another partition when its own is not available " +
					"(TopicPartitioner.RequiresConsistency is false)")
			}
			w := want.Partition(r, n)
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
