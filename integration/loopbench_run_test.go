package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

// This file is one run of BenchmarkLoopControl (loopbench_test.go): a
// topic, the consumer of fixed capacity with its lag monitor, the
// producer instances and their open-loop load, and the sampler. It uses
// the library's public API only (consumer, lagmonitor, producer,
// priority), so that it keeps measuring the same thing as the internals
// change.

// benchClasses are the classes offered, most important first; their
// indexes are those of benchConfig.Mix and of every per-class array.
var benchClasses = [3]priority.Class{priority.Critical, priority.Normal, priority.Bulk}

// sender is what a producer instance produces through: a
// *producer.Producer or a plain *kgo.Client.
type sender interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// classCounts are one class's cumulative counts in a run.
type classCounts struct {
	Offered, Admitted, Throttled, Shed, FailedFast, Failed, Deferred, Handled int64
}

// Refused returns the records refused by admission.
func (c classCounts) Refused() int64 { return c.Throttled + c.Shed + c.FailedFast }

// liveCounts are a class's counters while a run goes.
type liveCounts struct {
	offered, admitted, throttled, shed, failedFast, failed, handled atomic.Int64
}

// loopRun is one side of the benchmark: plain or pressure-aware
// producers, each run on its own topic, group and control topic.
type loopRun struct {
	name  string
	aware bool
	cfg   benchConfig
	topic string

	rt      *consumer.Runtime
	mon     *lagmonitor.Monitor
	levels  levelLog
	fast    atomic.Bool // the handler skips its service time (the final flush)
	freeMu  sync.Mutex
	free    []time.Time // per partition: when its server is free again
	handled atomic.Int64
	// partHandled counts the records handled per partition.
	partHandled []atomic.Int64

	senders   []sender
	aps       []*producer.Producer // the same, when aware
	keys      [][][]byte           // per partition, keys kgo's partitioner sends there
	classes   [3]liveCounts
	acked     []atomic.Int64 // per partition
	misrouted atomic.Int64   // acknowledged on another partition than the key's
	failMu    sync.Mutex
	firstErr  error
	ledger    *benchLedger
	inflight  sync.WaitGroup // records offered whose Produce or promise is pending

	samples []benchSample
	latest  atomic.Pointer[benchSample] // for the progress lines
}

// newLoopRun creates the run's topic and control topic and starts its
// consumer, monitor and producers; everything stops when b ends.
func newLoopRun(b *testing.B, c *integration.Cluster, cfg benchConfig, name string, aware bool) *loopRun {
	b.Helper()
	id := fmt.Sprintf("loopbench-%s-%d", name, time.Now().UnixNano())
	r := &loopRun{name: name, aware: aware, cfg: cfg, topic: id, free: make([]time.Time, cfg.Partitions),
		partHandled: make([]atomic.Int64, cfg.Partitions), acked: make([]atomic.Int64, cfg.Partitions),
		ledger: newBenchLedger(int(cfg.Partitions))}
	integration.CreateTopic(b, c.Brokers, r.topic, cfg.Partitions, 1, nil)
	control := r.topic + ".pressure"
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = lagmonitor.EnsureControlTopic(ctx, cl, control, 3, 15*time.Second)
	cl.Close()
	if err != nil {
		b.Fatal(err)
	}
	r.keys = keysByPartition(r.topic, int(cfg.Partitions), 64)
	r.startConsumer(b, c.Brokers, control)
	r.startProducers(b, c.Brokers, control)
	return r
}

// keysByPartition returns, per partition, n keys that kgo's default
// partitioner (murmur2 of the key, as Kafka's) sends to it.
func keysByPartition(topic string, partitions, n int) [][][]byte {
	tp := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	keys := make([][][]byte, partitions)
	for i, full := 0, 0; full < partitions; i++ {
		k := fmt.Appendf(nil, "key-%d", i)
		p := tp.Partition(&kgo.Record{Key: k}, partitions)
		if len(keys[p]) < n {
			keys[p] = append(keys[p], k)
			if len(keys[p]) == n {
				full++
			}
		}
	}
	return keys
}

