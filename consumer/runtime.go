package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floodgate-kafka/floodgate/partition"
)

// Handler handles one record. Its ctx is cancelled when the record's
// partition is revoked (after [RevokeTimeout]) or the runtime stops (after
// [ShutdownTimeout]). A returned error or a panic counts as a failure.
type Handler func(ctx context.Context, r *kgo.Record) error

// Runtime consumes a group's partitions with bounded in-flight windows,
// pausing partitions whose window is full and committing only offsets whose
// records all reached a terminal state. Build one with [New] or [Wrap] and
// start it with [Runtime.Run].
type Runtime struct {
	cfg           cfg
	hooks         hooks
	handler       Handler
	cl            *kgo.Client
	own           bool
	bind          *binding
	log           kgo.Logger // the client's logger; nil if it has none
	readCommitted bool       // the client fetches with read_committed isolation
	limits        partition.Limits
	memResume     int64 // buffered bytes at or below which Memory pauses lift
	spanResume    int   // span at or below which SpanFull lifts

	mu        sync.Mutex
	work      sync.Cond // signalled when runq gains work or the runtime stops
	parts     map[tp]*pstate
	runq      ring[task]
	buffered  int64 // bytes in flight, all partitions
	inflight  int   // records in flight, all partitions
	running   int   // handlers running
	memPaused int   // partitions holding the Memory reason
	dirty     []*pstate
	stopping  bool
	freeLanes []*lane
	onStop    []func(context.Context)

	prioMarks  []prioMark // per class rank, for the byte budget (WithPriorities)
	prioPaused int        // classes paused for the byte budget

	// Commit health, guarded by mu.
	commitErr   error     // the last commit attempt's error; nil after a success
	lastCommit  time.Time // the last successful commit (Run's start before one)
	commitFails uint64    // failed commit attempts
	// Fetch health, guarded by mu.
	fetchErr error // the last error a poll returned

	pauseMu  sync.Mutex // serialises kgo pause/resume calls with kpaused
	commitMu sync.Mutex // serialises commits with revocations
	revokeMu sync.Mutex // serialises revocations (callbacks and shutdown)

	notify chan struct{} // wakes the controller to flush pause changes

	// Fetch sizing, owned by the poll loop: see tuneFetch.
	avgSize                   float64 // moving average of admitted record sizes
	fetchMax, fetchPartMax    int32   // the client's configured caps
	curFetchMax, curFetchPart int32   // what the client was last told

	baseCtx    context.Context // parent of every partition context
	baseCancel context.CancelFunc
	// commitCtx bounds periodic commits; cancelled when shutdown begins, so
	// that a commit held up (by a group join, say) does not delay the final
	// one.
	commitCtx    context.Context
	commitCancel context.CancelFunc

	topicMax  topicLimits     // produce limits per topic, for clients built by New
	serial    serialTopics    // topics diverts are produced to one at a time
	closeCtx  context.Context // cancelled by Close
	closeStop context.CancelFunc
	started   atomic.Bool
	abort     atomic.Pointer[context.CancelCauseFunc] // ends Run's poll with a cause
	done      chan struct{}                           // closed when Run returns
	wg        sync.WaitGroup

	control     uint64 // control records passed, all partitions (guarded by mu)
	handled     atomic.Uint64
	failures    atomic.Uint64
	refused     atomic.Uint64
	refetched   atomic.Uint64
	restarts    atomic.Uint64
	diverted    atomic.Uint64
	fetchErrors atomic.Uint64
	dataLoss    atomic.Uint64
	logLimit    logLimiter
}

type tp struct {
	topic     string
	partition int32
}

type item struct {
	rec  *kgo.Record
	seq  partition.Seq
	size int32  // RecordSize; a Kafka record is below 2 GiB
	gen  uint32 // the tracker generation seq belongs to
}

// lane is a sequence of records handled one at a time, in order: a whole
// partition (OrderPartition) or one key of a partition (OrderKey).
type lane struct {
	ps     *pstate
	key    string
	q      ring[item]
	queued bool // in the run queue or being run by a worker
}

// task is one entry of the run queue: a lane (run its head record) or, in
// OrderNone, a single record.
type task struct {
	ps *pstate
	l  *lane
	it item
}

