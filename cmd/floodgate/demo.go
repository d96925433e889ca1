package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/partition"
)

// demoConfig is what the demo runs with: its flags, plus the live-view
// interval, which tests shorten.
type demoConfig struct {
	duration       time.Duration
	records        int
	partitions     int
	handlerDelay   time.Duration
	concurrency    int
	partMaxRecords int
	ordering       consumer.Ordering
	brokers        []string // empty: an embedded kfake cluster
	topic          string
	interval       time.Duration // between live-view lines
}

const (
	demoKeys      = 256 // distinct record keys, spread over the partitions
	demoValueSize = 100 // bytes per record value
	// demoProduceBuffer bounds the records the producer has handed to the
	// client and not yet seen acknowledged; Produce blocks beyond it.
	demoProduceBuffer = 2000
)

func defaultDemoConfig() demoConfig {
	return demoConfig{
		duration:       15 * time.Second,
		records:        30000,
		partitions:     6,
		handlerDelay:   2 * time.Millisecond,
		concurrency:    8,
		partMaxRecords: 100,
		ordering:       consumer.OrderPartition,
		topic:          "floodgate-demo",
		interval:       time.Second,
	}
}

// demoCommand parses the demo's flags and runs it.
func demoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := defaultDemoConfig()
	fs := flag.NewFlagSet("floodgate demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&cfg.duration, "duration", cfg.duration, "run at most this long; the demo ends earlier once every produced record is handled")
	fs.IntVar(&cfg.records, "records", cfg.records, "records in the burst")
	fs.IntVar(&cfg.partitions, "partitions", cfg.partitions, "partitions of the demo topic")
	fs.DurationVar(&cfg.handlerDelay, "handler-delay", cfg.handlerDelay, "time the slow handler spends on each record")
	fs.IntVar(&cfg.concurrency, "concurrency", cfg.concurrency, "handlers running at once, at most (consumer.MaxConcurrency)")
	fs.IntVar(&cfg.partMaxRecords, "partition-max-records", cfg.partMaxRecords, "records of one partition in flight before it pauses (consumer.PartitionMaxRecords)")
	ordering := fs.String("ordering", cfg.ordering.String(), "ordering mode: partition, key or none")
	brokers := fs.String("brokers", "", "comma-separated seed brokers of an existing cluster to use instead of the embedded kfake cluster; the topic is created if missing")
	fs.StringVar(&cfg.topic, "topic", cfg.topic, "topic to produce to and consume")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: floodgate demo [flags]\n\n"+
			"Produces a burst of records faster than a slow handler can keep up with,\n"+
			"consumes it with a floodgate consumer.Runtime and prints a live view once\n"+
			"a second, then one accounting line. Needs no broker: by default it runs an\n"+
			"embedded kfake cluster.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "floodgate demo: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	var err error
	if cfg.ordering, err = parseOrdering(*ordering); err != nil {
		fmt.Fprintf(stderr, "floodgate demo: --ordering: %v\n", err)
		return 2
	}
	cfg.brokers = seedList(*brokers)
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "floodgate demo: %v\n", err)
		return 2
	}
	return runDemo(ctx, cfg, stdout, stderr)
}

func parseOrdering(s string) (consumer.Ordering, error) {
	for _, o := range []consumer.Ordering{consumer.OrderPartition, consumer.OrderKey, consumer.OrderNone} {
		if s == o.String() {
			return o, nil
		}
	}
	return 0, fmt.Errorf("%q is not one of partition, key, none", s)
}

func (c demoConfig) validate() error {
	switch {
	case c.duration <= 0:
		return fmt.Errorf("--duration must be > 0, got %v", c.duration)
	case c.records <= 0:
		return fmt.Errorf("--records must be > 0, got %d", c.records)
	case c.partitions <= 0 || c.partitions > 1<<16:
		return fmt.Errorf("--partitions must be in [1, 65536], got %d", c.partitions)
	case c.handlerDelay < 0:
		return fmt.Errorf("--handler-delay must be >= 0, got %v", c.handlerDelay)
	case c.concurrency <= 0:
		return fmt.Errorf("--concurrency must be > 0, got %d", c.concurrency)
	case c.partMaxRecords <= 0:
		return fmt.Errorf("--partition-max-records must be > 0, got %d", c.partMaxRecords)
	case c.topic == "":
		return errors.New("--topic must not be empty")
	case c.interval <= 0:
		return fmt.Errorf("live-view interval must be > 0, got %v", c.interval)
	}
	return nil
}

