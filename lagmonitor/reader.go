package lagmonitor

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kname"
	"github.com/floodgate-kafka/floodgate/internal/kretry"
)

// Reader defaults.
const (
	DefaultStartupTimeout   = 10 * time.Second
	DefaultLookback         = 2 * time.Minute
	DefaultMaxClockSkew     = 30 * time.Second
	DefaultMaxPublisherSkew = 2 * time.Minute
	DefaultReadMaxTTL       = time.Minute
	DefaultMetadataInterval = time.Minute
)

var (
	// ErrStartupTimeout is wrapped by [Reader.Start]'s error when the
	// reader did not read the control topic up to the end offsets it
	// found at start within the startup timeout. The reader goes on
	// following it; until it has caught up, some live signals may be
	// missing (fail-open: missing means no pressure).
	ErrStartupTimeout = errors.New("lagmonitor: control topic not read to its end within the startup timeout")
	// ErrReaderClosed is returned by [Reader.Start] after [Reader.Close],
	// and by a second Start.
	ErrReaderClosed = errors.New("lagmonitor: reader closed or already started")
)

// ReaderOpt configures a [Reader].
type ReaderOpt interface{ applyReader(*readerCfg) }

type readerCfg struct {
	kopts            []kgo.Opt
	verifier         *Verifier
	now              func() time.Time
	startupTimeout   time.Duration
	lookback         time.Duration
	maxSkew          time.Duration
	maxPubSkew       time.Duration
	maxTTL           time.Duration
	metadataInterval time.Duration
	onReject         func(Rejection)
	onError          func(error)
}

type readerOpt func(*readerCfg)

func (o readerOpt) applyReader(c *readerCfg) { o(c) }

// ReadKgoOpts adds options to the reader's own client (SASL, TLS, a
// logger, ...), after the seed brokers. Consumer-group, share-group and
// consume options are refused: the reader chooses the partitions it reads.
func ReadKgoOpts(opts ...kgo.Opt) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.kopts = append(c.kopts, opts...) })
}

// ReadVerifier verifies every record's signature with v before decoding it
// (see [Verifier.VerifyVersion] for records without one). A tombstone's
// [SeqHeader] and [IssuedAtHeader] count only when its v2 signature
// verifies them; under a v1 signature alone (or none, accepted), it is
// taken as a tombstone of an earlier release, without either. Default:
// none, no record is checked, signed or not, and a tombstone's headers
// are taken as they are.
func ReadVerifier(v *Verifier) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.verifier = v })
}

// ReadClock sets the reader's clock: the one that decides which signals
// have expired and which were issued in the future, and that broker
// timestamps are converted to. Default time.Now. (The lookback is
// measured on the wall clock, against record timestamps.)
func ReadClock(now func() time.Time) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.now = now })
}

// ReadStartupTimeout bounds [Reader.Start]: reading the control topic up to
// the end offsets it finds at start. Default 10s; it must be positive.
func ReadStartupTimeout(d time.Duration) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.startupTimeout = d })
}

// ReadLookback sets how far back in time the reader starts reading: at the
// first record stamped at most d ago. A live instance's latest signal is
// at most one heartbeat old, so d must exceed the publishers' heartbeat
// interval; a signal published more than d ago is not seen at start
// (fail-open). 0 reads from the start of the log. Default 2m.
func ReadLookback(d time.Duration) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.lookback = d })
}

// ReadMaxClockSkew sets how far in the reader's future a signal stamped by
// its producer (CreateTime) may be issued: one issued later is rejected
// (reason [RejectFuture]), so that a publisher with a clock far ahead
// cannot hold pressure beyond its TTL. Signals the broker stamped
// (LogAppendTime) are bound by [ReadMaxPublisherSkew] instead. Default
// 30s; it must not be negative.
func ReadMaxClockSkew(d time.Duration) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.maxSkew = d })
}

