package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// pressureScenario is a topic consumed by held-back runtimes that each run
// a lag monitor publishing to a control topic of the test's own.
type pressureScenario struct {
	*scenario
	control string
	hold    chan struct{} // records with value "hold" wait until it closes
	holdMu  sync.Mutex
}

func newPressureScenario(t *testing.T, c *integration.Cluster, partitions int32) *pressureScenario {
	s := &pressureScenario{scenario: newScenario(t, c, partitions, 1), hold: make(chan struct{})}
	s.control = s.topic + ".pressure"
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := lagmonitor.EnsureControlTopic(ctx, cl, s.control, 3, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// release lets the records held now go; later ones are held again.
func (s *pressureScenario) release() {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	close(s.hold)
	s.hold = make(chan struct{})
}

// releaseAll lets every record go, now and later.
func (s *pressureScenario) releaseAll() {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	close(s.hold)
	s.hold = closedChan
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (s *pressureScenario) held() chan struct{} {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	return s.hold
}

// member runs a runtime and its monitor; handled counts its records; tune,
// if given, changes the monitor's config.
func (s *pressureScenario) member(th lagmonitor.Thresholds, handled *atomic.Int64, tune ...func(*lagmonitor.Config)) *lagmonitor.Monitor {
	t := s.t
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if string(r.Value) == "hold" {
			select {
			case <-s.held():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		s.ledger.Handled(r.Topic, r.Partition, r.Offset)
		handled.Add(1)
		return nil
	}, s.opts(consumer.KgoOpts(lagmonitor.ClientOpts(s.control)...))...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, rt)
	cfg := lagmonitor.Config{Group: s.group, ControlTopic: s.control, Thresholds: th,
		Heartbeat: time.Second, TTL: 5 * time.Second, RefreshInterval: 500 * time.Millisecond}
	for _, f := range tune {
		f(&cfg)
	}
	m, err := lagmonitor.New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

func (s *pressureScenario) produceValues(values ...string) []*kgo.Record {
	s.t.Helper()
	p := testkit.NewProducer(s.t, s.c.Brokers)
	rs := make([]*kgo.Record, len(values))
	for i, v := range values {
		rs[i] = &kgo.Record{Topic: s.topic, Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Client().ProduceSync(ctx, rs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
	for _, r := range rs {
		s.ledger.Expect(r.Topic, r.Partition, r.Offset)
	}
	return rs
}

// pressureThresholds: elevated at 200ms of time lag, left after 200ms at
// or below 100ms; nothing higher.
var pressureThresholds = lagmonitor.Thresholds{Elevated: lagmonitor.Mark{TimeLag: 200 * time.Millisecond},
	High: lagmonitor.Mark{TimeLag: time.Hour}, Critical: lagmonitor.Mark{TimeLag: 2 * time.Hour}, ExitFraction: 0.5, Dwell: 200 * time.Millisecond}

// TestPressureSignals: two instances of a group, held back, raise the
// topic's level; a producer's reader of the control topic sees both and
// aggregates them; once they catch up the level returns to ok after the
// dwell; the runtime's own view agrees with the group's lag seen from
// outside.
func TestPressureSignals(t *testing.T) {
	c := integration.Shared(t)
	s := newPressureScenario(t, c, 2)
	var h1, h2 atomic.Int64
	m1 := s.member(pressureThresholds, &h1)
	m2 := s.member(pressureThresholds, &h2)
	r, err := lagmonitor.NewReader(c.Brokers, s.control, []string{s.topic}, lagmonitor.ReadLookback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "each member to own a partition", func() bool {
		return len(m1.Lag()) == 1 && len(m2.Lag()) == 1 && len(m1.Lag()[0].Partitions) == 1 && len(m2.Lag()[0].Partitions) == 1
	})
	values := make([]string, 40)
	for i := range values {
		values[i] = "hold"
	}
	s.produceValues(values...)
	testkit.Eventually(t, time.Minute, "the reader to see both instances elevated", func() bool {
		p := r.Pressure(s.topic, time.Now())
		return p.Level == lagmonitor.LevelElevated && len(p.Groups) == 1 && p.Groups[0].Instances == 2
	})
	// The runtime's view and the outside view of the same lag: nothing is
	// committed (everything is held), so both count every record.
	var inside int64
	for _, m := range []*lagmonitor.Monitor{m1, m2} {
		inside += m.Lag()[0].OffsetLag
	}
	outside, err := lagmonitor.DescribeGroupLag(ctx, c.Brokers, s.group, []string{s.topic})
	if err != nil {
		t.Fatal(err)
	}
	var ends int64
	for _, p := range outside.Partitions {
		ends += p.End
	}
	if inside != 40 || ends != 40 {
		t.Errorf("the runtimes see %d records of lag, the end offsets sum to %d: want 40 and 40", inside, ends)
	}
	s.releaseAll()
	s.ledger.WaitAll(t, time.Minute)
	testkit.Eventually(t, time.Minute, "the level to return to ok after the dwell", func() bool {
		p := r.Pressure(s.topic, time.Now())
		return p.Level == lagmonitor.LevelOK && len(p.Groups) == 1 && p.Groups[0].Instances == 2
	})
	s.report("pressure-signals", 0, "")
}

// TestPressureLatency measures, on a held-back consumer, the time from its
// time lag crossing the elevated threshold to the elevated signal being
// readable from the control topic, with the monitor's default evaluation
// interval (100ms). The goal is well under 250ms; the test reports the
// figures and asserts none.
func TestPressureLatency(t *testing.T) {
	c := integration.Shared(t)
	s := newPressureScenario(t, c, 1)
	var handled atomic.Int64
	m := s.member(pressureThresholds, &handled)
	watch, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.control: {lagmonitor.PartitionFor(s.topic, 3): kgo.NewOffset().AtEnd()}}),
		kgo.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	// await returns when the watcher reads a signal of the topic at level.
	await := func(level lagmonitor.Level) time.Time {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for {
			fs := watch.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("no %s signal of %s on the control topic within a minute", level, s.topic)
			}
			at := time.Now()
			var seen bool
			fs.EachRecord(func(r *kgo.Record) {
				if sig, tomb, err := lagmonitor.Decode(r.Key, r.Value); err == nil && !tomb && sig.Topic == s.topic && sig.Level == level {
					seen = true
				}
			})
			if seen {
				return at
			}
		}
	}
	testkit.Eventually(t, time.Minute, "the member to be assigned", func() bool { return len(m.Lag()) == 1 })
	// The watcher finds the end of the control partition on its first
	// fetch: a signal published before that is missed, and the first
	// trial would measure the next heartbeat (1s later), not the
	// pressure's latency. An ok heartbeat read first means it is there.
	await(lagmonitor.LevelOK)
	trials := integration.Scale(20)
	lat := make([]time.Duration, 0, trials)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for i := 0; i < trials; i++ {
		// The previous trial ended just after an evaluation; start this
		// one at a random phase of the evaluation interval, or every
		// trial would measure the same worst case. (Not a
		// synchronisation: nothing waits on it.)
		time.Sleep(time.Duration(rng.Int64N(int64(100 * time.Millisecond))))
		rs := s.produceValues("hold")
		crossed := rs[0].Timestamp.Add(pressureThresholds.Elevated.TimeLag)
		lat = append(lat, await(lagmonitor.LevelElevated).Sub(crossed))
		s.release()
		await(lagmonitor.LevelOK)
	}
	var all []string // in trial order
	for _, d := range lat {
		all = append(all, d.Round(time.Millisecond).String())
	}
	t.Logf("latencies, trial by trial: %s", strings.Join(all, " "))
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	s.ledger.WaitAll(t, time.Minute)
	s.report("pressure-latency", 0, fmt.Sprintf("trials=%d median=%s p99=%s max=%s", trials,
		p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond)))
}

// TestControlTopicCreatedTogether: monitors that start together race to
// create their control topic. On a real cluster the losers get
// TOPIC_ALREADY_EXISTS and then, for a moment, UNKNOWN_TOPIC_OR_PARTITION
// from a broker whose metadata lags; every one of them must find the
// topic, with the partitions the winner made it with.
func TestControlTopicCreatedTogether(t *testing.T) {
	c := integration.Shared(t)
	const racers = 6
	cls := make([]*kgo.Client, racers)
	for i := range cls {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		cls[i] = cl
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := range 5 {
		control := fmt.Sprintf("%s-%d.pressure", t.Name(), rand.Int64())
		sts := make([]lagmonitor.ControlTopicStatus, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i, cl := range cls {
			wg.Go(func() { sts[i], errs[i] = lagmonitor.EnsureControlTopic(ctx, cl, control, 3, 10*time.Second) })
		}
		wg.Wait()
		created := 0
		for i := range racers {
			if errs[i] != nil {
				t.Fatalf("round %d, racer %d: %v", round, i, errs[i])
			}
			if sts[i].Partitions != 3 {
				t.Errorf("round %d, racer %d: %d partitions, want 3", round, i, sts[i].Partitions)
			}
			if sts[i].Created {
				created++
			}
		}
		if created != 1 {
			t.Errorf("round %d: %d racers say they created %s, want 1", round, created, control)
		}
	}
}

// publishLog is a lagmonitor.HookPublish counting failed publishes.
type publishLog struct{ failed atomic.Int64 }

func (l *publishLog) OnPublish(_ lagmonitor.Signal, err error) {
	if err != nil {
		l.failed.Add(1)
	}
}

// TestMonitorPublishRefused: the control topic refuses the monitor's
// signals (its max.message.bytes set below a signal's size: the broker
// answers MESSAGE_TOO_LARGE); once it takes them again the monitor's
// signal appears soon, not at the next heartbeat (half an hour away).
func TestMonitorPublishRefused(t *testing.T) {
	c := integration.Shared(t)
	if !c.Real() {
		t.Skip("kfake does not enforce a topic's max.message.bytes")
	}
	s := newPressureScenario(t, c, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alter := func(op kadm.IncrementalOp, value *string) {
		t.Helper()
		rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: op, Name: "max.message.bytes", Value: value}}, s.control)
		if err == nil {
			_, err = rs.On(s.control, nil)
		}
		if err != nil {
			t.Fatalf("altering %s's max.message.bytes: %v", s.control, err)
		}
	}
	alter(kadm.SetConfig, kadm.StringPtr("16"))
	pubs := &publishLog{}
	var handled atomic.Int64
	s.member(pressureThresholds, &handled, func(cfg *lagmonitor.Config) {
		cfg.Heartbeat, cfg.TTL, cfg.Hooks = 30*time.Minute, time.Hour, []lagmonitor.Hook{pubs}
	})
	s.produceValues("a", "b")
	testkit.Eventually(t, time.Minute, "the monitor to report a refused publish", func() bool { return pubs.failed.Load() > 0 })
	alter(kadm.DeleteConfig, nil)
	r, err := lagmonitor.NewReader(c.Brokers, s.control, []string{s.topic}, lagmonitor.ReadLookback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, "the monitor's signal on the control topic once it takes writes again", func() bool {
		return len(r.Signals(s.topic, time.Now())) == 1
	})
	t.Logf("%d publishes refused before the control topic took them again", pubs.failed.Load())
}
