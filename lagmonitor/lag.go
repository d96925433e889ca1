package lagmonitor

import (
	"time"

	"github.com/floodgate-kafka/floodgate/partition"
)

// PartitionLag is how far one partition lags.
type PartitionLag struct {
	Topic     string
	Partition int32
	// End is the log's end offset the lag is measured against: the high
	// watermark, or the last stable offset for a read_committed consumer
	// (records of open transactions are not lag yet, unless the last
	// stable offset has stalled: see Config.StalledLSO). -1 if unknown.
	End int64
	// Next is the offset of the next record to handle: the oldest one
	// not yet terminal, or the committed offset for a group seen from
	// outside. -1 if unknown.
	Next int64
	// OffsetLag is End − Next, clamped at 0.
	OffsetLag int64
	// TimeLag is the age of the record at Next: from its own timestamp
	// when the consumer holds it, else estimated from when the log's end
	// passed Next (TimeLagEstimated).
	TimeLag          time.Duration
	TimeLagEstimated bool
	// Measured says both the end offset and the position (Next) are
	// known: a partition just assigned is not measured until a fetch
	// answered or the end and committed offsets were listed. The other
	// figures of an unmeasured partition are zero.
	Measured bool
	// Level is the partition's own pressure level: the thresholds applied
	// to its own lags, with hysteresis (a monitor's partitions only).
	Level Level
	// Saturated says the partition works at its capacity: records wait
	// on it ([Thresholds.Saturated]) or its window is full (a monitor's
	// partitions only). A partition paused because its handler's
	// downstream refused it is not: what it drains is what the
	// downstream takes.
	Saturated bool
	// Downstream is the level the partition's handler's downstream
	// refuses its records at (a consumer.Refusal): at least elevated, the
	// refused level when the refusal named one, while a refused record
	// waits to be tried again and for the thresholds' Dwell after the
	// last refusal; ok otherwise. The partition's Level is at least
	// Downstream (a monitor's partitions only).
	Downstream Level
	// DrainRate is the partition's records handled per second, smoothed,
	// and Capacity the most it was measured to drain while saturated
	// (0 unknown); SuggestedRate the rate the records bound for it
	// should stay under while it is hot (0: none). A monitor's
	// partitions only.
	DrainRate, Capacity, SuggestedRate float64
	// Unstable counts the records above the last stable offset (in open
	// transactions) of a read_committed consumer's partition, and
	// LSOStall is how long that offset has not moved while they sat
	// there (a hanging transaction stalls it).
	Unstable int64
	LSOStall time.Duration
	// Paused holds the reasons the partition is paused for.
	Paused partition.Reasons
	// Completed counts the records that reached a terminal state since
	// the partition was assigned, Diverted of them by a divert.
	Completed, Diverted uint64
	// Trend says where the lag goes ([TrendWindow]); TrendUnknown until
	// the monitor has sampled it long enough.
	Trend Trend
}

// lagOf sets l's offset and time lags from l.End and l.Next: the time lag
// from the oldest held record's timestamp (oldest, zero if the consumer
// holds none), else from the history of the partition's end.
func (l *PartitionLag) lagOf(oldest time.Time, h *endHistory, now time.Time) {
	if l.End < 0 || l.Next < 0 {
		return
	}
	l.OffsetLag = max(l.End-l.Next, 0)
	switch {
	case !oldest.IsZero():
		l.TimeLag = max(now.Sub(oldest), 0)
	case l.OffsetLag > 0:
		if at, ok := h.appendedAt(l.Next); ok {
			l.TimeLag, l.TimeLagEstimated = max(now.Sub(at), 0), true
		}
	}
}