type pstate struct {
	tp
	ctx       context.Context
	cancel    context.CancelFunc
	quit      chan struct{} // closed when revocation starts: no more retries
	win       partition.Window
	tr        partition.Tracker
	reasons   partition.Reasons
	kpaused   bool // kgo has the partition paused (guarded by mu, changed under pauseMu)
	dirty     bool // in Runtime.dirty
	lane      *lane
	keys      map[string]*lane
	idleLanes int // lanes in keys with nothing queued or running
	running   int
	aborted   int           // records whose processing stopped without a terminal state
	revoking  bool          // no more dispatch; completions still count
	gone      bool          // completions no longer count
	idle      chan struct{} // closed when running drops to 0 while revoking
	due       *time.Timer   // lifts RetryDue once the head record is due

	rank int // the rank of the topic's priority class; -1 without classes

	// gen counts tracker generations: data loss that reuses offsets starts
	// a new tracker, and completions of older records no longer count.
	gen uint32
	// floor is the oldest offset of an older generation's records not yet
	// terminal when their tracker was replaced (-1: none): commits and
	// restarts stay at or below it until every one of them finished
	// (oldPending counts them), for such a record is still in the log
	// below the reset and must not be committed past. oldAborted: one of
	// them ended without a terminal state, so the floor stays.
	floor      int64
	oldPending int
	oldAborted bool
	// next is the offset the client should return next (-1: unknown), to
	// tell deleted records from ordinary offset gaps.
	next int64
	// afterRecs, afterBytes and afterPassed are the window's content and
	// the records the watermark passed after the last admission, and
	// fetching says the partition was not paused then: the poll loop's
	// measure of what the handlers drain between fetches.
	afterRecs   int
	afterBytes  int64
	afterPassed uint64 // tr.Passed() then: the span's drain
	fetching    bool
	// fails holds the records of the current generation that failed at
	// least once, by offset (rare: the failure path).
	fails map[int64]*failure
	// divertFailing counts records whose divert the router gave up on.
	divertFailing int
	// refusing counts records whose downstream refused them and that
	// wait to be tried again (partition.DownstreamPressure holds ps
	// while there is one), and downLevel is the highest level their
	// refusals named (0: none said); refusedAt is when the last refusal
	// was, and refusedLevel the level it named.
	refusing, downLevel, refusedLevel int
	refusedAt                         time.Time

	// What the last fetch with records said of the log: its high
	// watermark and last stable offset, and when. For lag.
	hwm, lso  int64
	fetchedAt time.Time
	// completed and divertedN count the records of the partition that
	// reached a terminal state, the latter by a divert, for drain rates;
	// control counts the control records passed (not in completed).
	completed, divertedN, control uint64

	commit           int64     // last committed offset, -1 if none
	commitPassed     uint64    // tr.Passed() covered by the last successful commit
	uncommittedSince time.Time // when completed work first went uncommitted; zero if none
}

// New builds a Runtime with its own *kgo.Client from [Brokers], [Group],
// [Topics] and any [KgoOpts]. Run closes that client when it returns.
func New(handler Handler, opts ...Opt) (*Runtime, error) {
	rt, err := newRuntime(handler, true, opts)
	if err != nil {
		return nil, err
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(rt.cfg.brokers...),
		kgo.ConsumerGroup(rt.cfg.group),
		kgo.ConsumeTopics(rt.cfg.topics...),
		// Keep one fetch of a partition within its window, so that
		// records are rarely refused and fetched again.
		kgo.FetchMaxPartitionBytes(int32(min(rt.cfg.partMaxBytes, 1<<20))),
		// A resumed partition joins the next fetch request only after the
		// one in flight returns; kgo's default 5s long poll would make
		// resumes slow while other partitions are idle. 500ms is Kafka's
		// own default.
		kgo.FetchMaxWait(100 * time.Millisecond),
		// Batches to each retry tier and quarantine topic may be as large
		// as that topic allows: a record the default 1,000,012-byte cap
		// refuses could never be moved (see divert).
		kgo.ProducerBatchMaxBytesFn(rt.topicMax.get),
	}
	if rt.cfg.protocol == GroupProtocolConsumer {
		kopts = append(kopts, kgo.ServerSideBalancer(), kgo.Balancers(kgo.StickyBalancer()))
	}
	if rt.cfg.instanceID != "" {
		kopts = append(kopts, kgo.InstanceID(rt.cfg.instanceID))
	}
	kopts = append(kopts, rt.cfg.kopts...)
	kopts = append(kopts, GroupOpts()...)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("consumer: building kgo client: %w", err)
	}
	rt.cl, rt.own = cl, true
	rt.initClient()
	if err := bind(cl, rt); err != nil {
		cl.Close()
		return nil, err // unreachable: our own options
	}
	return rt, nil
}

// Wrap builds a Runtime around a client the caller built and owns. The
// client must carry the options returned by [GroupOpts] (a consumer group,
// disabled autocommit, blocked rebalances on poll, the runtime's
// rebalance callbacks and kept control records) and consume the topics to
// handle; Wrap reports a missing option with [ErrClientMisconfigured]. Run
// does not close a wrapped client: close it after Run returns.
//
// A client may be wrapped by one Runtime at a time.
func Wrap(cl *kgo.Client, handler Handler, opts ...Opt) (*Runtime, error) {
	if cl == nil {
		return nil, fmt.Errorf("%w: client is nil", ErrClientMisconfigured)
	}
	rt, err := newRuntime(handler, false, opts)
	if err != nil {
		return nil, err
	}
	rt.cl = cl
	if err := bind(cl, rt); err != nil {
		return nil, err
	}
	rt.initClient()
	return rt, nil
}

