package lagmonitor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/partition"
)

// Config configures a [Monitor]. Group and ControlTopic are required; the
// zero value of every other field is its documented default.
type Config struct {
	// Group is the consumer group the runtime consumes for.
	Group string
	// ControlTopic is where signals are published (see [Publisher]).
	ControlTopic string
	// Instance names this instance in its signals; default
	// NewInstanceID(Group). Give each incarnation its own: sequences are
	// per instance.
	Instance string
	// Thresholds decide the levels; default [DefaultThresholds].
	Thresholds Thresholds
	// Rate shapes the suggested producer rate; default
	// [DefaultRateConfig].
	Rate RateConfig
	// EvalInterval is how often lags are measured and levels decided; a
	// level change is published at once. Default 100ms.
	EvalInterval time.Duration
	// Heartbeat is how often a topic's signal is published while its
	// level stays the same. Default 5s. A publish that fails is tried
	// again sooner, after a backoff from EvalInterval doubling up to
	// Heartbeat.
	Heartbeat time.Duration
	// TTL is how long a signal holds (fail-open after); it must exceed
	// Heartbeat. Default 3 × Heartbeat. Readers cap it at their
	// ReadMaxTTL (default 1m): a longer TTL needs readers set for it.
	TTL time.Duration
	// RefreshInterval is how often end offsets and committed offsets are
	// listed from the brokers, for partitions that fetches do not
	// refresh (paused, idle, not fetched yet). Default 3s.
	RefreshInterval time.Duration
	// TierDelay, if set, says which topics are retry tiers and their
	// delay: a tier's records wait that long by design, so its time lag
	// is measured against the due time (retrytopics.Policy.TierDelay).
	TierDelay func(topic string) (time.Duration, bool)
	// Signer, if set, signs every signal and tombstone (see [Signer]).
	Signer *Signer
	// ClassPauseLevel: when the runtime has priority classes
	// (consumer.WithPriorities), a topic of one class reaching this level
	// pauses the runtime's partitions of every less important class
	// (reason partition.Lag) until no more important topic is at it, so
	// that the more important work gets the handlers. Default
	// LevelElevated; DisableClassPause turns it off.
	ClassPauseLevel   Level
	DisableClassPause bool
	// ControlPartitions is the number of partitions the control topic is
	// created with when Run finds it missing (see [EnsureControlTopic]; an
	// existing topic is used as it is). Default 12.
	ControlPartitions int32
	// Hooks observe the monitor ([HookLevelChange], [HookPublish]).
	Hooks []Hook
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Hook observes a [Monitor]: a value implementing any of the Hook*
// interfaces. Hooks are called from the monitor's goroutine and must be
// fast.
type Hook any

// HookLevelChange is called for every change of a topic's level: a
// structured event for logs and traces.
type HookLevelChange interface {
	OnLevelChange(e LevelEvent)
}

// HookPublish is called after every publish attempt (err nil on success).
type HookPublish interface {
	OnPublish(s Signal, err error)
}

// LevelEvent is a change of level of one topic, as one instance of a group
// sees it.
type LevelEvent struct {
	Group, Topic, Instance string
	From, To               Level
	Reason                 string
	OffsetLag              int64
	TimeLag                time.Duration
	DrainRate              float64
	SuggestedRate          float64
	At                     time.Time
}

// TopicLag is one topic's lag as this instance sees it: its partitions'
// lags and what was decided from them.
type TopicLag struct {
	Topic         string
	Level         Level
	Reason        string
	OffsetLag     int64         // summed over the partitions
	TimeLag       time.Duration // the largest of the partitions
	DrainRate     float64       // records handled per second, smoothed
	DivertRate    float64       // records diverted per second, smoothed
	Capacity      float64       // estimated records per second; 0 unknown
	SuggestedRate float64       // 0: none
	Paused        map[string]int
	Partitions    []PartitionLag
	// LastPublished is when the topic's signal was last published
	// (acknowledged by the control topic).
	LastPublished time.Time
}

// Monitor measures a [consumer.Runtime]'s lag per topic, decides a
// pressure level per topic, and publishes it as signals on the control
// topic: at once when a level changes, and as a heartbeat. It reads the
// runtime's Stats and its client's fetches (no broker round trip on the
// hot path), lists end and committed offsets off the hot path for
// partitions fetches do not refresh, and produces with the runtime's
// client. Build it with [New] and run it with [Monitor.Run] beside the
// runtime's Run.
type Monitor struct {
	cfg Config
	rt  *consumer.Runtime
	// readCommitted: the runtime's client reads committed records only
	// (fixed with the client), so its lag is against the last stable
	// offset.
	readCommitted bool
	pub           *Publisher
	log           kgo.Logger
	adm           *kadm.Client

	levelHooks []HookLevelChange
	pubHooks   []HookPublish

	// pubMu orders publishing against stop, so that no signal follows
	// the tombstones; taken before mu.
	pubMu   sync.Mutex
	mu      sync.Mutex // guards what Lag reads and the refreshed offsets
	stopped bool       // no more signals: the tombstones are written
	parts   map[partKey]*partMonitor
	topics  map[string]*topicMonitor
	ends    map[partKey]endPoint // listed end offsets
	// classPaused holds the topics whose partitions the monitor paused
	// for a more important class's lag.
	classPaused map[string]bool
	commit      map[partKey]int64 // listed committed offsets
}

type partKey struct {
	topic     string
	partition int32
}

type partMonitor struct {
	hist  endHistory
	trend *TrendWindow
	last  time.Time // last trend sample
	lag   PartitionLag
}

type topicMonitor struct {
	level    *LevelMachine
	drain    DrainMeter
	capacity CapacityEstimator
	last     TopicLag
	next     time.Time // when a signal is due, level change or not
	signaled bool      // a signal was published: stopping writes a tombstone
	// retry is the wait after the last failed publish (0 after a
	// success): a signal is due again after it, not a whole heartbeat
	// later, so that a level change that failed to go out reaches
	// producers soon after the control topic takes writes again.
	retry time.Duration
}

// New returns a monitor of rt. It checks cfg once and names a bad field
// (errors wrap [ErrInvalidConfig]).
func New(rt *consumer.Runtime, cfg Config) (*Monitor, error) {
	if rt == nil {
		return nil, configErr("Runtime", "must not be nil")
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if _, err := NewTrendWindow(DefaultTrendConfig()); err != nil {
		return nil, err
	}
	cl := rt.Client()
	popts := []PublisherOpt{PublishClock(cfg.Now), PublishTimeout(cfg.Heartbeat)}
	if cfg.Signer != nil {
		popts = append(popts, PublishSigner(cfg.Signer))
	}
	pub, err := NewPublisher(cl, cfg.ControlTopic, cfg.Instance, popts...)
	if err != nil {
		return nil, fmt.Errorf("%w (the runtime's client needs ClientOpts(%q): consumer.KgoOpts(lagmonitor.ClientOpts(...)...) for a runtime built by consumer.New)", err, cfg.ControlTopic)
	}
	m := &Monitor{
		cfg:           cfg,
		rt:            rt,
		readCommitted: rt.Stats().ReadCommitted,
		pub:           pub,
		adm:           kadm.NewClient(cl),
		parts:         make(map[partKey]*partMonitor),
		topics:        make(map[string]*topicMonitor),
		ends:          make(map[partKey]endPoint),
		classPaused:   make(map[string]bool),
		commit:        make(map[partKey]int64),
	}
	m.log, _ = cl.OptValue(kgo.WithLogger).(kgo.Logger)
	// The runtime closes a client it built when it stops: write the
	// tombstones before that, however the two are stopped.
	rt.OnStop(m.stop)
	for _, h := range cfg.Hooks {
		if v, ok := h.(HookLevelChange); ok {
			m.levelHooks = append(m.levelHooks, v)
		}
		if v, ok := h.(HookPublish); ok {
			m.pubHooks = append(m.pubHooks, v)
		}
	}
	return m, nil
}

func (c *Config) defaults() error {
	switch {
	case c.Group == "":
		return configErr("Group", "must be set")
	case c.ControlTopic == "":
		return configErr("ControlTopic", "must be set")
	case c.EvalInterval < 0:
		return configErr("EvalInterval", "must be >= 0, got %v", c.EvalInterval)
	case c.Heartbeat < 0:
		return configErr("Heartbeat", "must be >= 0, got %v", c.Heartbeat)
	case c.TTL < 0:
		return configErr("TTL", "must be >= 0, got %v", c.TTL)
	case c.RefreshInterval < 0:
		return configErr("RefreshInterval", "must be >= 0, got %v", c.RefreshInterval)
	case c.ControlPartitions < 0:
		return configErr("ControlPartitions", "must be >= 0, got %d", c.ControlPartitions)
	}
	if c.ControlPartitions == 0 {
		c.ControlPartitions = 12
	}
	if c.ClassPauseLevel == LevelOK {
		c.ClassPauseLevel = LevelElevated
	}
	if c.Instance == "" {
		c.Instance = NewInstanceID(c.Group)
	}
	if c.Thresholds == (Thresholds{}) {
		c.Thresholds = DefaultThresholds()
	}
	if err := c.Thresholds.Validate(); err != nil {
		return err
	}
	if c.Rate == (RateConfig{}) {
		c.Rate = DefaultRateConfig()
	}
	if err := c.Rate.Validate(); err != nil {
		return err
	}
	if c.EvalInterval == 0 {
		c.EvalInterval = 100 * time.Millisecond
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 5 * time.Second
	}
	if c.TTL == 0 {
		c.TTL = 3 * c.Heartbeat
	}
	if c.TTL <= c.Heartbeat {
		return configErr("TTL", "(%v) must exceed Heartbeat (%v), or signals expire between heartbeats", c.TTL, c.Heartbeat)
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 3 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	for i, h := range c.Hooks {
		if h == nil {
			return configErr("Hooks", "hook %d is nil", i)
		}
	}
	return nil
}

// Instance returns the instance id the monitor signs its signals with.
func (m *Monitor) Instance() string { return m.cfg.Instance }

// Run creates the control topic if it is missing, then measures, decides
// and publishes until ctx ends, then writes a tombstone for every topic it
// published a signal of (so that producers stop obeying it at once rather
// than at its TTL) and returns. It returns nil after ctx ended, and an
// error, naming the rights needed, when the control topic can neither be
// found nor created. It may be called once.
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
	wg.Add(1)
	go func() { defer wg.Done(); m.refreshLoop(rctx) }()

	tick := time.NewTicker(m.cfg.EvalInterval)
	defer tick.Stop()
	for {
		m.evaluate(ctx)
		select {
		case <-ctx.Done():
			cancel()
			m.stop(context.WithoutCancel(ctx))
			return nil
		case <-tick.C:
		}
	}
}

// refreshLoop lists end offsets (last stable offsets for a read_committed
// consumer) and the group's committed offsets every RefreshInterval.
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

func (m *Monitor) refresh(ctx context.Context) {
	assigned := m.rt.Assigned()
	if len(assigned) == 0 {
		return
	}
	topics := make([]string, 0, len(assigned))
	for t := range assigned {
		topics = append(topics, t)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RefreshInterval)
	defer cancel()
	list := m.adm.ListEndOffsets
	if m.readCommitted {
		list = m.adm.ListCommittedOffsets // the last stable offsets
	}
	ends, err := list(ctx, topics...)
	now := m.cfg.Now()
	if err != nil {
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: listing end offsets", "err", err)
	}
	committed, cerr := m.adm.FetchOffsets(ctx, m.cfg.Group)
	if cerr != nil && !errors.Is(cerr, context.Canceled) {
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: fetching committed offsets", "err", cerr)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			m.ends[partKey{o.Topic, o.Partition}] = endPoint{o.Offset, now}
		}
	})
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil {
			m.commit[partKey{o.Topic, o.Partition}] = o.At
		}
	})
}

