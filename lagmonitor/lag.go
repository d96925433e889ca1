package lagmonitor

import (
	"time"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/partition"
)

// PartitionLag is how far one partition lags.
type PartitionLag struct {
	Topic     string
	Partition int32
	// End is the log's end offset the lag is measured against: the high
	// watermark, or the last stable offset for a read_committed consumer
	// (records of open transactions are not lag yet). -1 if unknown.
	End int64
	// Next is the offset of the next record to handle: the oldest one
	// not yet terminal, or the committed offset for a group seen from
	// outside. -1 if unknown.
	Next int64
	// OffsetLag is End − Next, clamped at 0. The runtime passes the
	// control records of transactions (commit and abort markers) and the
	// gaps of aborted records, so a consumer that handled everything has
	// Next at End, whatever markers end the log.
	OffsetLag int64
	// TimeLag is the age of the record at Next: from its own timestamp
	// when the consumer holds it, else estimated from when the log's end
	// passed Next (TimeLagEstimated).
	TimeLag          time.Duration
	TimeLagEstimated bool
	// Paused holds the reasons the partition is paused for.
	Paused partition.Reasons
	// Completed counts the records that reached a terminal state since
	// the partition was assigned, Diverted of them by a divert.
	Completed, Diverted uint64
	// Trend says where the lag goes ([TrendWindow]); TrendUnknown until
	// the monitor has sampled it long enough.
	Trend Trend
}

// endPoint is one observation of a partition's end offset.
type endPoint struct {
	end int64
	at  time.Time
}

// endHistory keeps observations of a partition's end offset over time, to
// estimate when the record at an offset was appended (kafka-lag-exporter's
// interpolation): the time lag of a partition whose next record the
// consumer does not hold, a paused one say.
type endHistory struct {
	pts  [historyLen]endPoint
	n    int // points held
	head int // index of the oldest
}

const (
	historyLen = 128
	// historySpacing is the least time between two points kept while the
	// end offset does not move; a moving end is kept at every change.
	historySpacing = time.Second
)

func (h *endHistory) last() (endPoint, bool) {
	if h.n == 0 {
		return endPoint{}, false
	}
	return h.pts[(h.head+h.n-1)%historyLen], true
}

// observe records that the end offset was end at at. Observations out of
// order, or of an end below the last (a truncated log), start the history
// over.
func (h *endHistory) observe(end int64, at time.Time) {
	if end < 0 {
		return
	}
	if l, ok := h.last(); ok {
		switch {
		case at.Before(l.at) || end < l.end:
			h.n, h.head = 0, 0
		case end == l.end && at.Sub(l.at) < historySpacing:
			return
		}
	}
	if h.n == historyLen {
		h.head = (h.head + 1) % historyLen
		h.n--
	}
	h.pts[(h.head+h.n)%historyLen] = endPoint{end, at}
	h.n++
}

// appendedAt estimates when the record at offset was appended: between the
// last observation whose end did not include it and the first that did,
// linearly. ok is false when no observation included it yet. An offset
// older than every observation gets the oldest observation's time, a lower
// bound of its age.
func (h *endHistory) appendedAt(offset int64) (t time.Time, ok bool) {
	for i := 0; i < h.n; i++ {
		p := h.pts[(h.head+i)%historyLen]
		if p.end <= offset {
			continue
		}
		if i == 0 {
			return p.at, true
		}
		prev := h.pts[(h.head+i-1)%historyLen]
		frac := float64(offset-prev.end+1) / float64(p.end-prev.end)
		return prev.at.Add(time.Duration(frac * float64(p.at.Sub(prev.at)))), true
	}
	return time.Time{}, false
}

// partitionLag computes a partition's lag from the runtime's view of it,
// its end offset (the newer of what fetches saw and what a refresh
// listed) and the history of its end.
func partitionLag(ps consumer.PartitionStats, end int64, h *endHistory, now time.Time) PartitionLag {
	l := PartitionLag{Topic: ps.Topic, Partition: ps.Partition, End: end, Next: ps.Next,
		Paused: ps.Paused, Completed: ps.Completed, Diverted: ps.Diverted}
	if end < 0 || ps.Next < 0 {
		return l
	}
	l.OffsetLag = max(end-ps.Next, 0)
	switch {
	case !ps.OldestTimestamp.IsZero():
		l.TimeLag = max(now.Sub(ps.OldestTimestamp), 0)
	case l.OffsetLag > 0:
		if at, ok := h.appendedAt(ps.Next); ok {
			l.TimeLag, l.TimeLagEstimated = max(now.Sub(at), 0), true
		}
	}
	return l
}
