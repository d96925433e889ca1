package producer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kconn"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// Producer produces records through a *kgo.Client, admitting each by its
// class and the pressure the consumers of its topic publish on the
// control topic (see the package documentation). Build it with [New] (its
// own client) or [Wrap] (the caller's), call [Producer.Start], then
// [Producer.Produce] and [Producer.ProduceSync] as with kgo, and
// [Producer.Close] at the end. It is safe for concurrent use.
type Producer struct {
	cl       *kgo.Client
	own      bool
	cfg      cfg
	ctl      *ctlConfig
	reader   *lagmonitor.Reader
	adm      *kadm.Client
	log      kgo.Logger
	hooks    hooks
	defTopic string
	holder   KeyHolder            // the Deferrer, if it holds keys
	steer    *Steering            // the client's partitioner, if it steers unkeyed records
	follow   map[string]*followed // read-only after construction
	followed []*followed          // the same, in the order of cfg.topics

	state     atomic.Int32  // stateNew, stateStarted, stateClosed: read by every record
	mu        sync.Mutex    // orders Start and Close; state changes under it
	startDone chan struct{} // closed once Start has read the control topic, or given up
	startErr  error         // why the producer started without reading it to its end

	lastControlErr   error
	lastControlErrAt time.Time

	ctx       context.Context // cancelled by Close: what the loops run under
	stop      context.CancelFunc
	quit      <-chan struct{} // ctx.Done()
	loops     sync.WaitGroup
	closeOnce sync.Once

	promiseMu sync.Mutex // held while a caller's promise runs: promises are serial, as kgo's are
	refusals  refusalQueue

	logs logSampler
	cnt  globalCounters
}

// The states of a producer.
const (
	stateNew int32 = iota
	stateStarted
	stateClosed
)

// followed is the state of one followed topic.
type followed struct {
	topic string

	mu       sync.Mutex
	ctl      *topicCtl
	readerCh <-chan struct{} // the reader's Changed channel when the pressure was last read
	changed  chan struct{}   // closed, then replaced, when waiting records must decide again

	offered []atomic.Uint64 // per rank: records offered to admission
	acked   atomic.Uint64   // records of this producer the broker acknowledged
	cnt     []classCounters // per rank

	kind   partKind     // how the client partitions the topic (fixed)
	nparts atomic.Int32 // the topic's partitions, as last listed; 0 unknown
	// While signals name hot partitions (f.mu): the controller of the
	// records bound for the rest of the topic, and one per hot
	// partition (see hot.go); nil otherwise. hotN counts the latter.
	rest *topicCtl
	hot  map[int32]*hotPart
	hotN atomic.Int32
}

// broadcastLocked wakes the records waiting on the topic.
func (f *followed) broadcastLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// New returns a producer with its own client, built from [Brokers] and
// [KgoOpts]; [Producer.Close] closes it. It does no I/O until Start.
func New(opts ...Opt) (*Producer, error) {
	c := defaultCfg()
	for _, o := range opts {
		o.apply(&c)
	}
	if err := c.validate(true); err != nil {
		return nil, err
	}
	kopts := append([]kgo.Opt{kgo.SeedBrokers(c.brokers...)}, c.kopts...)
	if c.steer {
		// The partitioner kopts set (kgo's default otherwise), wrapped.
		cl, err := kgo.NewClient(kopts...)
		if err != nil {
			return nil, fmt.Errorf("%w: building the kgo client: %w", ErrInvalidConfig, err)
		}
		fallback, _ := cl.OptValue(kgo.RecordPartitioner).(kgo.Partitioner)
		cl.Close()
		kopts = append(kopts, kgo.RecordPartitioner(NewSteering(fallback)))
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: building the kgo client: %w", ErrInvalidConfig, err)
	}
	p, err := build(cl, true, c)
	if err != nil {
		cl.Close()
		return nil, err
	}
	return p, nil
}

// Wrap returns a producer around a client the caller built and owns:
// [Producer.Close] does not close it. The producer's control-topic
// reader connects as the client does (its seed brokers, dialer, TLS,
// SASL, client id and logger). It does no I/O until Start.
func Wrap(cl *kgo.Client, opts ...Opt) (*Producer, error) {
	if cl == nil {
		return nil, configErr("Wrap", "client is nil")
	}
	c := defaultCfg()
	for _, o := range opts {
		o.apply(&c)
	}
	if err := c.validate(false); err != nil {
		return nil, err
	}
	return build(cl, false, c)
}

