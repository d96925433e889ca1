package consumer

import (
	"sort"

	"github.com/floodgate-kafka/floodgate/partition"
)

// PartitionStats is a snapshot of one owned partition. A partition appears
// once the runtime admitted a record of it (an assigned partition with
// nothing to fetch does not), and disappears when it is revoked or lost.
type PartitionStats struct {
	Topic     string
	Partition int32
	// InFlightRecords and InFlightBytes count records admitted and not yet
	// terminal: queued plus running.
	InFlightRecords int
	InFlightBytes   int64
	// Running counts handlers running for this partition.
	Running int
	// Paused holds the reasons the partition is paused for, as the runtime
	// decided them; the client applies changes in the next batch.
	Paused partition.Reasons
	// Watermark is the offset past the completed prefix (-1 before any
	// record completed); Committed the last offset committed (-1 if none
	// by this member).
	Watermark, Committed int64
}

// Stats is a consistent snapshot of the runtime, taken under its lock.
type Stats struct {
	Partitions []PartitionStats // sorted by topic, partition
	// InFlightRecords and BufferedBytes count records admitted and not yet
	// terminal across all partitions (including revoked partitions whose
	// handlers are still running).
	InFlightRecords int
	BufferedBytes   int64
	// Running counts handlers running now.
	Running int
	// Handled counts records handled successfully; Failures counts failed
	// handler attempts; Refetched counts records refused (full window, byte
	// budget, not yet due) and fetched again later; Diverted counts failed
	// records whose replacement a Router's Decision produced.
	Handled, Failures, Refetched, Diverted uint64
}

// Stats returns a snapshot of the runtime's state. It is safe to call
// concurrently; it takes the runtime's lock briefly.
func (rt *Runtime) Stats() Stats {
	rt.mu.Lock()
	s := Stats{
		Partitions:      make([]PartitionStats, 0, len(rt.parts)),
		InFlightRecords: rt.inflight,
		BufferedBytes:   rt.buffered,
		Running:         rt.running,
	}
	for _, ps := range rt.parts {
		wm, _, ok := ps.tr.Watermark()
		if !ok {
			wm = -1
		}
		s.Partitions = append(s.Partitions, PartitionStats{
			Topic:           ps.topic,
			Partition:       ps.partition,
			InFlightRecords: ps.win.Records(),
			InFlightBytes:   ps.win.Bytes(),
			Running:         ps.running,
			Paused:          ps.reasons,
			Watermark:       wm,
			Committed:       ps.commit,
		})
	}
	rt.mu.Unlock()
	s.Handled, s.Failures, s.Refetched, s.Diverted = rt.handled.Load(), rt.failures.Load(), rt.refetched.Load(), rt.diverted.Load()
	sort.Slice(s.Partitions, func(i, j int) bool {
		a, b := s.Partitions[i], s.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return s
}
