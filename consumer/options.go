package consumer

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kname"
	"github.com/floodgate-kafka/floodgate/priority"
)

// Ordering selects which records of a partition may be handled concurrently.
type Ordering int8

const (
	// OrderPartition handles the records of one partition one at a time, in
	// offset order; different partitions run concurrently. The default.
	OrderPartition Ordering = iota
	// OrderKey handles the records of one key (within a partition) one at a
	// time, in offset order; different keys run concurrently. Records with a
	// nil key share one lane per partition.
	OrderKey
	// OrderNone handles any records concurrently, up to the bounds.
	OrderNone
)

func (o Ordering) String() string {
	switch o {
	case OrderPartition:
		return "partition"
	case OrderKey:
		return "key"
	case OrderNone:
		return "none"
	}
	return "unknown"
}

// Opt configures a [Runtime]. Options are applied in order, then validated
// once by [New] or [Wrap].
type Opt interface{ apply(*cfg) }

type opt func(*cfg)

func (o opt) apply(c *cfg) { o(c) }

type cfg struct {
	// own-client mode only
	brokers    []string
	group      string
	topics     []string
	kopts      []kgo.Opt
	protocol   GroupProtocol
	instanceID string

	ordering         Ordering
	maxConcurrency   int
	partMaxRecords   int
	partMaxBytes     int64
	resumeFraction   float64
	maxBufferedBytes int64
	maxSpan          int // 0: 2 × partMaxRecords

	maxUncommitted    int           // 0: partMaxRecords
	maxUncommittedAge time.Duration // 0: 2 × commitInterval + commitTimeout

	commitInterval  time.Duration
	commitTimeout   time.Duration
	revokeTimeout   time.Duration
	shutdownTimeout time.Duration

	backoffInitial time.Duration
	backoffMax     time.Duration

	hooks  []Hook
	router Router

	order      priority.Order
	classes    priority.Topics
	hasClasses bool
}

func defaultCfg() cfg {
	return cfg{
		ordering:         OrderPartition,
		maxConcurrency:   64,
		partMaxRecords:   10000,
		partMaxBytes:     8 << 20,
		resumeFraction:   0.5,
		maxBufferedBytes: 256 << 20,
		commitInterval:   5 * time.Second,
		commitTimeout:    10 * time.Second,
		revokeTimeout:    10 * time.Second,
		shutdownTimeout:  30 * time.Second,
		backoffInitial:   100 * time.Millisecond,
		backoffMax:       10 * time.Second,
	}
}

func (c *cfg) validate(own bool) error {
	if own {
		switch {
		case len(c.brokers) == 0:
			return configErr("Brokers", "must name at least one seed broker")
		case c.group == "":
			return configErr("Group", "must be set")
		case len(c.topics) == 0:
			return configErr("Topics", "must name at least one topic")
		}
		switch {
		case c.protocol < GroupProtocolClassic || c.protocol > GroupProtocolConsumer:
			return configErr("GroupProtocol", "must be GroupProtocolClassic or GroupProtocolConsumer, got %d", c.protocol)
		case c.instanceID != "" && !kname.InstanceID(c.instanceID):
			return configErr("InstanceID", "%q must be 1 to 249 characters of [a-zA-Z0-9._-]", c.instanceID)
		}
	} else if len(c.brokers) > 0 || c.group != "" || len(c.topics) > 0 || len(c.kopts) > 0 || c.protocol != GroupProtocolClassic || c.instanceID != "" {
		return configErr("Brokers/Group/Topics/KgoOpts/WithGroupProtocol/InstanceID", "cannot be used with Wrap: configure the wrapped client instead")
	}
	switch {
	case c.ordering < OrderPartition || c.ordering > OrderNone:
		return configErr("Ordering", "must be OrderPartition, OrderKey or OrderNone, got %d", c.ordering)
	case c.maxConcurrency <= 0:
		return configErr("MaxConcurrency", "must be > 0, got %d", c.maxConcurrency)
	case c.partMaxRecords <= 0:
		return configErr("PartitionMaxRecords", "must be > 0, got %d", c.partMaxRecords)
	case c.partMaxBytes <= 0:
		return configErr("PartitionMaxBytes", "must be > 0, got %d", c.partMaxBytes)
	case !(c.resumeFraction >= 0 && c.resumeFraction < 1):
		return configErr("ResumeFraction", "must be in [0, 1), got %v", c.resumeFraction)
	case c.maxBufferedBytes <= 0:
		return configErr("MaxBufferedBytes", "must be > 0, got %d", c.maxBufferedBytes)
	case c.maxBufferedBytes < c.partMaxBytes:
		return configErr("MaxBufferedBytes", "(%d) must be >= PartitionMaxBytes (%d)", c.maxBufferedBytes, c.partMaxBytes)
	case c.maxSpan < 0:
		return configErr("PartitionMaxSpan", "must be >= 0 (0 means 2 × PartitionMaxRecords), got %d", c.maxSpan)
	case c.maxSpan > 0 && c.maxSpan < c.partMaxRecords:
		return configErr("PartitionMaxSpan", "(%d) must be >= PartitionMaxRecords (%d)", c.maxSpan, c.partMaxRecords)
	case c.maxUncommitted < 0:
		return configErr("MaxUncommitted", "records must be >= 0 (0 means PartitionMaxRecords), got %d", c.maxUncommitted)
	case c.maxUncommittedAge < 0:
		return configErr("MaxUncommitted", "age must be >= 0 (0 means 2 × CommitInterval + CommitTimeout), got %v", c.maxUncommittedAge)
	case c.maxUncommittedAge > 0 && c.maxUncommittedAge <= c.commitInterval:
		return configErr("MaxUncommitted", "age (%v) must be > CommitInterval (%v), or every partition would pause between two commits", c.maxUncommittedAge, c.commitInterval)
	case c.commitInterval <= 0:
		return configErr("CommitInterval", "must be > 0, got %v", c.commitInterval)
	case c.commitTimeout <= 0:
		return configErr("CommitTimeout", "must be > 0, got %v", c.commitTimeout)
	case c.revokeTimeout <= 0:
		return configErr("RevokeTimeout", "must be > 0, got %v", c.revokeTimeout)
	case c.shutdownTimeout <= 0:
		return configErr("ShutdownTimeout", "must be > 0, got %v", c.shutdownTimeout)
	case c.backoffInitial <= 0:
		return configErr("RetryBackoff", "initial must be > 0, got %v", c.backoffInitial)
	case c.backoffMax < c.backoffInitial:
		return configErr("RetryBackoff", "max (%v) must be >= initial (%v)", c.backoffMax, c.backoffInitial)
	}
	for i, h := range c.hooks {
		if h == nil {
			return configErr("Hooks", "hook %d is nil", i)
		}
	}
	if c.hasClasses && len(c.order.Classes()) == 0 {
		return configErr("WithPriorities", "the order has no classes (use priority.Default or priority.NewOrder)")
	}
	if c.maxSpan == 0 {
		c.maxSpan = 2 * c.partMaxRecords
	}
	if c.maxUncommitted == 0 {
		c.maxUncommitted = c.partMaxRecords
	}
	if c.maxUncommittedAge == 0 {
		c.maxUncommittedAge = 2*c.commitInterval + c.commitTimeout
	}
	return nil
}

