package deferred

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/kname"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/partition"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// Relay defaults.
const (
	DefaultRate           = 1000.0
	DefaultSuggestedShare = 0.5
	DefaultRelayRamp      = 30 * time.Second
	// DefaultProbeRate is the rate a relay starts from for a destination
	// whose ok signal suggests no room (its consumers' capacity is not
	// known yet): a little, so that they measure more.
	DefaultProbeRate = 10.0
	// DefaultRelayRevokeTimeout and DefaultRelayShutdownTimeout are the
	// relay's consumer.RevokeTimeout and consumer.ShutdownTimeout, short:
	// under pressure the relay's handlers wait for their destination to
	// be ok until their context ends, which the runtime does only once
	// these pass. A record whose handler is cancelled so is not
	// committed, and is delivered after the rebalance or restart.
	DefaultRelayRevokeTimeout   = 2 * time.Second
	DefaultRelayShutdownTimeout = 2 * time.Second
	// gateInterval is how often the relay reapplies its pauses (to
	// partitions newly assigned) and checks signal expiry.
	gateInterval = 500 * time.Millisecond
)

// RelayConfig configures a [Relay].
type RelayConfig struct {
	// Brokers are the seed brokers (required); KgoOpts are more options
	// of the relay's client (TLS, SASL...), which consumes the deferred
	// topics in Group and produces to the destinations.
	Brokers []string
	KgoOpts []kgo.Opt
	// ControlTopic is the control topic the destinations' monitors
	// publish on (required): the relay delivers a destination's records
	// only while its level is ok.
	ControlTopic string
	// Topics are the destination topics (required); Suffix and Group as
	// in [Config] (the lanes' and the relay's must agree).
	Topics []string
	Suffix string
	Group  string
	// Rate caps the records per second the relay produces to each
	// destination (default 1000).
	Rate float64
	// SuggestedShare is the most of a destination's room the relay takes
	// (default 0.5): at ok a signal suggests the room its consumers have
	// (a little under their capacity); the relay fills what producers
	// leave of it, at most this share, so that producers whose demand
	// grows find room.
	SuggestedShare float64
	// Ramp is how long the relay takes to climb, once a destination's
	// gate opens, from a tenth of the room left to all of it (default
	// 30s): it starts low and probes up, so that it does not push the
	// consumers back under pressure at the moment they recover.
	Ramp time.Duration
	// WithoutSignal relays a destination's records, at Rate, when no
	// live signal covers it (its consumers' monitors are down, or there
	// is no control topic). Default false: deferred work is the one
	// place where no signal must not mean "go" (the relay would pour a
	// backlog into consumers nobody measures), so the relay waits, and
	// says why ([RelayStats].Destinations).
	WithoutSignal bool
	// Verifier authenticates the signals ([lagmonitor.Verifier]); nil
	// accepts unsigned ones.
	Verifier *lagmonitor.Verifier
	// ConsumerOpts are more options of the relay's consumer runtime, for
	// example consumer.WithRouter to quarantine records that cannot be
	// produced to their destination (a record diverted so leaves its
	// key's order, and a key-ordered lane releases its key: see the
	// package documentation, "Ordering"), or consumer.WithHooks. With a
	// retrytopics router that has tiers, add its Opts (which subscribe
	// the runtime to the tiers): a record relayed from a tier goes to the
	// destination of the deferred topic it failed on, without the tier's
	// metadata. They come after the relay's own, which they may
	// override: its group, topics and ordering, and its revoke and
	// shutdown timeouts (DefaultRelayRevokeTimeout,
	// DefaultRelayShutdownTimeout).
	ConsumerOpts []consumer.Opt
}

func (c *RelayConfig) validate() error {
	if len(c.Brokers) == 0 {
		return configErr("Brokers", "at least one seed broker is required")
	}
	if !kname.Topic(c.ControlTopic) {
		return configErr("ControlTopic", "%q is not a legal topic name", c.ControlTopic)
	}
	lc := Config{Topics: c.Topics, Suffix: c.Suffix, Group: c.Group}
	if err := lc.validate(); err != nil {
		return err
	}
	c.Suffix, c.Group = lc.Suffix, lc.Group
	switch {
	case c.Rate < 0:
		return configErr("Rate", "%v is negative", c.Rate)
	case c.Rate == 0:
		c.Rate = DefaultRate
	}
	switch {
	case c.SuggestedShare < 0 || c.SuggestedShare > 1:
		return configErr("SuggestedShare", "%v is outside [0, 1]", c.SuggestedShare)
	case c.SuggestedShare == 0:
		c.SuggestedShare = DefaultSuggestedShare
	}
	switch {
	case c.Ramp < 0:
		return configErr("Ramp", "%v is negative", c.Ramp)
	case c.Ramp == 0:
		c.Ramp = DefaultRelayRamp
	}
	return nil
}