// initClient reads what the runtime needs from its client: its logger and
// its fetch limits.
func (rt *Runtime) initClient() {
	rt.log, _ = rt.cl.OptValue(kgo.WithLogger).(kgo.Logger)
	switch il := rt.cl.OptValue(kgo.FetchIsolationLevel).(type) {
	case int8: // what kgo v1.22 returns: 1 is read_committed
		rt.readCommitted = il == 1
	case kgo.IsolationLevel:
		rt.readCommitted = il == kgo.ReadCommitted()
	}
	rt.initFetchSizing()
}

func newRuntime(handler Handler, own bool, opts []Opt) (*Runtime, error) {
	if handler == nil {
		return nil, configErr("Handler", "must not be nil")
	}
	c := defaultCfg()
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if err := c.validate(own); err != nil {
		return nil, err
	}
	rt := &Runtime{
		cfg:     c,
		hooks:   newHooks(c.hooks),
		handler: handler,
		limits: partition.Limits{
			MaxRecords:    c.partMaxRecords,
			MaxBytes:      c.partMaxBytes,
			ResumeRecords: int(float64(c.partMaxRecords) * c.resumeFraction),
			ResumeBytes:   int64(float64(c.partMaxBytes) * c.resumeFraction),
		},
		memResume:  int64(float64(c.maxBufferedBytes) * c.resumeFraction),
		spanResume: int(float64(c.maxSpan) * c.resumeFraction),
		parts:      make(map[tp]*pstate),
		notify:     make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	if err := rt.limits.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	rt.work.L = &rt.mu
	rt.baseCtx, rt.baseCancel = context.WithCancel(context.Background())
	rt.closeCtx, rt.closeStop = context.WithCancel(context.Background())
	rt.commitCtx, rt.commitCancel = context.WithCancel(rt.baseCtx)
	rt.topicMax.rt = rt
	rt.initPriorities()
	return rt, nil
}

// Client returns the runtime's *kgo.Client (its own, or the wrapped one).
func (rt *Runtime) Client() *kgo.Client { return rt.cl }

// Run consumes until ctx ends or [Runtime.Close] is called, then stops
// dispatching, waits for running handlers (up to [ShutdownTimeout], then
// cancels their context), commits what completed and returns. Before it
// returns, it rewinds the client's position on every partition it owned to
// the first record not yet terminal, so that a wrapped client can be
// wrapped again without skipping anything. It returns nil after a clean
// stop, a [*FetchError] after a fatal poll error, and an error wrapping
// [ErrClientMisconfigured] when a wrapped client's rebalance callbacks
// turn out to have been replaced.
//
// With no handler running, Run returns within CommitTimeout plus a few
// seconds of its context ending (a commit, and for a client built by New,
// leaving the group).
func (rt *Runtime) Run(ctx context.Context) (err error) {
	if rt.closeCtx.Err() != nil {
		return ErrClosed
	}
	if !rt.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer close(rt.done)
	defer unbind(rt.cl, rt)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(rt.closeCtx, func() { cancel(nil) })
	defer stop()
	rt.abort.Store(&cancel)

	rt.mu.Lock()
	rt.lastCommit = time.Now()
	rt.mu.Unlock()
	for i := 0; i < rt.cfg.maxConcurrency; i++ {
		rt.wg.Add(1)
		go rt.worker()
	}
	ctlDone := make(chan struct{})
	ctlStop := make(chan struct{})
	go rt.controller(ctlStop, ctlDone)

	leftover, pollErr := rt.pollLoop(ctx)

	rt.commitCancel()
	err = rt.shutdown(leftover)
	close(ctlStop)
	<-ctlDone
	rt.runOnStop()
	rt.closeOwnClient()
	rt.baseCancel()
	if pollErr != nil {
		return pollErr
	}
	return err
}

// Close stops a running Run and waits for it to return, bounded by the
// shutdown and commit timeouts. It may be called more than once and from any
// goroutine. A Runtime that never ran closes its own client.
func (rt *Runtime) Close() error {
	rt.closeStop()
	if !rt.started.Load() {
		if rt.started.CompareAndSwap(false, true) {
			close(rt.done)
			unbind(rt.cl, rt)
			rt.closeOwnClient()
			rt.baseCancel()
		}
	}
	bound := rt.cfg.shutdownTimeout + rt.cfg.commitTimeout + 10*time.Second
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-rt.done:
		return nil
	case <-t.C:
		return fmt.Errorf("consumer: Close: Run did not return within %v: %w", bound, ErrShutdownTimeout)
	}
}