func build(cl *kgo.Client, own bool, c cfg) (*Producer, error) {
	p := &Producer{
		cl:        cl,
		own:       own,
		cfg:       c,
		adm:       kadm.NewClient(cl),
		hooks:     newHooks(c.hooks),
		follow:    make(map[string]*followed),
		startDone: make(chan struct{}),
	}
	p.ctx, p.stop = context.WithCancel(context.Background())
	p.quit = p.ctx.Done()
	p.holder, _ = c.deferrer.(KeyHolder)
	p.log, _ = cl.OptValue(kgo.WithLogger).(kgo.Logger)
	p.defTopic, _ = cl.OptValue(kgo.DefaultProduceTopic).(string)
	p.ctl = &ctlConfig{
		policy:   c.policy,
		classes:  c.order.Classes(),
		minShare: c.minShare,
		headroom: c.headroom,
		noRate:   c.noRate,
		ramp:     c.ramp,
		tau:      c.tau,
	}
	n := len(p.ctl.classes)
	for _, t := range c.topics {
		if p.follow[t] != nil {
			continue
		}
		f := &followed{
			topic:   t,
			ctl:     newTopicCtl(p.ctl),
			changed: make(chan struct{}),
			offered: make([]atomic.Uint64, n),
			cnt:     make([]classCounters, n),
		}
		f.kind, p.steer = partKindOf(cl, t)
		p.follow[t] = f
		p.followed = append(p.followed, f)
	}
	r, err := lagmonitor.NewReader(kconn.Seeds(cl), c.control, c.topics, p.readerOpts()...)
	if err != nil {
		return nil, fmt.Errorf("%w: the control-topic reader: %w", ErrInvalidConfig, err)
	}
	p.reader = r
	for _, f := range p.followed {
		f.readerCh = r.Changed()
	}
	p.refusals.start(&p.promiseMu)
	return p, nil
}

// readerOpts returns the options of the control-topic reader: a
// connection like the client's, the caller's ReaderOpts, then the
// producer's own.
func (p *Producer) readerOpts() []lagmonitor.ReaderOpt {
	kopts := kconn.Opts(p.cl)
	opts := []lagmonitor.ReaderOpt{lagmonitor.ReadKgoOpts(kopts...)}
	opts = append(opts, p.cfg.readerOpts...)
	opts = append(opts,
		lagmonitor.ReadClock(p.cfg.now),
		lagmonitor.ReadStartupTimeout(p.cfg.startup),
		lagmonitor.ReadOnReject(p.onReject),
		lagmonitor.ReadOnError(p.controlError),
	)
	if p.cfg.verifier != nil {
		opts = append(opts, lagmonitor.ReadVerifier(p.cfg.verifier))
	}
	return opts
}

// Client returns the producer's client.
func (p *Producer) Client() *kgo.Client { return p.cl }

// Policy returns the admission table in force.
func (p *Producer) Policy() Policy { return p.cfg.policy }

// Start reads the control topic up to its end offsets, so that a producer
// (re)started in the middle of an incident obeys it from its first
// record, then follows it; it also starts measuring the followed topics'
// rates. It returns once the producer admits records: after the read
// (nil), or at the [StartupTimeout] bound, or at once when the control
// topic cannot be read (also nil: the producer then admits what it does
// not know to be under pressure; the cause is logged, reported to
// [HookControlError] and kept in [Stats], and the reader goes on trying).
// Records produced while Start reads wait for it, within their cap.
//
// It returns ctx's error if ctx ends first (the producer goes on as at
// the bound), [ErrAlreadyStarted] on a second call, and [ErrClosed]
// after Close.
func (p *Producer) Start(ctx context.Context) error {
	p.mu.Lock()
	switch p.state.Load() {
	case stateClosed:
		p.mu.Unlock()
		return ErrClosed
	case stateStarted:
		p.mu.Unlock()
		return ErrAlreadyStarted
	}
	p.state.Store(stateStarted)
	p.mu.Unlock()

	err := p.reader.Start(ctx)
	p.refreshAll(true) // the pressure read, before the first record is decided
	p.mu.Lock()
	if err != nil && !errors.Is(err, lagmonitor.ErrReaderClosed) {
		p.startErr = err
	}
	closed := p.state.Load() == stateClosed
	if !closed {
		p.loops.Add(2) // under mu: Close, which sets closed under mu, then waits for them
	}
	p.mu.Unlock()
	close(p.startDone)
	if closed {
		return ErrClosed
	}
	go p.followLoop()
	go p.measureLoop()
	if err != nil {
		// The reader reported its own errors (ReadOnError); the end of
		// ctx is the caller's.
		if ctx.Err() != nil {
			p.controlError(fmt.Errorf("admitting without the control topic read to its end: %w", err))
		}
		return ctx.Err()
	}
	p.logf(kgo.LogLevelInfo, "floodgate producer: control topic read to its end", "control_topic", p.cfg.control, "topics", p.cfg.topics)
	return nil
}

// Close stops following the control topic and measuring, fails the
// records waiting for admission with [ErrClosed], delivers the promises
// of refused records, and closes the client if [New] built it (flush
// first: see [Producer.Flush]). A wrapped client stays open. Close may be
// called more than once. A record produced after Close fails with
// [ErrClosed], its promise called on a goroutine of its own.
func (p *Producer) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.state.Store(stateClosed)
		p.mu.Unlock()
		p.stop()
		p.reader.Close()
		p.loops.Wait()
		if p.own {
			// First: the records it fails call their promises, which
			// may produce again; their refusals still go through the
			// queue.
			p.cl.Close()
		}
		p.refusals.close()
	})
}

