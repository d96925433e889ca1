package lagmonitor

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/floodgate-kafka/floodgate/partition"
)

// topicMonitor is a monitor's state of one topic: its level, drain and
// capacity, what was last decided, and what was handed to the publisher.
type topicMonitor struct {
	level    *LevelMachine
	seeded   bool // the level machine has had its first measure
	drain    DrainMeter
	fast     RateMeter // records handled, over CapacityRateTau: the capacity's measure
	capacity CapacityEstimator
	probe    float64 // the room probed above a stale or unknown capacity (see room)
	// util is how busy the topic's handlers are, smoothed over
	// utilTau: the handlers running over the slots they could fill
	// (sampled each evaluation); utilAt when last sampled.
	util   float64
	utilAt time.Time
	last   TopicLag
	seen   time.Time // when the topic was first found assigned
	lostAt time.Time // when it was found no longer assigned (zero while it is)

	next     time.Time // when a signal is due, level change or not
	signaled bool      // a signal was handed to the publisher
	sent     Level     // the level of the last signal handed over
	// retry is the wait after the last failed publish (0 after a
	// success): a signal is due again after it, not a whole heartbeat
	// later, so that a level change that failed to go out reaches
	// producers soon after the control topic takes writes again.
	retry time.Duration
}

// decide aggregates the topic's partitions as measured at now, feeds its
// meters and its level machine, and returns its lag, with the level
// decided, the suggested rate and the hot partitions. It does no I/O.
func (tm *topicMonitor) decide(now time.Time, topic string, parts []PartitionLag, topicPartitions int, cfg *Config) (TopicLag, Decision) {
	lag := TopicLag{Topic: topic, Paused: map[string]int{}, Partitions: parts, Owned: len(parts), TopicPartitions: topicPartitions}
	var handled, diverted uint64
	measured := make([]PartitionLag, 0, len(parts))
	for _, p := range parts {
		if !p.Measured {
			lag.Unmeasured = append(lag.Unmeasured, p.Partition)
			continue
		}
		measured = append(measured, p)
		lag.OffsetLag += p.OffsetLag
		lag.TimeLag = max(lag.TimeLag, p.TimeLag)
		lag.UnstableOffsets += p.Unstable
		lag.LSOStall = max(lag.LSOStall, p.LSOStall)
		handled += p.Completed - p.Diverted
		diverted += p.Diverted
		for r := partition.Reasons(1); r != 0 && r <= p.Paused; r <<= 1 {
			if p.Paused&r != 0 {
				lag.Paused[r.String()]++
			}
		}
	}
	rates := tm.drain.Observe(now, handled, diverted)
	lag.DrainRate, lag.DivertRate = rates.Handled, rates.Diverted
	// A consumer that keeps up drains exactly what arrives: its drain
	// rate is its capacity only while a backlog waits on it.
	saturated := topicSaturated(measured, &cfg.Thresholds)
	tm.capacity.Observe(now, tm.fast.Observe(now, handled), saturated)
	lag.Capacity = tm.capacity.Capacity(now)
	var dec Decision
	if tm.seeded {
		dec = tm.level.Observe(now, lag.TimeLag, lag.OffsetLag)
	} else {
		dec, tm.seeded = tm.level.Seed(now, lag.TimeLag, lag.OffsetLag), true
	}
	lag.Level, lag.Reason = dec.Level, dec.Reason
	// A downstream that refuses this consumer's records passes its
	// pressure upstream at once, rather than once the lag it causes has
	// grown past a mark.
	var down Level
	for _, p := range measured {
		down = max(down, p.Downstream)
	}
	if down > lag.Level {
		lag.Level = down
		lag.Reason = fmt.Sprintf("the downstream refuses its records at %s (partitions paused for it); %s", down, dec.Reason)
	}
	if len(lag.Unmeasured) > 0 {
		lag.Reason += fmt.Sprintf("; partitions %v not measured yet", lag.Unmeasured)
	}
	if lag.Level > LevelOK {
		lag.SuggestedRate = cfg.Rate.Suggest(downCapacity(lag.Capacity, lag.DrainRate, down), lag.OffsetLag, lag.Level)
	} else {
		lag.SuggestedRate = tm.room(now, &lag, saturated, cfg)
	}
	lag.Hot, lag.RestLevel = selectHot(measured, lag.Level, cfg.Rate)
	return lag, dec
}

// downCapacity is the capacity a rate is suggested from: capacity, or,
// while the downstream refuses records (down above ok), the drain when
// lower or capacity is unknown: what the downstream lets through is what
// the consumer can drain, whatever it drained before (a drain of 0 leaves
// the rate unsaid rather than suggest what the downstream refuses).
func downCapacity(capacity, drain float64, down Level) float64 {
	if down > LevelOK && (capacity <= 0 || drain < capacity) {
		return drain
	}
	return capacity
}

// utilTau is the time constant of a topic's handler utilisation.
const utilTau = 5 * time.Second

// observeLoad samples the topic's handler utilisation at now.
func (tm *topicMonitor) observeLoad(now time.Time, ld load) {
	if ld.slots <= 0 {
		return
	}
	u := min(float64(ld.running)/float64(ld.slots), 1)
	if tm.utilAt.IsZero() {
		tm.util, tm.utilAt = u, now
		return
	}
	dt := now.Sub(tm.utilAt)
	if dt <= 0 {
		return
	}
	tm.util += -math.Expm1(-float64(dt)/float64(utilTau)) * (u - tm.util)
	tm.utilAt = now
}

