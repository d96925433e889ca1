package dlq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// ErrResumeGroupActive is returned by [Replay] when its resume group has
// members: it is some application's consumer group, or another process
// holds it. Replay commits as a group without members would, and Kafka
// refuses that while the group has members.
var ErrResumeGroupActive = errors.New("dlq: resume group has active members")

// ReplayConfig says what [Replay] replays, where to, and how fast.
type ReplayConfig struct {
	// Topic is the dead-letter topic to read. Required.
	Topic string
	// ResumeGroup is the consumer group whose committed offsets on Topic
	// record the replay's progress: a run starts where the last run with
	// the same ResumeGroup stopped, or at the start of Topic. Required.
	// Replay never joins it as a member (see the package documentation).
	ResumeGroup string
	// Filter selects the entries to replay; the others are passed over.
	Filter Filter
	// Target returns the topic an entry is replayed to, or ok false to
	// pass the entry over. It is called for undecodable entries too (Err
	// != nil). Nil means the entry's original topic, and ok false for an
	// undecodable entry or one without an original topic.
	Target func(Entry) (topic string, ok bool)
	// Rate bounds the records replayed per second; > 0, +Inf for no
	// bound.
	Rate float64
	// MaxReplays is the loop guard: an entry already replayed MaxReplays
	// times or more (its replay count, see [retrytopics.HeaderReplayCount])
	// is not replayed again. >= 1.
	MaxReplays int
	// DryRun reads and counts as a real run would, but produces nothing
	// and commits nothing. It does not wait for Rate.
	DryRun bool
}

func (c ReplayConfig) validate() error {
	switch {
	case c.Topic == "":
		return errors.New("ReplayConfig.Topic is empty")
	case c.ResumeGroup == "":
		return errors.New("ReplayConfig.ResumeGroup is empty")
	case !(c.Rate > 0): // NaN too
		return fmt.Errorf("ReplayConfig.Rate must be > 0, got %v", c.Rate)
	case c.MaxReplays < 1:
		return fmt.Errorf("ReplayConfig.MaxReplays must be >= 1, got %d", c.MaxReplays)
	}
	return c.Filter.validate()
}

// ReplayStats counts what a [Replay] run did with the entries it read.
// Scanned = NotSelected + Matched, and Matched = Replayed + LoopGuarded +
// Undecodable + NoTarget, except for a run that stopped on an error, whose
// last records may be counted as matched and not yet replayed.
type ReplayStats struct {
	Scanned     int // entries read (control records of transactions are not entries)
	Matched     int // entries the Filter selected
	Replayed    int // entries replayed and acknowledged (DryRun: that would be replayed)
	NotSelected int // entries the Filter passed over
	LoopGuarded int // matched entries not replayed: replay count >= MaxReplays
	Undecodable int // matched undecodable entries Target passed over
	NoTarget    int // matched decodable entries Target passed over
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
// It returns nil once every partition was read to its captured end and
// every replayed record acknowledged and committed. If ctx ends first, it
// stops reading, waits a bounded time for the records in flight, commits
// what was acknowledged and returns an error wrapping ctx.Err(). A failed
// produce or commit stops the run the same way, with that error. The stats
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
	cl, err := newClient(brokers, opts,
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
		if err := rp.track.wait(ctx); err != nil {
			serr = fmt.Errorf("dlq: replay interrupted: %w", err)
		}
	}
	if serr != nil {
		// Stopping: give the records in flight a bounded time.
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopGrace)
		rp.track.wait(gctx)
		cancel()
	}
	if serr == nil {
		serr = rp.track.failed()
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
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return fmt.Errorf("dlq: describing resume group %q: %w", group, err)
	}
	g := gs[group]
	if g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
		return fmt.Errorf("dlq: describing resume group %q: %w", group, g.Err)
	}
	if len(g.Members) > 0 {
		return fmt.Errorf("%w: %q has %d (state %s)", ErrResumeGroupActive, group, len(g.Members), g.State)
	}
	return nil
}

// committedOffsets returns the offsets group committed on topic's
// partitions.
func committedOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	out := make(map[int32]int64)
	resps, err := adm.FetchOffsets(ctx, group)
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

	sinceCommit int // entries read since the last commit
	lastCommit  time.Time
}

