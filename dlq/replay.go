package dlq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/kretry"
	"github.com/floodgate-kafka/floodgate/internal/topicconf"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// ErrResumeGroupActive is returned by [Replay] when its resume group has
// members: it is some application's consumer group, or another process
// holds it. Replay commits as a group without members would, and Kafka
// refuses that while the group has members.
var ErrResumeGroupActive = errors.New("dlq: resume group has active members")

// ErrTargetMissing is wrapped by the error [ReplayConfig.OnUnreplayable]
// is given for an entry whose target topic does not exist.
var ErrTargetMissing = errors.New("dlq: target topic does not exist")

// ErrTrimmed is wrapped by the error [ReplayConfig.OnUnreplayable] is given
// for an entry that was trimmed when it was quarantined (see
// [Entry.Trimmed]): what is left of it is not the original record.
var ErrTrimmed = errors.New("dlq: entry was trimmed when quarantined")

// ReplayConfig says what [Replay] replays, where to, and how fast.
type ReplayConfig struct {
	// Topic is the dead-letter topic to read. Required.
	Topic string
	// ResumeGroup is the consumer group whose committed offsets on Topic
	// record the replay's progress: a run starts where the last run with
	// the same ResumeGroup stopped, whatever its Filter and Target, or at
	// the start of Topic. Required. Replay never joins it as a member (see
	// the package documentation).
	ResumeGroup string
	// Filter selects the entries to replay; the others are passed over.
	Filter Filter
	// Target returns the topic an entry is replayed to, or ok false to
	// pass the entry over. It is called for undecodable entries too (Err
	// != nil), not for trimmed ones, which are never replayed. Nil means
	// the entry's original topic, and ok false for an undecodable entry or
	// one without an original topic.
	Target func(Entry) (topic string, ok bool)
	// Rate bounds the records replayed per second; > 0, +Inf for no
	// bound.
	Rate float64
	// MaxReplays is the loop guard: an entry already replayed MaxReplays
	// times or more (its replay count, see [retrytopics.HeaderReplayCount])
	// is not replayed again. In [1, retrytopics.MaxAttempt].
	MaxReplays int
	// DryRun reads and counts as a real run would, but produces nothing
	// and commits nothing. It does not wait for Rate. It counts as
	// unreplayable the entries it can tell are (trimmed, target topic
	// missing), not those a produce would reject.
	DryRun bool
	// OnUnreplayable, if not nil, is called for each entry counted in
	// [ReplayStats.Unreplayable], with why it cannot be replayed: an
	// error wrapping [ErrTrimmed], [ErrTargetMissing], or the produce
	// error that retrying cannot fix. It is called from the goroutine
	// running Replay, before the entry is committed past.
	OnUnreplayable func(e Entry, err error)
}

func (c ReplayConfig) validate() error {
	switch {
	case c.Topic == "":
		return errors.New("ReplayConfig.Topic is empty")
	case c.ResumeGroup == "":
		return errors.New("ReplayConfig.ResumeGroup is empty")
	case !(c.Rate > 0): // NaN too
		return fmt.Errorf("ReplayConfig.Rate must be > 0, got %v", c.Rate)
	case c.MaxReplays < 1 || c.MaxReplays > retrytopics.MaxAttempt:
		// Above the largest count the header decoder reads, the count
		// written on a replayed record would make it undecodable.
		return fmt.Errorf("ReplayConfig.MaxReplays must be in [1, %d], got %d", retrytopics.MaxAttempt, c.MaxReplays)
	}
	return c.Filter.validate()
}

// ReplayStats counts what a [Replay] run did with the entries it read.
// Scanned = NotSelected + Matched, and Matched = Replayed + LoopGuarded +
// Undecodable + NoTarget + Unreplayable, except for a run that stopped on
// an error, whose last records may be counted as matched and not yet
// replayed.
type ReplayStats struct {
	Scanned      int // entries read (control records of transactions are not entries)
	Matched      int // entries the Filter selected
	Replayed     int // entries replayed and acknowledged (DryRun: that would be replayed)
	NotSelected  int // entries the Filter passed over
	LoopGuarded  int // matched entries not replayed: replay count >= MaxReplays
	Undecodable  int // matched undecodable entries Target passed over
	NoTarget     int // matched decodable entries Target passed over
	Unreplayable int // matched entries that cannot be replayed: trimmed, target topic missing, or rejected for good (see ReplayConfig.OnUnreplayable)
}