// OnStop registers fn to run once when Run stops: after the runtime
// drained and committed its partitions, before it closes a client it built.
// It is for parts that produce with the runtime's client and have a last
// word to say (a lag monitor's tombstones). fn gets a context bounded by
// CommitTimeout; it must not call Run or Close. Register before Run.
func (rt *Runtime) OnStop(fn func(ctx context.Context)) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.onStop = append(rt.onStop, fn)
}

func (rt *Runtime) runOnStop() {
	rt.mu.Lock()
	fns := rt.onStop
	rt.mu.Unlock()
	for _, fn := range fns {
		ctx, cancel := context.WithTimeout(context.Background(), rt.cfg.commitTimeout)
		fn(ctx)
		cancel()
	}
}

// leaveTimeout bounds leaving the group when Run closes its own client: a
// classic group's rebalance can hold the leave until a dead member's
// session times out, which must not hold up the stop.
const leaveTimeout = 3 * time.Second

func (rt *Runtime) closeOwnClient() {
	if !rt.own {
		return
	}
	memberID, _ := rt.cl.GroupMetadata()
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	err := rt.cl.LeaveGroupContext(ctx)
	if rt.cfg.instanceID != "" && rt.cfg.protocol == GroupProtocolConsumer && memberID != "" {
		err = rt.leaveStatic848(ctx, memberID)
	}
	if err != nil {
		rt.logf(kgo.LogLevelWarn, "floodgate: leaving the group failed or did not finish in time; the group's session timeout will expire the member", "err", err)
	}
	rt.cl.Close()
}

// leaveStatic848 sends a KIP-848 static member's leave: a heartbeat with
// member epoch -2, which keeps the member's partitions for it until its
// session times out or it comes back. franz-go v1.22 sends that heartbeat
// without the member's instance id, which Kafka refuses (INVALID_REQUEST),
// so the member stays and its restart is refused (UNRELEASED_INSTANCE_ID)
// until its session expires; this sends it as the protocol asks.
func (rt *Runtime) leaveStatic848(ctx context.Context, memberID string) error {
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Group = rt.cfg.group
	req.MemberID = memberID
	req.MemberEpoch = -2
	req.InstanceID = kmsg.StringPtr(rt.cfg.instanceID)
	resp, err := req.RequestWith(ctx, rt.cl)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil && !errors.Is(err, kerr.UnknownMemberID) {
		return fmt.Errorf("static leave: %w", err)
	}
	return nil
}

// pollLoop fetches and admits records until ctx ends or a fatal error. Rebalances
// are blocked from the moment a poll returns until its records are
// admitted, so every admitted record belongs to a partition this member
// owns. When it returns, the last poll's block is still held (shutdown
// lifts it after rewinding), and leftover holds that poll's fetches, which
// were not admitted.
func (rt *Runtime) pollLoop(ctx context.Context) (leftover kgo.Fetches, err error) {
	for {
		fs := rt.cl.PollFetches(ctx)
		if fs.IsClientClosed() {
			if ctx.Err() != nil {
				return nil, aborted(ctx)
			}
			return nil, kgo.ErrClientClosed
		}
		if ctx.Err() != nil {
			return fs, aborted(ctx)
		}
		if err := rt.pollErrors(fs); err != nil {
			return fs, err
		}
		if err := rt.bind.misconfigured(); err != nil {
			rt.logf(kgo.LogLevelError, "floodgate: stopping: "+err.Error())
			return fs, err
		}
		rewinds, err := rt.admit(fs)
		if err != nil {
			rt.logf(kgo.LogLevelError, "floodgate: stopping: "+err.Error())
			return nil, err
		}
		rt.flushPauses()
		rt.tuneFetch()
		if len(rewinds) > 0 {
			// The partitions are paused now; rewinding drops what the
			// client buffered (for every partition: it restarts the
			// fetch session) and refetches from the first refused
			// record once they resume.
			rt.cl.SetOffsets(rewinds)
			rt.restarts.Add(1)
		}
		rt.cl.AllowRebalance()
	}
}