// ReadMaxPublisherSkew sets how far, either way, the issue time of a
// record the broker stamped (LogAppendTime) may be from its broker
// timestamp: its publisher's clock skew against the broker's, plus the
// time the publish took. A signal or tombstone beyond it is rejected
// (reason [RejectSkewed]): a replay of an old record (the broker stamps
// the replay afresh), or a publisher whose clock is that far off. It is
// also how long after its issue a captured record can be replayed to a
// reader that no longer remembers its instance (see the package doc's
// "Reading"). Default 2m; it must be positive.
func ReadMaxPublisherSkew(d time.Duration) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.maxPubSkew = d })
}

// ReadMaxTTL caps each signal's time-to-live: a signal holds at most d
// after it was issued, whatever its ttl_ms says (the wire accepts up to
// [MaxTTL]), so that one forged or stale record cannot hold pressure for
// an hour. d must exceed the TTL of the publishers' signals, or they
// expire before their next heartbeat. Default 1m (four TTLs of a monitor
// of the default Heartbeat, 5s, and TTL, 15s); from 1ms to [MaxTTL].
func ReadMaxTTL(d time.Duration) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.maxTTL = d })
}

// ReadMetadataInterval sets how often the reader asks how many partitions
// the control topic has, and starts reading the partitions that the
// topics it follows move to when it gains some (it keeps reading the old
// ones, where publishers that have not yet noticed still write). It is
// also the pace, at most 5s, of retries while the control topic cannot be
// read. Default 1m; it must be positive.
func ReadMetadataInterval(d time.Duration) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.metadataInterval = d })
}

// ReadOnReject calls fn for each record the reader rejects, with why, so
// that it can be counted and logged. fn is called from the reader's
// goroutine, one call at a time, without the reader's lock held: it must be
// fast; a panic in it is recovered (and becomes the last error). Expired
// signals and records for topics not followed are not rejections (they
// are counted in [ReaderStats]). Default: none.
func ReadOnReject(fn func(Rejection)) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.onReject = fn })
}

// ReadOnError calls fn for each error reading the control topic (it
// missing, rights lacking, fetches failing, a startup timeout), the
// errors [ReaderStats] counts and keeps the last of, so that they can be
// logged and reported. fn is called from the reader's goroutines without
// the reader's lock held: it must be fast; a panic in it is recovered and
// kept as the last error. Default: none.
func ReadOnError(fn func(error)) ReaderOpt {
	return readerOpt(func(c *readerCfg) { c.onError = fn })
}

// RejectReason says why a record was rejected.
type RejectReason string

// The reasons a record is rejected.
const (
	RejectMalformed       RejectReason = "malformed"       // not a valid signal or key: [Decode]'s error
	RejectUnauthenticated RejectReason = "unauthenticated" // [Verifier.Verify]'s error
	RejectReplayed        RejectReason = "replayed"        // seq not above the last accepted from that instance
	RejectFuture          RejectReason = "future"          // issued beyond the allowed clock skew
	RejectSkewed          RejectReason = "skewed"          // issued too far from its broker timestamp (a replay, or a clock far off)
)

// Rejection describes one rejected control-topic record.
type Rejection struct {
	Partition int32
	Offset    int64
	Key       []byte // the record's key, at most its first 256 bytes (a copy)
	Reason    RejectReason
	Err       error // what was wrong
}

// ReaderStats are a [Reader]'s counters since it was created, and its state.
type ReaderStats struct {
	Read            uint64 // records read (control records of transactions aside)
	Accepted        uint64 // signals accepted
	Tombstones      uint64 // tombstones accepted
	Ignored         uint64 // records for topics the reader does not follow
	Malformed       uint64 // rejected: not a valid key or signal
	Unauthenticated uint64 // rejected: signature missing (when required), unknown key id or wrong
	Replayed        uint64 // rejected: sequence not above the last accepted from that instance (signals and tombstones)
	Future          uint64 // rejected: issued beyond the allowed clock skew
	Skewed          uint64 // rejected: issued more than ReadMaxPublisherSkew from its broker timestamp
	// Expired counts signals that stopped holding as their TTL passed:
	// read already expired, or expired while held (counted when the
	// reader notices: within a second, or at Stats).
	Expired uint64
	Live    int // signals live now, by the reader's clock

	// BrokerClockOffset is the reader's clock minus the broker's, as
	// estimated from the records stamped LogAppendTime that it read
	// (see the package doc's "Reading"); BrokerClockLive says the
	// estimate rests on records read live, not only on the log's
	// history (before which it is at most 0).
	BrokerClockOffset time.Duration
	BrokerClockLive   bool

	Partitions []int32 // the control topic's partitions read, ascending
	CaughtUp   bool    // the partitions were read up to the end offsets found when reading them began
	// CatchUp is how long reading up to those end offsets took, once
	// CaughtUp.
	CatchUp time.Duration
	// Errors counts the errors reading the control topic: the control
	// topic missing or unreadable, a fetch error, a startup timeout (a
	// topic deleted while read is noticed at the next metadata check,
	// ReadMetadataInterval); LastError is the latest.
	Errors      uint64
	LastError   error
	LastErrorAt time.Time
}