// Replay and its commits. The bounds on what an interrupted run re-sends
// follow from these; the package documentation states them.
const (
	// maxPending bounds the replayed records not yet behind the commit
	// point: waiting for their acknowledgement, or behind one that is.
	maxPending = 100
	// commitEvery is the number of entries read between two commits of
	// the progress, at most.
	commitEvery = 100
	// commitInterval is the longest time between two commits while
	// entries are being read.
	commitInterval = 5 * time.Second
	// stopGrace is how long a stopping run waits for the records in
	// flight before committing what was acknowledged.
	stopGrace = 10 * time.Second
	// commitTimeout bounds the last commit, made after ctx ended.
	commitTimeout = 10 * time.Second
)

// Replay reads the dead-letter topic cfg.Topic from the offsets committed
// by cfg.ResumeGroup (or its start) to the end offsets captured when it
// starts, and produces every entry cfg.Filter selects to its target topic:
// same key and value, the original record's non-floodgate headers, and
// [retrytopics.HeaderReplayCount] one more than the entry's. It carries no
// other floodgate header, so the record is a fresh first attempt on its
// target. A record replayed to its original topic goes to its original
// partition if the topic still has it; other records are partitioned by
// key (murmur2, Kafka's default), or spread if they have none. The record
// timestamp is the replay time.
//
// Replay builds its own client from brokers and opts and closes it before
// it returns. opts are meant for connecting (TLS, SASL, dialer, client ID,
// logger); Replay adds its consuming and producing options after them, and
// fails, as [Inspect] does, if opts consume anything themselves or set a
// TransactionalID.
//
// An entry that cannot be replayed is counted in
// [ReplayStats.Unreplayable], given to [ReplayConfig.OnUnreplayable] and
// passed over, and the run goes on: an entry that was trimmed when it was
// quarantined ([Entry.Trimmed]), one whose target topic does not exist, and
// one whose replay the broker or the client rejected, even produced again
// alone, with an error that retrying cannot fix
// ([consumer.IsUnretryableProduceError]).
//
// It returns nil once every partition was read to its captured end and
// every replayed record acknowledged (or its entry passed over as
// unreplayable) and committed. If ctx ends first, it stops reading, waits a
// bounded time for the records in flight, commits what was acknowledged and
// returns an error wrapping ctx.Err(). Any other failed produce, and a
// failed commit, stop the run the same way, with that error. The stats
// count what was done either way.
func Replay(ctx context.Context, brokers []string, cfg ReplayConfig, opts ...kgo.Opt) (ReplayStats, error) {
	return replay(ctx, brokers, cfg, opts, replayHooks{})
}

// replayHooks lets tests look inside a run.
type replayHooks struct {
	// noFinalCommit skips the commit made when the run stops, as if the
	// process died then.
	noFinalCommit bool
}

