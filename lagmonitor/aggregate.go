package lagmonitor

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Pressure is the aggregate pressure on one destination topic: what the
// producers of that topic obey. It is computed from the live signals of
// every group and instance consuming the topic ([Aggregate],
// [Table.Pressure]).
//
// The zero Pressure (level ok, no rate) is what a topic without a live
// signal has: expired or absent signals mean no pressure (fail-open).
type Pressure struct {
	// Topic is the destination topic.
	Topic string
	// Level is the worst level among the groups (each group's level is
	// the worst among its live instances).
	Level Level
	// Rate is the rate the producers of Topic should together stay
	// under, in records per second: the smallest rate among the groups
	// that have one (see [GroupPressure.Rate]), since the slowest
	// group's backlog is the one to protect. 0 means no suggestion: no
	// group has a rate.
	Rate float64
	// RateGroup is the group whose rate Rate is; "" when Rate is 0.
	RateGroup string
	// Group and Instance name the signal that decided Level: the one
	// with the highest level, then the largest time lag, then the
	// largest offset lag, then the first by group and instance name.
	// Both are "" when there is no live signal.
	Group, Instance string
	// Seq is that signal's sequence number (0 when there is no live
	// signal): with Instance, it names exactly the signal a decision
	// acted on.
	Seq uint64
	// Reason is that signal's reason, or "no live signal".
	Reason string
	// RestLevel is the level of the records bound for partitions not in
	// Partitions: the worst, over the signals, of the level each gives
	// its other partitions ([Signal.RestLevel], or its level if it names
	// no hot partition). Without hot partitions it is Level.
	RestLevel Level
	// Partitions holds the hot partitions the signals name: the level
	// and rate of the records bound for each. Nil when no signal names
	// one.
	Partitions map[int32]PartitionPressure
	// ExpiresAt is the earliest expiry among the signals counted: the
	// first moment the aggregate may change without a new signal
	// arriving, when it must be computed again (an expiring signal can
	// lower the level or change a rate). It is the zero time when there
	// is no live signal: nothing expires, and no pressure holds.
	ExpiresAt time.Time
	// Groups details each group with a live signal, by group name.
	Groups []GroupPressure
}

// PartitionPressure is the pressure on the records bound for one hot
// partition: the worst level among the signals for it (the hot level of
// the signal that names it, or the rest level of one that does not), and
// the smallest rate suggested for it (0: none).
type PartitionPressure struct {
	Level Level
	Rate  float64
	// Capacity is the most the partition was measured to drain, as its
	// owner names it (0: unknown).
	Capacity float64
	// TimeLag is the largest time lag named for it.
	TimeLag time.Duration
	// Group and Instance name the signal that named it hottest.
	Group, Instance string
}

// GroupPressure is the pressure of one consumer group on one topic,
// aggregated over the group's live instances.
type GroupPressure struct {
	Group string
	// Level is the worst level among the group's live instances.
	Level Level
	// Rate is the group's suggested rate, in records per second: 0 (no
	// group rate) when none of its instances suggests a rate. Each
	// instance suggests a rate for the partitions it owns. When every
	// instance says which share of the topic's partitions it owns
	// ([Signal.Partitions] of TopicPartitions), the group's rate is the
	// one that gives each suggesting instance its suggested rate for its
	// share of the records (producers spread records over the
	// partitions), the smallest of suggested / share: an instance that
	// falls behind on half the partitions and asks for 100/s holds the
	// topic to 200/s, whatever the others could take. A group with an
	// instance of an older release, which does not say, gets the sum over
	// its instances of each one's suggested rate, or, for an instance
	// that suggests none, of its drain rate (as older readers compute
	// it).
	Rate float64
	// Instances is the number of live instances counted.
	Instances int
	// OffsetLag is the sum of the instances' offset lags.
	OffsetLag int64
	// TimeLag is the largest of the instances' time lags.
	TimeLag time.Duration
	// DrainRate is the sum of the instances' drain rates.
	DrainRate float64
	// Instance names the signal that decided Level (same order as
	// [Pressure.Instance]), Seq its sequence number, and Reason its
	// reason.
	Instance, Reason string
	Seq              uint64
	// ExpiresAt is the earliest expiry among the group's signals.
	ExpiresAt time.Time
}

// rateOf returns a signal's rate as a finite non-negative number (a
// negative, NaN or infinite rate is no rate).
func rateOf(r float64) float64 {
	if !(r > 0) || math.IsInf(r, 1) {
		return 0
	}
	return r
}

// worseSignal reports whether a decides before b: higher level, then
// larger time lag, then larger offset lag, then the smaller group and
// instance names (so that the choice does not depend on input order).
func worseSignal(a, b *Signal) bool {
	switch {
	case a.Level != b.Level:
		return a.Level > b.Level
	case a.TimeLag != b.TimeLag:
		return a.TimeLag > b.TimeLag
	case a.OffsetLag != b.OffsetLag:
		return a.OffsetLag > b.OffsetLag
	case a.Group != b.Group:
		return a.Group < b.Group
	}
	return a.Instance < b.Instance
}