// Reader follows the signals that consumers publish on the control topic
// for a set of destination topics: a producer's view of the pressure on the
// topics it writes. It reads, with its own client and no consumer group,
// exactly the control-topic partitions [PartitionFor] gives for those
// topics; it keeps, per topic, group and instance, the latest signal it
// accepted; tombstones remove them; signals expire by their TTL
// (fail-open: an expired or absent signal means no pressure). Records it
// cannot accept are counted (and reported through [ReadOnReject]), never
// fatal.
//
// Call [Reader.Start] once, then [Reader.Signals] as often as needed, and
// [Reader.Close] at the end. It is safe for concurrent use.
type Reader struct {
	control string
	topics  []string // followed, sorted
	follows map[string]bool
	cfg     readerCfg
	cl      *kgo.Client

	mu        sync.Mutex
	table     Table           // the latest accepted signal per topic, group and instance
	clock     brokerClock     // the broker's clock, as learned from records it stamped
	st        ReaderStats     // counters; the rest is filled by Stats
	parts     map[int32]bool  // partitions read
	liveFrom  map[int32]int64 // per partition read, its end offset when reading it began: records from it on are read live
	nparts    int32           // the control topic's partitions, as last seen
	pending   map[int32]int64 // end offsets still to reach
	caughtUp  chan struct{}   // closed once pending empties
	catchFrom time.Time
	started   bool
	closed    bool
	changed   chan struct{} // closed at the next change of the signals held, then replaced
	dirty     bool          // the signals held changed since changed was last closed

	firstSetup chan error
	cancel     context.CancelFunc
	done       chan struct{}
	closeOnce  sync.Once
}