// runDemo runs the demo and returns its exit status: 0 when no record was
// lost, 1 when some were (or the accounting could not be completed).
//
// Goroutines and their owner, which is runDemo: the runtime's Run and the
// producer. Both stop when runCtx is cancelled, and runDemo waits for both
// before it reports.
func runDemo(ctx context.Context, cfg demoConfig, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "floodgate demo: "+format+"\n", args...)
		return 1
	}
	brokers, partitions := cfg.brokers, int32(cfg.partitions)
	if len(brokers) == 0 {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, cfg.topic))
		if err != nil {
			return fail("starting the embedded kfake cluster: %v", err)
		}
		defer c.Close()
		brokers = c.ListenAddrs()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(cfg.topic),
		// Spread the burst evenly, so that every partition has the same
		// backlog and the show ends on all partitions at once.
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.MaxBufferedRecords(demoProduceBuffer),
	)
	if err != nil {
		return fail("producer client: %v", err)
	}
	closeProducer := sync.OnceFunc(cl.Close)
	defer closeProducer()
	if len(cfg.brokers) > 0 {
		if partitions, err = ensureTopic(ctx, cl, cfg.topic, partitions); err != nil {
			return fail("%v", err)
		}
	}

	start := time.Now()
	led := newLedger()
	hooks := new(demoHooks)
	// A fresh group that starts at the first record produced from now on:
	// records an existing topic already holds are not part of the demo.
	group := "floodgate-demo-" + strconv.FormatInt(start.UnixNano(), 36)
	rt, err := consumer.New(slowHandler(cfg.handlerDelay, led),
		consumer.Brokers(brokers...), consumer.Group(group), consumer.Topics(cfg.topic),
		consumer.WithOrdering(cfg.ordering),
		consumer.MaxConcurrency(cfg.concurrency),
		consumer.PartitionMaxRecords(cfg.partMaxRecords),
		consumer.CommitInterval(time.Second),
		consumer.WithHooks(hooks),
		consumer.KgoOpts(kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(start.UnixMilli()))),
	)
	if err != nil {
		return fail("%v", err)
	}
	defer rt.Close()

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	rtDone := make(chan error, 1)
	go func() { rtDone <- rt.Run(runCtx) }()
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		produce(runCtx, cl, cfg.records, led)
	}()

	fmt.Fprintf(stdout, "demo: %d records into %d partitions of %q on %s; handler %v/record, ordering=%v, concurrency=%d, partition-max-records=%d\n",
		cfg.records, partitions, cfg.topic, clusterName(cfg.brokers), cfg.handlerDelay, cfg.ordering, cfg.concurrency, cfg.partMaxRecords)
	view := liveView{out: stdout, start: start, last: start, partitions: int(partitions), maxInFlight: int(partitions) * cfg.partMaxRecords}
	deadline := time.NewTimer(cfg.duration)
	defer deadline.Stop()
	tick := time.NewTicker(cfg.interval)
	defer tick.Stop()

	var (
		cut    string // why the demo ended before draining; "" if it drained
		rtErr  error
		rtDead bool
	)
loop:
	for {
		select {
		case <-led.drained:
			break loop
		case <-deadline.C:
			cut = "duration reached"
			break loop
		case <-ctx.Done():
			cut = "interrupted"
			break loop
		case rtErr = <-rtDone:
			rtDead, cut = true, "runtime stopped"
			if ctx.Err() != nil {
				cut = "interrupted" // Run saw the signal first
			}
			break loop
		case now := <-tick.C:
			view.print(now, rt.Stats(), led, hooks)
		}
	}

	stopRun()
	if !rtDead {
		rtErr = <-rtDone
	}
	select {
	case <-led.drained: // perhaps at the same moment the loop ended
		cut = ""
	default:
	}
	// What the group committed is the broker's word on which records this
	// consumer is done with; needed only to judge records never handled.
	var (
		committed map[int32]int64
		cerr      error
	)
	if cut != "" {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		committed, cerr = committedOffsets(cctx, cl, group, cfg.topic)
		cancel()
	}
	closeProducer() // fails what is still buffered, so the producer returns
	<-prodDone

	res := led.result(committed)
	elapsed := time.Since(start)
	var b strings.Builder
	fmt.Fprintf(&b, "floodgate demo: produced=%d handled=%d", res.produced, res.handled)
	switch {
	case cut == "":
		fmt.Fprintf(&b, " lost=%d", res.lost) // 0: every acknowledged record was handled
	case cerr != nil:
		fmt.Fprintf(&b, " lost=? unhandled=%d (%s)", res.unhandled+res.lost, cut)
	default:
		fmt.Fprintf(&b, " lost=%d unhandled=%d (%s)", res.lost, res.unhandled, cut)
	}
	fmt.Fprintf(&b, " duplicates=%d pauses=%d resumes=%d", res.duplicates, hooks.pauses.Load(), hooks.resumes.Load())
	if res.unexpected > 0 {
		fmt.Fprintf(&b, " unexpected=%d", res.unexpected)
	}
	if res.produceErrs > 0 {
		fmt.Fprintf(&b, " produce-errors=%d", res.produceErrs)
	}
	fmt.Fprintf(&b, " elapsed=%.1fs\n", elapsed.Seconds())
	io.WriteString(stdout, b.String())

	code := 0
	if rtErr != nil {
		fmt.Fprintf(stderr, "floodgate demo: runtime: %v\n", rtErr)
		code = 1
	}
	if cerr != nil {
		fmt.Fprintf(stderr, "floodgate demo: cannot tell lost from unhandled records: %v\n", cerr)
		code = 1
	}
	if res.lost > 0 {
		fmt.Fprintf(stderr, "floodgate demo: %d records were committed past without being handled\n", res.lost)
		code = 1
	}
	return code
}

