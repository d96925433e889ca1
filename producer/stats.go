package producer

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

type globalCounters struct {
	unfollowed    atomic.Uint64
	unknownClass  atomic.Uint64
	waitedNs      atomic.Int64
	waiting       atomic.Int64
	rejected      atomic.Uint64
	controlErrors atomic.Uint64
}

type classCounters struct {
	admitted, delayed, throttled, shed, failedFast, deferred, deferFailed atomic.Uint64
	shadow                                                                [OutcomeDeferred + 1]atomic.Uint64 // by outcome
}

func (c *classCounters) outcome(o Outcome) *atomic.Uint64 {
	switch o {
	case OutcomeDelayed:
		return &c.delayed
	case OutcomeThrottled:
		return &c.throttled
	case OutcomeShed:
		return &c.shed
	case OutcomeFailedFast:
		return &c.failedFast
	}
	return &c.deferred
}

// Counts are records counted by what admission did with them.
type Counts struct {
	// Admitted were handed to the client (shadowed ones included).
	Admitted uint64
	// Delayed were admitted after waiting for their class's rate.
	Delayed uint64
	// Throttled, Shed and FailedFast were refused with ErrThrottled,
	// ErrShed and ErrOverloaded (Shed includes DeferFailed).
	Throttled, Shed, FailedFast uint64
	// Deferred were taken by the Deferrer; DeferFailed were failed by it
	// (and shed).
	Deferred, DeferFailed uint64
}

// ShadowCounts are what shadow mode would have done with records it
// produced.
type ShadowCounts struct {
	Throttled, Shed, FailedFast, Deferred uint64
}

func (c *classCounters) counts() (Counts, ShadowCounts) {
	return Counts{
			Admitted: c.admitted.Load(), Delayed: c.delayed.Load(), Throttled: c.throttled.Load(),
			Shed: c.shed.Load() + c.deferFailed.Load(), FailedFast: c.failedFast.Load(),
			Deferred: c.deferred.Load(), DeferFailed: c.deferFailed.Load(),
		}, ShadowCounts{
			Throttled: c.shadow[OutcomeThrottled].Load(), Shed: c.shadow[OutcomeShed].Load(),
			FailedFast: c.shadow[OutcomeFailedFast].Load(), Deferred: c.shadow[OutcomeDeferred].Load(),
		}
}

func (c *Counts) add(o Counts) {
	c.Admitted += o.Admitted
	c.Delayed += o.Delayed
	c.Throttled += o.Throttled
	c.Shed += o.Shed
	c.FailedFast += o.FailedFast
	c.Deferred += o.Deferred
	c.DeferFailed += o.DeferFailed
}

func (c *ShadowCounts) add(o ShadowCounts) {
	c.Throttled += o.Throttled
	c.Shed += o.Shed
	c.FailedFast += o.FailedFast
	c.Deferred += o.Deferred
}

// Stats is a snapshot of a producer's counters since it was built, and of
// the state of each topic it follows.
type Stats struct {
	// Counts sums the records of the followed topics, over classes.
	Counts
	// Shadow sums what shadow mode would have done.
	Shadow ShadowCounts
	// Unfollowed counts the records to topics not followed, admitted
	// freely (and not in Counts).
	Unfollowed uint64
	// UnknownClass counts records whose class the order does not list
	// (counted as its least important).
	UnknownClass uint64
	// Waited is the time the Delayed records waited, summed.
	Waited time.Duration
	// Waiting is the number of records waiting for admission now.
	Waiting int64

	// Started is true once Start returned; CaughtUp once the control
	// topic was read to the end offsets found at start (during Start, or
	// later if Start gave up at its bound: Control.CaughtUp). StartError
	// says why Start did not see it, if the producer started admitting
	// without (fail-open).
	Started, CaughtUp bool
	StartError        error
	// ControlErrors counts the times the pressure could not be known or
	// measured (see [HookControlError]); LastControlError is the latest.
	ControlErrors      uint64
	LastControlError   error
	LastControlErrorAt time.Time
	// SignalsRejected counts the control-topic records the reader
	// rejected (see [HookSignalRejected]); Control has the reader's own
	// counters.
	SignalsRejected uint64
	Control         lagmonitor.ReaderStats

	// Topics has one entry per followed topic, in the order of [Topics].
	Topics []TopicStats
}