// Relay delivers deferred records: it consumes the deferred topics in
// its group (a floodgate consumer runtime: bounded, committed after
// the work is done) and produces each record to its destination, with
// the deferred headers stripped and a fresh timestamp, while a live
// signal says the destination is ok and has room, at a rate that fills
// what its producers leave of that room (see [RelayConfig]); its offset
// is committed only after the destination acknowledged it: at least
// once, in each deferred partition's order. Run as many relays in a
// group as there are deferred partitions to share.
type Relay struct {
	cfg    RelayConfig
	rt     *consumer.Runtime
	reader *lagmonitor.Reader
	dest   map[string]string // deferred topic → destination
	lims   map[string]*rate.Limiter

	// The destinations' gates, as the gate loop last found them: whether
	// each takes relayed records, and a channel closed when one of them
	// changes; and what the gate loop measures and decides.
	gmu         sync.Mutex
	gateOpen    map[string]bool // destination → open
	gateChanged chan struct{}
	gates       map[string]*destGate

	relayed, malformed, produceErrs atomic.Uint64
	waiting                         atomic.Int64
	mu                              sync.Mutex
	paused                          map[string]bool // destination → its deferred partitions are paused
	lastErr                         error

	runMu    sync.Mutex
	ran      bool               // Run was called
	closed   bool               // Close was called
	stopRun  context.CancelFunc // ends a running Run
	runDone  chan struct{}      // closed when Run returns
	closeMu  sync.Mutex         // serializes Close
	closeErr error
}

// NewRelay builds a relay (its client, its consumer runtime, its reader
// of the control topic). It does no I/O until Run; Run or Close releases
// what it built.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	cfg.Topics = slices.Clone(cfg.Topics)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Relay{cfg: cfg, dest: make(map[string]string), lims: make(map[string]*rate.Limiter), paused: make(map[string]bool),
		runDone: make(chan struct{}), gateOpen: make(map[string]bool), gateChanged: make(chan struct{}), gates: make(map[string]*destGate)}
	var deferredTopics []string
	for _, t := range cfg.Topics {
		r.dest[t+cfg.Suffix] = t
		deferredTopics = append(deferredTopics, t+cfg.Suffix)
		r.lims[t] = rate.NewLimiter(rate.Limit(cfg.Rate), burstOf(cfg.Rate))
		r.gates[t] = newDestGate()
		// Closed until Run has read the signals.
	}
	opts := []consumer.Opt{consumer.Brokers(cfg.Brokers...), consumer.Group(cfg.Group), consumer.Topics(deferredTopics...),
		consumer.KgoOpts(cfg.KgoOpts...), consumer.WithOrdering(consumer.OrderPartition),
		consumer.RevokeTimeout(DefaultRelayRevokeTimeout), consumer.ShutdownTimeout(DefaultRelayShutdownTimeout)}
	rt, err := consumer.New(r.handle, append(opts, cfg.ConsumerOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("deferred: the relay's consumer: %w", err)
	}
	ropts := []lagmonitor.ReaderOpt{lagmonitor.ReadKgoOpts(cfg.KgoOpts...)}
	if cfg.Verifier != nil {
		ropts = append(ropts, lagmonitor.ReadVerifier(cfg.Verifier))
	}
	reader, err := lagmonitor.NewReader(cfg.Brokers, cfg.ControlTopic, cfg.Topics, ropts...)
	if err != nil {
		_ = rt.Close()
		return nil, fmt.Errorf("deferred: the relay's control-topic reader: %w", err)
	}
	r.rt, r.reader = rt, reader
	return r, nil
}

// burstOf is a limiter's burst for rate: 100ms of it, at least 1.
func burstOf(r float64) int { return max(1, int(r/10)) }

// Runtime returns the relay's consumer runtime (its Stats, its client).
func (r *Relay) Runtime() *consumer.Runtime { return r.rt }

