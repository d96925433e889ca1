package deferred

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kconn"
	"github.com/floodgate-kafka/floodgate/internal/kname"
	"github.com/floodgate-kafka/floodgate/internal/kretry"
	"github.com/floodgate-kafka/floodgate/producer"
)

// Defaults.
const (
	DefaultSuffix       = ".deferred"
	DefaultGroup        = "floodgate-deferred-relay"
	DefaultStartTimeout = 10 * time.Second
	DefaultPollInterval = 500 * time.Millisecond
)

// Sentinel errors.
var (
	// ErrInvalidConfig is wrapped by every configuration error; the
	// message names the field.
	ErrInvalidConfig = errors.New("deferred: invalid config")
	// ErrNotStarted: a key-ordered lane defers nothing before its Start
	// returned nil (nor after a Start that failed: call it again).
	ErrNotStarted = errors.New("deferred: lane not started")
	// ErrAlreadyStarted: Start of a lane already started.
	ErrAlreadyStarted = errors.New("deferred: lane already started")
	// ErrClosed: the lane or relay is closed.
	ErrClosed = errors.New("deferred: closed")
)

func configErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// Config configures a [Lane].
type Config struct {
	// Topics are the destination topics the lane defers records of
	// (required): the producer's followed topics whose policy defers.
	Topics []string
	// Suffix names a destination's deferred topic: destination + Suffix
	// (default ".deferred"). The relay must use the same.
	Suffix string
	// KeyOrdered holds the keys that have deferred records: while the
	// relay has not delivered every deferred record of a key, the
	// producer defers that key's later records too, instead of letting
	// them overtake (see the package documentation, "Ordering", for the
	// conditions). It needs the lane's client to partition keyed records
	// by murmur2 of the key, as kgo's default partitioner does: NewLane
	// refuses a client with another kgo.RecordPartitioner. A record the
	// relay diverts (a relay given a router, such as retrytopics) leaves
	// its key's order: the relay commits past it and the key is released
	// before it reaches the destination. It costs a follower of the
	// deferred topics and a read of the relay group's committed offsets
	// every PollInterval. Default false.
	KeyOrdered bool
	// Group is the relay's consumer group (default DefaultGroup): a
	// key-ordered lane reads its committed offsets to know what the relay
	// has delivered.
	Group string
	// StartTimeout bounds Start's read of what the deferred topics hold
	// (key-ordered lanes; default 10s).
	StartTimeout time.Duration
	// PollInterval is how often a key-ordered lane reads the relay
	// group's committed offsets, while it holds keys, and looks for
	// partitions added to the deferred topics (default 500ms).
	PollInterval time.Duration
	// Partitions and ReplicationFactor are those of the deferred topics
	// Start creates when missing: by default the destination's partition
	// count and the broker's default replication factor (-1).
	Partitions        int32
	ReplicationFactor int16
	// TopicConfigs are the configs of the deferred topics Start creates
	// (for example retention.ms: a deferred record that expires before
	// the relay delivers it is lost, and the relay reports it).
	TopicConfigs map[string]string
	// Now is the lane's clock (default time.Now), for the deferral time.
	Now func() time.Time
}