// TopicStats is the state of one followed topic.
type TopicStats struct {
	Topic string
	// Pressure is the aggregate pressure last read (fail-open: no live
	// signal reads as ok).
	Pressure lagmonitor.Pressure
	// Level is the level in force (ok without a live signal).
	Level lagmonitor.Level
	// Recovering is true while a class eases after a drop in level: its
	// limit ramps up, or holds at its part of the suggested rate (see
	// the package documentation, "Recovery").
	Recovering bool
	// Share is this producer's share of the suggested rate: OwnRate over
	// IncomingRate, within [MinShare, 1] (1 until both are measured),
	// times the correction that keeps many producers at the floor
	// within the rate.
	Share float64
	// RestLevel is the level the records bound for partitions that are
	// not hot are admitted by (Level when none is); Hot details the hot
	// partitions, by partition.
	RestLevel lagmonitor.Level
	Hot       []HotPartitionStats
	// OwnRate is the rate of this producer's records acknowledged on the
	// topic; IncomingRate the topic's, from its end offsets; both
	// smoothed, records per second.
	OwnRate, IncomingRate float64
	// Counts and Shadow sum the classes'.
	Counts
	Shadow ShadowCounts
	// Classes has one entry per class, most important first.
	Classes []ClassStats
}

// HotPartitionStats is the admission of the records bound for one hot
// partition of a topic (see [TopicStats].Hot).
type HotPartitionStats struct {
	Partition int32
	// Level is the partition's own level, and Rate the rate suggested
	// for the records bound for it (0: none).
	Level lagmonitor.Level
	Rate  float64
	// Classes hold each class's action, rate and demand for the
	// partition (the counts are the topic's, in [TopicStats]).
	Classes []ClassStats
}

// ClassStats is the state of one class on one topic.
type ClassStats struct {
	Class priority.Class
	// Action is the action in force.
	Action Action
	// Rate is the class's rate, records per second, while its action is
	// Limit (0: none, its records wait for one within the cap).
	Rate float64
	// Demand is the rate of the class's records offered to admission,
	// admitted or not, smoothed.
	Demand float64
	Counts
	Shadow ShadowCounts
}

// Stats returns a snapshot of the producer's counters and state.
func (p *Producer) Stats() Stats {
	st := Stats{
		Unfollowed:      p.cnt.unfollowed.Load(),
		UnknownClass:    p.cnt.unknownClass.Load(),
		Waited:          time.Duration(p.cnt.waitedNs.Load()),
		Waiting:         p.cnt.waiting.Load(),
		ControlErrors:   p.cnt.controlErrors.Load(),
		SignalsRejected: p.cnt.rejected.Load(),
		Control:         p.reader.Stats(),
	}
	p.mu.Lock()
	st.Started, st.CaughtUp, st.StartError = isClosed(p.startDone), st.Control.CaughtUp, p.startErr
	st.LastControlError, st.LastControlErrorAt = p.lastControlErr, p.lastControlErrAt
	p.mu.Unlock()
	for _, f := range p.followed {
		ts := TopicStats{Topic: f.topic, Classes: make([]ClassStats, len(p.ctl.classes))}
		f.mu.Lock()
		ts.Pressure, ts.Level, ts.Recovering = f.ctl.p, f.ctl.level(), f.ctl.easing()
		ts.Share, ts.OwnRate, ts.IncomingRate = f.ctl.effShare(), f.ctl.own.Rate(), f.ctl.incoming.Rate()
		ts.RestLevel = ts.Level
		if f.rest != nil {
			ts.RestLevel = f.rest.level()
		}
		f.ctl.classStats(p.ctl.classes, ts.Classes)
		for part, hp := range f.hot {
			hs := HotPartitionStats{Partition: part, Level: hp.ctl.level(), Rate: hp.ctl.p.Rate, Classes: make([]ClassStats, len(p.ctl.classes))}
			hp.ctl.classStats(p.ctl.classes, hs.Classes)
			ts.Hot = append(ts.Hot, hs)
		}
		f.mu.Unlock()
		slices.SortFunc(ts.Hot, func(a, b HotPartitionStats) int { return int(a.Partition) - int(b.Partition) })
		for r := range ts.Classes {
			cs := &ts.Classes[r]
			cs.Counts, cs.Shadow = f.cnt[r].counts()
			ts.Counts.add(cs.Counts)
			ts.Shadow.add(cs.Shadow)
		}
		st.Counts.add(ts.Counts)
		st.Shadow.add(ts.Shadow)
		st.Topics = append(st.Topics, ts)
	}
	return st
}

// classStats fills each class's action, rate and demand from t.
func (t *topicCtl) classStats(classes []priority.Class, into []ClassStats) {
	for r, c := range classes {
		cs := &into[r]
		cs.Class, cs.Demand = c, t.demand[r].Rate()
		cs.Action, _ = t.decide(r)
		if cs.Action == Limit {
			cs.Rate = t.allow[r]
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