// Run reads the control topic to its end (within the reader's startup
// bound: a relay that cannot read it delivers, as producers admit), then
// relays until ctx ends, Close is called or the runtime fails; it stops
// the runtime (which commits what was delivered) and returns nil on
// ctx's end or Close, else the runtime's error. Run may be called once;
// after Close, it returns ErrClosed at once.
func (r *Relay) Run(ctx context.Context) error {
	r.runMu.Lock()
	switch {
	case r.closed:
		r.runMu.Unlock()
		return ErrClosed
	case r.ran:
		r.runMu.Unlock()
		return fmt.Errorf("%w: Run called twice", ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.ran, r.stopRun = true, cancel
	r.runMu.Unlock()
	defer close(r.runDone)
	defer r.reader.Close()
	if err := r.reader.Start(ctx); err != nil && ctx.Err() == nil {
		r.setErr(fmt.Errorf("deferred: relaying without the control topic read to its end: %w", err))
	}
	r.refreshGates(time.Now())
	gctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.gateLoop(gctx) }()
	err := r.rt.Run(ctx)
	stop()
	wg.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// Close releases what NewRelay built. Before Run, it closes the consumer
// runtime and the control-topic reader (Run then returns ErrClosed);
// during Run, it ends Run as the end of Run's context does (the runtime
// stops and commits what was delivered) and waits for Run to return;
// after Run, it does nothing. It may be called more than once, from any
// goroutine. Give a relay that may not reach Run a deferred Close.
func (r *Relay) Close() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	r.runMu.Lock()
	first, ran, stop := !r.closed, r.ran, r.stopRun
	r.closed = true
	r.runMu.Unlock()
	if !first {
		return r.closeErr
	}
	if ran {
		stop()
		<-r.runDone
		return nil
	}
	r.reader.Close()
	r.closeErr = r.rt.Close()
	return r.closeErr
}

// refreshGates reads each destination's pressure at now and decides its
// gate and its rate (destGate.decide); it sets the limiters and wakes the
// handlers waiting for a gate that changed.
func (r *Relay) refreshGates(now time.Time) {
	opens := make(map[string]bool, len(r.lims))
	r.gmu.Lock()
	for dest, l := range r.lims {
		g := r.gates[dest]
		lim := g.decide(now, r.reader.Pressure(dest, now), &r.cfg)
		opens[dest] = lim > 0
		if lim > 0 && float64(l.Limit()) != lim {
			l.SetLimit(rate.Limit(lim))
			l.SetBurst(burstOf(lim))
		}
	}
	changed := false
	for dest, o := range opens {
		if r.gateOpen[dest] != o {
			r.gateOpen[dest], changed = o, true
		}
	}
	if changed {
		close(r.gateChanged)
		r.gateChanged = make(chan struct{})
	}
	r.gmu.Unlock()
}

// measure lists the destinations' end offsets and feeds each gate's
// meters: the records appended to the destination (by everyone) and
// those the relay produced to it. A listing that fails keeps the rates.
func (r *Relay) measure(ctx context.Context, now time.Time) {
	dests := slices.Collect(maps.Keys(r.lims))
	ctx, cancel := context.WithTimeout(ctx, gateInterval)
	defer cancel()
	ends, err := kadm.NewClient(r.rt.Client()).ListEndOffsets(ctx, dests...)
	r.gmu.Lock()
	defer r.gmu.Unlock()
	for _, dest := range dests {
		g := r.gates[dest]
		var sum int64
		ok := err == nil && len(ends[dest]) > 0
		for _, o := range ends[dest] {
			ok = ok && o.Err == nil
			sum += o.Offset
		}
		if ok {
			g.incoming.Observe(now, uint64(max(sum, 0)))
			g.own.Observe(now, g.relayed.Load())
		}
	}
}

// gate reports whether dest takes relayed records, as the gate loop last
// found, and returns a channel closed when a gate changes.
func (r *Relay) gate(dest string) (open bool, changed <-chan struct{}) {
	r.gmu.Lock()
	defer r.gmu.Unlock()
	return r.gateOpen[dest], r.gateChanged
}

// gateLoop reads the destinations' pressure when a signal changes and
// every gateInterval (signals expire without a change), sets their
// gates and rates, pauses the deferred partitions of the destinations
// under pressure, so that the relay fetches nothing it cannot deliver,
// and resumes them at ok. The handler checks the gate again: the pause
// only saves fetching.
func (r *Relay) gateLoop(ctx context.Context) {
	tick := time.NewTicker(gateInterval)
	defer tick.Stop()
	for {
		changed := r.reader.Changed()
		r.measure(ctx, time.Now())
		r.refreshGates(time.Now())
		assigned := r.rt.Assigned()
		for dt, dest := range r.dest {
			ps := assigned[dt]
			if len(ps) == 0 {
				continue
			}
			tps := map[string][]int32{dt: ps}
			if open, _ := r.gate(dest); open {
				r.rt.Resume(partition.Lag, tps)
				r.setPaused(dest, false)
			} else {
				r.rt.Pause(partition.Lag, tps)
				r.setPaused(dest, true)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

func (r *Relay) setPaused(dest string, p bool) {
	r.mu.Lock()
	r.paused[dest] = p
	r.mu.Unlock()
}

func (r *Relay) setErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

// handle delivers one deferred record.
func (r *Relay) handle(ctx context.Context, rec *kgo.Record) error {
	dest, ok := r.destOf(rec)
	if !ok {
		return fmt.Errorf("deferred: record of %s, not a deferred topic of this relay (nor a retry tier of one)", rec.Topic)
	}
	if m, ok, err := Decode(rec); err != nil {
		r.malformed.Add(1)
		r.setErr(fmt.Errorf("deferred: %s[%d]@%d: %w (relayed to %s all the same)", rec.Topic, rec.Partition, rec.Offset, err, dest))
	} else if ok && m.Topic != "" && m.Topic != dest {
		r.malformed.Add(1)
		r.setErr(fmt.Errorf("deferred: %s[%d]@%d names destination %q; relayed to %s, the topic's own", rec.Topic, rec.Partition, rec.Offset, m.Topic, dest))
	}
	if open, _ := r.gate(dest); !open {
		r.waiting.Add(1)
		err := r.awaitOpen(ctx, dest)
		r.waiting.Add(-1)
		if err != nil {
			return err
		}
	}
	if err := r.lims[dest].Wait(ctx); err != nil {
		return err
	}
	out := &kgo.Record{Topic: dest, Key: rec.Key, Value: rec.Value, Headers: relayedHeaders(rec.Headers)}
	if err := r.rt.Client().ProduceSync(ctx, out).FirstErr(); err != nil {
		r.produceErrs.Add(1)
		err = fmt.Errorf("deferred: relaying %s[%d]@%d to %s: %w", rec.Topic, rec.Partition, rec.Offset, dest, err)
		r.setErr(err)
		return err
	}
	r.relayed.Add(1)
	r.gates[dest].relayed.Add(1)
	return nil
}

// destOf returns the destination of rec: its deferred topic's, or, for a
// record on a retry tier (a relay run with a retrytopics router that has
// tiers, whose options subscribe it to them), the destination of the
// deferred topic it failed on.
func (r *Relay) destOf(rec *kgo.Record) (string, bool) {
	if dest, ok := r.dest[rec.Topic]; ok {
		return dest, true
	}
	if m, ok, err := retrytopics.Decode(rec); ok && err == nil {
		dest, ok := r.dest[m.OriginalTopic]
		return dest, ok
	}
	return "", false
}

// relayedHeaders are the headers a relayed record keeps: its own, without
// the deferred lane's ([Strip]) and, from a retry tier, without the tiers'
// metadata (retrytopics.IsMetaHeader), which are the deferred topic's
// business.
func relayedHeaders(hs []kgo.RecordHeader) []kgo.RecordHeader {
	return without(hs, func(key string) bool { return isDeferredHeader(key) || retrytopics.IsMetaHeader(key) })
}

// awaitOpen waits until the gate loop opens dest or ctx ends.
func (r *Relay) awaitOpen(ctx context.Context, dest string) error {
	for {
		open, changed := r.gate(dest)
		if open {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// RelayStats is a snapshot of a relay's counters.
type RelayStats struct {
	// Relayed counts records produced to their destination (and soon
	// committed).
	Relayed uint64
	// Waiting is the records whose handler waits for their destination
	// to be ok.
	Waiting int64
	// Paused lists the destinations whose deferred partitions are
	// paused: their gates are closed.
	Paused []string
	// Destinations say, per destination, whether the relay delivers to
	// it, at what rate, and why.
	Destinations []DestinationStats
	// Malformed counts records with malformed deferred headers, or
	// naming another destination than their topic's: they are relayed to
	// their topic's destination all the same.
	Malformed uint64
	// ProduceErrors counts failed produces to a destination (retried).
	ProduceErrors uint64
	// LastErr is the last of these problems, nil if none.
	LastErr error
}

// Stats returns the relay's counters.
func (r *Relay) Stats() RelayStats {
	s := RelayStats{Relayed: r.relayed.Load(), Waiting: r.waiting.Load(), Malformed: r.malformed.Load(), ProduceErrors: r.produceErrs.Load()}
	r.mu.Lock()
	for d, p := range r.paused {
		if p {
			s.Paused = append(s.Paused, d)
		}
	}
	s.LastErr = r.lastErr
	r.mu.Unlock()
	slices.Sort(s.Paused)
	r.gmu.Lock()
	for dest, g := range r.gates {
		s.Destinations = append(s.Destinations, DestinationStats{Topic: dest, Open: r.gateOpen[dest], Rate: g.limit,
			Room: g.room, Others: g.others, Reason: g.reason})
	}
	r.gmu.Unlock()
	slices.SortFunc(s.Destinations, func(a, b DestinationStats) int { return strings.Compare(a.Topic, b.Topic) })
	return s
}