// NewReader returns a reader of controlTopic on the cluster of seeds,
// following the signals for topics (at least one). It builds its client
// (closed by Close) but does no I/O until Start.
func NewReader(seeds []string, controlTopic string, topics []string, opts ...ReaderOpt) (*Reader, error) {
	cfg := readerCfg{
		now:              time.Now,
		startupTimeout:   DefaultStartupTimeout,
		lookback:         DefaultLookback,
		maxSkew:          DefaultMaxClockSkew,
		maxPubSkew:       DefaultMaxPublisherSkew,
		maxTTL:           DefaultReadMaxTTL,
		metadataInterval: DefaultMetadataInterval,
	}
	for _, o := range opts {
		o.applyReader(&cfg)
	}
	switch {
	case len(seeds) == 0:
		return nil, fmt.Errorf("%w: no seed brokers", ErrInvalidConfig)
	case !kname.Topic(controlTopic):
		return nil, fmt.Errorf("%w: control topic %q is not a legal topic name", ErrInvalidConfig, controlTopic)
	case len(topics) == 0:
		return nil, fmt.Errorf("%w: no topics to follow", ErrInvalidConfig)
	case cfg.now == nil:
		return nil, fmt.Errorf("%w: ReadClock is nil", ErrInvalidConfig)
	case cfg.startupTimeout <= 0:
		return nil, fmt.Errorf("%w: ReadStartupTimeout %v is not positive", ErrInvalidConfig, cfg.startupTimeout)
	case cfg.lookback < 0:
		return nil, fmt.Errorf("%w: ReadLookback %v is negative", ErrInvalidConfig, cfg.lookback)
	case cfg.maxSkew < 0:
		return nil, fmt.Errorf("%w: ReadMaxClockSkew %v is negative", ErrInvalidConfig, cfg.maxSkew)
	case cfg.maxPubSkew <= 0:
		return nil, fmt.Errorf("%w: ReadMaxPublisherSkew %v is not positive", ErrInvalidConfig, cfg.maxPubSkew)
	case cfg.maxTTL < time.Millisecond || cfg.maxTTL > MaxTTL:
		return nil, fmt.Errorf("%w: ReadMaxTTL %v out of range [1ms, %v]", ErrInvalidConfig, cfg.maxTTL, MaxTTL)
	case cfg.metadataInterval <= 0:
		return nil, fmt.Errorf("%w: ReadMetadataInterval %v is not positive", ErrInvalidConfig, cfg.metadataInterval)
	}
	r := &Reader{
		control:    controlTopic,
		follows:    make(map[string]bool),
		cfg:        cfg,
		parts:      make(map[int32]bool),
		liveFrom:   make(map[int32]int64),
		pending:    make(map[int32]int64),
		caughtUp:   make(chan struct{}),
		changed:    make(chan struct{}),
		firstSetup: make(chan error, 1),
		done:       make(chan struct{}),
	}
	for _, t := range topics {
		if !kname.Topic(t) {
			return nil, fmt.Errorf("%w: topic %q is not a legal topic name", ErrInvalidConfig, t)
		}
		if !r.follows[t] {
			r.follows[t] = true
			r.topics = append(r.topics, t)
		}
	}
	sort.Strings(r.topics)
	kopts := append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, cfg.kopts...)
	// Transaction markers are kept so that an end offset just past one
	// is seen reached; they are not signals and are skipped.
	kopts = append(kopts, kgo.KeepControlRecords())
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: reader client: %v", ErrInvalidConfig, err)
	}
	g, _ := cl.OptValue(kgo.ConsumerGroup).(string)
	sg, _ := cl.OptValue(kgo.ShareGroup).(string)
	ts, _ := cl.OptValue(kgo.ConsumeTopics).(map[string]*regexp.Regexp)
	ps, _ := cl.OptValue(kgo.ConsumePartitions).(map[string]map[int32]kgo.Offset)
	if g != "" || sg != "" || len(ts) > 0 || len(ps) > 0 {
		cl.Close()
		return nil, fmt.Errorf("%w: ReadKgoOpts: no consumer group, share group or consume option: the reader chooses the partitions it reads", ErrInvalidConfig)
	}
	r.cl = cl
	return r, nil
}

// Start reads the control-topic partitions of the followed topics, from
// the lookback on, up to the end offsets it finds, and returns once it has
// (nil), or when the startup timeout passes (an error wrapping
// [ErrStartupTimeout]), or when ctx ends (ctx's error), or at once when the
// control topic cannot be read (missing, no rights: the error wraps the
// kerr error and names the ACLs needed). In every case but a second Start
// or one after Close ([ErrReaderClosed]), the reader goes on in a goroutine
// until Close: it follows the topic, retries what failed, and keeps what
// failed in [ReaderStats]. A producer may go on after any error: what the
// reader does not know means no pressure.
func (r *Reader) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.started || r.closed {
		r.mu.Unlock()
		return ErrReaderClosed
	}
	r.started = true
	fctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.mu.Unlock()

	timer := time.NewTimer(r.cfg.startupTimeout)
	defer timer.Stop()
	go r.follow(fctx)
	select {
	case err := <-r.firstSetup:
		if err != nil {
			return err
		}
	case <-timer.C:
		return r.startupTimedOut()
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done: // closed meanwhile
		return ErrReaderClosed
	}
	select {
	case <-r.caughtUp:
		return nil
	case <-timer.C:
		return r.startupTimedOut()
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done: // closed meanwhile
		return ErrReaderClosed
	}
}