// Aggregate computes the pressure on topic at now from signals, the
// accepted signals of its consumers (several groups, several instances
// per group). It counts only the signals that are of topic, live at now
// ([Signal.Live]: an expired signal means no pressure) and of a known
// level (ok to critical: a signal of another level is ignored, failing
// open). When signals holds several of one group and instance, the one
// with the highest Seq counts (the first of equal ones).
//
// Per group: the level is the worst of its instances, the rate the sum
// described at [GroupPressure.Rate]. Across groups: the level is the
// worst group's, the rate the smallest group rate ([Pressure.Rate]). See
// [Pressure] for the deciding signal and the expiry.
//
// Aggregate is pure; it does not keep or change signals.
func Aggregate(topic string, signals []Signal, now time.Time) Pressure {
	type member struct{ group, instance string }
	latest := make(map[member]*Signal)
	for i := range signals {
		s := &signals[i]
		if s.Topic != topic || !s.Live(now) || s.Level < LevelOK || s.Level > LevelCritical {
			continue
		}
		k := member{s.Group, s.Instance}
		if old, ok := latest[k]; !ok || s.Seq > old.Seq {
			latest[k] = s
		}
	}
	p := Pressure{Topic: topic, Reason: "no live signal"}
	if len(latest) == 0 {
		return p
	}
	// Visit in name order, so that sums of rates do not depend on the
	// input's (or a map's) order.
	counted := make([]*Signal, 0, len(latest))
	for _, s := range latest {
		counted = append(counted, s)
	}
	slices.SortFunc(counted, func(a, b *Signal) int {
		if c := strings.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		return strings.Compare(a.Instance, b.Instance)
	})

	type groupAcc struct {
		gp       GroupPressure
		decider  *Signal
		suggests bool
		shares   bool    // every instance says its share of the partitions
		byShare  float64 // the smallest suggested / share; 0 none
	}
	var groups []*groupAcc // in group order
	var decider *Signal
	for _, s := range counted {
		var g *groupAcc
		if n := len(groups); n > 0 && groups[n-1].gp.Group == s.Group {
			g = groups[n-1]
		} else {
			g = &groupAcc{gp: GroupPressure{Group: s.Group, ExpiresAt: s.ExpiresAt()}, shares: true}
			groups = append(groups, g)
		}
		share := 0.0
		if s.Partitions > 0 && s.TopicPartitions >= s.Partitions {
			share = float64(s.Partitions) / float64(s.TopicPartitions)
		}
		g.shares = g.shares && share > 0
		if r := rateOf(s.SuggestedRate); r > 0 && share > 0 && (g.byShare == 0 || r/share < g.byShare) {
			g.byShare = r / share
		}
		g.gp.Instances++
		g.gp.OffsetLag += s.OffsetLag
		g.gp.TimeLag = max(g.gp.TimeLag, s.TimeLag)
		g.gp.DrainRate += rateOf(s.DrainRate)
		if r := rateOf(s.SuggestedRate); r > 0 {
			g.gp.Rate += r
			g.suggests = true
		} else {
			g.gp.Rate += rateOf(s.DrainRate)
		}
		if e := s.ExpiresAt(); e.Before(g.gp.ExpiresAt) {
			g.gp.ExpiresAt = e
		}
		if g.decider == nil || worseSignal(s, g.decider) {
			g.decider = s
		}
		if decider == nil || worseSignal(s, decider) {
			decider = s
		}
	}

	p.Groups = make([]GroupPressure, 0, len(groups))
	for _, g := range groups {
		switch {
		case !g.suggests:
			g.gp.Rate = 0
		case g.shares:
			g.gp.Rate = g.byShare
		}
		g.gp.Level, g.gp.Instance, g.gp.Reason, g.gp.Seq = g.decider.Level, g.decider.Instance, g.decider.Reason, g.decider.Seq
		p.Groups = append(p.Groups, g.gp)
	}

	p.Level, p.Group, p.Instance, p.Reason, p.Seq = decider.Level, decider.Group, decider.Instance, decider.Reason, decider.Seq
	p.RestLevel, p.Partitions = hotOf(counted)
	for i := range p.Groups {
		g := &p.Groups[i]
		if i == 0 || g.ExpiresAt.Before(p.ExpiresAt) {
			p.ExpiresAt = g.ExpiresAt
		}
		if g.Rate > 0 && (p.Rate == 0 || g.Rate < p.Rate) {
			p.Rate, p.RateGroup = g.Rate, g.Group
		}
	}
	return p
}

