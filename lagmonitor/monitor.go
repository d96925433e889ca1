package lagmonitor

import (
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
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
	// MeasureTimeout bounds how long a topic's first signal waits for
	// every partition the instance owns of it to be measured (its end
	// offset and its position known: a fetch answered, or the end and
	// committed offsets were listed). Until then the instance publishes
	// nothing for the topic, so that it never says "ok" for what it has
	// not seen; a partition still unmeasured after it (a leader that
	// does not answer) is left out of the signal and named in its
	// reason until it is measured. Once a topic's first signal went out,
	// a partition assigned later is left out until measured. Default
	// TTL: by then the signal of the instance that owned the partitions
	// before has expired anyway.
	MeasureTimeout time.Duration
	// StalledLSO is how long the last stable offset of a read_committed
	// consumer's partition may stay put while records sit above it
	// before those records count as lag: a transaction left open (a
	// producer that died mid-transaction, until the broker aborts it at
	// its transaction.timeout.ms) hides everything after it from the
	// consumer, and the lag would read 0. Until then the records above
	// it are reported (TopicLag.UnstableOffsets, LSOStall) but are not
	// lag: an open transaction is not yet the consumer's work. Default
	// 1m; negative never counts them.
	StalledLSO time.Duration
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
	OffsetLag     int64         // summed over the measured partitions
	TimeLag       time.Duration // the largest of the measured partitions
	DrainRate     float64       // records handled per second, smoothed
	DivertRate    float64       // records diverted per second, smoothed
	Capacity      float64       // estimated records per second; 0 unknown
	SuggestedRate float64       // 0: none; at ok, the room ([RateConfig.Room])
	Paused        map[string]int
	// Owned counts the topic's partitions the instance owns, and
	// TopicPartitions the topic's partitions (0 until listed).
	Owned, TopicPartitions int
	// Unmeasured lists the owned partitions not measured yet: left out
	// of the figures above (see Config.MeasureTimeout).
	Unmeasured []int32
	// Hot lists the partitions whose level is above RestLevel, the
	// level of the others (see [Signal.Hot]).
	Hot       []HotPartition
	RestLevel Level
	// UnstableOffsets sums the records above the partitions' last stable
	// offsets and LSOStall is the longest such offset has not moved
	// (read_committed consumers; see Config.StalledLSO).
	UnstableOffsets int64
	LSOStall        time.Duration
	Partitions      []PartitionLag
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
// client, in a goroutine of its own so that a slow control topic never
// holds the measuring. Build it with [New] and run it with [Monitor.Run]
// beside the runtime's Run.
type Monitor struct {
	cfg Config
	rt  *consumer.Runtime
	// readCommitted: the runtime's client reads committed records only
	// (fixed with the client), so its lag is against the last stable
	// offset.
	readCommitted bool
	start         startPolicy // where a partition without a commit starts
	pub           *Publisher
	log           kgo.Logger
	adm           *kadm.Client

	levelHooks []HookLevelChange
	pubHooks   []HookPublish

	mu      sync.Mutex // guards everything below
	stopped bool       // no more signals: the tombstones are written
	parts   map[partKey]*partMonitor
	topics  map[string]*topicMonitor
	listed  listing
	// classPaused holds the topics whose partitions the monitor paused
	// for a more important class's lag.
	classPaused map[string]bool
	out         outbox
}

// listing is what the refresh loop last listed from the brokers.
type listing struct {
	ends   map[partKey]listedOffset // end offsets (last stable offsets for read_committed)
	hwms   map[partKey]listedOffset // high watermarks (read_committed only)
	starts map[partKey]int64        // log start offsets, when a partition without a commit needs one
	commit map[partKey]int64        // committed offsets
	// committedAt is when the group's committed offsets were last
	// fetched: a partition absent from them had no commit then.
	committedAt time.Time
	counts      map[string]int // partitions per topic
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
		start:         startPolicyOf(cl),
		pub:           pub,
		adm:           kadm.NewClient(cl),
		parts:         make(map[partKey]*partMonitor),
		topics:        make(map[string]*topicMonitor),
		classPaused:   make(map[string]bool),
		out:           newOutbox(),
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
	switch {
	case c.MeasureTimeout < 0:
		return configErr("MeasureTimeout", "must be >= 0, got %v", c.MeasureTimeout)
	case c.MeasureTimeout == 0:
		c.MeasureTimeout = c.TTL
	}
	if c.StalledLSO == 0 {
		c.StalledLSO = time.Minute
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

// ClientOpts returns the kgo options the client a [Monitor] publishes with
// needs: a partitioner that sends every signal of a topic to the control
// topic's partition [PartitionFor] gives (other topics keep kgo's default
// partitioner). Add them to the runtime's client: consumer.KgoOpts(...)
// for a runtime built by consumer.New, or the wrapped client's options.
func ClientOpts(controlTopic string) []kgo.Opt {
	return []kgo.Opt{kgo.RecordPartitioner(Partitioner(controlTopic, nil))}
}