func (r *Reader) startupTimedOut() error {
	r.mu.Lock()
	left := len(r.pending)
	r.mu.Unlock()
	err := fmt.Errorf("%w (%v; %d partitions of %q not yet read to their end; following goes on)", ErrStartupTimeout, r.cfg.startupTimeout, left, r.control)
	r.setErr(err)
	return err
}

// Close stops the reader and closes its client, waiting for its goroutine.
// It may be called more than once, and without Start.
func (r *Reader) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		started := r.started
		r.mu.Unlock()
		if !started {
			r.cl.Close()
			return
		}
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second): // a request ignoring ctx: closing the client ends it
		}
		r.cl.Close()
		<-r.done
	})
}

// Signals returns the live signals accepted for topic: for each group and
// instance that published for it, the latest, unless a tombstone removed
// it or it has expired at now. They are sorted by group then instance.
// Their IssuedAt and TTL are as the reader counts them: IssuedAt on the
// reader's clock (for a record the broker stamped, its broker timestamp
// converted to it), TTL at most [ReadMaxTTL]; the other fields are as
// written. The signals (and their Paused maps) are the reader's: do not
// modify them. A topic the reader does not follow has none.
func (r *Reader) Signals(topic string, now time.Time) []Signal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.table.Signals(topic, now)
}

// Pressure returns the pressure on topic at now: [Aggregate] over the live
// signals the reader holds for it. A topic without one has no pressure
// (fail-open).
func (r *Reader) Pressure(topic string, now time.Time) Pressure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.table.Pressure(topic, now)
}

// Changed returns a channel that is closed at the next change of the
// signals the reader holds, for any topic it follows: a signal accepted
// (or read already expired, which supersedes the instance's last), one
// removed by a tombstone, or one that expired, as the reader notices
// (within a second, or at [Reader.Stats]). It lets a producer re-evaluate
// [Reader.Pressure] at once rather than poll it: take the channel, read
// the pressure, and wait on the channel; a change between the two closes
// the channel taken. Each call returns the channel of the next change,
// shared by all callers. After Close the channel is never closed.
func (r *Reader) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// notifyLocked closes the changed channel if the signals held changed.
func (r *Reader) notifyLocked() {
	if r.dirty {
		close(r.changed)
		r.changed, r.dirty = make(chan struct{}), false
	}
}

// Topics returns the topics the reader follows, sorted.
func (r *Reader) Topics() []string { return slices.Clone(r.topics) }

// Stats returns the reader's counters and state, after counting the
// signals that expired by now (the reader's clock).
func (r *Reader) Stats() ReaderStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.now()
	r.sweepLocked(now)
	r.notifyLocked()
	st := r.st
	st.Live = r.table.Len() // the sweep above dropped what expired by now
	st.BrokerClockOffset, st.BrokerClockLive = r.clock.estimate()
	for p := range r.parts {
		st.Partitions = append(st.Partitions, p)
	}
	slices.Sort(st.Partitions)
	select {
	case <-r.caughtUp:
		st.CaughtUp = true
	default:
	}
	return st
}

// follow is the reader's goroutine: it sets the reading up (retrying
// until it can), polls, and checks the control topic's partitions now and
// then.
func (r *Reader) follow(ctx context.Context) {
	defer close(r.done)
	retry := min(r.cfg.metadataInterval, 5*time.Second)
	tick := min(time.Second, retry)
	ready, first := false, true
	var nextSetup, nextMeta time.Time
	var rejected []Rejection
	for ctx.Err() == nil {
		if now := time.Now(); !ready && !now.Before(nextSetup) {
			err := r.setup(ctx)
			if err != nil {
				r.setErr(err)
				nextSetup = now.Add(retry)
			} else {
				ready, nextMeta = true, now.Add(r.cfg.metadataInterval)
			}
			if first { // after setErr: Start's caller sees it in Stats
				r.firstSetup <- err
				first = false
			}
		} else if ready && !now.Before(nextMeta) {
			r.checkPartitions(ctx)
			nextMeta = now.Add(r.cfg.metadataInterval)
		}

		pctx, cancel := context.WithTimeout(ctx, tick)
		fs := r.cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		fetchErr := false
		fs.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			fetchErr = true
			r.setErr(r.readErr(fmt.Sprintf("fetching partition %d", p), err))
		})
		rejected = rejected[:0]
		r.mu.Lock()
		now := r.cfg.now()
		fs.EachRecord(func(rec *kgo.Record) {
			if rj := r.handleLocked(rec, now); rj != nil {
				rejected = append(rejected, *rj)
			}
		})
		r.sweepLocked(now)
		r.notifyLocked()
		r.mu.Unlock()
		for _, rj := range rejected {
			r.report(rj)
		}
		if fetchErr && fs.NumRecords() == 0 {
			// An error kgo does not retry itself (no READ right)
			// comes back at every poll: pace them.
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
		}
	}
}