func (c *Config) validate() error {
	if len(c.Topics) == 0 {
		return configErr("Topics", "at least one destination topic is required")
	}
	for _, t := range c.Topics {
		if !kname.Topic(t) {
			return configErr("Topics", "%q is not a legal topic name", t)
		}
	}
	if c.Suffix == "" {
		c.Suffix = DefaultSuffix
	}
	for _, t := range c.Topics {
		if !kname.Topic(t + c.Suffix) {
			return configErr("Suffix", "%q makes %q, not a legal topic name", c.Suffix, t+c.Suffix)
		}
		if slices.Contains(c.Topics, t+c.Suffix) {
			return configErr("Suffix", "the deferred topic of %q is %q, itself a destination", t, t+c.Suffix)
		}
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	switch {
	case c.StartTimeout < 0:
		return configErr("StartTimeout", "%v is negative", c.StartTimeout)
	case c.StartTimeout == 0:
		c.StartTimeout = DefaultStartTimeout
	}
	switch {
	case c.PollInterval < 0:
		return configErr("PollInterval", "%v is negative", c.PollInterval)
	case c.PollInterval == 0:
		c.PollInterval = DefaultPollInterval
	}
	if c.Partitions < 0 {
		return configErr("Partitions", "%d is negative", c.Partitions)
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.ReplicationFactor < -1 {
		return configErr("ReplicationFactor", "%d: -1 (the broker's default) or at least 1", c.ReplicationFactor)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Lane is a deferred lane's producing side: the [producer.Deferrer] (and,
// key-ordered, [producer.KeyHolder]) that parks the records a producer
// defers on their destination's deferred topic. A [Relay] delivers them.
type Lane struct {
	cl   *kgo.Client
	cfg  Config
	dest map[string]string // destination → deferred topic
	keys *keys             // key-ordered lanes only

	state  atomic.Int32 // stateNew, stateStarting, stateStarted, stateClosed
	mu     sync.Mutex
	follow *kgo.Client // key-ordered: follows the deferred topics
	cancel context.CancelFunc
	loops  sync.WaitGroup

	deferred, failed, followErrs atomic.Uint64
	lastErr                      atomic.Pointer[error]
}

// A lane's states. A Start that fails returns the lane to stateNew.
const (
	stateNew int32 = iota
	stateStarting
	stateStarted
	stateClosed
)

// NewLane returns a lane that produces deferred records through cl (the
// producer's client: [producer.Producer.Client]). It does no I/O until
// Start. A key-ordered lane needs cl to put a key's records in the
// partition murmur2 of the key picks (kgo's default partitioner does; see
// [Config].KeyOrdered): NewLane checks cl's partitioner, and refuses
// another with an [ErrInvalidConfig] naming KeyOrdered and
// kgo.RecordPartitioner.
func NewLane(cl *kgo.Client, cfg Config) (*Lane, error) {
	if cl == nil {
		return nil, configErr("client", "is nil")
	}
	cfg.Topics = slices.Clone(cfg.Topics)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Lane{cl: cl, cfg: cfg, dest: make(map[string]string)}
	for _, t := range cfg.Topics {
		l.dest[t] = t + cfg.Suffix
	}
	if cfg.KeyOrdered {
		deferredTopics := make([]string, 0, len(cfg.Topics))
		for _, t := range cfg.Topics {
			deferredTopics = append(deferredTopics, l.dest[t])
		}
		if err := checkKeyPartitioner(cl, deferredTopics); err != nil {
			return nil, err
		}
		l.keys = newKeys()
	}
	return l, nil
}

// DeferredTopic returns the deferred topic of destination topic.
func (l *Lane) DeferredTopic(topic string) string { return topic + l.cfg.Suffix }

// Start creates the deferred topics that are missing (with the
// destination's partition count, or Config.Partitions), and, for a
// key-ordered lane, reads what the deferred topics hold beyond the
// relay's committed offsets, within StartTimeout, so that keys deferred
// before a restart (or by other producers) stay held; then it follows
// them. Call it before the producer's Start. A key-ordered lane holds no
// key, and defers nothing ([ErrNotStarted]), before Start returns nil.
//
// A Start that fails leaves the lane as it found it, not started, with
// nothing running: Start may be called again. A lane may be started
// once: Start while it starts or after it started returns
// [ErrAlreadyStarted], after Close [ErrClosed].
func (l *Lane) Start(ctx context.Context) error {
	if !l.state.CompareAndSwap(stateNew, stateStarting) {
		if l.state.Load() == stateClosed {
			return ErrClosed
		}
		return ErrAlreadyStarted
	}
	err := l.ensureTopics(ctx)
	if err == nil && l.keys != nil {
		err = l.startFollowing(ctx)
	}
	if err != nil {
		l.stopFollowing()
		l.state.CompareAndSwap(stateStarting, stateNew)
		return err
	}
	if !l.state.CompareAndSwap(stateStarting, stateStarted) {
		return ErrClosed // Close came meanwhile, and stopped what Start launched
	}
	return nil
}

// stopFollowing stops the follower and the poll loop, if running, and
// waits for them.
func (l *Lane) stopFollowing() {
	l.mu.Lock()
	cancel, follow := l.cancel, l.follow
	l.cancel, l.follow = nil, nil
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	l.loops.Wait()
	if follow != nil {
		follow.Close()
	}
}

// ensureTopics creates the missing deferred topics.
func (l *Lane) ensureTopics(ctx context.Context) error {
	adm := kadm.NewClient(l.cl)
	var all []string
	for _, t := range l.cfg.Topics {
		all = append(all, t, l.dest[t])
	}
	md, err := adm.ListTopics(ctx, all...)
	if err != nil {
		return fmt.Errorf("deferred: listing the destination and deferred topics: %w", err)
	}
	configs := make(map[string]*string, len(l.cfg.TopicConfigs))
	for k, v := range l.cfg.TopicConfigs {
		configs[k] = kadm.StringPtr(v)
	}
	for _, t := range l.cfg.Topics {
		dt := l.dest[t]
		if d, ok := md[dt]; ok && d.Err == nil {
			continue
		}
		n := l.cfg.Partitions
		if n == 0 {
			d, ok := md[t]
			if !ok || d.Err != nil {
				return fmt.Errorf("deferred: destination topic %q not found, so its deferred topic %q cannot take its partition count (set Config.Partitions, or create %q)", t, dt, dt)
			}
			n = int32(len(d.Partitions))
		}
		resp, err := adm.CreateTopic(ctx, n, l.cfg.ReplicationFactor, configs, dt)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil, errors.Is(err, kerr.TopicAlreadyExists):
			// A broker may not serve a topic just created for a moment.
			if _, err := kretry.AwaitTopic(ctx, l.cl, dt); err != nil {
				return fmt.Errorf("deferred: waiting for the new deferred topic %q to be served: %w", dt, err)
			}
		case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
			return fmt.Errorf("deferred: creating deferred topic %q needs CREATE on it (or create it beforehand): %w", dt, err)
		default:
			return fmt.Errorf("deferred: creating deferred topic %q: %w", dt, err)
		}
	}
	return nil
}

// Close stops following the deferred topics. Records being deferred
// still get their promises, from the client (flush or close it after).
func (l *Lane) Close() {
	l.mu.Lock() // startFollowing launches nothing once the lane is closed
	prev := l.state.Swap(stateClosed)
	l.mu.Unlock()
	if prev == stateClosed {
		return
	}
	l.stopFollowing()
}

// Defer produces a copy of r to its destination's deferred topic: the
// same key, value and headers, plus the deferred headers (destination,
// time, class, level, the deciding signal), with no timestamp of its own
// (the record's, if it had one, is kept in [HeaderTimestamp]); promise
// gets r with nil once the copy is acknowledged, or with the error. A
// record to a topic the lane does not serve fails at once.
func (l *Lane) Defer(ctx context.Context, r *kgo.Record, d producer.Decision, promise func(*kgo.Record, error)) {
	dt, ok := l.dest[d.Topic]
	switch {
	case l.state.Load() == stateClosed:
		promise(r, ErrClosed)
		return
	case !ok:
		promise(r, fmt.Errorf("deferred: the lane does not serve topic %q (Config.Topics)", d.Topic))
		return
	case l.keys != nil && l.state.Load() != stateStarted:
		promise(r, ErrNotStarted)
		return
	}
	out := &kgo.Record{
		Topic:   dt,
		Key:     r.Key,
		Value:   r.Value,
		Headers: metaOf(d, r, l.cfg.Now()).encode(Strip(r.Headers)),
	}
	if l.keys != nil && r.Key != nil {
		l.keys.handing(d.Topic, r.Key)
	}
	l.cl.Produce(ctx, out, func(out *kgo.Record, err error) {
		if l.keys != nil && r.Key != nil {
			l.keys.handed(d.Topic, dt, r.Key, out.Partition, out.Offset, err == nil)
		}
		if err != nil {
			l.failed.Add(1)
			err = fmt.Errorf("deferred: producing to %q: %w", dt, err)
			l.lastErr.Store(&err)
		} else {
			l.deferred.Add(1)
		}
		promise(r, err)
	})
}

// Holds reports whether a key-ordered lane holds key of topic: records of
// it are deferred and not yet delivered. It is false for a lane that is
// not key-ordered.
func (l *Lane) Holds(topic string, key []byte) bool {
	return l.keys != nil && l.keys.holds(topic, key)
}

// LaneStats is a snapshot of a lane's counters.
type LaneStats struct {
	Deferred uint64 // records parked on a deferred topic
	Failed   uint64 // records that could not be (the producer sheds them)
	LastErr  error  // the last failure, nil if none
	// HeldKeys is the number of keys a key-ordered lane holds now.
	HeldKeys int
	// FollowErrors counts failures to follow the deferred topics or to
	// read the relay's committed offsets (key-ordered lanes).
	FollowErrors uint64
}

// Stats returns the lane's counters.
func (l *Lane) Stats() LaneStats {
	s := LaneStats{Deferred: l.deferred.Load(), Failed: l.failed.Load(), FollowErrors: l.followErrs.Load()}
	if e := l.lastErr.Load(); e != nil {
		s.LastErr = *e
	}
	if l.keys != nil {
		s.HeldKeys = l.keys.count()
	}
	return s
}

// startFollowing reads the relay's committed offsets, follows the
// deferred topics from them (or from a partition's log start offset, when
// the records past the commit were deleted), and waits (within
// StartTimeout) until the follower has read up to the end offsets found
// now.
func (l *Lane) startFollowing(ctx context.Context) error {
	adm := kadm.NewClient(l.cl)
	deferredTopics := make([]string, 0, len(l.dest))
	for _, t := range l.cfg.Topics {
		deferredTopics = append(deferredTopics, l.dest[t])
	}
	sctx, cancel := context.WithTimeout(ctx, l.cfg.StartTimeout)
	defer cancel()
	committed, err := l.readCommitted(sctx, adm)
	if err != nil {
		return fmt.Errorf("deferred: reading the relay group %q's committed offsets: %w", l.cfg.Group, err)
	}
	ends, err := adm.ListEndOffsets(sctx, deferredTopics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("deferred: listing the deferred topics' end offsets: %w", err)
	}
	// Records before a partition's log start offset are gone (retention,
	// DeleteRecords): the follower starts past them, and has nothing to
	// read where the log starts at its end.
	starts, err := adm.ListStartOffsets(sctx, deferredTopics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("deferred: listing the deferred topics' start offsets: %w", err)
	}
	from := make(map[string]map[int32]kgo.Offset)
	want := make(map[string]map[int32]int64)    // what the follower must reach
	followed := make(map[string]map[int32]bool) // the partitions it follows, for the poll loop
	ends.Each(func(o kadm.ListedOffset) {
		start := committed[o.Topic][o.Partition]
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Offset > start {
			start = s.Offset
		}
		if from[o.Topic] == nil {
			from[o.Topic], want[o.Topic] = make(map[int32]kgo.Offset), make(map[int32]int64)
		}
		if followed[o.Topic] == nil {
			followed[o.Topic] = make(map[int32]bool)
		}
		from[o.Topic][o.Partition], followed[o.Topic][o.Partition] = kgo.NewOffset().At(start), true
		if o.Offset > start {
			want[o.Topic][o.Partition] = o.Offset
		}
	})
	// Transaction markers are kept so that an end offset just past one
	// is seen reached; they hold no key and are skipped.
	opts := append(kconn.Opts(l.cl), kgo.SeedBrokers(kconn.Seeds(l.cl)...), kgo.ConsumePartitions(from),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.KeepControlRecords())
	follow, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("deferred: the follower's client: %w", err)
	}
	lctx, lcancel := context.WithCancel(context.Background())
	l.mu.Lock()
	if l.state.Load() == stateClosed {
		l.mu.Unlock()
		lcancel()
		follow.Close()
		return ErrClosed
	}
	l.follow, l.cancel = follow, lcancel
	l.loops.Add(2)
	l.mu.Unlock()
	reached := make(chan struct{})
	go l.followLoop(lctx, follow, want, reached)
	go l.pollLoop(lctx, adm, follow, followed)
	select {
	case <-reached:
		return nil
	case <-lctx.Done(): // Close
		return ErrClosed
	case <-sctx.Done():
		return fmt.Errorf("deferred: reading the deferred topics up to their end offsets: %w (the lane is not started)", context.Cause(sctx))
	}
}

// readCommitted returns the relay group's committed offsets of the
// deferred topics (none for a group that never committed) and releases
// the keys they pass.
func (l *Lane) readCommitted(ctx context.Context, adm *kadm.Client) (map[string]map[int32]int64, error) {
	resp, err := kretry.Do(ctx, kretry.NotReady, func(ctx context.Context) (kadm.OffsetResponses, error) {
		return adm.FetchOffsets(ctx, l.cfg.Group)
	})
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, err
	}
	out := make(map[string]map[int32]int64)
	for _, t := range l.cfg.Topics {
		dt := l.dest[t]
		offs := make(map[int32]int64)
		for p, o := range resp[dt] {
			if o.Err == nil && o.At >= 0 {
				offs[p] = o.At
			}
		}
		out[dt] = offs
		l.keys.setCommitted(t, dt, offs)
	}
	return out, nil
}

// followLoop reads the deferred topics and holds the keys of what it
// reads; it closes reached once every partition of want is read to its
// offset there (a transaction marker counts as read).
func (l *Lane) followLoop(ctx context.Context, cl *kgo.Client, want map[string]map[int32]int64, reached chan struct{}) {
	defer l.loops.Done()
	src := make(map[string]string, len(l.dest)) // deferred topic → destination
	for t, dt := range l.dest {
		src[dt] = t
	}
	left := 0
	for _, ps := range want {
		left += len(ps)
	}
	if left == 0 {
		close(reached)
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				l.followErrs.Add(1)
				err = fmt.Errorf("deferred: following %s[%d]: %w", t, p, err)
				l.lastErr.Store(&err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Key != nil && !r.Attrs.IsControl() {
				l.keys.seen(src[r.Topic], r.Topic, r.Key, r.Partition, r.Offset)
			}
			if w, ok := want[r.Topic][r.Partition]; ok && r.Offset+1 >= w {
				delete(want[r.Topic], r.Partition)
				if left--; left == 0 {
					close(reached)
				}
			}
		})
	}
}