func replay(ctx context.Context, brokers []string, cfg ReplayConfig, opts []kgo.Opt, hooks replayHooks) (ReplayStats, error) {
	var st ReplayStats
	if err := cfg.validate(); err != nil {
		return st, fmt.Errorf("dlq: Replay: %w", err)
	}
	target := cfg.Target
	if target == nil {
		target = originalTopic
	}
	// Batches to each target as large as its max.message.bytes allows (read
	// in lookUp before the first produce to it): a record the target takes
	// must not be refused by kgo's default cap. The caller's options come
	// after, and win.
	limits := new(topicconf.Limits)
	cl, err := newClient(brokers, append([]kgo.Opt{kgo.ProducerBatchMaxBytesFn(limits.Get)}, opts...),
		kgo.RecordPartitioner(pinPartitioner{kgo.StickyKeyPartitioner(nil)}),
	)
	if err != nil {
		return st, fmt.Errorf("dlq: Replay: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if !cfg.DryRun {
		if err := checkIdle(ctx, adm, cfg.ResumeGroup); err != nil {
			return st, err
		}
	}
	bounds, err := listBounds(ctx, adm, cfg.Topic)
	if err != nil {
		return st, err
	}
	committed, err := committedOffsets(ctx, adm, cfg.ResumeGroup, cfg.Topic)
	if err != nil {
		return st, err
	}
	from := make(map[int32]int64, len(bounds))
	for p, b := range bounds {
		o, ok := committed[p]
		if !ok || o < b.start {
			o = b.start // never replayed, or deleted by retention since
		}
		from[p] = o
	}

	rp := &replayer{
		cfg:        cfg,
		target:     target,
		cl:         cl,
		adm:        adm,
		prodCtx:    context.WithoutCancel(ctx), // a record in flight is waited for, not abandoned
		pace:       newPacer(cfg.Rate),
		st:         &st,
		track:      newTracker(from),
		topics:     make(map[string]error),
		limits:     limits,
		lastCommit: time.Now(),
	}
	if !cfg.DryRun {
		// Commit the starting point before replaying anything: a group
		// Kafka will not let Replay commit to fails here, not after the
		// first records went out.
		if err := rp.commit(ctx); err != nil {
			return st, err
		}
	}

	serr := scan(ctx, cl, cfg.Topic, from, bounds, func(r *kgo.Record) error { return rp.each(ctx, r) })
	if serr == nil {
		serr = rp.finish(ctx)
	}
	if serr != nil {
		// Stopping: give the records in flight a bounded time.
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopGrace)
		rp.track.wait(gctx)
		cancel()
		rp.report()
	}
	if !cfg.DryRun && !hooks.noFinalCommit {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		cerr := rp.commit(cctx)
		cancel()
		serr = errors.Join(serr, cerr)
	}
	if !cfg.DryRun {
		st.Replayed = rp.track.ackedCount()
	}
	return st, serr
}

func originalTopic(e Entry) (string, bool) {
	return e.Meta.OriginalTopic, e.Err == nil && e.Meta.OriginalTopic != ""
}

// checkIdle fails with ErrResumeGroupActive if group has members.
func checkIdle(ctx context.Context, adm *kadm.Client, group string) error {
	gs, err := kretry.Do(ctx, kretry.NotReady, func(ctx context.Context) (kadm.DescribedGroups, error) {
		gs, err := adm.DescribeGroups(ctx, group)
		if err == nil && kretry.NotReady(gs[group].Err) {
			err = gs[group].Err
		}
		return gs, err
	})
	if err != nil {
		return fmt.Errorf("dlq: describing resume group %q: %w", group, err)
	}
	g := gs[group]
	if g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
		return fmt.Errorf("dlq: describing resume group %q: %w", group, g.Err)
	}
	if n := len(g.Members); n > 0 {
		members := "members"
		if n == 1 {
			members = "member"
		}
		return fmt.Errorf("%w: %q has %d %s (state %s)", ErrResumeGroupActive, group, n, members, g.State)
	}
	return nil
}

// committedOffsets returns the offsets group committed on topic's
// partitions.
func committedOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	out := make(map[int32]int64)
	resps, err := kretry.Do(ctx, kretry.NotReady, func(ctx context.Context) (kadm.OffsetResponses, error) {
		return adm.FetchOffsets(ctx, group)
	})
	switch {
	case errors.Is(err, kerr.GroupIDNotFound):
		return out, nil // no group yet: nothing committed (Kafka answers no offsets)
	case err != nil:
		return nil, fmt.Errorf("dlq: offsets of resume group %q: %w", group, err)
	}
	for p, r := range resps[topic] {
		if r.Err != nil {
			return nil, fmt.Errorf("dlq: offsets of resume group %q on %s[%d]: %w", group, topic, p, r.Err)
		}
		if r.At >= 0 {
			out[p] = r.At
		}
	}
	return out, nil
}

// replayer is the state of one Replay run. Its fields other than track are
// used by the goroutine running Replay only.
type replayer struct {
	cfg     ReplayConfig
	target  func(Entry) (string, bool)
	cl      *kgo.Client
	adm     *kadm.Client
	prodCtx context.Context
	pace    *pacer
	st      *ReplayStats
	track   *tracker
	topics  map[string]error  // target topics looked up: nil if entries can go there, else why not
	limits  *topicconf.Limits // the targets' max.message.bytes, for the client's batch cap

	sinceCommit int // entries read since the last commit
	lastCommit  time.Time
}

