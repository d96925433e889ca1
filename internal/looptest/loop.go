package looptest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

// LoopThresholds are the levels of [Loop] and [Latency], each reachable
// on purpose: elevated at 300ms of time lag (a held record's age), high
// at 150 records of offset lag, critical at 1500; each left at half its
// mark after a dwell of 300ms.
var LoopThresholds = lagmonitor.Thresholds{
	Elevated:     lagmonitor.Mark{TimeLag: 300 * time.Millisecond},
	High:         lagmonitor.Mark{OffsetLag: 150},
	Critical:     lagmonitor.Mark{OffsetLag: 1500},
	ExitFraction: 0.5,
	Dwell:        300 * time.Millisecond,
}

// LoopRate is the monitor's rate configuration in [Loop]: a backlog to
// clear within a second, so that under pressure the suggested rate soon
// falls to its floor (a tenth of the capacity) however the capacity was
// estimated.
var LoopRate = lagmonitor.RateConfig{Recovery: time.Second, Floor: 0.1, Ceiling: 0.9}

// Levels records the level changes a producer reports (a producer hook).
type Levels struct {
	mu sync.Mutex
	cs []producer.LevelChange
}

// OnLevelChange implements producer.HookLevelChange.
func (l *Levels) OnLevelChange(c producer.LevelChange) {
	l.mu.Lock()
	l.cs = append(l.cs, c)
	l.mu.Unlock()
}

// All returns the changes so far.
func (l *Levels) All() []producer.LevelChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.cs)
}

// Path returns the levels gone through, "ok→elevated→high...".
func (l *Levels) Path() string {
	path := []string{lagmonitor.LevelOK.String()}
	for _, c := range l.All() {
		path = append(path, c.To.String())
	}
	return strings.Join(path, "→")
}

var _ producer.HookLevelChange = (*Levels)(nil)

// NewProducer returns a started pressure-aware producer following env's
// topic: with its own client (producer.New), or, with wrap, around a
// client of the test's (producer.Wrap). It is closed when the test ends.
func NewProducer(t testing.TB, env *Env, wrap bool, opts ...producer.Opt) *producer.Producer {
	t.Helper()
	base := []producer.Opt{producer.ControlTopic(env.Control), producer.Topics(env.Topic)}
	var (
		p   *producer.Producer
		err error
	)
	if wrap {
		cl, cerr := kgo.NewClient(kgo.SeedBrokers(env.Brokers...))
		if cerr != nil {
			t.Fatal(cerr)
		}
		t.Cleanup(cl.Close)
		p, err = producer.Wrap(cl, append(base, opts...)...)
	} else {
		p, err = producer.New(append(append(base, producer.Brokers(env.Brokers...)), opts...)...)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); !st.CaughtUp {
		t.Fatalf("the producer did not read the control topic to its end: %v", st.StartError)
	}
	return p
}

// TopicStats returns p's state of its first followed topic.
func TopicStats(p *producer.Producer) producer.TopicStats { return p.Stats().Topics[0] }

// WaitLevel waits until every producer's level on its topic is want.
func WaitLevel(t testing.TB, timeout time.Duration, want lagmonitor.Level, ps ...*producer.Producer) {
	t.Helper()
	testkit.Eventually(t, timeout, fmt.Sprintf("the producers to see level %s", want), func() bool {
		for _, p := range ps {
			if TopicStats(p).Level != want {
				return false
			}
		}
		return true
	})
}

// plainClient returns a client of the test's that obeys no pressure.
func plainClient(t testing.TB, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// producePlain produces n records through cl, waits for them, and
// expects them in the ledger. Each has a key of its own, so that they
// spread over the partitions evenly (unkeyed, kgo's sticky partitioner
// would put them all in one, which would then lag alone: a hot
// partition, not the topic-wide backlog the loop wants).
func producePlain(t testing.TB, cl *kgo.Client, ledger *testkit.Ledger, topic string, n int) {
	t.Helper()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "plain-%d", i), Value: fmt.Appendf(nil, "plain %d", i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		ledger.Expect(r.Topic, r.Partition, r.Offset)
	}
}