func clusterName(brokers []string) string {
	if len(brokers) == 0 {
		return "an embedded kfake cluster"
	}
	return strings.Join(brokers, ",")
}

// slowHandler returns the demo's handler: it spends delay on each record
// (returning early if its context ends) and then records it as handled.
func slowHandler(delay time.Duration, led *ledger) consumer.Handler {
	return func(ctx context.Context, r *kgo.Record) error {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
		led.handled(r.Partition, r.Offset)
		return nil
	}
}

// produce writes n records as fast as the client takes them, with up to
// demoProduceBuffer unacknowledged, recording each acknowledgement in led.
// It stops producing when ctx ends, waits for every promise (closing the
// client fails what is left), then tells led that production is over.
func produce(ctx context.Context, cl *kgo.Client, n int, led *ledger) {
	keys := make([][]byte, demoKeys)
	for i := range keys {
		keys[i] = []byte("key-" + strconv.Itoa(i))
	}
	value := make([]byte, demoValueSize) // never modified: shared by all records
	var promises sync.WaitGroup
	promise := func(r *kgo.Record, err error) {
		defer promises.Done()
		if err != nil {
			led.produceFailed()
			return
		}
		led.acked(r.Partition, r.Offset)
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		promises.Add(1)
		cl.Produce(ctx, &kgo.Record{Key: keys[i%len(keys)], Value: value}, promise)
	}
	promises.Wait()
	led.producerDone()
}

// ensureTopic creates topic on an existing cluster if it is missing and
// returns its partition count.
func ensureTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int32) (int32, error) {
	req := kmsg.NewPtrCreateTopicsRequest()
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic, t.NumPartitions, t.ReplicationFactor = topic, partitions, -1 // the broker's default
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, fmt.Errorf("creating topic %q: %w", topic, err)
	}
	if len(resp.Topics) != 1 {
		return 0, fmt.Errorf("creating topic %q: %d topics in the response", topic, len(resp.Topics))
	}
	switch err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); {
	case err == nil:
		return partitions, nil
	case !errors.Is(err, kerr.TopicAlreadyExists):
		return 0, fmt.Errorf("creating topic %q: %w", topic, err)
	}
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, cl)
	if err != nil {
		return 0, fmt.Errorf("metadata of topic %q: %w", topic, err)
	}
	for _, mt := range mresp.Topics {
		if mt.Topic == nil || *mt.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
			return 0, fmt.Errorf("metadata of topic %q: %w", topic, err)
		}
		return int32(len(mt.Partitions)), nil
	}
	return 0, fmt.Errorf("metadata of topic %q: topic missing from the response", topic)
}

// committedOffsets returns the offsets group has committed for topic's
// partitions (the next offset to consume), as the broker reports them.
func committedOffsets(ctx context.Context, cl *kgo.Client, group, topic string) (map[int32]int64, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group // Topics nil: every topic the group committed (v2+)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("fetching the offsets of group %s: %w", group, err)
	}
	out := make(map[int32]int64)
	switch err := kerr.ErrorForCode(resp.ErrorCode); {
	case errors.Is(err, kerr.GroupIDNotFound):
		return out, nil // no group, no commits (kfake says so; Kafka returns no offsets)
	case err != nil:
		return nil, fmt.Errorf("fetching the offsets of group %s: %w", group, err)
	}
	for _, t := range resp.Topics {
		if t.Topic != topic {
			continue
		}
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("fetching the offsets of group %s: %s[%d]: %w", group, topic, p.Partition, err)
			}
			if p.Offset >= 0 {
				out[p.Partition] = p.Offset
			}
		}
	}
	return out, nil
}

// demoHooks counts the partitions the runtime paused and resumed.
type demoHooks struct{ pauses, resumes atomic.Int64 }

var (
	_ consumer.HookPartitionsPaused  = (*demoHooks)(nil)
	_ consumer.HookPartitionsResumed = (*demoHooks)(nil)
)