// startConsumer starts the runtime, of fixed capacity per partition, and
// its lag monitor with the default thresholds, and waits until the
// runtime owns every partition.
func (r *loopRun) startConsumer(b *testing.B, brokers []string, control string) {
	rt, err := consumer.New(r.handle, consumer.Brokers(brokers...), consumer.Group(r.topic), consumer.Topics(r.topic),
		consumer.KgoOpts(lagmonitor.ClientOpts(control)...))
	if err != nil {
		b.Fatal(err)
	}
	r.rt = rt
	runCtx, stopRT := context.WithCancel(context.Background())
	rtDone := make(chan error, 1)
	go func() { rtDone <- rt.Run(runCtx) }()
	b.Cleanup(func() {
		stopRT()
		if err := <-rtDone; err != nil {
			b.Errorf("%s: the runtime returned %v", r.name, err)
		}
	})
	mon, err := lagmonitor.New(rt, lagmonitor.Config{Group: r.topic, ControlTopic: control, Hooks: []lagmonitor.Hook{&r.levels}})
	if err != nil {
		b.Fatal(err)
	}
	r.mon = mon
	monCtx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan error, 1)
	go func() { monDone <- mon.Run(monCtx) }()
	b.Cleanup(func() {
		stopMon()
		if err := <-monDone; err != nil {
			b.Errorf("%s: the monitor returned %v", r.name, err)
		}
	})
	if err := await(time.Minute, func() bool { return len(rt.Assigned()[r.topic]) == int(r.cfg.Partitions) }); err != nil {
		b.Fatalf("%s: the runtime did not own the %d partitions of %s: %v", r.name, r.cfg.Partitions, r.topic, err)
	}
}

// handle is a server of fixed service time per partition: partitions are
// handled serially (the runtime's partition ordering), and a record
// finishes Service after the one before it finished, or after it arrived
// if the server was idle. The schedule, not the sleep, sets the pace: a
// record that arrives within Service of its predecessor's end counts as
// having waited for it (the gap is the timer's overshoot and the
// runtime's hand-off, which a sleeping handler cannot avoid), so that a
// partition with records waiting handles exactly 1/Service records per
// second, and its capacity is known. Idle time beyond that is lost, as
// it would be for a real server.
func (r *loopRun) handle(ctx context.Context, rec *kgo.Record) error {
	if !r.fast.Load() {
		now := time.Now()
		r.freeMu.Lock()
		begin := r.free[rec.Partition]
		if now.Sub(begin) > r.cfg.Service {
			begin = now // idle: nothing was waiting
		}
		done := begin.Add(r.cfg.Service)
		r.free[rec.Partition] = done
		r.freeMu.Unlock()
		t := time.NewTimer(time.Until(done))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	r.partHandled[rec.Partition].Add(1)
	r.ledger.handled(rec.Partition, rec.Offset)
	r.handled.Add(1)
	if i := classOf(rec.Value); i >= 0 {
		r.classes[i].handled.Add(1)
	}
	return nil
}

// classOf returns the index of the class a record's value starts with,
// or -1.
func classOf(v []byte) int {
	for i, c := range benchClasses {
		if bytes.HasPrefix(v, []byte(c+" ")) {
			return i
		}
	}
	return -1
}

// startProducers starts the run's producer instances: pressure-aware
// ones (two built by producer.New, one by producer.Wrap around a client
// of the run's), or plain kgo clients. Every client has kgo's defaults.
func (r *loopRun) startProducers(b *testing.B, brokers []string, control string) {
	for i := range r.cfg.Instances {
		if !r.aware {
			cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(cl.Close)
			r.senders = append(r.senders, cl)
			continue
		}
		opts := []producer.Opt{producer.ControlTopic(control), producer.Topics(r.topic)}
		var (
			p   *producer.Producer
			err error
		)
		if i == r.cfg.Instances-1 {
			cl, cerr := kgo.NewClient(kgo.SeedBrokers(brokers...))
			if cerr != nil {
				b.Fatal(cerr)
			}
			b.Cleanup(cl.Close) // after p.Close: cleanups run last first
			p, err = producer.Wrap(cl, opts...)
		} else {
			p, err = producer.New(append(opts, producer.Brokers(brokers...))...)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = p.Start(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if st := p.Stats(); !st.CaughtUp {
			b.Fatalf("%s: producer %d did not read the control topic to its end: %v", r.name, i, st.StartError)
		}
		r.senders = append(r.senders, p)
		r.aps = append(r.aps, p)
	}
}

// drive offers the load from start, through every instance and class
// (open loop: a ticker per instance and class, each record produced on a
// goroutine of its own, a refusal counted and not retried), and samples
// the run every second, until the overload and recovery phases are over;
// then it waits for every record offered to be decided and acknowledged.
func (r *loopRun) drive(ctx context.Context, start time.Time) {
	end := start.Add(r.cfg.Overload + r.cfg.Recovery)
	var wg sync.WaitGroup
	for i, s := range r.senders {
		for c := range benchClasses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.offerLoop(ctx, s, i, c, start, end)
			}()
		}
	}
	r.sampleLoop(ctx, start, end)
	wg.Wait()
	r.inflight.Wait()
}

// perSec returns the records per second one instance offers of class c
// at el into the run.
func (r *loopRun) perSec(c int, el time.Duration) float64 {
	f := r.cfg.RecoveryFactor
	if el < r.cfg.Overload {
		f = r.cfg.OverloadFactor
	}
	return f * r.cfg.capacity() * r.cfg.Mix[c] / float64(r.cfg.Instances)
}

// offerLoop offers instance i's records of class c from start to end.
// Every 10ms it offers the records due since the last tick at the
// phase's rate, carrying fractions over, so that a late tick does not
// lose records.
func (r *loopRun) offerLoop(ctx context.Context, s sender, i, c int, start, end time.Time) {
	rng := rand.New(rand.NewPCG(uint64(i), uint64(c)))
	var seq int
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last, due := start, 0.0
	if d := time.Until(start); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return
		}
	}
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-tick.C:
		}
		if !now.Before(end) {
			return
		}
		due += r.perSec(c, now.Sub(start)) * now.Sub(last).Seconds()
		last = now
		for ; due >= 1; due-- {
			seq++
			r.offer(ctx, s, i, c, seq, rng)
		}
	}
}

