package consumer

import (
	"cmp"
	"sort"
	"time"

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
	// Running counts handlers running for this partition; Lanes is how
	// many could run at once for the records it holds now: by the
	// ordering, 1 for a partition with records (OrderPartition), its keys
	// with records (OrderKey), its records (OrderNone). A monitor samples
	// Running over Lanes (within MaxConcurrency) to tell how busy the
	// handlers are.
	Running, Lanes int
	// Paused holds the reasons the partition is paused for, as the runtime
	// decided them; the client applies changes in the next batch.
	Paused partition.Reasons
	// Watermark is the offset past the completed prefix (-1 before any
	// record completed); Committed the last offset committed (-1 if none
	// by this member).
	Watermark, Committed int64
	// Span counts the records from the oldest one not yet terminal to the
	// newest admitted (bounded by PartitionMaxSpan): what a crash would
	// hand to the next owner again, beside Uncommitted.
	Span int
	// Uncommitted counts records completed (passed by the watermark) but
	// not committed yet (bounded by MaxUncommitted while commits fail).
	Uncommitted int
	// Refusing counts the partition's records its handler's downstream
	// refused for pressure ([Refusal]) that wait to be tried again; the
	// partition is paused (partition.DownstreamPressure) while there is
	// one. DownstreamLevel is the highest pressure level their refusals
	// named (package lagmonitor's numbering; 0: none said), or the level
	// the last refusal named when none waits. LastRefusal is when the
	// last refusal was (zero: none since the partition was assigned).
	Refusing, DownstreamLevel int
	LastRefusal               time.Time
	// Stuck describes the oldest record not yet terminal while the
	// partition is paused because of it (reason SpanFull or
	// DivertFailed); nil otherwise.
	Stuck *StuckRecord

	// For lag (see package lagmonitor):
	//
	// Next is the offset of the next record to reach a terminal state:
	// the oldest admitted one not yet terminal, or, when every admitted
	// record is terminal, the watermark; -1 before anything was admitted.
	Next int64
	// OldestTimestamp is the record timestamp of the oldest record not yet
	// terminal; zero when every admitted record is terminal.
	OldestTimestamp time.Time
	// HighWatermark and LastStable are what the last fetch of the
	// partition that returned records said of the log (-1 before one);
	// FetchedAt is when. A paused partition is not fetched: they age.
	// Once every record fetched is terminal, Next is the end offset the
	// fetch saw (HighWatermark, or LastStable under read_committed),
	// whatever transaction markers or aborted records end the log.
	HighWatermark, LastStable int64
	FetchedAt                 time.Time
	// Completed counts the partition's records that reached a terminal
	// state since it was assigned (Diverted of them by a divert).
	// ControlRecords counts the transactions' control records (commit and
	// abort markers) passed since then, which are not in Completed.
	Completed, Diverted, ControlRecords uint64
}

// Stats is a consistent snapshot of the runtime, taken under its lock.
type Stats struct {
	Partitions []PartitionStats // sorted by topic, partition
	// InFlightRecords and BufferedBytes count records admitted and not yet
	// terminal across all partitions (including revoked partitions whose
	// handlers are still running).
	InFlightRecords int
	BufferedBytes   int64
	// Running counts handlers running now, of MaxConcurrency at most;
	// Ordering is the runtime's ordering mode.
	Running        int
	MaxConcurrency int
	Ordering       Ordering
	// Handled counts records handled successfully; Failures counts failed
	// handler attempts; Refusals counts handler attempts their downstream
	// refused for pressure ([Refusal]: not failures); Refetched counts
	// records the runtime turned away (full window or span, byte budget,
	// not yet due) and fetched again later; Diverted counts failed records
	// whose replacement a Router produced.
	Handled, Failures, Refusals, Refetched, Diverted uint64
	// ControlRecords counts the control records of transactions (commit
	// and abort markers) the runtime passed without a handler: they
	// reach their terminal state on admission, and the watermark and
	// commits move past them.
	ControlRecords uint64
	// SessionRestarts counts rewinds of the client's fetch position after
	// a refusal: each one discards what the client had buffered for every
	// partition, not only the refused one, so they should stay rare (the
	// runtime pauses a partition before a fetch would overflow it).
	SessionRestarts uint64

	// CommitErr is the error of the last commit attempt, nil if it
	// succeeded; LastCommit is when a commit last succeeded (when Run
	// started, before the first), and SinceCommit how long ago that was.
	// CommitFailures counts failed commit attempts.
	CommitErr      error
	LastCommit     time.Time
	SinceCommit    time.Duration
	CommitFailures uint64

	// FetchErr is the last error a poll returned (nil if none ever);
	// FetchErrors counts them, DataLoss counts the data-loss events among
	// them (see [DataLossError]).
	FetchErr              error
	FetchErrors, DataLoss uint64

	// ReadCommitted says the client reads only committed records
	// (kgo.FetchIsolationLevel(kgo.ReadCommitted())): lag is measured
	// against the last stable offset, not the high watermark.
	ReadCommitted bool
}