// hotOf aggregates the hot partitions of the signals counted (in name
// order): the rest level, and each hot partition's level and rate.
func hotOf(counted []*Signal) (Level, map[int32]PartitionPressure) {
	rest := LevelOK
	for _, s := range counted {
		if len(s.Hot) > 0 {
			rest = max(rest, s.RestLevel)
		} else {
			rest = max(rest, s.Level)
		}
	}
	var parts map[int32]PartitionPressure
	for _, s := range counted {
		for _, h := range s.Hot {
			if parts == nil {
				parts = make(map[int32]PartitionPressure)
			}
			pp, seen := parts[h.Partition]
			if !seen || h.Level > pp.Level || h.Level == pp.Level && h.TimeLag > pp.TimeLag {
				pp.Level, pp.Group, pp.Instance = h.Level, s.Group, s.Instance
			}
			pp.TimeLag = max(pp.TimeLag, h.TimeLag)
			if h.Capacity > 0 && (pp.Capacity == 0 || h.Capacity < pp.Capacity) {
				pp.Capacity = h.Capacity
			}
			if r := rateOf(h.SuggestedRate); r > 0 && (pp.Rate == 0 || r < pp.Rate) {
				pp.Rate = r
			}
			parts[h.Partition] = pp
		}
	}
	for p, pp := range parts {
		if pp.Level <= rest {
			delete(parts, p) // no hotter than the rest: nothing apart
		}
	}
	if len(parts) == 0 {
		parts = nil
	}
	return rest, parts
}

// LevelOf returns the level of the records bound for partition p: its
// own if it is hot, else RestLevel.
func (p *Pressure) LevelOf(partition int32) Level {
	if pp, ok := p.Partitions[partition]; ok {
		return pp.Level
	}
	return p.RestLevel
}

// PutResult says what [Table.Put] did with a signal.
type PutResult int8

// The results of [Table.Put].
const (
	// PutAccepted: the signal is the instance's newest and live; it
	// replaced the instance's previous one.
	PutAccepted PutResult = iota
	// PutReplay: the table has seen a signal of the same topic, group
	// and instance with an equal or higher Seq (the signal is a replay,
	// or arrived out of order); it was rejected and nothing changed.
	PutReplay
	// PutExpired: the signal is the instance's newest but was no longer
	// live at the time given: it was not kept, and the instance's
	// previous signal, superseded, no longer counts.
	PutExpired
)

var putResultNames = [...]string{"accepted", "replay", "expired"}

// String returns the result's name: "accepted", "replay" or "expired".
func (r PutResult) String() string {
	if r >= 0 && int(r) < len(putResultNames) {
		return putResultNames[r]
	}
	return fmt.Sprintf("putresult(%d)", int8(r))
}

// Table keeps the latest signal of each (topic, group, instance), as a
// control-topic reader receives them, and answers the pressure on a topic.
//
// Replays are rejected: a signal replaces the one held for its instance
// only with a higher Seq ([Table.Put]), and a tombstone that carries a
// Seq applies only with a higher one than any seen of its instance
// ([Table.Tombstone]). To keep rejecting replays after an instance's
// signal is gone (deleted by a tombstone, or superseded by an expired
// one), the table remembers the highest Seq of each instance until every
// signal it has seen of that instance has expired and the times it was
// asked to remember it until ([Table.PutUntil], [Table.Tombstone]) have
// passed; after that a replay is rejected because it is expired (or, by
// a reader, because it was issued too long before the broker stamped
// it). A signal of a higher Seq is always accepted, even after a
// tombstone: the instance consumes the topic again.
//
// Expired signals never count ([Table.Pressure] ignores them); call
// [Table.Expire] now and then to free their memory.
//
// The zero value is an empty table, ready to use. A Table is pure (every
// time is an argument) and not safe for concurrent use.
type Table struct {
	topics map[string]map[tableMember]*tableEntry
}

type tableMember struct{ group, instance string }

type tableEntry struct {
	sig   Signal    // the instance's signal; counts only if held
	held  bool      // false once deleted, superseded by an expired signal, or expired
	seq   uint64    // the highest Seq seen
	until time.Time // the latest expiry among the signals seen: when the entry may go
}

// Put offers s, received at now, to the table, and reports what it did
// (see [PutResult]): rejected as a replay if the table has seen a Seq of
// s's instance at least as high; otherwise kept if live at now.
func (t *Table) Put(s Signal, now time.Time) PutResult { return t.PutUntil(s, now, time.Time{}) }

