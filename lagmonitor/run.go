package lagmonitor

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/partition"
)

// Run creates the control topic if it is missing, then measures, decides
// and publishes until ctx ends, then stops (see [Monitor] for what a stop
// writes) and returns. It returns nil after ctx ended, and an error,
// naming the rights needed, when the control topic can neither be found
// nor created. It may be called once.
func (m *Monitor) Run(ctx context.Context) error {
	ectx, ecancel := context.WithTimeout(ctx, time.Minute)
	st, err := EnsureControlTopic(ectx, m.rt.Client(), m.cfg.ControlTopic, m.cfg.ControlPartitions, m.cfg.TTL)
	ecancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("lagmonitor: %w", err)
	}
	for _, w := range st.Warnings {
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: control topic: "+w, "topic", m.cfg.ControlTopic)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { m.refreshLoop(rctx) })
	m.mu.Lock()
	if !m.stopped {
		wg.Go(m.publishLoop)
	}
	m.mu.Unlock()

	tick := time.NewTicker(m.cfg.EvalInterval)
	defer tick.Stop()
	for {
		m.evaluate()
		select {
		case <-ctx.Done():
			cancel()
			m.stop(context.WithoutCancel(ctx))
			return nil
		case <-tick.C:
		}
	}
}

// refreshLoop lists end offsets (and last stable offsets for a
// read_committed consumer) and the group's committed offsets every
// RefreshInterval.
func (m *Monitor) refreshLoop(ctx context.Context) {
	tick := time.NewTicker(m.cfg.RefreshInterval)
	defer tick.Stop()
	for {
		m.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// evaluate measures every partition, decides every topic's level, and
// hands what is due to the publisher. It never waits for a publish.
func (m *Monitor) evaluate() {
	now := m.cfg.Now()
	st := m.rt.Stats()
	assigned := m.rt.Assigned()
	var events []LevelEvent

	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	events = m.step(now, st, assigned)
	pause, resume := m.classPauses(assigned)
	m.mu.Unlock()
	m.out.kick()

	if len(pause) > 0 {
		m.rt.Pause(partition.Lag, pause)
	}
	if len(resume) > 0 {
		m.rt.Resume(partition.Lag, resume)
	}
	for _, e := range events {
		for _, h := range m.levelHooks {
			h.OnLevelChange(e)
		}
		m.logf(kgo.LogLevelInfo, "floodgate: pressure level changed", "group", e.Group, "topic", e.Topic,
			"from", e.From, "to", e.To, "reason", e.Reason, "offset_lag", e.OffsetLag, "time_lag", e.TimeLag)
	}
}

// step is an evaluation's measuring and deciding at now, from the
// runtime's stats and assignment: it returns the level changes to report
// and leaves what is due in the outbox. It does no I/O. Called with mu
// held.
func (m *Monitor) step(now time.Time, st consumer.Stats, assigned map[string][]int32) []LevelEvent {
	var events []LevelEvent
	loads := loadOf(st, assigned)
	for topic, parts := range m.measure(now, st, assigned) {
		if e := m.decideTopic(now, topic, parts, loads[topic]); e != nil {
			events = append(events, *e)
		}
	}
	m.forgetLost(now)
	return events
}

// measure measures every partition the runtime owns (assigned, or in its
// Stats), and returns their lags by topic, sorted by partition. A
// partition or topic no longer owned is marked lost (see forgetLost).
// Called with mu held.
func (m *Monitor) measure(now time.Time, st consumer.Stats, assigned map[string][]int32) map[string][]PartitionLag {
	stats := make(map[partKey]*consumer.PartitionStats, len(st.Partitions))
	for i := range st.Partitions {
		ps := &st.Partitions[i]
		stats[partKey{ps.Topic, ps.Partition}] = ps
	}
	owned := make(map[partKey]bool, len(stats))
	for k := range stats {
		owned[k] = true
	}
	for t, ps := range assigned {
		for _, p := range ps {
			owned[partKey{t, p}] = true
		}
	}
	byTopic := make(map[string][]PartitionLag)
	for k := range owned {
		pm := m.part(k)
		pm.lostAt = time.Time{}
		mc := measureCfg{thresholds: m.cfg.Thresholds, readCommitted: m.readCommitted, stalledLSO: m.cfg.StalledLSO}
		if d, ok := m.tierDelay(k.topic); ok {
			mc.tierDelay = d
		}
		pm.measure(now, m.input(k, stats[k]), &mc)
		byTopic[k.topic] = append(byTopic[k.topic], pm.lag)
	}
	for k, pm := range m.parts {
		if !owned[k] && pm.lostAt.IsZero() {
			pm.lostAt = now
		}
	}
	for _, ls := range byTopic {
		sort.Slice(ls, func(i, j int) bool { return ls[i].Partition < ls[j].Partition })
	}
	return byTopic
}

// input gathers what is known of partition k besides its history.
// Called with mu held.
func (m *Monitor) input(k partKey, ps *consumer.PartitionStats) partInput {
	in := partInput{topic: k.topic, partition: k.partition, stats: ps, commit: -1, start: -1,
		end: listedOffset{offset: -1}, hwm: listedOffset{offset: -1}}
	if e, ok := m.listed.ends[k]; ok {
		in.end = e
	}
	if h, ok := m.listed.hwms[k]; ok {
		in.hwm = h
	}
	if c, ok := m.listed.commit[k]; ok {
		in.commit = c
	} else if !m.listed.committedAt.IsZero() {
		// No commit: the group starts it at its reset offset.
		switch m.start {
		case startAtLogStart:
			if s, ok := m.listed.starts[k]; ok {
				in.start = s
			}
		case startAtEnd:
			in.start = in.end.offset
		}
	}
	return in
}

// decideTopic decides topic from its partitions at now and hands its
// signal to the publisher when one is due: at once on a level change (or
// the first signal), else every Heartbeat. It returns the level change
// to report, if any. Called with mu held.
func (m *Monitor) decideTopic(now time.Time, topic string, parts []PartitionLag, ld load) *LevelEvent {
	tm := m.topic(topic, now)
	tm.lostAt = time.Time{}
	unmeasured := false
	maxPart := int32(-1)
	for _, p := range parts {
		unmeasured = unmeasured || !p.Measured
		maxPart = max(maxPart, p.Partition)
	}
	if unmeasured && !tm.signaled && now.Sub(tm.seen) < m.cfg.MeasureTimeout {
		// Nothing is said of a topic before it is measured.
		tm.last = TopicLag{Topic: topic, Partitions: parts, Owned: len(parts), LastPublished: tm.last.LastPublished,
			Reason: "not measured yet: nothing published", Unmeasured: unmeasuredOf(parts)}
		return nil
	}
	tm.observeLoad(now, ld)
	prev := tm.last.Level
	lag, _ := tm.decide(now, topic, parts, max(m.listed.counts[topic], int(maxPart)+1), &m.cfg)
	lag.LastPublished = tm.last.LastPublished
	tm.last = lag
	var ev *LevelEvent
	changed := lag.Level != prev
	if changed {
		ev = &LevelEvent{Group: m.cfg.Group, Topic: topic, Instance: m.cfg.Instance,
			From: prev, To: lag.Level, Reason: lag.Reason, OffsetLag: lag.OffsetLag, TimeLag: lag.TimeLag,
			DrainRate: lag.DrainRate, SuggestedRate: lag.SuggestedRate, At: now}
	}
	if changed || !tm.signaled || !now.Before(tm.next) {
		m.out.put(topic, outItem{sig: m.signal(&lag, now)})
		tm.next, tm.signaled, tm.sent = now.Add(m.cfg.Heartbeat), true, lag.Level
	}
	return ev
}

// load is how busy a topic's handlers are at one moment: the handlers
// running for its partitions, of the most that could run for them
// (slots): one per partition under OrderPartition, else one per lane of
// records its partitions hold (a partition without any counts one),
// within MaxConcurrency.
type load struct{ running, slots int }

// loadOf samples each topic's load from the runtime's stats.
func loadOf(st consumer.Stats, assigned map[string][]int32) map[string]load {
	lanes := map[partKey]int{}
	out := map[string]load{}
	for _, ps := range st.Partitions {
		l := out[ps.Topic]
		l.running += ps.Running
		out[ps.Topic] = l
		lanes[partKey{ps.Topic, ps.Partition}] = max(ps.Lanes, 1)
	}
	for t, ps := range assigned {
		for _, p := range ps {
			if _, ok := lanes[partKey{t, p}]; !ok {
				lanes[partKey{t, p}] = 1
			}
		}
	}
	for k, n := range lanes {
		l := out[k.topic]
		if st.Ordering == consumer.OrderPartition {
			n = 1
		}
		l.slots += n
		out[k.topic] = l
	}
	for t, l := range out {
		if st.MaxConcurrency > 0 {
			l.slots = min(l.slots, st.MaxConcurrency)
		}
		out[t] = l
	}
	return out
}

func unmeasuredOf(parts []PartitionLag) []int32 {
	var out []int32
	for _, p := range parts {
		if !p.Measured {
			out = append(out, p.Partition)
		}
	}
	return out
}

// forgetLost forgets the partitions and topics lost for longer than a
// grace of one Heartbeat, so that one that comes back within a
// rebalance keeps its history and its level. A topic forgotten whose
// last signal said ok gets a tombstone; one whose signal was above ok
// keeps it until its TTL (see [Monitor.Run]). Called with mu held.
func (m *Monitor) forgetLost(now time.Time) {
	grace := m.cfg.Heartbeat
	for k, pm := range m.parts {
		if !pm.lostAt.IsZero() && now.Sub(pm.lostAt) >= grace {
			delete(m.parts, k)
		}
	}
	for topic, tm := range m.topics {
		if _, owned := m.topicOwned(topic); owned {
			continue
		}
		if tm.lostAt.IsZero() {
			tm.lostAt = now
		}
		if now.Sub(tm.lostAt) < grace {
			continue
		}
		if tm.signaled && tm.sent == LevelOK {
			m.out.put(topic, outItem{tomb: true})
		}
		delete(m.topics, topic)
	}
}

// topicOwned reports whether a partition of topic is still owned.
func (m *Monitor) topicOwned(topic string) (*partMonitor, bool) {
	for k, pm := range m.parts {
		if k.topic == topic && pm.lostAt.IsZero() {
			return pm, true
		}
	}
	return nil, false
}

// classPauses decides which topics' partitions pause, and which resume,
// for a more important class's lag (Config.ClassPauseLevel). Called with
// mu held, after the levels were decided.
func (m *Monitor) classPauses(assigned map[string][]int32) (pause, resume map[string][]int32) {
	order, ok := m.rt.Order()
	if !ok || m.cfg.DisableClassPause {
		return nil, nil
	}
	// The most important rank at which a topic is at the level.
	hot := -1
	for topic, tm := range m.topics {
		c, _ := m.rt.ClassOf(topic)
		r, known := order.Rank(c)
		if known && tm.level.Level() >= m.cfg.ClassPauseLevel && (hot < 0 || r < hot) {
			hot = r
		}
	}
	for topic, parts := range assigned {
		c, _ := m.rt.ClassOf(topic)
		r, known := order.Rank(c)
		want := hot >= 0 && (!known || r > hot)
		switch {
		case want:
			// Every evaluation, not only when the topic turns: a
			// partition assigned or first fetched since (the runtime
			// knows a partition once it fetched it) is paused too;
			// pausing a paused one changes nothing.
			m.classPaused[topic] = true
			if pause == nil {
				pause = map[string][]int32{}
			}
			pause[topic] = parts
		case !want && m.classPaused[topic]:
			delete(m.classPaused, topic)
			if resume == nil {
				resume = map[string][]int32{}
			}
			resume[topic] = parts
		}
	}
	return pause, resume
}

func (m *Monitor) tierDelay(topic string) (time.Duration, bool) {
	if m.cfg.TierDelay == nil {
		return 0, false
	}
	return m.cfg.TierDelay(topic)
}

func (m *Monitor) part(k partKey) *partMonitor {
	pm := m.parts[k]
	if pm == nil {
		w, _ := NewTrendWindow(DefaultTrendConfig()) // checked in New
		lm, _ := NewLevelMachine(m.cfg.Thresholds)   // checked in New
		pm = &partMonitor{trend: w, level: lm, lso: -1, fast: NewRateMeter(CapacityRateTau)}
		m.parts[k] = pm
	}
	return pm
}

func (m *Monitor) topic(t string, now time.Time) *topicMonitor {
	tm := m.topics[t]
	if tm == nil {
		lm, _ := NewLevelMachine(m.cfg.Thresholds) // checked in New
		tm = &topicMonitor{level: lm, drain: NewDrainMeter(0), fast: NewRateMeter(CapacityRateTau), capacity: NewCapacityEstimator(0), seen: now}
		m.topics[t] = tm
	}
	return tm
}

// stop publishes no more and lifts this instance's signals that said ok:
// when Run's context ends, or when the runtime stops (whichever comes
// first; the second does nothing). A signal above ok is left to expire
// at its TTL, so that a restarted instance that has not measured yet is
// no all-clear. It waits for the publisher and the tombstones at most
// until ctx ends (and each tombstone a Heartbeat).
func (m *Monitor) stop(ctx context.Context) {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	m.stopped = true
	var topics []string
	for t, tm := range m.topics {
		if tm.signaled && tm.sent == LevelOK {
			topics = append(topics, t)
		}
	}
	for t, it := range m.out.items {
		if it.tomb && m.topics[t] == nil {
			topics = append(topics, t) // forgotten, its tombstone not yet written
		}
	}
	resume := map[string][]int32{}
	assigned := m.rt.Assigned()
	for t := range m.classPaused {
		resume[t] = assigned[t]
		delete(m.classPaused, t)
	}
	m.mu.Unlock()
	if len(resume) > 0 {
		m.rt.Resume(partition.Lag, resume) // what this monitor paused is not left paused
	}
	// No signal may follow a tombstone: the publisher stops first.
	m.out.close(ctx)
	var wg sync.WaitGroup
	for _, t := range topics {
		wg.Go(func() { m.tombstone(ctx, t) })
	}
	wg.Wait()
}

// Lag returns the latest measure of every topic the runtime is assigned,
// sorted by topic.
func (m *Monitor) Lag() []TopicLag {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]TopicLag, 0, len(m.topics))
	for _, tm := range m.topics {
		l := tm.last
		l.Partitions = append([]PartitionLag(nil), l.Partitions...)
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out
}

func (m *Monitor) logf(level kgo.LogLevel, msg string, kv ...any) {
	if m.log != nil && m.log.Level() >= level {
		m.log.Log(level, msg, kv...)
	}
}