// Stats returns a snapshot of the runtime's state. It is safe to call
// concurrently; it takes the runtime's lock briefly.
func (rt *Runtime) Stats() Stats {
	now := time.Now()
	rt.mu.Lock()
	s := Stats{
		Partitions:      make([]PartitionStats, 0, len(rt.parts)),
		InFlightRecords: rt.inflight,
		BufferedBytes:   rt.buffered,
		Running:         rt.running,
		MaxConcurrency:  rt.cfg.maxConcurrency,
		Ordering:        rt.cfg.ordering,
		CommitErr:       rt.commitErr,
		LastCommit:      rt.lastCommit,
		CommitFailures:  rt.commitFails,
		FetchErr:        rt.fetchErr,
		ReadCommitted:   rt.readCommitted,
		ControlRecords:  rt.control,
	}
	if !rt.lastCommit.IsZero() {
		s.SinceCommit = now.Sub(rt.lastCommit)
	}
	for _, ps := range rt.parts {
		wm, _, ok := ps.tr.Watermark()
		if !ok {
			wm = -1
		}
		next := int64(-1)
		var oldestTS time.Time
		if _, off, st, ok := ps.tr.Oldest(); ok {
			next, oldestTS = off, time.UnixMilli(st.Record)
		} else if wm >= 0 {
			next = wm
		}
		p := PartitionStats{
			Next:            next,
			OldestTimestamp: oldestTS,
			HighWatermark:   ps.hwm,
			LastStable:      ps.lso,
			FetchedAt:       ps.fetchedAt,
			ControlRecords:  ps.control,
			Completed:       ps.completed,
			Diverted:        ps.divertedN,
			Topic:           ps.topic,
			Partition:       ps.partition,
			InFlightRecords: ps.win.Records(),
			InFlightBytes:   ps.win.Bytes(),
			Running:         ps.running,
			Lanes:           rt.lanes(ps),
			Refusing:        ps.refusing,
			DownstreamLevel: cmp.Or(ps.downLevel, ps.refusedLevel),
			LastRefusal:     ps.refusedAt,
			Paused:          ps.reasons,
			Watermark:       wm,
			Committed:       ps.commit,
			Span:            ps.tr.Pending(),
			Uncommitted:     int(ps.tr.Passed() - ps.commitPassed),
		}
		if r := ps.reasons & (partition.SpanFull | partition.DivertFailed); r != 0 {
			if st, ok := rt.stuckRecord(ps, r, now); ok {
				p.Stuck = &st
			}
		}
		s.Partitions = append(s.Partitions, p)
	}
	rt.mu.Unlock()
	s.Handled, s.Failures, s.Refusals, s.Refetched, s.Diverted = rt.handled.Load(), rt.failures.Load(), rt.refused.Load(), rt.refetched.Load(), rt.diverted.Load()
	s.SessionRestarts, s.FetchErrors, s.DataLoss = rt.restarts.Load(), rt.fetchErrors.Load(), rt.dataLoss.Load()
	sort.Slice(s.Partitions, func(i, j int) bool {
		a, b := s.Partitions[i], s.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return s
}

// lanes returns how many handlers could run at once for the records ps
// holds now (see PartitionStats.Lanes). Called with mu held.
func (rt *Runtime) lanes(ps *pstate) int {
	n := ps.win.Records()
	switch {
	case n == 0:
		return 0
	case rt.cfg.ordering == OrderPartition:
		return 1
	case rt.cfg.ordering == OrderKey:
		return max(len(ps.keys)-ps.idleLanes, 1)
	}
	return n
}

// Assigned returns the partitions the group assigned to the runtime's
// client, as its rebalance callbacks saw them; a partition appears in
// [Stats] only once a record of it was admitted.
func (rt *Runtime) Assigned() map[string][]int32 {
	b := rt.bind
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]int32)
	for k := range b.owned {
		out[k.topic] = append(out[k.topic], k.partition)
	}
	for _, ps := range out {
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	}
	return out
}