func (h *demoHooks) OnPartitionsPaused(paused map[string]map[int32]partition.Reasons) {
	for _, ps := range paused {
		h.pauses.Add(int64(len(ps)))
	}
}

func (h *demoHooks) OnPartitionsResumed(resumed map[string][]int32) {
	for _, ps := range resumed {
		h.resumes.Add(int64(len(ps)))
	}
}

// liveView prints one line of the demo's state per tick.
type liveView struct {
	out         io.Writer
	start, last time.Time
	lastHandled int
	partitions  int
	maxInFlight int
}

// maxPausedNamed bounds the paused partitions a live-view line names.
const maxPausedNamed = 12

func (v *liveView) print(now time.Time, st consumer.Stats, led *ledger, h *demoHooks) {
	produced, handled := led.progress()
	rate := 0.0
	if dt := now.Sub(v.last).Seconds(); dt > 0 {
		rate = float64(handled-v.lastHandled) / dt
	}
	v.last, v.lastHandled = now, handled

	var paused []string
	npaused := 0
	for _, p := range st.Partitions {
		if p.Paused.Paused() {
			npaused++
			if len(paused) < maxPausedNamed {
				paused = append(paused, "p"+strconv.Itoa(int(p.Partition)))
			}
		}
	}
	if npaused > len(paused) {
		paused = append(paused, fmt.Sprintf("+%d", npaused-len(paused)))
	}
	fmt.Fprintf(v.out, "t=%v  produced=%d handled=%d rate=%.0f/s  in-flight=%d (max %d)  buffered=%s  paused=%d/%d [%s]  pauses=%d resumes=%d  lag=%d\n",
		now.Sub(v.start).Round(100*time.Millisecond), produced, handled, rate,
		st.InFlightRecords, v.maxInFlight, fmtBytes(st.BufferedBytes),
		npaused, v.partitions, strings.Join(paused, " "),
		h.pauses.Load(), h.resumes.Load(), produced-handled)
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "MiB"
	case n >= 1<<10:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ledger accounts for every record of the demo by (partition, offset): was
// it acknowledged to the producer, how often was it handled. The two may
// arrive in either order (a record can be handled before its acknowledgement
// reaches the producer). It is safe for concurrent use.
type ledger struct {
	mu          sync.Mutex
	recs        map[recKey]recState
	nacked      int // records acknowledged
	ndone       int // acknowledged records handled at least once
	produceErrs int
	producing   bool
	drained     chan struct{} // closed once production is over and every acknowledged record was handled
}

type recKey struct {
	partition int32
	offset    int64
}

type recState struct {
	acked   bool
	handled uint32
}

func newLedger() *ledger {
	return &ledger{recs: make(map[recKey]recState), producing: true, drained: make(chan struct{})}
}

func (l *ledger) acked(p int32, o int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := recKey{p, o}
	s := l.recs[k]
	if s.acked {
		return
	}
	s.acked = true
	l.recs[k] = s
	l.nacked++
	if s.handled > 0 {
		l.ndone++
	}
	l.checkDrained()
}

func (l *ledger) handled(p int32, o int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := recKey{p, o}
	s := l.recs[k]
	s.handled++
	l.recs[k] = s
	if s.handled == 1 && s.acked {
		l.ndone++
		l.checkDrained()
	}
}

func (l *ledger) produceFailed() {
	l.mu.Lock()
	l.produceErrs++
	l.mu.Unlock()
}

func (l *ledger) producerDone() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.producing = false
	l.checkDrained()
}

// checkDrained closes drained when it becomes true. Called with mu held.
func (l *ledger) checkDrained() {
	if !l.producing && l.ndone == l.nacked {
		select {
		case <-l.drained:
		default:
			close(l.drained)
		}
	}
}

// progress returns the records acknowledged and, of those, handled.
func (l *ledger) progress() (acked, handled int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nacked, l.ndone
}

type demoResult struct {
	produced, handled, duplicates int
	// lost counts acknowledged records never handled below the group's
	// committed offset: committed past, never to be read again.
	// unhandled counts the other acknowledged records never handled: the
	// group's next consumer reads them.
	lost, unhandled int
	unexpected      int // distinct records handled that were never acknowledged
	produceErrs     int
}

// result accounts for every record, judging records never handled against
// committed (partition to committed offset).
func (l *ledger) result(committed map[int32]int64) demoResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := demoResult{produced: l.nacked, handled: l.ndone, produceErrs: l.produceErrs}
	for k, s := range l.recs {
		switch {
		case !s.acked:
			r.unexpected++
		case s.handled > 1:
			r.duplicates += int(s.handled) - 1
		case s.handled == 0:
			if c, ok := committed[k.partition]; ok && k.offset < c {
				r.lost++
			} else {
				r.unhandled++
			}
		}
	}
	return r
}