// each handles one record read from the dead-letter topic.
func (rp *replayer) each(ctx context.Context, r *kgo.Record) error {
	if err := rp.settle(ctx); err != nil {
		return err
	}
	p := r.Partition
	if r.Attrs.IsControl() {
		rp.track.advance(p, r)
		return nil
	}
	rp.st.Scanned++
	rp.sinceCommit++
	e := NewEntry(r)
	topic, ok, err := rp.decide(ctx, e)
	switch {
	case err != nil:
		return err
	case !ok || rp.cfg.DryRun:
		if ok {
			rp.st.Replayed++
		}
		rp.track.advance(p, r)
		return rp.maybeCommit(ctx)
	}
	if err := rp.waitRoom(ctx); err != nil {
		return err
	}
	if err := rp.pace.wait(ctx); err != nil {
		return fmt.Errorf("dlq: replay interrupted: %w", err)
	}
	s := rp.track.produced(p, r, e, topic)
	rp.cl.Produce(rp.prodCtx, replayRecord(e, topic), rp.promise(s))
	return rp.maybeCommit(ctx)
}

func (rp *replayer) promise(s *slot) func(*kgo.Record, error) {
	return func(_ *kgo.Record, err error) { rp.track.done(s, err) }
}

// decide returns the topic to replay e to, or ok false after counting why
// e is passed over.
func (rp *replayer) decide(ctx context.Context, e Entry) (topic string, ok bool, err error) {
	st := rp.st
	if !rp.cfg.Filter.Match(e) {
		st.NotSelected++
		return "", false, nil
	}
	st.Matched++
	if dropped, size, ok := e.Trimmed(); ok {
		rp.unreplayable(e, trimmedError(dropped, size))
		return "", false, nil
	}
	topic, ok = rp.target(e)
	switch {
	case !ok && e.Err != nil:
		st.Undecodable++
		return "", false, nil
	case !ok:
		st.NoTarget++
		return "", false, nil
	case topic == "":
		return "", false, fmt.Errorf("dlq: Target returned an empty topic for %s", recordAt(e.Record))
	case replayCount(e) >= rp.cfg.MaxReplays:
		st.LoopGuarded++
		return "", false, nil
	}
	why, err := rp.lookUp(ctx, topic)
	switch {
	case err != nil:
		return "", false, err
	case why != nil:
		rp.unreplayable(e, why)
		return "", false, nil
	}
	return topic, true, nil
}

func trimmedError(dropped string, size int64) error {
	if dropped == "" {
		dropped = "?"
	}
	if size < 0 {
		return fmt.Errorf("%w (dropped: %s)", ErrTrimmed, dropped)
	}
	return fmt.Errorf("%w (dropped: %s; the original had %d bytes)", ErrTrimmed, dropped, size)
}

// lookUp returns why entries cannot be replayed to topic, or nil if the
// topic exists as far as metadata tells. It asks once per topic and run:
// a topic created during the run is not seen, one deleted during it fails
// the produces, which are then passed over.
func (rp *replayer) lookUp(ctx context.Context, topic string) (why, err error) {
	if why, ok := rp.topics[topic]; ok {
		return why, nil
	}
	tds, err := rp.adm.ListTopics(ctx, topic)
	switch td, ok := tds[topic]; {
	case err != nil && consumer.IsUnretryableProduceError(err): // not authorized to describe it
		why = fmt.Errorf("dlq: target topic %q: %w", topic, err)
	case err != nil:
		return nil, fmt.Errorf("dlq: looking up target topic %q: %w", topic, err)
	case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
		why = fmt.Errorf("%w: %q", ErrTargetMissing, topic)
	case td.Err != nil && consumer.IsUnretryableProduceError(td.Err):
		why = fmt.Errorf("dlq: target topic %q: %w", topic, td.Err)
	case td.Err != nil:
		return nil, nil // passing, such as a leader election: let the produce see
	}
	if why == nil {
		// Without DescribeConfigs rights the target keeps kgo's default
		// cap, and a record above it is passed over as too large.
		if max, err := topicconf.MaxMessageBytes(ctx, rp.cl, topic); err == nil {
			rp.limits.Set(topic, max)
		}
	}
	rp.topics[topic] = why
	return why, nil
}

