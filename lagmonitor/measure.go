package lagmonitor

import (
	"time"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/partition"
)

// partKey names a partition.
type partKey struct {
	topic     string
	partition int32
}

// listedOffset is an offset listed from the brokers, and when.
type listedOffset struct {
	offset int64
	at     time.Time
}

// partMonitor is a monitor's state of one partition: the history of its
// end, its trend, its own level, drain and capacity, its last stable
// offset's stall, and what was last measured. It takes about 3.7 KiB
// (TestPartMonitorSize).
type partMonitor struct {
	hist     endHistory
	trend    *TrendWindow
	trendAt  time.Time // the last trend sample
	level    *LevelMachine
	seeded   bool // the level machine has had its first measure
	drain    DrainMeter
	fast     RateMeter // records handled, over CapacityRateTau
	capacity CapacityEstimator
	lso      int64     // the last stable offset seen with records above it
	lsoSince time.Time // since when it has not moved
	lostAt   time.Time // when the partition was found no longer assigned (zero while it is)
	lag      PartitionLag
}

// partInput is what one evaluation knows of a partition besides its
// history: the runtime's view of it (nil until the runtime admitted a
// record of it) and what the brokers listed.
type partInput struct {
	topic     string
	partition int32
	stats     *consumer.PartitionStats
	// end is the listed end offset (the last stable offset for a
	// read_committed consumer) and hwm the listed high watermark; offset
	// -1 when not listed.
	end, hwm listedOffset
	// commit is the group's listed committed offset, and start where the
	// partition starts without one (its reset offset, listed); -1 when
	// unknown.
	commit, start int64
}

// measureCfg is what measuring a partition takes from the monitor.
type measureCfg struct {
	thresholds    Thresholds
	readCommitted bool
	stalledLSO    time.Duration
	tierDelay     time.Duration // 0: not a retry tier
}

// measure sets pm.lag from in at now, feeding the history, the trend, the
// drain and capacity meters and the level machine. A partition whose end
// or position is unknown is left unmeasured: its lags, level and rates
// are not computed.
func (pm *partMonitor) measure(now time.Time, in partInput, c *measureCfg) {
	l := PartitionLag{Topic: in.topic, Partition: in.partition, End: -1, Next: -1}
	var oldest, endAt time.Time
	hwm := int64(-1)
	if ps := in.stats; ps != nil {
		l.Next, oldest = ps.Next, ps.OldestTimestamp
		l.Paused, l.Completed, l.Diverted = ps.Paused, ps.Completed, ps.Diverted
		if ps.Refusing > 0 || (!ps.LastRefusal.IsZero() && now.Sub(ps.LastRefusal) < c.thresholds.Dwell) {
			l.Downstream = Level(min(max(ps.DownstreamLevel, int(LevelElevated)), int(LevelCritical)))
		}
		if !ps.FetchedAt.IsZero() {
			l.End, hwm, endAt = ps.HighWatermark, ps.HighWatermark, ps.FetchedAt
			if c.readCommitted {
				l.End = ps.LastStable
			}
		}
	}
	if in.end.offset > l.End {
		l.End, endAt = in.end.offset, in.end.at
	}
	hwm = max(hwm, in.hwm.offset, l.End)
	if l.Next < 0 {
		l.Next = in.commit // nothing admitted: the committed offset is where it stands
	}
	if l.Next < 0 {
		l.Next = in.start
	}
	pm.hist.observe(l.End, endAt)
	l.Measured = l.End >= 0 && l.Next >= 0
	if !l.Measured {
		pm.lag = l
		return
	}
	stalled := pm.stall(&l, hwm, now, c)
	l.lagOf(oldest, &pm.hist, now)
	if stalled {
		l.TimeLag = max(l.TimeLag, l.LSOStall)
	}
	if c.tierDelay > 0 {
		l.TimeLag = max(l.TimeLag-c.tierDelay, 0) // a tier's records are due that much later
	}
	if now.Sub(pm.trendAt) >= time.Second {
		committed := l.Next
		if in.stats != nil && in.stats.Committed >= 0 {
			committed = in.stats.Committed
		}
		pm.trend.Add(TrendSample{At: now, Committed: committed, Lag: l.OffsetLag})
		pm.trendAt = now
	}
	l.Trend = pm.trend.Trend(now)
	pm.rate(&l, now, c)
	pm.lag = l
}

// stall measures the records above l's last stable offset (hwm − End,
// read_committed only) and how long that offset has not moved. Once it
// has not moved for stalledLSO (a hanging transaction: the records above
// it pile up unseen), they count as lag: End becomes the high watermark.
// It reports whether it did.
func (pm *partMonitor) stall(l *PartitionLag, hwm int64, now time.Time, c *measureCfg) bool {
	if !c.readCommitted || hwm <= l.End {
		pm.lso, pm.lsoSince = l.End, time.Time{}
		return false
	}
	if l.End != pm.lso || pm.lsoSince.IsZero() {
		pm.lso, pm.lsoSince = l.End, now
	}
	l.Unstable, l.LSOStall = hwm-l.End, now.Sub(pm.lsoSince)
	if c.stalledLSO > 0 && l.LSOStall >= c.stalledLSO {
		l.End = hwm
		return true
	}
	return false
}

// rate feeds the partition's drain and capacity meters and its level
// machine.
func (pm *partMonitor) rate(l *PartitionLag, now time.Time, c *measureCfg) {
	rates := pm.drain.Observe(now, l.Completed-l.Diverted, l.Diverted)
	windowFull := l.Paused.Has(partition.WindowFull) || l.Paused.Has(partition.Memory)
	l.Saturated = l.OffsetLag > 0 && l.Downstream == LevelOK && (windowFull || c.thresholds.Saturated(l.TimeLag, l.OffsetLag))
	pm.capacity.Observe(now, pm.fast.Observe(now, l.Completed-l.Diverted), l.Saturated)
	l.DrainRate, l.Capacity = rates.Handled, pm.capacity.Capacity(now)
	var d Decision
	if pm.seeded {
		d = pm.level.Observe(now, l.TimeLag, l.OffsetLag)
	} else {
		d, pm.seeded = pm.level.Seed(now, l.TimeLag, l.OffsetLag), true
	}
	l.Level = max(d.Level, l.Downstream)
}