// The ranks of the default order's classes.
const (
	rCritical = iota
	rNormal
	rBulk
)

// checkRefusals checks that each refusal matches ErrRefused and names
// the topic, the class and the monitor's signal, carries a retry hint and
// the status its kind answers with, and is one that ok expects.
func checkRefusals(t testing.TB, what string, res []*producer.RefusedError, topic, instance string, class priority.Class, ok func(*producer.RefusedError) bool) {
	t.Helper()
	for _, re := range res {
		d := re.Decision
		status := 503
		if errors.Is(re, producer.ErrThrottled) {
			status = 429
		}
		switch {
		case !errors.Is(re, producer.ErrRefused):
			t.Errorf("%s: %v does not match ErrRefused", what, re)
		case re.RetryAfter <= 0 || re.RetryAfterSeconds() < 1:
			t.Errorf("%s: %v has no retry hint", what, re)
		case re.StatusCode() != status:
			t.Errorf("%s: %v answers %d, want %d", what, re, re.StatusCode(), status)
		case d.Topic != topic || d.Class != class:
			t.Errorf("%s: %v is a decision of %s/%s, want %s/%s", what, re, d.Topic, d.Class, topic, class)
		case d.Instance != instance:
			t.Errorf("%s: %v names the signal of %q, want the monitor's %q", what, re, d.Instance, instance)
		case !ok(re):
			t.Errorf("%s: %v: not expected here (level %s, recovering %v)", what, re, d.Level, d.Recovering)
		}
	}
}

// is reports whether re is of kind at level.
func is(re *producer.RefusedError, kind error, level lagmonitor.Level) bool {
	return errors.Is(re, kind) && re.Decision.Level == level
}