// setup finds the control topic's partitions and starts reading those of
// the followed topics from the lookback, noting the end offsets to reach.
func (r *Reader) setup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.startupTimeout)
	defer cancel()
	n, err := kretry.Partitions(ctx, r.cl, r.control)
	if err != nil {
		return r.readErr("looking it up", err)
	}
	var want []int32
	for _, t := range r.topics {
		if p := PartitionFor(t, int(n)); !slices.Contains(want, p) {
			want = append(want, p)
		}
	}
	adm := kadm.NewClient(r.cl)
	ends, err := adm.ListEndOffsets(ctx, r.control)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return r.readErr("listing its end offsets", err)
	}
	starts := make(map[int32]int64)
	if r.cfg.lookback > 0 {
		from, err := adm.ListOffsetsAfterMilli(ctx, time.Now().Add(-r.cfg.lookback).UnixMilli(), r.control)
		if err == nil {
			err = from.Error()
		}
		if err != nil {
			return r.readErr("listing its offsets after the lookback", err)
		}
		for _, p := range want {
			if o, ok := from.Lookup(r.control, p); ok {
				starts[p] = o.Offset
			}
		}
	}
	offsets := make(map[int32]kgo.Offset, len(want))
	r.mu.Lock()
	r.nparts = n
	r.catchFrom = time.Now()
	for _, p := range want {
		start, ok := starts[p]
		if !ok {
			start = 0 // from the start of the log, or the log start if later
			offsets[p] = kgo.NewOffset().AtStart()
		} else {
			offsets[p] = kgo.NewOffset().At(start)
		}
		r.parts[p] = true
		if end, ok := ends.Lookup(r.control, p); ok {
			r.liveFrom[p] = end.Offset
			if end.Offset > start {
				r.pending[p] = end.Offset
			}
		}
	}
	r.maybeCaughtUpLocked()
	r.mu.Unlock()
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.control: offsets})
	return nil
}

// checkPartitions starts reading, from their start, the partitions that
// the followed topics moved to if the control topic gained partitions.
func (r *Reader) checkPartitions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.startupTimeout)
	defer cancel()
	n, err := kretry.Partitions(ctx, r.cl, r.control)
	if err != nil {
		r.setErr(r.readErr("looking it up", err))
		return
	}
	r.mu.Lock()
	var want []int32
	if n > r.nparts {
		r.nparts = n
		for _, t := range r.topics {
			if p := PartitionFor(t, int(n)); !r.parts[p] {
				r.parts[p] = true
				want = append(want, p)
			}
		}
	}
	r.mu.Unlock()
	if len(want) == 0 {
		return
	}
	// Their end offsets say which of their records are read live (see
	// brokerClock); without them, none is, and reading goes on.
	ends, err := kadm.NewClient(r.cl).ListEndOffsets(ctx, r.control)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		r.setErr(r.readErr("listing its end offsets", err))
	}
	add := make(map[int32]kgo.Offset)
	r.mu.Lock()
	for _, p := range want {
		add[p] = kgo.NewOffset().AtStart()
		if end, ok := ends.Lookup(r.control, p); ok {
			r.liveFrom[p] = end.Offset
		}
	}
	r.mu.Unlock()
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.control: add})
}