// unreplayable counts and reports an entry that cannot be replayed.
func (rp *replayer) unreplayable(e Entry, why error) {
	rp.st.Unreplayable++
	if rp.cfg.OnUnreplayable != nil {
		rp.cfg.OnUnreplayable(e, why)
	}
}

// report counts and reports the entries whose replay failed for good, and
// lets the progress be committed past them.
func (rp *replayer) report() {
	for _, k := range rp.track.takeSkips() {
		rp.unreplayable(k.s.entry, k.err)
	}
}

// settle produces again, each alone and in turn, the records whose replay
// failed with an error that retrying cannot fix, and reports the entries
// that cannot be replayed. The first failure may come from another record
// of the same batch (a batch too large for the topic, rejected whole): a
// record alone fails only for what it is. It returns the error that stops
// the run, if any.
func (rp *replayer) settle(ctx context.Context) error {
	if rp.track.hasRetries() {
		// Nothing else in flight: the record goes in a batch of its own.
		if err := rp.track.wait(ctx); err != nil {
			return fmt.Errorf("dlq: replay interrupted: %w", err)
		}
		for _, s := range rp.track.takeRetries() {
			if err := rp.pace.wait(ctx); err != nil {
				return fmt.Errorf("dlq: replay interrupted: %w", err)
			}
			rp.track.resent()
			rp.cl.Produce(rp.prodCtx, replayRecord(s.entry, s.topic), rp.promise(s))
			if err := rp.track.wait(ctx); err != nil {
				return fmt.Errorf("dlq: replay interrupted: %w", err)
			}
		}
	}
	rp.report()
	return rp.track.failed()
}

// finish waits until every replayed record was acknowledged or its entry
// passed over as unreplayable.
func (rp *replayer) finish(ctx context.Context) error {
	for {
		if err := rp.track.wait(ctx); err != nil {
			return fmt.Errorf("dlq: replay interrupted: %w", err)
		}
		if err := rp.settle(ctx); err != nil || !rp.track.hasRetries() {
			return err
		}
	}
}

// waitRoom waits until fewer than maxPending records are pending.
func (rp *replayer) waitRoom(ctx context.Context) error {
	for {
		if err := rp.settle(ctx); err != nil {
			return err
		}
		if rp.track.pendingCount() < maxPending {
			return nil
		}
		select {
		case <-rp.track.changed:
		case <-ctx.Done():
			return fmt.Errorf("dlq: replay interrupted: %w", ctx.Err())
		}
	}
}

// replayCount returns the times e was replayed already. For an undecodable
// entry it reads the replay-count header alone, 0 if it does not parse.
func replayCount(e Entry) int {
	if e.Err == nil {
		return e.Meta.ReplayCount
	}
	for _, h := range e.Record.Headers {
		if h.Key == retrytopics.HeaderReplayCount {
			if n, err := strconv.Atoi(string(h.Value)); err == nil && n >= 0 {
				return n
			}
			return 0
		}
	}
	return 0
}

// replayRecord builds the record replaying e to topic.
func replayRecord(e Entry, topic string) *kgo.Record {
	r := e.Record
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+1)
	for _, h := range r.Headers {
		if !retrytopics.IsMetaHeader(h.Key) {
			hs = append(hs, h)
		}
	}
	hs = append(hs, kgo.RecordHeader{
		Key:   retrytopics.HeaderReplayCount,
		Value: []byte(strconv.Itoa(replayCount(e) + 1)),
	})
	out := &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: hs, Partition: -1}
	if e.Err == nil && topic == e.Meta.OriginalTopic {
		out.Partition = e.Meta.OriginalPartition // pinPartitioner's hint
	}
	return out
}

func recordAt(r *kgo.Record) string { return fmt.Sprintf("%s[%d]@%d", r.Topic, r.Partition, r.Offset) }

// maybeCommit commits the progress every commitEvery entries and every
// commitInterval.
func (rp *replayer) maybeCommit(ctx context.Context) error {
	if rp.cfg.DryRun || rp.sinceCommit < commitEvery && time.Since(rp.lastCommit) < commitInterval {
		return nil
	}
	return rp.commit(ctx)
}