// each handles one record read from the dead-letter topic.
func (rp *replayer) each(ctx context.Context, r *kgo.Record) error {
	if err := rp.track.failed(); err != nil {
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
	topic, ok, err := rp.decide(e)
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
	if err := rp.track.waitRoom(ctx); err != nil {
		return err
	}
	if err := rp.pace.wait(ctx); err != nil {
		return fmt.Errorf("dlq: replay interrupted: %w", err)
	}
	out := replayRecord(e, topic)
	s := rp.track.produced(p, r)
	rp.cl.Produce(rp.prodCtx, out, func(_ *kgo.Record, err error) {
		if err != nil {
			err = fmt.Errorf("dlq: replaying %s[%d]@%d to %q: %w", r.Topic, p, r.Offset, topic, err)
		}
		rp.track.done(p, s, err)
	})
	return rp.maybeCommit(ctx)
}

// decide returns the topic to replay e to, or ok false after counting why
// e is passed over.
func (rp *replayer) decide(e Entry) (topic string, ok bool, err error) {
	st := rp.st
	if !rp.cfg.Filter.Match(e) {
		st.NotSelected++
		return "", false, nil
	}
	st.Matched++
	topic, ok = rp.target(e)
	switch {
	case !ok && e.Err != nil:
		st.Undecodable++
		return "", false, nil
	case !ok:
		st.NoTarget++
		return "", false, nil
	case topic == "":
		r := e.Record
		return "", false, fmt.Errorf("dlq: Target returned an empty topic for %s[%d]@%d", r.Topic, r.Partition, r.Offset)
	case replayCount(e) >= rp.cfg.MaxReplays:
		st.LoopGuarded++
		return "", false, nil
	}
	return topic, true, nil
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
		if !strings.HasPrefix(h.Key, retrytopics.HeaderPrefix) {
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

// maybeCommit commits the progress every commitEvery entries and every
// commitInterval.
func (rp *replayer) maybeCommit(ctx context.Context) error {
	if rp.cfg.DryRun || rp.sinceCommit < commitEvery && time.Since(rp.lastCommit) < commitInterval {
		return nil
	}
	return rp.commit(ctx)
}

// commit commits, for each partition, the offset below which every entry
// was passed over or replayed and acknowledged.
func (rp *replayer) commit(ctx context.Context) error {
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

// tracker follows, per partition of the dead-letter topic, which replayed
// records were acknowledged, and so how far the progress may be committed.
// Produce promises call done from the client's goroutines; the rest is
// called by the replaying goroutine.
type tracker struct {
	mu          sync.Mutex
	parts       map[int32]*partProgress
	pending     int   // replayed records in some pending list
	outstanding int   // produced records whose promise was not called
	acked       int   // produced records acknowledged
	err         error // the first produce error
	changed     chan struct{}
}

type partProgress struct {
	next      int64   // offset after the last record read
	nextEpoch int32   // leader epoch of the last record read
	pending   []*slot // replayed records from the first unacknowledged one on, by offset
	committed int64   // offset last committed, -1 if none
}

type slot struct {
	offset int64
	epoch  int32
	acked  bool
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

// produced records r as read and its replay as produced.
func (t *tracker) produced(p int32, r *kgo.Record) *slot {
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.parts[p]
	s := &slot{offset: r.Offset, epoch: r.LeaderEpoch}
	pp.pending = append(pp.pending, s)
	pp.next, pp.nextEpoch = r.Offset+1, r.LeaderEpoch
	t.pending++
	t.outstanding++
	return s
}

// done records the outcome of the replay of s.
func (t *tracker) done(p int32, s *slot, err error) {
	t.mu.Lock()
	t.outstanding--
	if err != nil {
		if t.err == nil {
			t.err = err
		}
	} else {
		s.acked = true
		t.acked++
		pp := t.parts[p]
		n := 0
		for n < len(pp.pending) && pp.pending[n].acked {
			n++
		}
		pp.pending = pp.pending[n:]
		t.pending -= n
	}
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
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

// waitRoom waits until fewer than maxPending records are pending.
func (t *tracker) waitRoom(ctx context.Context) error {
	for {
		t.mu.Lock()
		n, err := t.pending, t.err
		t.mu.Unlock()
		if err != nil {
			return err
		}
		if n < maxPending {
			return nil
		}
		select {
		case <-t.changed:
		case <-ctx.Done():
			return fmt.Errorf("dlq: replay interrupted: %w", ctx.Err())
		}
	}
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