// handleLocked applies one record; it returns a rejection to report.
func (r *Reader) handleLocked(rec *kgo.Record, now time.Time) *Rejection {
	if end, ok := r.pending[rec.Partition]; ok && rec.Offset+1 >= end {
		delete(r.pending, rec.Partition)
		r.maybeCaughtUpLocked()
	}
	if rec.Attrs.IsControl() {
		return nil
	}
	r.st.Read++
	if rec.Attrs.TimestampType() == 1 { // LogAppendTime: the broker's clock
		from, ok := r.liveFrom[rec.Partition]
		r.clock.observe(rec.Timestamp, now, ok && rec.Offset >= from)
	}
	topic, instance, _, err := ParseKey(rec.Key)
	if err != nil {
		return r.rejectLocked(rec, RejectMalformed, err)
	}
	if !r.follows[topic] {
		r.st.Ignored++
		return nil
	}
	// A tombstone's headers count when no verifier is set (anyone may
	// write anything then) or when the v2 signature covers them.
	headers := true
	if r.cfg.verifier != nil {
		v, err := r.cfg.verifier.VerifyVersion(rec)
		if err != nil {
			return r.rejectLocked(rec, RejectUnauthenticated, err)
		}
		headers = v == 2
	}
	s, tomb, err := Decode(rec.Key, rec.Value)
	if err != nil {
		return r.rejectLocked(rec, RejectMalformed, err)
	}
	if tomb {
		return r.tombstoneLocked(rec, s, headers, now)
	}
	issued, remember, why, err := r.timeLocked(rec, s.IssuedAt, now, true)
	if err != nil {
		return r.rejectLocked(rec, why, err)
	}
	s.IssuedAt, s.TTL = issued, min(s.TTL, r.cfg.maxTTL)
	switch r.table.PutUntil(s, now, remember) {
	case PutReplay:
		return r.rejectLocked(rec, RejectReplayed, fmt.Errorf("seq %d, not above the last accepted from instance %s", s.Seq, instance))
	case PutExpired:
		r.st.Expired++
		r.dirty = true
	default:
		r.st.Accepted++
		r.dirty = true
	}
	return nil
}

// tombstoneLocked applies the tombstone rec of the key that t names
// (Decode's), its headers counting if headers.
func (r *Reader) tombstoneLocked(rec *kgo.Record, t Signal, headers bool, now time.Time) *Rejection {
	var seq uint64
	var issuedAt time.Time
	if headers {
		var err error
		if seq, issuedAt, err = ParseTombstoneHeaders(rec.Headers); err != nil {
			return r.rejectLocked(rec, RejectMalformed, err)
		}
	}
	_, remember, why, err := r.timeLocked(rec, issuedAt, now, false)
	if err != nil {
		return r.rejectLocked(rec, why, err)
	}
	res, removed := r.table.Tombstone(t.Topic, t.Group, t.Instance, seq, remember)
	if res == PutReplay {
		return r.rejectLocked(rec, RejectReplayed, fmt.Errorf("tombstone seq %d, not above the last accepted from instance %s", seq, t.Instance))
	}
	r.st.Tombstones++
	if removed {
		r.dirty = true
	}
	return nil
}