// commit commits, for each partition, the offset below which every entry
// was passed over, or replayed and acknowledged.
func (rp *replayer) commit(ctx context.Context) error {
	rp.report()
	os := rp.track.toCommit(rp.cfg.Topic)
	rp.sinceCommit, rp.lastCommit = 0, time.Now()
	if len(os) == 0 {
		return nil
	}
	if err := rp.adm.CommitAllOffsets(ctx, rp.cfg.ResumeGroup, os); err != nil {
		return fmt.Errorf("dlq: committing the replay progress to group %q: %w", rp.cfg.ResumeGroup, err)
	}
	rp.track.committed(os)
	return nil
}

// unreplayableProduce reports whether a replay failed with an error that
// producing the record again cannot fix: its target topic is gone (the
// client gave up after its UnknownTopicRetries), or the error is one of
// [consumer.IsUnretryableProduceError].
func unreplayableProduce(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID) ||
		consumer.IsUnretryableProduceError(err)
}

// tracker follows, per partition of the dead-letter topic, which replayed
// records were acknowledged, and so how far the progress may be committed.
// Produce promises call done from the client's goroutines; the rest is
// called by the replaying goroutine.
//
// A replay that failed with an error retrying cannot fix (see
// unreplayableProduce) is first queued to be produced again alone
// (takeRetries), then, if it fails so again, queued to be reported
// (takeSkips). Its slot is done, and the progress may pass it, only once
// it was taken to be reported: nothing is committed past unreported.
type tracker struct {
	mu          sync.Mutex
	parts       map[int32]*partProgress
	pending     int     // replayed records in some pending list
	outstanding int     // produced records whose promise was not called
	acked       int     // produced records acknowledged
	err         error   // the first produce error that stops the run
	retries     []*slot // failed for good, to be produced again alone
	skips       []skip  // failed for good when produced alone, to be reported
	changed     chan struct{}
}

type partProgress struct {
	next      int64   // offset after the last record read
	nextEpoch int32   // leader epoch of the last record read
	pending   []*slot // replayed records from the first one not done on, by offset
	committed int64   // offset last committed, -1 if none
}

// slot is a replayed record.
type slot struct {
	partition int32 // of the dead-letter topic
	offset    int64
	epoch     int32
	entry     Entry  // to produce it again, or report it
	topic     string // where it is replayed to
	alone     bool   // produced again alone after an error retrying cannot fix
	done      bool   // acknowledged, or reported as unreplayable
}

// skip is a replay that failed for good.
type skip struct {
	s   *slot
	err error
}

func newTracker(from map[int32]int64) *tracker {
	t := &tracker{parts: make(map[int32]*partProgress, len(from)), changed: make(chan struct{}, 1)}
	for p, o := range from {
		t.parts[p] = &partProgress{next: o, nextEpoch: -1, committed: -1}
	}
	return t
}

// advance records r as read and passed over.
func (t *tracker) advance(p int32, r *kgo.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.parts[p]
	pp.next, pp.nextEpoch = r.Offset+1, r.LeaderEpoch
}

// produced records r as read and its replay, e to topic, as produced.
func (t *tracker) produced(p int32, r *kgo.Record, e Entry, topic string) *slot {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.parts[p]
	s := &slot{partition: p, offset: r.Offset, epoch: r.LeaderEpoch, entry: e, topic: topic}
	pp.pending = append(pp.pending, s)
	pp.next, pp.nextEpoch = r.Offset+1, r.LeaderEpoch
	t.pending++
	t.outstanding++
	return s
}

// resent records a slot taken from takeRetries as produced again.
func (t *tracker) resent() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.outstanding++
}

