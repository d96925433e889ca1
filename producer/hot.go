package producer

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kpart"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// Hot partitions. A signal may name partitions of its topic that lag
// worse than the rest (lagmonitor.Signal.Hot): records bound for one of
// them are admitted by its own level and rate, and the others by the
// level of the rest, so that one partition melting is held without
// shedding the whole topic. kgo picks a record's partition inside
// Produce, after admission, so the producer computes it ahead where it
// can (partKind); where it cannot, the record is admitted by the
// topic's worst level, as when no partition is named.

// partKind is how the client partitions a followed topic's records, as
// far as the producer can tell ahead.
type partKind int8

const (
	partUnknown partKind = iota // a partitioner of the user's own: not computed
	partKeyed                   // keyed records by murmur2 of the key (kgo's default)
	partManual                  // every record by its Partition field
)

// The partition a record is bound for, when no partition number says it.
const (
	partAny    = -1 // not known ahead: admitted by the topic's worst level
	partNotHot = -2 // not known, but steered away from the hot partitions
)

// partKindOf asks the client's partitioner how it partitions topic
// (internal/kpart); a [Steering] partitioner is looked through.
func partKindOf(cl *kgo.Client, topic string) (partKind, *Steering) {
	p, _ := cl.OptValue(kgo.RecordPartitioner).(kgo.Partitioner)
	st, _ := p.(*Steering)
	if st != nil {
		p = st.fallback
	}
	switch {
	case p == nil:
		return partUnknown, st
	case kpart.IsManual(p.ForTopic(topic), topic):
		return partManual, st
	case kpart.CheckKeyed(p.ForTopic(topic), topic) == nil:
		return partKeyed, st
	}
	return partUnknown, st
}

// partitionOf returns the partition r is bound for, or partAny or
// partNotHot. It reads no lock.
func (p *Producer) partitionOf(f *followed, r *kgo.Record) int32 {
	n := f.nparts.Load()
	switch {
	case f.kind == partManual && r.Partition >= 0 && (n == 0 || r.Partition < n):
		return r.Partition
	case f.kind == partKeyed && r.Key != nil && n > 0:
		return kpart.Murmur2(r.Key, int(n))
	case r.Key == nil && p.steer != nil && f.kind != partManual:
		return partNotHot
	}
	return partAny
}

// hotPart is the admission state of the records bound for one hot
// partition: a controller of its own, fed the partition's own traffic.
type hotPart struct {
	ctl     *topicCtl
	offered []atomic.Uint64 // per rank: records offered for the partition
	acked   atomic.Uint64   // records of this producer acknowledged on it
	room    float64         // the rate it is held to once no longer hot: RoomFraction of its capacity (0: unknown)
}

// ctlFor returns the controller that admits a record bound for part, and
// its hot partition if it has one. f.mu is held.
func (f *followed) ctlFor(part int32) (*topicCtl, *hotPart) {
	switch {
	case f.hot == nil || part == partAny:
		return f.ctl, nil
	case part >= 0:
		if hp := f.hot[part]; hp != nil {
			return hp.ctl, hp
		}
	}
	return f.rest, nil
}

// setHot follows pr's hot partitions: a controller for the rest of the
// topic (at its rest level) and one per hot partition, each fed the
// pressure that concerns it. A partition no longer named hot keeps its
// controller while it eases (see "Easing"): its level drops to the
// rest's, and its rate is its room (RoomFraction of the capacity its
// owner last named), so that the records bound for it are not admitted
// in full at once, which would melt it again. It reports whether waiting
// records must decide again. f.mu is held.
func (f *followed) setHot(cfg *ctlConfig, pr lagmonitor.Pressure, now time.Time) bool {
	if pr.Instance == "" {
		// No live signal: fail-open, as for the topic.
		changed := f.hot != nil
		f.hot, f.rest = nil, nil
		f.hotN.Store(0)
		return changed
	}
	changed := false
	if f.hot == nil && pr.Partitions != nil {
		f.hot = make(map[int32]*hotPart)
	}
	for part, pp := range pr.Partitions {
		hp := f.hot[part]
		if hp == nil {
			hp = &hotPart{ctl: newTopicCtl(cfg), offered: make([]atomic.Uint64, len(cfg.classes))}
			f.hot[part], changed = hp, true
		}
		if pp.Capacity > 0 {
			hp.room = lagmonitor.DefaultRoomFraction * pp.Capacity
		}
		hpr := lagmonitor.Pressure{Topic: pr.Topic, Level: pp.Level, Rate: pp.Rate, Group: pp.Group, Instance: pp.Instance,
			Seq: pr.Seq, ExpiresAt: pr.ExpiresAt, RestLevel: pp.Level,
			Reason: fmt.Sprintf("partition %d is hot: %s, %v behind", part, pp.Level, pp.TimeLag.Round(time.Millisecond))}
		changed = hp.ctl.setPressure(hpr, now) || changed
	}
	for part, hp := range f.hot {
		if _, named := pr.Partitions[part]; named {
			continue
		}
		after := lagmonitor.Pressure{Topic: pr.Topic, Level: pr.RestLevel, Rate: hp.room, Group: pr.Group, Instance: pr.Instance,
			Seq: pr.Seq, ExpiresAt: pr.ExpiresAt, RestLevel: pr.RestLevel,
			Reason: fmt.Sprintf("partition %d is no longer hot: held at its room of %s/s while its demand exceeds it", part, fmtRate(hp.room))}
		changed = hp.ctl.setPressure(after, now) || changed
		if !hp.ctl.easing() {
			delete(f.hot, part)
			changed = true
		}
	}
	if len(f.hot) == 0 {
		changed = changed || f.rest != nil
		f.hot, f.rest = nil, nil
		f.hotN.Store(0)
		return changed
	}
	if f.rest == nil {
		f.rest, changed = f.ctl.clone(), true // the topic's rates, measured so far
	}
	rest := pr
	rest.Level = pr.RestLevel
	changed = f.rest.setPressure(rest, now) || changed
	f.hotN.Store(int32(len(f.hot)))
	return changed
}