// topicAgg gathers one topic's partitions during an evaluation.
type topicAgg struct {
	lag               TopicLag
	handled, diverted uint64
	windowFull        bool // a partition is paused with a full window or byte budget
}

// evaluate measures every partition, decides every topic's level, and
// publishes what is due.
func (m *Monitor) evaluate(ctx context.Context) {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	now := m.cfg.Now()
	st := m.rt.Stats()
	assigned := m.rt.Assigned()
	var events []LevelEvent
	var due []Signal
	var gone []string

	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	aggs := make(map[string]*topicAgg)
	agg := func(topic string) *topicAgg {
		a := aggs[topic]
		if a == nil {
			a = &topicAgg{lag: TopicLag{Topic: topic, Paused: map[string]int{}}}
			aggs[topic] = a
		}
		return a
	}
	seen := make(map[partKey]bool, len(st.Partitions))
	for _, ps := range st.Partitions {
		k := partKey{ps.Topic, ps.Partition}
		seen[k] = true
		pm := m.part(k)
		end, at := ps.HighWatermark, ps.FetchedAt
		if st.ReadCommitted {
			end = ps.LastStable
		}
		if l, ok := m.ends[k]; ok && l.end > end {
			end, at = l.end, l.at
		}
		pm.hist.observe(end, at)
		l := partitionLag(ps, end, &pm.hist, now)
		m.addPartition(agg(ps.Topic), pm, l, ps.Committed, now)
		a := agg(ps.Topic)
		a.handled += ps.Completed - ps.Diverted
		a.diverted += ps.Diverted
		if ps.Paused.Has(partition.WindowFull) || ps.Paused.Has(partition.Memory) {
			a.windowFull = true
		}
	}
	// Assigned partitions the runtime holds no record of yet: measured
	// from the listed offsets only.
	for t, ps := range assigned {
		for _, p := range ps {
			k := partKey{t, p}
			if seen[k] {
				continue
			}
			seen[k] = true
			pm := m.part(k)
			end, next := int64(-1), int64(-1)
			if e, ok := m.ends[k]; ok {
				pm.hist.observe(e.end, e.at)
				end = e.end
			}
			if c, ok := m.commit[k]; ok {
				next = c
			}
			// Nothing admitted: the committed offset is where it stands.
			l := partitionLag(consumer.PartitionStats{Topic: t, Partition: p, Next: next}, end, &pm.hist, now)
			m.addPartition(agg(t), pm, l, l.Next, now)
		}
	}
	for k := range m.parts {
		if !seen[k] {
			delete(m.parts, k) // revoked: its history goes with it
		}
	}
	for topic, a := range aggs {
		tm := m.topic(topic)
		lag := &a.lag
		sort.Slice(lag.Partitions, func(i, j int) bool { return lag.Partitions[i].Partition < lag.Partitions[j].Partition })
		rates := tm.drain.Observe(now, a.handled, a.diverted)
		lag.DrainRate, lag.DivertRate = rates.Handled, rates.Diverted
		// A consumer that keeps up drains exactly what arrives: its
		// drain rate is its capacity only while a backlog waits on it.
		saturated := lag.OffsetLag > 0 && (a.windowFull || lag.TimeLag >= m.cfg.Thresholds.Elevated.TimeLag/2)
		tm.capacity.Observe(now, rates.Handled, saturated)
		lag.Capacity = tm.capacity.Capacity(now)
		dec := tm.level.Observe(now, lag.TimeLag, lag.OffsetLag)
		lag.Level, lag.Reason = dec.Level, dec.Reason
		lag.SuggestedRate = m.cfg.Rate.Suggest(lag.Capacity, lag.OffsetLag, dec.Level)
		lag.LastPublished = tm.last.LastPublished // kept across evaluations
		tm.last = *lag
		if dec.Changed {
			events = append(events, LevelEvent{Group: m.cfg.Group, Topic: topic, Instance: m.cfg.Instance,
				From: dec.Prev, To: dec.Level, Reason: dec.Reason, OffsetLag: lag.OffsetLag, TimeLag: lag.TimeLag,
				DrainRate: lag.DrainRate, SuggestedRate: lag.SuggestedRate, At: now})
		}
		if dec.Changed || !now.Before(tm.next) {
			due = append(due, Signal{Group: m.cfg.Group, Topic: topic, Level: dec.Level, OffsetLag: lag.OffsetLag, TimeLag: lag.TimeLag, DrainRate: lag.DrainRate,
				SuggestedRate: lag.SuggestedRate, Paused: lag.Paused, Reason: dec.Reason, IssuedAt: now, TTL: m.cfg.TTL})
			tm.next, tm.signaled = now.Add(m.cfg.Heartbeat), true
		}
	}
	for topic, tm := range m.topics {
		if _, ok := aggs[topic]; !ok {
			if tm.signaled {
				gone = append(gone, topic) // no partition of it left: lift its pressure
			}
			delete(m.topics, topic)
		}
	}
	pause, resume := m.classPauses(assigned)
	m.mu.Unlock()
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
	errs := make([]error, len(due))
	for i, s := range due {
		errs[i] = m.publish(ctx, s)
	}
	m.mu.Lock()
	for i, s := range due {
		tm := m.topics[s.Topic]
		switch {
		case tm == nil:
		case errs[i] == nil:
			tm.last.LastPublished, tm.retry = s.IssuedAt, 0
		default:
			// Due again after a backoff from EvalInterval, doubling up
			// to Heartbeat.
			tm.retry = min(max(2*tm.retry, m.cfg.EvalInterval), m.cfg.Heartbeat)
			tm.next = s.IssuedAt.Add(tm.retry)
		}
	}
	m.mu.Unlock()
	for _, t := range gone {
		m.tombstone(ctx, t)
	}
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

// addPartition adds l to a, with its trend. Called with mu held.
func (m *Monitor) addPartition(a *topicAgg, pm *partMonitor, l PartitionLag, committed int64, now time.Time) {
	if d, ok := m.tierDelay(l.Topic); ok {
		l.TimeLag = max(l.TimeLag-d, 0) // a tier's records are due that much later
	}
	if now.Sub(pm.last) >= time.Second {
		pm.trend.Add(TrendSample{At: now, Committed: committed, Lag: l.OffsetLag})
		pm.last = now
	}
	l.Trend = pm.trend.Trend(now)
	pm.lag = l
	a.lag.OffsetLag += l.OffsetLag
	a.lag.TimeLag = max(a.lag.TimeLag, l.TimeLag)
	for r := partition.Reasons(1); r != 0 && r <= l.Paused; r <<= 1 {
		if l.Paused&r != 0 {
			a.lag.Paused[r.String()]++
		}
	}
	a.lag.Partitions = append(a.lag.Partitions, l)
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
		pm = &partMonitor{trend: w}
		m.parts[k] = pm
	}
	return pm
}