// UtilisationCapacity: a consumer whose handlers are busy less than this
// fraction of the time has spare capacity its drain rate does not show; a
// monitor then estimates its capacity as drain rate / utilisation (at
// least MinUtilisation), and an ok signal's room is at least that much:
// producers held at a room measured before (a consumer that was slow
// and is fast again: a downstream outage that ended) are not held there.
const (
	UtilisationCapacity = 0.8
	MinUtilisation      = 0.02
)

// topicSaturated reports whether a topic works at its capacity: every
// partition with work (a lag or a drain) is saturated, each held to its
// part of the offset marks (a topic's offset lag is summed over its
// partitions). One partition saturated while the others wait for
// records says nothing of what the topic can take: its drain rate would
// read as the topic's capacity, and fall with what producers send the
// others.
func topicSaturated(parts []PartitionLag, t *Thresholds) bool {
	active := 0
	for _, p := range parts {
		if p.OffsetLag > 0 || p.DrainRate > 0 {
			active++
		}
	}
	for _, p := range parts {
		if p.OffsetLag > 0 || p.DrainRate > 0 {
			full := p.Paused.Has(partition.WindowFull) || p.Paused.Has(partition.Memory)
			if p.OffsetLag == 0 || !full && !t.Saturated(p.TimeLag, p.OffsetLag*int64(active)) {
				return false
			}
		}
	}
	return active > 0
}

// room returns the rate an ok signal suggests: Ceiling × the capacity
// ([RateConfig.Room]), or the probe if more. The probe is taken while
// the consumer is caught up and its capacity was last measured
// ProbeAfter ago or more: ProbeFactor × its drain rate (see
// [ProbeFactor]); it holds until the consumer saturates (its capacity is
// then measured, and says it all) or a new probe is taken, so that the
// room does not vanish while the backlog the probe lets in builds up.
func (tm *topicMonitor) room(now time.Time, lag *TopicLag, saturated bool, cfg *Config) float64 {
	switch {
	case saturated:
		tm.probe = 0
	case cfg.Thresholds.CaughtUp(lag.TimeLag, lag.OffsetLag) && now.Sub(tm.capacity.MeasuredAt()) >= ProbeAfter:
		tm.probe = ProbeFactor * lag.DrainRate
	}
	room := max(cfg.Rate.Room(lag.Capacity), tm.probe)
	if !tm.utilAt.IsZero() && tm.util < UtilisationCapacity && cfg.Thresholds.CaughtUp(lag.TimeLag, lag.OffsetLag) {
		room = max(room, cfg.Rate.Room(lag.DrainRate/max(tm.util, MinUtilisation)))
	}
	return room
}

// selectHot picks the hot partitions among the measured ones: those
// whose own level (capped at the topic's level) is above the level of
// all the others, worst first, as few as that takes, at most MaxHot and
// at most half the partitions (when more are hot, the topic's level
// says it all). It returns them with the level of the others, or none.
func selectHot(parts []PartitionLag, level Level, rc RateConfig) ([]HotPartition, Level) {
	limit := min(MaxHot, len(parts)/2)
	if limit == 0 {
		return nil, LevelOK
	}
	sorted := slices.Clone(parts)
	for i := range sorted {
		sorted[i].Level = min(sorted[i].Level, level)
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		switch {
		case a.Level != b.Level:
			return a.Level > b.Level
		case a.TimeLag != b.TimeLag:
			return a.TimeLag > b.TimeLag
		case a.OffsetLag != b.OffsetLag:
			return a.OffsetLag > b.OffsetLag
		}
		return a.Partition < b.Partition
	})
	for rest := LevelOK; rest < sorted[0].Level; rest++ {
		n := 0
		for n < len(sorted) && sorted[n].Level > rest {
			n++
		}
		if n > limit {
			continue
		}
		hot := make([]HotPartition, n)
		for i, p := range sorted[:n] {
			hot[i] = HotPartition{Partition: p.Partition, Level: p.Level, OffsetLag: p.OffsetLag, TimeLag: p.TimeLag,
				DrainRate: p.DrainRate, SuggestedRate: rc.Suggest(downCapacity(p.Capacity, p.DrainRate, p.Downstream), p.OffsetLag, p.Level), Capacity: p.Capacity}
		}
		return hot, sorted[n].Level
	}
	return nil, LevelOK
}

// signal returns the signal of lag to hand to the publisher at now.
func (m *Monitor) signal(lag *TopicLag, now time.Time) Signal {
	s := Signal{Group: m.cfg.Group, Topic: lag.Topic, Level: lag.Level, OffsetLag: lag.OffsetLag, TimeLag: lag.TimeLag,
		DrainRate: lag.DrainRate, SuggestedRate: lag.SuggestedRate, Capacity: lag.Capacity,
		Partitions: lag.Owned, TopicPartitions: lag.TopicPartitions, Paused: lag.Paused,
		Hot: lag.Hot, RestLevel: lag.RestLevel, UnstableOffsets: lag.UnstableOffsets, LSOStall: lag.LSOStall,
		Reason: lag.Reason, IssuedAt: now, TTL: m.cfg.TTL}
	if s.TopicPartitions < s.Partitions {
		s.TopicPartitions = 0 // not listed yet: unknown rather than wrong
	}
	if len(lag.Hot) > 0 {
		var b strings.Builder
		for i, h := range lag.Hot {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%d %s %v", h.Partition, h.Level, fmtLag(h.TimeLag))
		}
		s.Reason += "; hot partitions: " + b.String()
	}
	return s
}
