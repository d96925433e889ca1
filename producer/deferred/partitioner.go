package deferred

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kpart"
)

// A key-ordered lane needs each key's deferred records in one partition
// of its deferred topic, the one murmur2 of the key picks (as Kafka's
// and kgo's default partitioners do), so that the relay, which keeps each
// partition's order, delivers them in order, and so that every producer
// deferring the key puts it in the same partition. The lane produces
// through a client it is given (the producer's), whose partitioner it
// cannot change: checkKeyPartitioner asks it (internal/kpart).

// checkKeyPartitioner returns a configuration error naming KeyOrdered and
// kgo.RecordPartitioner if cl's partitioner puts a keyed record of one of
// deferredTopics elsewhere than murmur2 of its key does.
func checkKeyPartitioner(cl *kgo.Client, deferredTopics []string) error {
	p, _ := cl.OptValue(kgo.RecordPartitioner).(kgo.Partitioner)
	if p == nil {
		return configErr("KeyOrdered", "the client has no partitioner (kgo.RecordPartitioner)")
	}
	for _, dt := range deferredTopics {
		if err := kpart.CheckKeyed(p.ForTopic(dt), dt); err != nil {
			return configErr("KeyOrdered", "the client's partitioner (kgo.RecordPartitioner), asked about %s, %v; "+
				"a key-ordered lane needs each key's deferred records in the one partition murmur2 of the key picks, "+
				"as kgo's default partitioner, kgo.StickyKeyPartitioner(nil) and kgo.UniformBytesPartitioner with keys "+
				"and a nil hasher do: give the lane a client that partitions so", dt, err)
		}
	}
	return nil
}