// PutUntil is [Table.Put] that also remembers s's Seq, unless rejected,
// until remember at least (as well as until s expires): until a replay of
// s could no longer be accepted otherwise.
func (t *Table) PutUntil(s Signal, now, remember time.Time) PutResult {
	k := tableMember{s.Group, s.Instance}
	e := t.entry(s.Topic, k)
	if e != nil && s.Seq <= e.seq {
		return PutReplay
	}
	if e == nil {
		e = t.add(s.Topic, k)
	}
	e.seq = s.Seq
	e.remember(s.ExpiresAt())
	e.remember(remember)
	if !s.Live(now) {
		e.sig, e.held = Signal{}, false
		if !now.Before(e.until) {
			t.forget(s.Topic, k)
		}
		return PutExpired
	}
	e.sig, e.held = s, true
	return PutAccepted
}

func (t *Table) entry(topic string, k tableMember) *tableEntry { return t.topics[topic][k] }

// add returns a new entry for k on topic, its until the zero time.
func (t *Table) add(topic string, k tableMember) *tableEntry {
	members := t.topics[topic]
	if members == nil {
		if t.topics == nil {
			t.topics = make(map[string]map[tableMember]*tableEntry)
		}
		members = make(map[tableMember]*tableEntry)
		t.topics[topic] = members
	}
	e := &tableEntry{}
	members[k] = e
	return e
}

// remember extends e's life to x if later.
func (e *tableEntry) remember(x time.Time) {
	if x.After(e.until) {
		e.until = x
	}
}

func (t *Table) forget(topic string, k tableMember) {
	members := t.topics[topic]
	delete(members, k)
	if len(members) == 0 {
		delete(t.topics, topic)
	}
}

// Tombstone applies a tombstone that carries seq (see [SeqHeader]) for
// instance and group on topic: it returns PutReplay, changing nothing,
// when the table has seen a Seq of that instance at least as high (the
// tombstone is a replay, or came out of order); otherwise PutAccepted,
// with removed reporting whether the table held a signal, which it
// removes. It then remembers seq until remember (as [Table] says), so
// that a replay of an older signal or tombstone of the instance is
// rejected until then. A seq of 0 (a tombstone without one, from a
// publisher of an earlier release) is [Table.Delete].
func (t *Table) Tombstone(topic, group, instance string, seq uint64, remember time.Time) (res PutResult, removed bool) {
	if seq == 0 {
		return PutAccepted, t.Delete(topic, group, instance)
	}
	k := tableMember{group, instance}
	e := t.entry(topic, k)
	if e != nil && seq <= e.seq {
		return PutReplay, false
	}
	if e == nil {
		e = t.add(topic, k)
	}
	e.seq = seq
	e.remember(remember)
	removed = e.held
	e.sig, e.held = Signal{}, false
	return PutAccepted, removed
}

// Delete removes the signal of instance for group on topic, as a
// tombstone on the control topic without a sequence number asks, and
// reports whether the table held one. The instance's highest Seq is
// remembered as [Table] says.
func (t *Table) Delete(topic, group, instance string) bool {
	e := t.topics[topic][tableMember{group, instance}]
	if e == nil || !e.held {
		return false
	}
	e.sig, e.held = Signal{}, false
	return true
}

// Expire drops the signals that are no longer live at now, and forgets
// the instances whose every signal seen has expired. It returns the
// number of signals dropped.
func (t *Table) Expire(now time.Time) int {
	n := 0
	for topic, members := range t.topics {
		for k, e := range members {
			if e.held && !e.sig.Live(now) {
				e.sig, e.held = Signal{}, false
				n++
			}
			if !e.held && !now.Before(e.until) {
				delete(members, k)
			}
		}
		if len(members) == 0 {
			delete(t.topics, topic)
		}
	}
	return n
}

// Len returns the number of signals held, live or not yet expired by
// [Table.Expire].
func (t *Table) Len() int {
	n := 0
	for _, members := range t.topics {
		for _, e := range members {
			if e.held {
				n++
			}
		}
	}
	return n
}

// Topics returns the topics with a signal live at now, sorted.
func (t *Table) Topics(now time.Time) []string {
	var topics []string
	for topic, members := range t.topics {
		for _, e := range members {
			if e.held && e.sig.Live(now) {
				topics = append(topics, topic)
				break
			}
		}
	}
	slices.Sort(topics)
	return topics
}

// Signals returns the signals of topic live at now, sorted by group then
// instance.
func (t *Table) Signals(topic string, now time.Time) []Signal {
	var out []Signal
	for _, e := range t.topics[topic] {
		if e.held && e.sig.Live(now) {
			out = append(out, e.sig)
		}
	}
	slices.SortFunc(out, func(a, b Signal) int {
		if c := strings.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		return strings.Compare(a.Instance, b.Instance)
	})
	return out
}

// Pressure returns the pressure on topic at now: [Aggregate] over the
// signals of topic held and live at now. A topic without one has no
// pressure.
func (t *Table) Pressure(topic string, now time.Time) Pressure {
	return Aggregate(topic, t.Signals(topic, now), now)
}