// timeLocked decides, for rec read at now and issued at issuedAt by its
// publisher's clock (the zero time when it does not say), its issue time
// on the reader's clock, and until when the reader must remember its
// sequence number for a replay of it to be rejected; or, with an error,
// why it is rejected. A record the broker stamped (LogAppendTime) was
// issued at its broker timestamp, converted to the reader's clock, and
// must say an issue time within ReadMaxPublisherSkew of it, if it says
// one; a signal stamped by its producer (CreateTime) was issued when it
// says, at most ReadMaxClockSkew in the reader's future. A replay of rec
// could be accepted until its issue time plus ReadMaxTTL (its life), or,
// stamped afresh by the broker, until ReadMaxPublisherSkew after the
// issue time it says, which is at most ReadMaxPublisherSkew after its
// broker timestamp: remembering it ReadMaxTTL + 2 × ReadMaxPublisherSkew
// after its issue covers both.
func (r *Reader) timeLocked(rec *kgo.Record, issuedAt, now time.Time, signal bool) (issued, remember time.Time, why RejectReason, err error) {
	switch {
	case rec.Attrs.TimestampType() == 1:
		if skew := issuedAt.Sub(rec.Timestamp); !issuedAt.IsZero() && (skew > r.cfg.maxPubSkew || skew < -r.cfg.maxPubSkew) {
			return issued, remember, RejectSkewed, fmt.Errorf("issued at %s, %v from its broker timestamp %s: more than ReadMaxPublisherSkew %v (a replay, or a publisher's clock that far off)",
				issuedAt.Format(time.RFC3339Nano), skew.Abs(), rec.Timestamp.UTC().Format(time.RFC3339Nano), r.cfg.maxPubSkew)
		}
		issued = r.clock.toReader(rec.Timestamp)
	case issuedAt.IsZero():
		issued = now
	case signal && issuedAt.After(now.Add(r.cfg.maxSkew)):
		return issued, remember, RejectFuture, fmt.Errorf("issued at %s, more than %v after the reader's %s", issuedAt.Format(time.RFC3339Nano), r.cfg.maxSkew, now.Format(time.RFC3339Nano))
	default:
		issued = issuedAt
	}
	return issued, issued.Add(r.cfg.maxTTL + 2*r.cfg.maxPubSkew), "", nil
}

// rejectLocked counts rec rejected for why and returns the rejection to
// report.
func (r *Reader) rejectLocked(rec *kgo.Record, why RejectReason, err error) *Rejection {
	switch why {
	case RejectMalformed:
		r.st.Malformed++
	case RejectUnauthenticated:
		r.st.Unauthenticated++
	case RejectReplayed:
		r.st.Replayed++
	case RejectFuture:
		r.st.Future++
	case RejectSkewed:
		r.st.Skewed++
	}
	key := rec.Key
	if len(key) > 256 {
		key = key[:256]
	}
	return &Rejection{Partition: rec.Partition, Offset: rec.Offset, Key: slices.Clone(key), Reason: why, Err: err}
}

// sweepLocked forgets the signals expired at now (counting those not
// removed by a tombstone).
func (r *Reader) sweepLocked(now time.Time) {
	if n := r.table.Expire(now); n > 0 {
		r.st.Expired += uint64(n)
		r.dirty = true
	}
}

func (r *Reader) maybeCaughtUpLocked() {
	if len(r.pending) > 0 {
		return
	}
	select {
	case <-r.caughtUp:
	default:
		r.st.CatchUp = time.Since(r.catchFrom)
		close(r.caughtUp)
	}
}

func (r *Reader) report(rj Rejection) {
	if r.cfg.onReject != nil {
		if err := callHook("ReadOnReject", func() { r.cfg.onReject(rj) }); err != nil {
			r.setErr(err)
		}
	}
}

func (r *Reader) setErr(err error) {
	r.keepErr(err)
	if r.cfg.onError != nil {
		if err := callHook("ReadOnError", func() { r.cfg.onError(err) }); err != nil {
			r.keepErr(err) // not setErr: that would call the hook again
		}
	}
}

// callHook calls a user's hook, turning a panic into an error.
func callHook(name string, fn func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("lagmonitor: %s hook panicked: %v", name, v)
		}
	}()
	fn()
	return nil
}

func (r *Reader) keepErr(err error) {
	r.mu.Lock()
	r.st.LastError, r.st.LastErrorAt = err, time.Now()
	r.st.Errors++
	r.mu.Unlock()
}

// readErr wraps an error reading the control topic, naming the ACLs
// needed when it is an authorization failure.
func (r *Reader) readErr(doing string, err error) error {
	switch {
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return fmt.Errorf("lagmonitor: control topic %q: %s: not authorized: the reader's principal needs DESCRIBE and READ on topic %q: %w", r.control, doing, r.control, err)
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("lagmonitor: control topic %q: %s: it does not exist (EnsureControlTopic creates it); retrying: %w", r.control, doing, err)
	}
	return fmt.Errorf("lagmonitor: control topic %q: %s: %w", r.control, doing, err)
}