// ackHot counts an acknowledged record of this producer on a hot
// partition.
func (f *followed) ackHot(partition int32) {
	if f.hotN.Load() == 0 {
		return
	}
	f.mu.Lock()
	if hp := f.hot[partition]; hp != nil {
		hp.acked.Add(1)
	}
	f.mu.Unlock()
}

// clone returns a copy of t with its rates measured so far and no limit
// of its own yet.
func (t *topicCtl) clone() *topicCtl {
	c := newTopicCtl(t.cfg)
	c.own, c.incoming, c.share, c.corr, c.corrAt = t.own, t.incoming, t.share, t.corr, t.corrAt
	copy(c.demand, t.demand)
	return c
}

// Steering is a kgo.Partitioner that steers unkeyed records away from
// the partitions a producer's signals name hot, and otherwise partitions
// as the partitioner it wraps. Records with a key go where the wrapped
// partitioner puts them (moving them would break their key's order).
// Opt in with [SteerUnkeyed] for a producer built by [New]; for a client
// of one's own, build it with kgo.RecordPartitioner(NewSteering(...)) and
// [Wrap] it: the producer finds it. Records steered so are admitted by
// the level of the rest of the topic, not its worst. Without steering, an
// unkeyed record's partition is not known ahead, and it is admitted by
// the topic's worst level. A Steering serves one producer.
type Steering struct {
	fallback kgo.Partitioner

	mu  sync.Mutex
	hot map[string]map[int32]bool // by topic
}

// NewSteering returns a steering partitioner around fallback (nil: kgo's
// default, UniformBytesPartitioner(64KiB, true, true, nil)).
func NewSteering(fallback kgo.Partitioner) *Steering {
	if fallback == nil {
		fallback = kgo.UniformBytesPartitioner(64<<10, true, true, nil)
	}
	return &Steering{fallback: fallback, hot: make(map[string]map[int32]bool)}
}

// setHot records the hot partitions of topic (nil: none).
func (s *Steering) setHot(topic string, parts map[int32]lagmonitor.PartitionPressure) {
	var set map[int32]bool
	if len(parts) > 0 {
		set = make(map[int32]bool, len(parts))
		for p := range parts {
			set[p] = true
		}
	}
	s.mu.Lock()
	s.hot[topic] = set
	s.mu.Unlock()
}

// ForTopic implements kgo.Partitioner.
func (s *Steering) ForTopic(topic string) kgo.TopicPartitioner {
	return &steerTopic{s: s, topic: topic, fb: s.fallback.ForTopic(topic)}
}

type steerTopic struct {
	s     *Steering
	topic string
	fb    kgo.TopicPartitioner
}

func (t *steerTopic) RequiresConsistency(r *kgo.Record) bool { return t.fb.RequiresConsistency(r) }

func (t *steerTopic) Partition(r *kgo.Record, n int) int { return t.steer(r, t.fb.Partition(r, n), n) }

// PartitionByBackup lets a wrapped partitioner that partitions by backup
// (kgo's default) do so; kgo then calls it rather than Partition.
func (t *steerTopic) PartitionByBackup(r *kgo.Record, n int, backup kgo.TopicBackupIter) int {
	if b, ok := t.fb.(kgo.TopicBackupPartitioner); ok {
		return t.steer(r, b.PartitionByBackup(r, n, backup), n)
	}
	return t.Partition(r, n)
}

// OnNewBatch passes the event on to a wrapped partitioner that wants it.
func (t *steerTopic) OnNewBatch() {
	if nb, ok := t.fb.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}

// steer moves an unkeyed record off a hot partition p, to the next one
// that is not hot; with every partition hot it stays.
func (t *steerTopic) steer(r *kgo.Record, p, n int) int {
	if r.Key != nil {
		return p
	}
	t.s.mu.Lock()
	hot := t.s.hot[t.topic]
	t.s.mu.Unlock()
	if !hot[int32(p)] {
		return p
	}
	for i := 1; i < n; i++ {
		if q := (p + i) % n; !hot[int32(q)] {
			return q
		}
	}
	return p
}

var (
	_ kgo.TopicBackupPartitioner     = (*steerTopic)(nil)
	_ kgo.TopicPartitionerOnNewBatch = (*steerTopic)(nil)
)