// offer produces one record of class c through s on a goroutine of its
// own (a pressure-aware Produce may wait for its class's rate), keyed to
// a partition drawn with the configured skew.
func (r *loopRun) offer(ctx context.Context, s sender, i, c, seq int, rng *rand.Rand) {
	p := r.cfg.drawPartition(rng)
	rec := &kgo.Record{Topic: r.topic, Key: r.keys[p][rng.IntN(len(r.keys[p]))],
		Value: fmt.Appendf(nil, "%s %s-%d-%d %080d", benchClasses[c], r.name, i, seq, 0)}
	pctx := ctx
	if r.aware {
		pctx = producer.WithClass(ctx, benchClasses[c])
	} else {
		rec.Headers = []kgo.RecordHeader{{Key: priority.Header, Value: []byte(benchClasses[c])}}
	}
	r.classes[c].offered.Add(1)
	r.inflight.Add(2) // the goroutine, and the promise
	go func() {
		defer r.inflight.Done()
		s.Produce(pctx, rec, func(rec *kgo.Record, err error) {
			defer r.inflight.Done()
			r.outcome(c, int32(p), rec, err)
		})
	}()
}

// outcome counts what became of one record offered for partition p.
func (r *loopRun) outcome(c int, p int32, rec *kgo.Record, err error) {
	cc := &r.classes[c]
	switch {
	case err == nil:
		cc.admitted.Add(1)
		r.acked[rec.Partition].Add(1)
		if rec.Partition != p {
			r.misrouted.Add(1)
		}
		r.ledger.expect(rec.Partition, rec.Offset)
	case errors.Is(err, producer.ErrThrottled):
		cc.throttled.Add(1)
	case errors.Is(err, producer.ErrShed):
		cc.shed.Add(1)
	case errors.Is(err, producer.ErrOverloaded):
		cc.failedFast.Add(1)
	default:
		cc.failed.Add(1)
		r.failMu.Lock()
		if r.firstErr == nil {
			r.firstErr = err
		}
		r.failMu.Unlock()
	}
}

// sampleLoop takes a sample every second from start until end.
func (r *loopRun) sampleLoop(ctx context.Context, start, end time.Time) {
	if d := time.Until(start); d > 0 {
		time.Sleep(d) // the start is a fixed time, shared by both runs
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	add := func() {
		s := r.sample(start)
		r.samples = append(r.samples, s)
		r.latest.Store(&s)
	}
	add()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.After(end) {
				return
			}
			add()
		}
	}
}

// sample reads the monitor's lag, the producers' state and the counters.
func (r *loopRun) sample(start time.Time) benchSample {
	s := benchSample{At: time.Since(start), ProducerLevel: -1, PartOffset: make([]int64, r.cfg.Partitions),
		PartTime: make([]time.Duration, r.cfg.Partitions), PartHandled: make([]int64, r.cfg.Partitions), Handled: r.handled.Load()}
	for p := range s.PartHandled {
		s.PartHandled[p] = r.partHandled[p].Load()
	}
	for _, tl := range r.mon.Lag() {
		if tl.Topic != r.topic {
			continue
		}
		s.Level, s.OffsetLag, s.TimeLag = tl.Level, tl.OffsetLag, tl.TimeLag
		s.Suggested, s.Capacity, s.Drain = tl.SuggestedRate, tl.Capacity, tl.DrainRate
		for _, pl := range tl.Partitions {
			if pl.Partition >= 0 && pl.Partition < r.cfg.Partitions {
				s.PartOffset[pl.Partition], s.PartTime[pl.Partition] = pl.OffsetLag, pl.TimeLag
			}
		}
	}
	var deferred [3]int64
	for _, p := range r.aps {
		st := p.Stats()
		for _, ts := range st.Topics {
			if ts.Topic != r.topic {
				continue
			}
			s.ProducerLevel = max(s.ProducerLevel, ts.Level)
			if ts.Recovering {
				s.Recovering++
			}
			for i, cs := range ts.Classes {
				if i < len(deferred) {
					deferred[i] += int64(cs.Deferred)
				}
			}
		}
	}
	for i := range r.classes {
		s.Class[i] = r.counts(i)
		s.Class[i].Deferred = deferred[i]
	}
	return s
}