// done records the outcome of the replay of s.
func (t *tracker) done(s *slot, err error) {
	t.mu.Lock()
	t.outstanding--
	switch {
	case err == nil:
		t.acked++
		t.finish(s)
	case !unreplayableProduce(err):
		if t.err == nil {
			t.err = fmt.Errorf("dlq: replaying %s to %q: %w", recordAt(s.entry.Record), s.topic, err)
		}
	case !s.alone:
		t.retries = append(t.retries, s)
	case errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID):
		t.skips = append(t.skips, skip{s, fmt.Errorf("%w: %q: %w", ErrTargetMissing, s.topic, err)})
	default:
		t.skips = append(t.skips, skip{s, fmt.Errorf("dlq: replaying to %q: %w", s.topic, err)})
	}
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// finish marks s done and drops the slots done from the head of its
// partition's pending list. t.mu is held.
func (t *tracker) finish(s *slot) {
	s.done = true
	pp := t.parts[s.partition]
	n := 0
	for n < len(pp.pending) && pp.pending[n].done {
		n++
	}
	pp.pending = pp.pending[n:]
	t.pending -= n
}

func (t *tracker) hasRetries() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.retries) > 0
}

// takeRetries returns the slots to produce again alone, and marks them so.
func (t *tracker) takeRetries() []*slot {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.retries
	t.retries = nil
	for _, s := range out {
		s.alone = true
	}
	return out
}

// takeSkips returns the replays that failed for good, and marks their
// slots done: the caller reports them before it commits.
func (t *tracker) takeSkips() []skip {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.skips
	t.skips = nil
	for _, k := range out {
		t.finish(k.s)
	}
	return out
}

func (t *tracker) failed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *tracker) ackedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acked
}

func (t *tracker) pendingCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}

// wait waits until every produced record's promise was called, or ctx
// ends.
func (t *tracker) wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		n := t.outstanding
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-t.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// toCommit returns the offsets to commit that differ from the last ones
// committed.
func (t *tracker) toCommit(topic string) kadm.Offsets {
	t.mu.Lock()
	defer t.mu.Unlock()
	os := make(kadm.Offsets)
	for p, pp := range t.parts {
		at, epoch := pp.next, pp.nextEpoch
		if len(pp.pending) > 0 {
			at, epoch = pp.pending[0].offset, pp.pending[0].epoch
		}
		if at != pp.committed {
			os.AddOffset(topic, p, at, epoch)
		}
	}
	return os
}

func (t *tracker) committed(os kadm.Offsets) {
	t.mu.Lock()
	defer t.mu.Unlock()
	os.Each(func(o kadm.Offset) {
		if pp := t.parts[o.Partition]; pp != nil {
			pp.committed = o.At
		}
	})
}

// pacer spaces calls to wait by 1/rate seconds. After an idle spell it
// does not catch up: there is no burst.
type pacer struct {
	interval time.Duration // 0: no pacing
	next     time.Time
	now      func() time.Time
	sleep    func(context.Context, time.Duration) error
}

func newPacer(rate float64) *pacer {
	iv := time.Duration(math.MaxInt64)
	if ns := float64(time.Second) / rate; ns < float64(math.MaxInt64) { // 0 for +Inf
		iv = time.Duration(ns)
	}
	return &pacer{interval: iv, now: time.Now, sleep: sleep}
}

// wait returns when the next call is due, or ctx's error if it ends first.
func (p *pacer) wait(ctx context.Context) error {
	if p.interval <= 0 {
		return ctx.Err()
	}
	now := p.now()
	if p.next.Before(now) {
		p.next = now
	}
	d := p.next.Sub(now)
	p.next = p.next.Add(p.interval)
	if d <= 0 {
		return ctx.Err()
	}
	return p.sleep(ctx, d)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pinPartitioner sends a record whose Partition is set (>= 0) to that
// partition when its topic has it, and any other record where fallback
// sends it.
type pinPartitioner struct{ fallback kgo.Partitioner }

func (p pinPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return pinTopicPartitioner{p.fallback.ForTopic(topic)}
}

type pinTopicPartitioner struct{ fallback kgo.TopicPartitioner }

var _ kgo.TopicPartitionerOnNewBatch = pinTopicPartitioner{}

func (p pinTopicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return r.Partition >= 0 || p.fallback.RequiresConsistency(r)
}

func (p pinTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Partition >= 0 && int(r.Partition) < n {
		return int(r.Partition)
	}
	return p.fallback.Partition(r, n)
}

func (p pinTopicPartitioner) OnNewBatch() {
	if nb, ok := p.fallback.(kgo.TopicPartitionerOnNewBatch); ok {
		nb.OnNewBatch()
	}
}