// Loop runs the pressure loop end to end. A consumer is slowed on
// purpose (held back: it handles nothing) while two pressure-aware
// producers offer normal and bulk records (100/s each, one producer,
// class by header) and critical records (10/s, another producer built
// by Wrap, class by context). As the consumer's lag rises its level goes
// to elevated and high; a producer that obeys no pressure then adds 1500
// records, and it goes to critical; released, the consumer catches up
// and the level returns to ok. It checks, with bounded waits:
//
//   - at ok, everything is admitted;
//   - at high, normal is limited to a rate (throttled: ErrThrottled, 429),
//     bulk is shed (ErrShed, 503), critical is admitted, every record;
//   - at critical, normal fails fast (ErrOverloaded, 503), bulk is shed,
//     critical is limited but still admitted, and refused only as
//     throttled (the default policy's critical row);
//   - every refusal carries a retry hint and names the monitor's signal;
//   - back at ok, bulk is admitted again as the limits ramp up (Ramp 1s),
//     then everything is admitted;
//   - every record acknowledged was handled.
func Loop(t *testing.T, env *Env) {
	ledger := env.ledger()
	c := StartConsumer(t, env, ConsumerConfig{Thresholds: LoopThresholds, Rate: LoopRate})
	instance := c.Mon.Instance()
	var lvA, lvB Levels
	popts := []producer.Opt{producer.Ramp(time.Second), producer.MaxWait(100 * time.Millisecond), producer.Measure(200*time.Millisecond, time.Second)}
	pA := NewProducer(t, env, false, append(popts, producer.WithHooks(&lvA))...)
	pB := NewProducer(t, env, true, append(popts, producer.WithHooks(&lvB))...)
	ps := []*producer.Producer{pA, pB}
	normal := StartLoad(t, pA, ledger, LoadConfig{Topic: env.Topic, Class: priority.Normal, PerSec: 100})
	bulk := StartLoad(t, pA, ledger, LoadConfig{Topic: env.Topic, Class: priority.Bulk, PerSec: 100})
	critical := StartLoad(t, pB, ledger, LoadConfig{Topic: env.Topic, Class: priority.Critical, PerSec: 10, ByContext: true})
	loads := []*Load{critical, normal, bulk} // by rank
	marks := func() []int { return []int{critical.Mark(), normal.Mark(), bulk.Mark()} }
	since := func(m []int) []Tally { return []Tally{critical.Since(m[0]), normal.Since(m[1]), bulk.Since(m[2])} }
	start := time.Now()
	phase := func(name string, m []int) {
		tl := since(m)
		t.Logf("%6.1fs %-9s critical: %v; normal: %v; bulk: %v", time.Since(start).Seconds(), name, tl[rCritical], tl[rNormal], tl[rBulk])
	}

	// ok: the consumer keeps up.
	m0 := marks()
	testkit.Eventually(t, 30*time.Second, "each class to have records admitted at ok", func() bool {
		tl := since(m0)
		return tl[rCritical].Admitted >= 3 && tl[rNormal].Admitted >= 20 && tl[rBulk].Admitted >= 20
	})
	for i, tl := range since(m0) {
		if tl.Refused() > 0 || tl.Failed > 0 {
			t.Fatalf("class %s at ok, the consumer keeping up: %v", loads[i].cfg.Class, tl)
		}
	}
	phase("ok", m0)

	// Held back: elevated (time lag), then high (offset lag).
	c.Hold()
	WaitLevel(t, 30*time.Second, lagmonitor.LevelHigh, ps...)
	m1 := marks()
	testkit.Eventually(t, 30*time.Second, "at high: normal throttled and admitted, bulk shed, critical admitted", func() bool {
		tl := since(m1)
		return tl[rNormal].Throttled >= 1 && tl[rNormal].Admitted >= 1 && tl[rBulk].Shed >= 3 && tl[rCritical].Admitted >= 5
	})
	ts := TopicStats(pA)
	if ts.Level != lagmonitor.LevelHigh {
		t.Fatalf("the level moved on from high (%s) before the checks at high: offset lag %d", ts.Level, c.Lag().OffsetLag)
	}
	if a := [3]producer.Action{ts.Classes[rCritical].Action, ts.Classes[rNormal].Action, ts.Classes[rBulk].Action}; a != [3]producer.Action{producer.Admit, producer.Limit, producer.Shed} {
		t.Errorf("actions at high (critical, normal, bulk): %v, want admit, limit, shed", a)
	}
	// A record handed to Produce once a producer saw high is decided at
	// high (or later): no bulk record is admitted then. (Records handed
	// over before may finish after the mark; the margin covers the
	// time between the change's timestamp and its effect.)
	sawHigh := changeTo(lvA.All(), lagmonitor.LevelHigh).Add(50 * time.Millisecond)
	for _, o := range bulk.Outcomes(m1[rBulk]) {
		if o.Err == nil && o.At.After(sawHigh) {
			t.Errorf("a bulk record handed to Produce %v after the producer saw high was admitted", o.At.Sub(sawHigh))
		}
	}
	tl := since(m1)
	checkRefusals(t, "normal at high", tl[rNormal].Refusals, env.Topic, instance, priority.Normal, func(re *producer.RefusedError) bool {
		return is(re, producer.ErrThrottled, lagmonitor.LevelHigh)
	})
	checkRefusals(t, "bulk at high", tl[rBulk].Refusals, env.Topic, instance, priority.Bulk, func(re *producer.RefusedError) bool {
		// or throttled at elevated, a straggler whose wait ended then
		return is(re, producer.ErrShed, lagmonitor.LevelHigh) || is(re, producer.ErrThrottled, lagmonitor.LevelElevated)
	})
	if tc := critical.Since(0); tc.Refused()+tc.Failed > 0 {
		t.Fatalf("critical refused below the critical level: %v", tc)
	}
	phase("high", m1)

	// An unaware producer adds a backlog: critical.
	producePlain(t, plainClient(t, env.Brokers), ledger, env.Topic, 1500)
	WaitLevel(t, 30*time.Second, lagmonitor.LevelCritical, ps...)
	m2 := marks()
	// Critical's rate is small here: its producer's share of the
	// suggested rate follows its traffic, a small part of the topic's
	// with the unaware burst (MinShare, 0.05), and the suggested rate is
	// at its floor (a tenth of the capacity). A record handed over once
	// the producer saw critical is decided at critical: the one that has
	// the limiter's first token, or one after.
	sawCritical := changeTo(lvB.All(), lagmonitor.LevelCritical)
	testkit.Eventually(t, time.Minute, "at critical: normal failing fast, bulk shed, critical still admitted", func() bool {
		tl := since(m2)
		if tl[rNormal].Overloaded == 0 || tl[rBulk].Shed == 0 {
			return false
		}
		for _, o := range critical.Outcomes(m2[rCritical]) {
			if o.Err == nil && o.At.After(sawCritical) {
				return true // handed over once its producer saw critical
			}
		}
		return false
	})
	tl = since(m2)
	if ts := TopicStats(pB); ts.Level == lagmonitor.LevelCritical && ts.Classes[rCritical].Action != producer.Limit {
		t.Errorf("critical at critical: %v, want limit", ts.Classes[rCritical].Action)
	}
	checkRefusals(t, "normal at critical", tl[rNormal].Refusals, env.Topic, instance, priority.Normal, func(re *producer.RefusedError) bool {
		// or throttled at high, a straggler
		return is(re, producer.ErrOverloaded, lagmonitor.LevelCritical) || is(re, producer.ErrThrottled, lagmonitor.LevelHigh)
	})
	checkRefusals(t, "bulk at critical", tl[rBulk].Refusals, env.Topic, instance, priority.Bulk, func(re *producer.RefusedError) bool {
		return is(re, producer.ErrShed, lagmonitor.LevelCritical) || is(re, producer.ErrShed, lagmonitor.LevelHigh)
	})
	phase("critical", m2)

	// Released: the consumer catches up, the level returns to ok.
	c.Release()
	WaitLevel(t, time.Minute, lagmonitor.LevelOK, ps...)
	m3 := marks()
	testkit.Eventually(t, 30*time.Second, "bulk to be admitted again once back at ok", func() bool {
		return bulk.Since(m3[rBulk]).Admitted >= 1
	})
	testkit.Eventually(t, 30*time.Second, "the recovery ramp (1s) to end", func() bool {
		return !TopicStats(pA).Recovering && !TopicStats(pB).Recovering
	})
	phase("recovery", m3)
	m4 := marks()
	testkit.Eventually(t, 30*time.Second, "every class admitted after the ramp", func() bool {
		tl := since(m4)
		return tl[rCritical].Admitted >= 3 && tl[rNormal].Admitted >= 20 && tl[rBulk].Admitted >= 20
	})
	for _, l := range loads {
		l.Stop()
	}
	for i, tl := range since(m4) {
		if tl.Refused()+tl.Failed > 0 {
			t.Errorf("class %s after the ramp: %v, want every record admitted", loads[i].cfg.Class, tl)
		}
	}
	phase("after", m4)

	// Critical over the whole run: refused only while the level was
	// critical or the limits ramped up from it, only as throttled.
	tc := critical.Since(0)
	checkRefusals(t, "critical", tc.Refusals, env.Topic, instance, priority.Critical, func(re *producer.RefusedError) bool {
		return errors.Is(re, producer.ErrThrottled) && (re.Decision.Level == lagmonitor.LevelCritical || re.Decision.Recovering)
	})
	if tc.Shed+tc.Overloaded+tc.Failed > 0 {
		t.Errorf("critical: %v; want never shed nor failed", tc)
	}
	ledger.WaitAll(t, time.Minute)
	for i, p := range ps {
		st := p.Stats()
		t.Logf("producer %d: levels %s; admitted %d, delayed %d, throttled %d, shed %d, failed fast %d",
			i, []*Levels{&lvA, &lvB}[i].Path(), st.Admitted, st.Delayed, st.Throttled, st.Shed, st.FailedFast)
	}
}

// changeTo returns when the first change to level was reported, or the
// far future.
func changeTo(cs []producer.LevelChange, level lagmonitor.Level) time.Time {
	for _, c := range cs {
		if c.To == level {
			return c.Time
		}
	}
	return time.Now().Add(time.Hour)
}