// counts returns class i's counts now (Deferred aside: the producers'
// Stats hold it).
func (r *loopRun) counts(i int) classCounts {
	c := &r.classes[i]
	return classCounts{Offered: c.offered.Load(), Admitted: c.admitted.Load(), Throttled: c.throttled.Load(),
		Shed: c.shed.Load(), FailedFast: c.failedFast.Load(), Failed: c.failed.Load(), Handled: c.handled.Load()}
}

// flush lets the consumer handle the records left at full speed (no
// service time) and waits, within bound, until every record acknowledged
// was handled.
func (r *loopRun) flush(bound time.Duration) error {
	r.fast.Store(true)
	return await(bound, r.ledger.complete)
}

// levelLog records the monitor's level changes (a lagmonitor hook).
type levelLog struct {
	mu sync.Mutex
	es []lagmonitor.LevelEvent
}

// OnLevelChange implements lagmonitor.HookLevelChange.
func (l *levelLog) OnLevelChange(e lagmonitor.LevelEvent) {
	l.mu.Lock()
	l.es = append(l.es, e)
	l.mu.Unlock()
}

// since returns when each change happened, from start.
func (l *levelLog) since(start time.Time) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	ds := make([]time.Duration, len(l.es))
	for i, e := range l.es {
		ds[i] = e.At.Sub(start)
	}
	return ds
}

var _ lagmonitor.HookLevelChange = (*levelLog)(nil)

// await polls cond every 100ms until it holds or bound passes.
func await(bound time.Duration, cond func() bool) error {
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", bound)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition, bounded
	}
	return nil
}

// benchLedger counts, per partition and offset, the records acknowledged
// and the times each was handled. The run's topic holds only its
// producers' records, from offset 0.
type benchLedger struct {
	mu       sync.Mutex
	expected [][]uint8
	seen     [][]uint8
	nExp     int64
	nSeen    int64 // distinct offsets acknowledged and handled
}

func newBenchLedger(partitions int) *benchLedger {
	return &benchLedger{expected: make([][]uint8, partitions), seen: make([][]uint8, partitions)}
}

func grow(s []uint8, off int64) []uint8 {
	for int64(len(s)) <= off {
		s = append(s, make([]uint8, max(len(s), 1024))...)
	}
	return s
}

func (l *benchLedger) expect(p int32, off int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expected[p] = grow(l.expected[p], off)
	l.seen[p] = grow(l.seen[p], off)
	if l.expected[p][off] == 0 {
		l.nExp++
		if l.seen[p][off] > 0 {
			l.nSeen++
		}
	}
	l.expected[p][off] = 1
}

func (l *benchLedger) handled(p int32, off int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[p] = grow(l.seen[p], off)
	l.expected[p] = grow(l.expected[p], off)
	if l.seen[p][off] == 0 && l.expected[p][off] == 1 {
		l.nSeen++
	}
	if l.seen[p][off] < 255 {
		l.seen[p][off]++
	}
}

// complete reports whether every record acknowledged was handled.
func (l *benchLedger) complete() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nSeen == l.nExp
}

// ledgerCounts are a ledger's totals: records acknowledged, of them
// handled, handled more than once (the extra times), and handled without
// having been acknowledged (a record acknowledged after it was handled
// is counted there until its acknowledgement arrives).
type ledgerCounts struct {
	expected, handled, duplicates, unexpected int64
}

func (l *benchLedger) counts() ledgerCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := ledgerCounts{expected: l.nExp, handled: l.nSeen}
	for p := range l.seen {
		for off, n := range l.seen[p] {
			if n > 1 {
				c.duplicates += int64(n - 1)
			}
			if n > 0 && l.expected[p][off] == 0 {
				c.unexpected++
			}
		}
	}
	return c
}

// missing names up to n records acknowledged and not handled.
func (l *benchLedger) missing(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for p := range l.expected {
		for off, e := range l.expected[p] {
			if e == 1 && l.seen[p][off] == 0 && len(out) < n {
				out = append(out, fmt.Sprintf("%d/%d", p, off))
			}
		}
	}
	return fmt.Sprint(out)
}