func (m *Monitor) topic(t string) *topicMonitor {
	tm := m.topics[t]
	if tm == nil {
		lm, _ := NewLevelMachine(m.cfg.Thresholds) // checked in New
		tm = &topicMonitor{level: lm, drain: NewDrainMeter(0), capacity: NewCapacityEstimator(0)}
		m.topics[t] = tm
	}
	return tm
}

// publish writes s, bounded by the heartbeat interval.
func (m *Monitor) publish(ctx context.Context, s Signal) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Heartbeat)
	defer cancel()
	s, err := m.pub.Publish(ctx, s)
	for _, h := range m.pubHooks {
		h.OnPublish(s, err)
	}
	if err != nil {
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: publishing a pressure signal failed; it is published again soon, and producers fall back to no pressure when the last one expires",
			"topic", s.Topic, "level", s.Level, "err", err)
	}
	return err
}

// tombstone lifts this instance's signal of topic, bounded by ctx (the
// runtime's stop bound) and the heartbeat interval.
func (m *Monitor) tombstone(ctx context.Context, topic string) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
	defer cancel()
	if err := m.pub.Tombstone(ctx, topic, m.cfg.Instance, m.cfg.Group); err != nil {
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: writing a tombstone failed; the signal expires at its TTL", "topic", topic, "err", err)
	}
}

// stop lifts every signal this instance published and publishes no more:
// when Run's context ends, or when the runtime stops (whichever comes
// first; the second does nothing).
func (m *Monitor) stop(ctx context.Context) {
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	m.stopped = true
	var topics []string
	for t, tm := range m.topics {
		if tm.signaled {
			topics = append(topics, t)
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
	// One bound for all: the tombstones go out together.
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

// ClientOpts returns the kgo options the client a [Monitor] publishes with
// needs: a partitioner that sends every signal of a topic to the control
// topic's partition [PartitionFor] gives (other topics keep kgo's default
// partitioner). Add them to the runtime's client: consumer.KgoOpts(...)
// for a runtime built by consumer.New, or the wrapped client's options.
func ClientOpts(controlTopic string) []kgo.Opt {
	return []kgo.Opt{kgo.RecordPartitioner(Partitioner(controlTopic, nil))}
}