// aborted returns the error a runtime goroutine stopped Run with (see
// Runtime.fail), or nil if Run's context simply ended.
func aborted(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// fail ends Run with err, from any goroutine (a rebalance callback, say).
func (rt *Runtime) fail(err error) {
	if cancel := rt.abort.Load(); cancel != nil {
		(*cancel)(err)
	}
}

// RecordSize is the size the byte bounds count for a record: key, value and
// header keys and values.
func RecordSize(r *kgo.Record) int64 {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// admit takes the records of one poll into the partitions' windows, in
// offset order, up to the first record of each partition that must wait
// (window or span full, byte budget spent, not yet due): that partition is
// paused and its position rewound to that record. It returns the rewinds,
// or an error when records arrived for a partition the runtime's
// OnPartitionsAssigned never saw.
func (rt *Runtime) admit(fs kgo.Fetches) (rewinds map[string]map[int32]kgo.EpochOffset, err error) {
	var (
		refetch []refetchEvent
		stuck   []StuckRecord
		losses  []*DataLossError
	)
	rt.mu.Lock()
	if rt.stopping {
		rt.mu.Unlock()
		return nil, nil
	}
	var (
		sizes, count int64
		now          = time.Now()
		stamp        = now.UnixNano()
		// What one fetch of a partition may bring: a window without room
		// for it pauses now, before the fetch overflows it.
		fetchRecs, fetchBytes = rt.fetchEstimate()
	)
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 || err != nil {
			return
		}
		key := tp{p.Topic, p.Partition}
		if !rt.bind.owns(key) {
			err = fmt.Errorf("%w: records of %s[%d] arrived, but the runtime's OnPartitionsAssigned never saw it assigned: a later kgo.OnPartitionsAssigned/Revoked/Lost option replaced the runtime's (add consumer.GroupOpts() last)",
				ErrClientMisconfigured, p.Topic, p.Partition)
			return
		}
		ps := rt.parts[key]
		if ps == nil {
			ps = rt.newPartition(key)
		}
		ps.hwm, ps.lso, ps.fetchedAt = p.HighWatermark, p.LastStableOffset, now
		// What the handlers drained since the last fetch, if the
		// partition kept fetching in between: about what they drain
		// before the next one, already asked for, arrives.
		var drainedRecs, passed int
		var drainedBytes int64
		if ps.fetching {
			drainedRecs = max(ps.afterRecs-ps.win.Records(), 0)
			drainedBytes = max(ps.afterBytes-ps.win.Bytes(), 0)
			passed = int(ps.tr.Passed() - ps.afterPassed)
		}
		if first := p.Records[0].Offset; ps.next >= 0 && first > ps.next && p.LogStartOffset > ps.next {
			losses = append(losses, &DataLossError{Topic: p.Topic, Partition: p.Partition, Expected: ps.next, Got: min(first, p.LogStartOffset)})
		}
		for i, r := range p.Records {
			control := r.Attrs.IsControl()
			var size int64 // a control record holds no window room or bytes
			if !control {
				size = RecordSize(r)
			}
			if refuse := rt.refusal(ps, r, control, size, now); refuse != 0 {
				if rt.setReason(ps, refuse) && refuse == partition.SpanFull {
					if s, ok := rt.stuckRecord(ps, refuse, now); ok {
						stuck = append(stuck, s)
					}
				}
				if rewinds == nil {
					rewinds = make(map[string]map[int32]kgo.EpochOffset)
				}
				if rewinds[p.Topic] == nil {
					rewinds[p.Topic] = make(map[int32]kgo.EpochOffset)
				}
				rewinds[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
				ps.next = r.Offset
				refetch = append(refetch, refetchEvent{key, r.Offset, len(p.Records) - i})
				break
			}
			var st partition.Stamps
			if !control {
				st = partition.Stamps{Admitted: stamp, Record: r.Timestamp.UnixMilli()}
			}
			seq, loss := rt.track(ps, r, st)
			if loss != nil {
				losses = append(losses, loss)
			}
			ps.next = r.Offset + 1
			if control {
				rt.passControl(ps, seq)
				continue
			}
			if ps.win.Add(size) {
				rt.setReason(ps, partition.WindowFull)
			}
			rt.buffered += size
			rt.inflight++
			sizes += size
			count++
			rt.enqueue(ps, item{rec: r, seq: seq, size: int32(size), gen: ps.gen})
			if count%256 == 0 {
				// Let workers at the records already queued rather
				// than hold the lock across a whole large fetch.
				rt.mu.Unlock()
				rt.mu.Lock()
			}
		}
		if fetchRecs > 0 {
			// Pause before the next fetch (kgo fetches ahead) would
			// overflow the window, given what the handlers drain
			// meanwhile: a paused partition's buffered fetch is dropped
			// at the next poll without moving its position, where a
			// refused one rewinds the client and costs every partition's
			// buffered fetch.
			if ps.win.ExpectFetch(fetchRecs-drainedRecs, fetchBytes-drainedBytes) {
				rt.setReason(ps, partition.WindowFull)
			}
			// Only with records pending: SpanFull is lifted by a
			// completion, and with none pending none would come.
			if ps.tr.Pending() > 0 && ps.tr.Pending()+fetchRecs-passed > rt.cfg.maxSpan && rt.setReason(ps, partition.SpanFull) {
				if s, ok := rt.stuckRecord(ps, partition.SpanFull, now); ok {
					stuck = append(stuck, s)
				}
			}
		}
		ps.afterRecs, ps.afterBytes, ps.afterPassed, ps.fetching = ps.win.Records(), ps.win.Bytes(), ps.tr.Passed(), !ps.reasons.Paused()
		rt.checkUncommitted(ps, now)
	})
	if rt.prioMarks != nil {
		rt.checkPriorities()
	}
	if count > 0 {
		batch := float64(sizes) / float64(count)
		if rt.avgSize == 0 {
			rt.avgSize = batch
		} else {
			rt.avgSize += (batch - rt.avgSize) / 8
		}
	}
	rt.mu.Unlock()
	for _, e := range refetch {
		rt.refetched.Add(uint64(e.records))
		for _, h := range rt.hooks.refetch {
			h.OnRecordsRefetch(e.topic, e.partition, e.offset, e.records)
		}
	}
	for _, s := range stuck {
		rt.reportStuck(s)
	}
	for _, l := range losses {
		rt.reportFetchError(l.Topic, l.Partition, l, false)
	}
	return rewinds, err
}

// refusal returns the reason r must wait (not be admitted now), or 0.
// A control record (size 0) waits only for a full span, for it takes a
// place in the tracker; it needs no window room, bytes or due time.
// Called with mu held, from the poll loop.
func (rt *Runtime) refusal(ps *pstate, r *kgo.Record, control bool, size int64, now time.Time) partition.Reasons {
	switch {
	case control:
		if ps.tr.Pending() >= rt.cfg.maxSpan {
			return partition.SpanFull
		}
		return 0
	case !ps.win.Fits(size):
		ps.win.Refuse()
		return partition.WindowFull
	case ps.tr.Pending() >= rt.cfg.maxSpan:
		return partition.SpanFull
	case rt.buffered > 0 && rt.buffered+size > rt.cfg.maxBufferedBytes:
		return partition.Memory
	case rt.cfg.router != nil:
		if due := rt.cfg.router.Due(r); !due.IsZero() && due.After(now) {
			rt.holdUntil(ps, due.Sub(now))
			return partition.RetryDue
		}
	}
	return 0
}

// track adds r to ps's tracker. A record at or below what is already
// tracked, with no rewind of ours pending, means the log was truncated and
// its offsets reused: the partition's tracking starts over (see rebase),
// and the loss is returned for reporting. Called with mu held.
func (rt *Runtime) track(ps *pstate, r *kgo.Record, st partition.Stamps) (partition.Seq, *DataLossError) {
	seq, ok := ps.tr.Add(r.Offset, r.LeaderEpoch, st)
	if ok {
		return seq, nil
	}
	last, _ := ps.tr.Last()
	loss := &DataLossError{Topic: ps.topic, Partition: ps.partition, Expected: last + 1, Got: r.Offset, Truncated: true}
	rt.rebase(ps)
	seq, _ = ps.tr.Add(r.Offset, r.LeaderEpoch, st)
	return seq, loss
}

// passControl completes a control record (a transaction's commit or abort
// marker) at once, seq being its place in ps's tracker: it is never
// handled, takes no handler and holds no window room or bytes, and the
// watermark passes it as soon as every record before it is terminal. Under
// read_committed the client drops an aborted transaction's records and
// returns its abort marker, so the watermark passes the aborted range as
// an ordinary offset gap. Called with mu held.
func (rt *Runtime) passControl(ps *pstate, seq partition.Seq) {
	ps.control++
	rt.control++
	if ps.tr.Done(seq) {
		rt.advanced(ps)
	}
}

// fetchEstimate returns how many records and bytes one fetch of a
// partition may bring, from the fetch size the client was last given and
// the average record size; zeros before anything was admitted. Called with
// mu held, from the poll loop.
func (rt *Runtime) fetchEstimate() (records int, bytes int64) {
	if rt.avgSize <= 0 {
		return 0, 0
	}
	bytes = int64(rt.curFetchPart)
	return int(float64(bytes)/max(rt.avgSize, 1)) + 1, bytes
}

// rebase starts ps's tracking over after data loss that reused offsets:
// records admitted before still run and release their window, and no
// longer move the watermark, but commits stay at or below the oldest of
// them not yet terminal (ps.floor) until they all finished. Called with mu
// held.
func (rt *Runtime) rebase(ps *pstate) {
	if _, off, _, ok := ps.tr.Oldest(); ok {
		if ps.floor < 0 || off < ps.floor {
			ps.floor = off
		}
	}
	// Every record in the window now belongs to an older generation.
	if ps.oldPending = ps.win.Records(); ps.oldPending == 0 && !ps.oldAborted {
		ps.floor = -1
	}
	ps.gen++
	ps.tr = partition.Tracker{}
	clear(ps.fails)
	ps.commit, ps.commitPassed, ps.uncommittedSince = -1, 0, time.Time{}
	ps.afterPassed, ps.fetching = 0, false
	if ps.reasons&partition.SpanFull != 0 {
		rt.clearReason(ps, partition.SpanFull)
		rt.wake()
	}
}

func (rt *Runtime) initFetchSizing() {
	rt.fetchMax, _ = rt.cl.OptValue(kgo.FetchMaxBytes).(int32)
	rt.fetchPartMax, _ = rt.cl.OptValue(kgo.FetchMaxPartitionBytes).(int32)
	if rt.fetchMax <= 0 {
		rt.fetchMax = 50 << 20
	}
	if rt.fetchPartMax <= 0 {
		rt.fetchPartMax = 1 << 20
	}
	rt.curFetchMax, rt.curFetchPart = rt.fetchMax, rt.fetchPartMax
}

// tuneFetch sizes fetches to the room a window has after it resumes, so
// that a resumed partition's next fetch fits: partition bytes ~ average
// record size times the records a resumed window can take, and request
// bytes at most what the global budget has room for. It never raises
// either above what the client was configured with, and only tells the
// client when a value moves by more than a quarter. A partition's size is
// fixed in the broker's fetch session when it joins it, so the new size
// reaches the partitions that pause and resume, which are the ones it is
// for. Owned by the poll loop.
func (rt *Runtime) tuneFetch() {
	if rt.avgSize <= 0 {
		return
	}
	room := float64(rt.limits.MaxRecords - rt.limits.ResumeRecords)
	part := int64(rt.avgSize * room)
	part = min(part, rt.limits.MaxBytes-rt.limits.ResumeBytes, int64(rt.fetchPartMax))
	part = max(part, 1<<10)
	req := min(max(part, rt.cfg.maxBufferedBytes-rt.memResume), int64(rt.fetchMax))
	far := func(cur int32, want int64) bool {
		c := int64(cur)
		return 4*want < 3*c || 4*want > 5*c
	}
	if far(rt.curFetchPart, part) || far(rt.curFetchMax, req) {
		rt.curFetchPart, rt.curFetchMax = int32(part), int32(req)
		rt.cl.UpdateFetchMaxBytes(rt.curFetchMax, rt.curFetchPart)
	}
}

// holdUntil arms ps's due timer: after d the RetryDue reason is lifted and
// the partition refetches its head record. Called with mu held.
func (rt *Runtime) holdUntil(ps *pstate, d time.Duration) {
	if ps.due != nil {
		ps.due.Stop()
	}
	ps.due = time.AfterFunc(d, func() {
		rt.mu.Lock()
		lifted := !ps.revoking && rt.clearReason(ps, partition.RetryDue)
		rt.mu.Unlock()
		if lifted {
			rt.wake()
		}
	})
}

type refetchEvent struct {
	tp
	offset  int64
	records int
}

func (rt *Runtime) newPartition(key tp) *pstate {
	ps := &pstate{tp: key, win: partition.NewWindow(rt.limits), quit: make(chan struct{}), commit: -1, next: -1, floor: -1, hwm: -1, lso: -1,
		rank: rt.rankOf(key.topic)}
	if ps.rank > 0 && rt.prioMarks[ps.rank].paused {
		rt.setReason(ps, partition.Priority)
	}
	ps.ctx, ps.cancel = context.WithCancel(rt.baseCtx)
	switch rt.cfg.ordering {
	case OrderPartition:
		ps.lane = &lane{ps: ps}
	case OrderKey:
		ps.keys = make(map[string]*lane)
	}
	rt.parts[key] = ps
	return ps
}

// setReason and clearReason change a partition's pause reasons and report
// whether anything changed; the controller or the poll loop applies the
// change to the client in a batch. Both are called with mu held.
func (rt *Runtime) setReason(ps *pstate, r partition.Reasons) bool {
	if ps.reasons&r == r {
		return false
	}
	if r&partition.Memory != 0 && ps.reasons&partition.Memory == 0 {
		rt.memPaused++
	}
	ps.reasons |= r
	rt.markDirty(ps)
	return true
}

func (rt *Runtime) clearReason(ps *pstate, r partition.Reasons) bool {
	if ps.reasons&r == 0 {
		return false
	}
	if r&partition.Memory != 0 && ps.reasons&partition.Memory != 0 {
		rt.memPaused--
	}
	ps.reasons &^= r
	rt.markDirty(ps)
	return true
}

func (rt *Runtime) markDirty(ps *pstate) {
	if !ps.dirty {
		ps.dirty = true
		rt.dirty = append(rt.dirty, ps)
	}
}

func (rt *Runtime) wake() {
	select {
	case rt.notify <- struct{}{}:
	default:
	}
}

// controller applies pause changes made off the poll loop (resumes, mostly),
// commits every CommitInterval, and at the same pace pauses partitions
// whose uncommitted work passed its bound. A commit runs in a goroutine of
// its own (one at a time), so that a commit held up for long, by a group
// join say, delays neither resumes nor the stall checks. It is owned by
// Run, and waits for its commit goroutine before it returns.
func (rt *Runtime) controller(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(rt.cfg.commitInterval)
	defer tick.Stop()
	var committing chan struct{} // closed when the commit in flight returns
	defer func() {
		if committing != nil {
			<-committing
		}
	}()
	for {
		select {
		case <-stop:
			return
		case <-rt.notify:
			rt.flushPauses()
		case <-tick.C:
			if committing != nil {
				select {
				case <-committing:
					committing = nil
				default:
				}
			}
			if committing == nil {
				committing = make(chan struct{})
				go func(done chan struct{}) {
					defer close(done)
					rt.commitOwned(rt.commitCtx)
					rt.wake()
				}(committing)
			}
			now := time.Now()
			rt.mu.Lock()
			for _, ps := range rt.parts {
				rt.checkUncommitted(ps, now)
			}
			rt.mu.Unlock()
			rt.flushPauses()
		}
	}
}

// flushPauses applies every pending pause-state change in at most one
// PauseFetchPartitions and one ResumeFetchPartitions call.
func (rt *Runtime) flushPauses() {
	rt.pauseMu.Lock()
	defer rt.pauseMu.Unlock()
	var (
		pause  map[string][]int32
		info   map[string]map[int32]partition.Reasons
		resume map[string][]int32
	)
	rt.mu.Lock()
	for _, ps := range rt.dirty {
		ps.dirty = false
		if ps.revoking {
			continue // revocation clears the client's pause itself
		}
		want := ps.reasons.Paused()
		switch {
		case want && !ps.kpaused:
			ps.kpaused = true
			if pause == nil {
				pause = make(map[string][]int32)
				info = make(map[string]map[int32]partition.Reasons)
			}
			pause[ps.topic] = append(pause[ps.topic], ps.partition)
			if info[ps.topic] == nil {
				info[ps.topic] = make(map[int32]partition.Reasons)
			}
			info[ps.topic][ps.partition] = ps.reasons
		case !want && ps.kpaused:
			ps.kpaused = false
			if resume == nil {
				resume = make(map[string][]int32)
			}
			resume[ps.topic] = append(resume[ps.topic], ps.partition)
		}
	}
	clear(rt.dirty)
	rt.dirty = rt.dirty[:0]
	rt.mu.Unlock()
	if pause != nil {
		rt.cl.PauseFetchPartitions(pause)
		for _, h := range rt.hooks.paused {
			h.OnPartitionsPaused(info)
		}
	}
	if resume != nil {
		rt.cl.ResumeFetchPartitions(resume)
		for _, h := range rt.hooks.resumed {
			h.OnPartitionsResumed(resume)
		}
	}
}

// runtimeReasons are the pause reasons the runtime sets and clears itself;
// Pause and Resume ignore them.
const runtimeReasons = partition.WindowFull | partition.Memory | partition.SpanFull | partition.CommitStalled | partition.DivertFailed | partition.Priority | partition.DownstreamPressure

// Pause pauses fetching of the given partitions for reason. The runtime's
// own reasons (WindowFull, Memory, SpanFull, CommitStalled, DivertFailed,
// Priority, DownstreamPressure) are ignored: it sets and clears those
// itself.
// A partition stays paused until every reason holding it is resumed.
// Partitions this member does not currently own are ignored; revocation
// clears all reasons.
func (rt *Runtime) Pause(reason partition.Reasons, tps map[string][]int32) {
	rt.changeReasons(reason, tps, true)
}

// Resume clears reason from the given partitions; see [Runtime.Pause].
func (rt *Runtime) Resume(reason partition.Reasons, tps map[string][]int32) {
	rt.changeReasons(reason, tps, false)
}

func (rt *Runtime) changeReasons(reason partition.Reasons, tps map[string][]int32, set bool) {
	reason &^= runtimeReasons
	if reason == 0 {
		return
	}
	rt.mu.Lock()
	for t, ps := range tps {
		for _, p := range ps {
			if st := rt.parts[tp{t, p}]; st != nil && !st.revoking {
				if set {
					rt.setReason(st, reason)
				} else {
					rt.clearReason(st, reason)
				}
			}
		}
	}
	rt.mu.Unlock()
	rt.flushPauses()
}