// Flush waits for the records buffered in the client to be acknowledged,
// as kgo.Client.Flush.
func (p *Producer) Flush(ctx context.Context) error { return p.cl.Flush(ctx) }

// Produce admits r and hands it to the client's Produce, or refuses it,
// calling promise (optional) with r and its error once: kgo's when
// produced; a [*RefusedError] when refused; [ErrNotStarted] or
// [ErrClosed] before Start or after Close. Promises are called one at a
// time, as kgo calls them, and never on the caller's goroutine: a refused
// record's promise runs on the producer's own, soon after Produce
// returns.
//
// Produce returns once r is handed over or refused: at once, or after
// waiting for its class's rate at most [MaxWait] (and within ctx's
// deadline). kgo's own Produce may still block while its buffer is full
// (kgo.MaxBufferedRecords), as kgo documents. A record to a topic not
// followed is handed over at once. ctx is r's context, as for kgo: it
// may carry the record's class ([WithClass]).
func (p *Producer) Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	f, rank, d, err := p.admit(ctx, r, time.Time{}) // capped from its first wait
	switch {
	case err != nil:
		p.refusals.push(promise, r, err)
	case d.Outcome == OutcomeDeferred && !d.Shadow:
		p.deferRecord(ctx, r, d, f, rank, promise)
	default:
		p.cl.Produce(ctx, r, p.wrapPromise(f, promise))
	}
}

// ProduceSync produces rs as [Producer.Produce] does and waits for all of
// them, returning one result per record, as kgo.Client.ProduceSync does,
// in the order they completed: the refused records first, then the
// others as the client (or the Deferrer) acknowledged them. The records
// admitted are handed to the client's ProduceSync together, once every
// record of rs is decided; the wait for admission is capped once for the
// call: every record waits within the same [MaxWait] from the call.
func (p *Producer) ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	capAt := p.capAt(ctx)
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		results  = make(kgo.ProduceResults, 0, len(rs))
		admitted []*kgo.Record
	)
	done := func(r *kgo.Record, err error) {
		mu.Lock()
		results = append(results, kgo.ProduceResult{Record: r, Err: err})
		mu.Unlock()
		wg.Done()
	}
	for _, r := range rs {
		f, rank, d, err := p.admit(ctx, r, capAt)
		switch {
		case err != nil:
			wg.Add(1)
			done(r, err)
		case d.Outcome == OutcomeDeferred && !d.Shadow:
			wg.Add(1)
			p.deferRecord(ctx, r, d, f, rank, done)
		default:
			admitted = append(admitted, r)
		}
	}
	if len(admitted) > 0 {
		res := p.cl.ProduceSync(ctx, admitted...)
		for _, x := range res {
			if f := p.follow[p.topicOf(x.Record)]; f != nil && x.Err == nil {
				f.acked.Add(1)
				f.ackHot(x.Record.Partition)
			}
		}
		mu.Lock()
		results = append(results, res...)
		mu.Unlock()
	}
	wg.Wait()
	return results
}

// capAt returns when a record produced now with ctx must stop waiting
// for admission: MaxWait from now, or ctx's deadline if earlier. It is
// real time, as the waits are.
func (p *Producer) capAt(ctx context.Context) time.Time {
	at := time.Now().Add(p.cfg.maxWait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(at) {
		at = dl
	}
	return at
}

// topicOf returns the topic r goes to.
func (p *Producer) topicOf(r *kgo.Record) string {
	if r.Topic == "" {
		return p.defTopic
	}
	return r.Topic
}

// wrapPromise returns the promise to give the client for a record of f
// (nil: not followed): it counts the acknowledgement and calls promise
// under promiseMu.
func (p *Producer) wrapPromise(f *followed, promise func(*kgo.Record, error)) func(*kgo.Record, error) {
	if f == nil && promise == nil {
		return nil
	}
	return func(r *kgo.Record, err error) {
		if err == nil && f != nil {
			f.acked.Add(1)
			f.ackHot(r.Partition)
		}
		if promise != nil {
			p.promiseMu.Lock()
			defer p.promiseMu.Unlock()
			promise(r, err)
		}
	}
}

// deferRecord hands r to the Deferrer; promise gets its result through
// the promise queue, so that it runs as the other promises do.
func (p *Producer) deferRecord(ctx context.Context, r *kgo.Record, d Decision, f *followed, rank int, promise func(*kgo.Record, error)) {
	var once sync.Once
	p.cfg.deferrer.Defer(ctx, r, d, func(r *kgo.Record, err error) {
		once.Do(func() {
			if err == nil {
				f.cnt[rank].deferred.Add(1)
			} else {
				f.cnt[rank].deferFailed.Add(1)
				d.Outcome = OutcomeShed
				d.Reason += "; the deferrer failed it"
				d.RetryAfter = p.cfg.retryAfter
				err = &RefusedError{Kind: ErrShed, Decision: d, RetryAfter: d.RetryAfter, Err: err}
			}
			p.refusals.push(promise, r, err)
		})
	})
}