// Brokers sets the seed brokers of the client [New] builds. Required by New,
// rejected by Wrap.
func Brokers(seeds ...string) Opt {
	return opt(func(c *cfg) { c.brokers = append(c.brokers, seeds...) })
}

// Group sets the consumer group of the client [New] builds. Required by New,
// rejected by Wrap.
func Group(group string) Opt { return opt(func(c *cfg) { c.group = group }) }

// Topics sets the topics the client [New] builds consumes. Required by New,
// rejected by Wrap.
func Topics(topics ...string) Opt {
	return opt(func(c *cfg) { c.topics = append(c.topics, topics...) })
}

// KgoOpts adds options to the client [New] builds (TLS, SASL, logger,
// fetch sizes...). The runtime's own group options ([GroupOpts]) are applied
// after these and win. Rejected by Wrap.
func KgoOpts(opts ...kgo.Opt) Opt { return opt(func(c *cfg) { c.kopts = append(c.kopts, opts...) }) }

// WithOrdering sets the ordering mode. Default [OrderPartition].
func WithOrdering(o Ordering) Opt { return opt(func(c *cfg) { c.ordering = o }) }

// MaxConcurrency bounds the handlers running at once across all partitions.
// Default 64.
func MaxConcurrency(n int) Opt { return opt(func(c *cfg) { c.maxConcurrency = n }) }

// PartitionMaxRecords caps the records of one partition in flight (fetched
// and not yet terminal). A partition at the cap is paused. Default 10,000.
func PartitionMaxRecords(n int) Opt { return opt(func(c *cfg) { c.partMaxRecords = n }) }

// PartitionMaxBytes caps the bytes (key, value and headers) of one
// partition in flight. Default 8 MiB.
func PartitionMaxBytes(n int64) Opt { return opt(func(c *cfg) { c.partMaxBytes = n }) }

// ResumeFraction sets the low mark, as a fraction of the per-partition caps,
// at or below which a partition paused for a full window resumes; also the
// fraction of MaxBufferedBytes at which partitions paused for memory resume.
// Must be in [0, 1). Default 0.5.
func ResumeFraction(f float64) Opt { return opt(func(c *cfg) { c.resumeFraction = f }) }

// MaxBufferedBytes caps the bytes in flight across all partitions. Must be at
// least PartitionMaxBytes. Default 256 MiB.
func MaxBufferedBytes(n int64) Opt { return opt(func(c *cfg) { c.maxBufferedBytes = n }) }

// PartitionMaxSpan bounds, per partition, the span from the oldest record
// not yet terminal to the newest admitted one, in records. In OrderKey and
// OrderNone (and whenever a divert cannot be produced) records behind a
// stuck one complete and leave the window, but they cannot be committed
// past it: the span is what a crash or rebalance hands to the next owner
// again, and what the commit tracker holds in memory (about 24 bytes a
// record). A partition whose span reaches the bound pauses with reason
// partition.SpanFull, and the record holding it is reported ([HookStuck],
// [PartitionStats].Stuck, the client's logger). Must be at least
// PartitionMaxRecords. Default 0, meaning 2 × PartitionMaxRecords.
func PartitionMaxSpan(records int) Opt { return opt(func(c *cfg) { c.maxSpan = records }) }