// pollLoop, every PollInterval, reads the relay's committed offsets while
// keys are held, releasing those it passes, and has the follower follow
// the partitions added to the deferred topics since it started.
func (l *Lane) pollLoop(ctx context.Context, adm *kadm.Client, follow *kgo.Client, followed map[string]map[int32]bool) {
	defer l.loops.Done()
	tick := time.NewTicker(l.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := l.followNew(rctx, follow, followed)
		if err != nil && ctx.Err() == nil {
			l.followErrs.Add(1)
			err = fmt.Errorf("deferred: listing the deferred topics' partitions: %w", err)
			l.lastErr.Store(&err)
		}
		if l.keys.count() > 0 {
			_, err = l.readCommitted(rctx, adm)
			if err != nil && ctx.Err() == nil {
				l.followErrs.Add(1)
				err = fmt.Errorf("deferred: reading the relay group %q's committed offsets: %w", l.cfg.Group, err)
				l.lastErr.Store(&err)
			}
		}
		cancel()
	}
}

// followNew has follow follow, from their start, the partitions of the
// deferred topics that are not in followed (added to a topic since the
// follower started; a key deferred on one must be held as on any other),
// and adds them to followed. It lists the partitions from the follower's
// cached metadata, which it refreshes at most every kgo.MetadataMinAge
// (5s by default).
func (l *Lane) followNew(ctx context.Context, follow *kgo.Client, followed map[string]map[int32]bool) error {
	deferredTopics := make([]string, 0, len(l.dest))
	for _, t := range l.cfg.Topics {
		deferredTopics = append(deferredTopics, l.dest[t])
	}
	md, err := kadm.NewClient(follow).ListTopics(ctx, deferredTopics...)
	if err != nil {
		return err
	}
	added := make(map[string]map[int32]kgo.Offset)
	for _, dt := range deferredTopics {
		d, ok := md[dt]
		if !ok || d.Err != nil {
			continue // deleted or not served for a moment: the topic's own errors show in the follower's fetches
		}
		for p := range d.Partitions {
			if followed[dt][p] {
				continue
			}
			if added[dt] == nil {
				added[dt] = make(map[int32]kgo.Offset)
			}
			if followed[dt] == nil {
				followed[dt] = make(map[int32]bool)
			}
			added[dt][p], followed[dt][p] = kgo.NewOffset().AtStart(), true
		}
	}
	if len(added) > 0 {
		follow.AddConsumePartitions(added)
	}
	return nil
}

var _ producer.KeyHolder = (*Lane)(nil)