// MaxUncommitted bounds the work a partition completes without a successful
// commit: while commits fail, a partition pauses (reason
// partition.CommitStalled) once it completed more than records records
// since its last successful commit; and whatever the cause (commits failing
// or held up, for example by a group join waiting for a dead member), once
// its oldest uncommitted completion is older than age. It resumes when a
// commit of it succeeds. What a crash redelivers is bounded by this plus
// [PartitionMaxSpan]. Defaults 0, meaning PartitionMaxRecords records and
// 2 × CommitInterval + CommitTimeout (20s with the defaults); age must exceed
// CommitInterval.
func MaxUncommitted(records int, age time.Duration) Opt {
	return opt(func(c *cfg) { c.maxUncommitted, c.maxUncommittedAge = records, age })
}

// CommitInterval sets how often completed offsets are committed. Commits
// also happen synchronously on revoke and on shutdown. Default 5s.
func CommitInterval(d time.Duration) Opt { return opt(func(c *cfg) { c.commitInterval = d }) }

// CommitTimeout bounds one commit request. Default 10s.
func CommitTimeout(d time.Duration) Opt { return opt(func(c *cfg) { c.commitTimeout = d }) }

// RevokeTimeout bounds how long a revoke waits for the revoked partitions'
// running handlers before cancelling their context. Keep it well below the
// group's rebalance timeout. Default 10s.
func RevokeTimeout(d time.Duration) Opt { return opt(func(c *cfg) { c.revokeTimeout = d }) }

// ShutdownTimeout bounds how long Run waits, once its context ends, for
// running handlers before cancelling their context. Default 30s.
func ShutdownTimeout(d time.Duration) Opt { return opt(func(c *cfg) { c.shutdownTimeout = d }) }

// RetryBackoff sets the capped exponential backoff, with jitter, between
// in-place retries of a failed record. Default 100ms initial, 10s max.
func RetryBackoff(initial, max time.Duration) Opt {
	return opt(func(c *cfg) { c.backoffInitial, c.backoffMax = initial, max })
}

// GroupProtocol selects the consumer group protocol of the client [New]
// builds.
type GroupProtocol int8

const (
	// GroupProtocolClassic is Kafka's classic protocol (JoinGroup and
	// SyncGroup, with kgo's cooperative-sticky balancer), which every
	// Kafka version speaks. The default. Under it, commits are held while
	// the group rejoins, and a rejoin waits for members that died without
	// leaving until their session times out (kgo.SessionTimeout, 45s by
	// default): see the package documentation.
	GroupProtocolClassic GroupProtocol = iota
	// GroupProtocolConsumer is KIP-848's consumer protocol: the broker
	// assigns partitions incrementally and members heartbeat on their own,
	// so no member waits for another and commits are never held by a
	// rebalance. It needs Kafka 4.0 or later (franz-go recommends 4.3+);
	// against an older broker the client falls back to the classic
	// protocol with the eager sticky balancer. The session timeout is then
	// the broker's (group.consumer.session.timeout.ms, or the group's
	// consumer.session.timeout.ms config), not kgo.SessionTimeout.
	GroupProtocolConsumer
)

func (p GroupProtocol) String() string {
	switch p {
	case GroupProtocolClassic:
		return "classic"
	case GroupProtocolConsumer:
		return "consumer"
	}
	return "unknown"
}

// WithGroupProtocol sets the group protocol of the client [New] builds.
// Default [GroupProtocolClassic]. Rejected by Wrap: for a wrapped client
// add kgo.ServerSideBalancer() and kgo.Balancers(kgo.StickyBalancer()) (or
// kgo.RangeBalancer() first) to its options yourself.
func WithGroupProtocol(p GroupProtocol) Opt { return opt(func(c *cfg) { c.protocol = p }) }

// InstanceID makes the client [New] builds a static group member
// (kgo.InstanceID, Kafka's group.instance.id): a member that restarts with
// the same id within the session timeout gets its partitions back without
// a rebalance, which suits rolling restarts. The other side: a static
// member that dies for good keeps its partitions, idle, until the session
// timeout expires, so keep the session timeout short enough for that
// pause. Each member of a group needs its own id. Rejected by Wrap: set
// kgo.InstanceID on the wrapped client. (Under [GroupProtocolConsumer],
// franz-go v1.22 sends a static member's leave without its instance id,
// which Kafka refuses, so the member's restart is refused until its session
// expires; a runtime built by New sends the leave itself. A wrapped client
// has the flaw.)
func InstanceID(id string) Opt { return opt(func(c *cfg) { c.instanceID = id }) }

// WithHooks adds hooks that observe the runtime; see [Hook].
func WithHooks(hooks ...Hook) Opt { return opt(func(c *cfg) { c.hooks = append(c.hooks, hooks...) }) }
