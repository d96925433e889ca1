package producer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

func TestMain(m *testing.M) {
	if testkit.ServeChildCluster() {
		return
	}
	goleak.VerifyTestMain(m)
}

const ctl = "floodgate.pressure"

func testCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// env is a kfake cluster with the topics "orders" and "audit" and a
// control topic, and a client that publishes signals on it.
type env struct {
	c       *kfake.Cluster
	brokers []string
	pubCl   *kgo.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c, brokers := testkit.Cluster(t, 3, "orders", "audit")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner(ctl, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if _, err := lagmonitor.EnsureControlTopic(testCtx(t), cl, ctl, 4, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return &env{c: c, brokers: brokers, pubCl: cl}
}

func (e *env) publisher(t *testing.T, instance string, opts ...lagmonitor.PublisherOpt) *lagmonitor.Publisher {
	t.Helper()
	p, err := lagmonitor.NewPublisher(e.pubCl, ctl, instance, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// signal returns a signal of group billing on orders. Its TTL is longer
// than any test: it leaves only by a newer signal or a tombstone.
func signal(level lagmonitor.Level, suggested float64) lagmonitor.Signal {
	return lagmonitor.Signal{Topic: "orders", Group: "billing", Level: level, SuggestedRate: suggested,
		DrainRate: 100, OffsetLag: 5000, TimeLag: 40 * time.Second, Reason: "test: " + level.String(), TTL: 10 * time.Minute}
}

func publish(t *testing.T, p *lagmonitor.Publisher, s lagmonitor.Signal) lagmonitor.Signal {
	t.Helper()
	s, err := p.Publish(testCtx(t), s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start builds a producer on brokers following orders, starts it, and
// closes it when the test ends.
func start(t *testing.T, brokers []string, opts ...Opt) *Producer {
	t.Helper()
	p := build1(t, brokers, opts...)
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return p
}

func build1(t *testing.T, brokers []string, opts ...Opt) *Producer {
	t.Helper()
	p, err := New(append([]Opt{Brokers(brokers...), ControlTopic(ctl), Topics("orders"),
		KgoOpts(kgo.ProducerLinger(0))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func rec(class priority.Class) *kgo.Record {
	r := &kgo.Record{Topic: "orders", Value: []byte("v")}
	if class != "" {
		r.Headers = []kgo.RecordHeader{{Key: priority.Header, Value: []byte(class)}}
	}
	return r
}

// topicStats returns p's stats of orders.
func topicStats(p *Producer) TopicStats { return p.Stats().Topics[0] }

func waitLevel(t *testing.T, p *Producer, want lagmonitor.Level) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, fmt.Sprintf("the producer to see level %s on orders", want), func() bool {
		return topicStats(p).Level == want
	})
}

// produce produces r with Produce and returns its error, failing the
// test if the promise is not called within 30s.
func produce(t *testing.T, p *Producer, ctx context.Context, r *kgo.Record) error {
	t.Helper()
	done := make(chan error, 1)
	p.Produce(ctx, r, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the promise was not called within 30s")
		return nil
	}
}

// decisions records the decisions a producer reports.
type decisions struct {
	mu sync.Mutex
	ds []Decision
}

func (h *decisions) OnDecision(d Decision) {
	h.mu.Lock()
	h.ds = append(h.ds, d)
	h.mu.Unlock()
}

func (h *decisions) all() []Decision {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ds)
}

var _ HookDecision = (*decisions)(nil)

func TestProduceWithoutPressure(t *testing.T) {
	e := newEnv(t)
	p := build1(t, e.brokers)
	if err := p.ProduceSync(testCtx(t), rec(priority.Bulk)).FirstErr(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("before Start: %v, want ErrNotStarted", err)
	}
	if err := p.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(testCtx(t)); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("a second Start: %v", err)
	}
	if st := p.Stats(); !st.Started || !st.CaughtUp || st.StartError != nil {
		t.Fatalf("after Start: started %v caught up %v error %v", st.Started, st.CaughtUp, st.StartError)
	}
	for _, c := range []priority.Class{priority.Critical, priority.Normal, priority.Bulk, ""} {
		if err := produce(t, p, testCtx(t), rec(c)); err != nil {
			t.Fatalf("class %q without pressure: %v", c, err)
		}
	}
	res := p.ProduceSync(testCtx(t), rec(priority.Bulk), &kgo.Record{Topic: "audit", Value: []byte("x")})
	if err := res.FirstErr(); err != nil || len(res) != 2 {
		t.Fatalf("ProduceSync: %v (%d results)", err, len(res))
	}
	st := p.Stats()
	if st.Admitted != 5 || st.Unfollowed != 1 || st.Throttled+st.Shed+st.FailedFast+st.Delayed != 0 {
		t.Fatalf("stats: %+v", st.Counts)
	}
	testkit.ReadTopic(t, e.brokers, "orders", 5, 30*time.Second)

	p.Close()
	p.Close()
	if err := produce(t, p, testCtx(t), rec(priority.Normal)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
	if err := p.Start(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
}

// TestDecisionsByLevel drives a producer through the levels with
// signals on the control topic and checks each class's fate, the errors
// and what the decisions say.
func TestDecisionsByLevel(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	hook := new(decisions)
	p := start(t, e.brokers, WithHooks(hook), MaxWait(0), Ramp(0), Measure(time.Hour, time.Second))

	// critical, with a generous rate: critical admitted, normal fails
	// fast, bulk shed.
	s := publish(t, pub, signal(lagmonitor.LevelCritical, 1e6))
	waitLevel(t, p, lagmonitor.LevelCritical)
	if err := produce(t, p, testCtx(t), rec(priority.Critical)); err != nil {
		t.Fatalf("critical at critical: %v", err)
	}
	err := produce(t, p, testCtx(t), rec(priority.Normal))
	var re *RefusedError
	if !errors.Is(err, ErrOverloaded) || !errors.Is(err, ErrRefused) || !errors.As(err, &re) {
		t.Fatalf("normal at critical: %v, want ErrOverloaded", err)
	}
	d := re.Decision
	if d.Topic != "orders" || d.Class != priority.Normal || d.Level != lagmonitor.LevelCritical || d.Action != FailFast ||
		d.Outcome != OutcomeFailedFast || d.Instance != s.Instance || d.Seq != s.Seq || d.Group != "billing" || d.SignalReason != s.Reason {
		t.Fatalf("decision %+v does not name the signal %s seq %d", d, s.Instance, s.Seq)
	}
	if re.RetryAfter != DefaultRetryAfter || re.RetryAfterSeconds() != 5 || re.StatusCode() != 503 {
		t.Fatalf("retry after %v (%ds), status %d", re.RetryAfter, re.RetryAfterSeconds(), re.StatusCode())
	}
	for _, want := range []string{"orders", "normal", "critical", "fails fast", s.Instance} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error %q does not say %q", err, want)
		}
	}
	res := p.ProduceSync(testCtx(t), rec(priority.Bulk))
	if err := res.FirstErr(); !errors.Is(err, ErrShed) || !errors.As(err, &re) || re.StatusCode() != 503 {
		t.Fatalf("bulk at critical: %v, want ErrShed", err)
	}

	// high: critical and normal (rate 1e6) admitted, bulk shed.
	publish(t, pub, signal(lagmonitor.LevelHigh, 1e6))
	waitLevel(t, p, lagmonitor.LevelHigh)
	for _, c := range []priority.Class{priority.Critical, priority.Normal} {
		if err := produce(t, p, testCtx(t), rec(c)); err != nil {
			t.Fatalf("%s at high: %v", c, err)
		}
	}
	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); !errors.Is(err, ErrShed) {
		t.Fatalf("bulk at high: %v", err)
	}

	// high with a rate of one record per 1000s: normal has its burst
	// (one record), then is throttled at once (MaxWait 0) with the
	// token's time as its retry hint.
	publish(t, pub, signal(lagmonitor.LevelHigh, 0.001))
	testkit.Eventually(t, 15*time.Second, "the suggested rate 0.001 to reach the producer", func() bool {
		return topicStats(p).Pressure.Rate == 0.001
	})
	if err := produce(t, p, testCtx(t), rec(priority.Normal)); err != nil {
		t.Fatalf("normal's first record at high: %v", err)
	}
	err = produce(t, p, testCtx(t), rec(priority.Normal))
	if !errors.Is(err, ErrThrottled) || !errors.As(err, &re) || re.StatusCode() != 429 {
		t.Fatalf("normal's second record at high: %v, want ErrThrottled", err)
	}
	if re.RetryAfter < 100*time.Second || re.Decision.Rate != 0.001 || re.Decision.Action != Limit {
		t.Fatalf("throttled: retry after %v, rate %v; want the next token's time, past 100s, at 0.001/s", re.RetryAfter, re.Decision.Rate)
	}
	// Critical is admitted at high: its demand is served first.
	if err := produce(t, p, testCtx(t), rec(priority.Critical)); err != nil {
		t.Fatalf("critical at high: %v", err)
	}

	// elevated: only bulk limited.
	publish(t, pub, signal(lagmonitor.LevelElevated, 1e6))
	waitLevel(t, p, lagmonitor.LevelElevated)
	for _, c := range []priority.Class{priority.Critical, priority.Normal, priority.Bulk} {
		if err := produce(t, p, testCtx(t), rec(c)); err != nil {
			t.Fatalf("%s at elevated: %v", c, err)
		}
	}

	// ok: all admitted.
	publish(t, pub, signal(lagmonitor.LevelOK, 0))
	waitLevel(t, p, lagmonitor.LevelOK)
	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); err != nil {
		t.Fatalf("bulk at ok: %v", err)
	}

	st := p.Stats()
	if st.FailedFast != 1 || st.Shed != 2 || st.Throttled != 1 {
		t.Fatalf("counts: %+v", st.Counts)
	}
	if cs := st.Topics[0].Classes; cs[rBulk].Shed != 2 || cs[rNormal].FailedFast != 1 || cs[rNormal].Throttled != 1 {
		t.Fatalf("class counts: %+v", cs)
	}
	// Every refusal reached the hook, with its outcome.
	var outcomes []string
	for _, d := range hook.all() {
		outcomes = append(outcomes, d.Outcome.String())
	}
	if want := []string{"failed-fast", "shed", "shed", "throttled"}; !slices.Equal(outcomes, want) {
		t.Fatalf("hook saw %v, want %v", outcomes, want)
	}
}

// TestRecordClass: the header wins, then the context, then the default
// class; a class the order does not list counts as the least important.
func TestRecordClass(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	p := start(t, e.brokers, MaxWait(0), DefaultClass(priority.Bulk))
	publish(t, pub, signal(lagmonitor.LevelCritical, 1e6))
	waitLevel(t, p, lagmonitor.LevelCritical)

	ctxCritical := WithClass(testCtx(t), priority.Critical)
	if c, ok := ClassFrom(ctxCritical); !ok || c != priority.Critical {
		t.Fatalf("ClassFrom = %q %v", c, ok)
	}
	cases := []struct {
		name string
		ctx  context.Context
		r    *kgo.Record
		want error // nil: admitted
	}{
		{"header critical", testCtx(t), rec(priority.Critical), nil},
		{"header bulk, context critical", ctxCritical, rec(priority.Bulk), ErrShed},
		{"header critical, spaces", testCtx(t), rec(" critical "), nil},
		{"no header, context critical", ctxCritical, rec(""), nil},
		{"no header, no context: the default, bulk", testCtx(t), rec(""), ErrShed},
		{"an unknown class: the least important", testCtx(t), rec("vip"), ErrShed},
		{"no header, an unknown class in the context", WithClass(testCtx(t), "vip"), rec(""), ErrShed},
	}
	for _, c := range cases {
		err := produce(t, p, c.ctx, c.r)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if st := p.Stats(); st.UnknownClass != 2 {
		t.Errorf("unknown classes counted %d, want 2", st.UnknownClass)
	}
}

// TestWaitReevaluatedOnLevelChange: a record waiting for its class's
// rate is admitted at once when the level drops (to ok with no ramp, to
// elevated where its class is admitted, or when the signal goes away),
// and one that gets no rate fails with ErrThrottled when the cap passes.
func TestWaitReevaluatedOnLevelChange(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	hook := new(decisions)
	// The cap (an hour) is far beyond the test's bounded waits, and the
	// next token (1000s away) too: only a change can admit a waiting
	// record in time.
	p := start(t, e.brokers, WithHooks(hook), MaxWait(time.Hour), Ramp(0), Measure(time.Hour, time.Second))

	// waitAdmitted starts a record of normal that must wait (its burst
	// spent), then applies change and checks the record is admitted.
	waitAdmitted := func(what string, change func()) {
		t.Helper()
		publish(t, pub, signal(lagmonitor.LevelHigh, 0.001)) // a token every 1000s
		waitLevel(t, p, lagmonitor.LevelHigh)
		testkit.Eventually(t, 15*time.Second, "normal to be limited", func() bool {
			return topicStats(p).Classes[rNormal].Action == Limit
		})
		if err := produce(t, p, testCtx(t), rec(priority.Normal)); err != nil { // the burst
			t.Fatalf("%s: the first record: %v", what, err)
		}
		done := make(chan error, 1)
		// Produce waits; its context has no deadline (testCtx has one).
		go p.Produce(context.Background(), rec(priority.Normal), func(_ *kgo.Record, err error) { done <- err })
		testkit.Eventually(t, 15*time.Second, what+": a record waiting", func() bool {
			select {
			case err := <-done:
				t.Fatalf("%s: the record did not wait: %v", what, err)
			default:
			}
			return p.Stats().Waiting == 1
		})
		change()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: the waiting record: %v, want admitted", what, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the waiting record was not admitted within 30s of the change (its cap is an hour)", what)
		}
	}
	waitAdmitted("level to ok", func() { publish(t, pub, signal(lagmonitor.LevelOK, 0)) })
	waitAdmitted("level to elevated", func() { publish(t, pub, signal(lagmonitor.LevelElevated, 0)) })
	waitAdmitted("the signal removed", func() {
		if err := pub.Tombstone(testCtx(t), "orders", pub.Instance(), "billing"); err != nil {
			t.Fatal(err)
		}
	})
	var delayed int
	for _, d := range hook.all() {
		if d.Outcome == OutcomeDelayed && d.Class == priority.Normal && !d.Shadow {
			delayed++
		}
	}
	if st := p.Stats(); delayed != 3 || st.Delayed != 3 || st.Waited <= 0 {
		t.Fatalf("delayed: hook %d, stats %d (waited %v); want 3", delayed, st.Delayed, st.Waited)
	}
}

// TestWaitCapThrottles: a record with no rate waits for a change until
// the cap, then fails with ErrThrottled; Produce returns then, never
// later, and the promise gets the error; a context ending first ends
// the wait with ErrThrottled wrapping the context's error.
func TestWaitCapThrottles(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	// No suggested rate and no demand measured (Measure every hour):
	// normal has no rate at high, so its records wait for a change.
	p := start(t, e.brokers, MaxWait(300*time.Millisecond), Measure(time.Hour, time.Second))
	publish(t, pub, signal(lagmonitor.LevelHigh, 0))
	waitLevel(t, p, lagmonitor.LevelHigh)

	returned := make(chan struct{})
	promised := make(chan error, 1)
	go func() {
		p.Produce(testCtx(t), rec(priority.Normal), func(_ *kgo.Record, err error) { promised <- err })
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal("Produce did not return within 30s: it must return at its 300ms cap")
	}
	var err error
	select {
	case err = <-promised:
	case <-time.After(30 * time.Second):
		t.Fatal("no promise within 30s")
	}
	var re *RefusedError
	if !errors.Is(err, ErrThrottled) || !errors.As(err, &re) {
		t.Fatalf("a record without a rate past the cap: %v, want ErrThrottled", err)
	}
	if re.Decision.Waited <= 0 || re.RetryAfter != DefaultRetryAfter || !strings.Contains(re.Decision.Reason, "no rate") {
		t.Fatalf("throttled after waiting %v, retry after %v, reason %q", re.Decision.Waited, re.RetryAfter, re.Decision.Reason)
	}

	// The context ends before the cap.
	p2 := start(t, e.brokers, MaxWait(10*time.Minute), Measure(time.Hour, time.Second))
	waitLevel(t, p2, lagmonitor.LevelHigh)
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- p2.ProduceSync(ctx, rec(priority.Normal)).FirstErr() }()
	testkit.Eventually(t, 15*time.Second, "a record waiting", func() bool { return p2.Stats().Waiting == 1 })
	cancel()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("ProduceSync did not return within 30s of its context's end")
	}
	if !errors.Is(err, ErrThrottled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("a wait ended by the context: %v, want ErrThrottled and context.Canceled", err)
	}
}

// TestAsyncProduceDoesNotBlock: Produce of a record whose next token is
// far beyond the cap returns at once and fails its promise; a refused
// record's promise runs off the caller's goroutine and after Produce
// returned, one promise at a time.
func TestAsyncProduceDoesNotBlock(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	p := start(t, e.brokers, MaxWait(time.Second), Measure(time.Hour, time.Second))
	publish(t, pub, signal(lagmonitor.LevelCritical, 0.001))
	waitLevel(t, p, lagmonitor.LevelCritical)
	testkit.Eventually(t, 15*time.Second, "critical's rate", func() bool {
		return topicStats(p).Classes[rCritical].Rate > 0
	})

	const n = 200
	var (
		wg      sync.WaitGroup
		running atomic.Int32
		overlap atomic.Bool
		errs    = make(chan error, n)
	)
	wg.Add(n)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		for range n {
			p.Produce(testCtx(t), rec(priority.Critical), func(_ *kgo.Record, err error) {
				if running.Add(1) > 1 {
					overlap.Store(true)
				}
				errs <- err
				running.Add(-1)
				wg.Done()
			})
		}
	}()
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal("200 Produce calls did not return within 30s: a refused one must not wait past its 1s cap, and these need 1000s")
	}
	wg.Wait()
	close(errs)
	admitted, throttled := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			admitted++
		case errors.Is(err, ErrThrottled):
			throttled++
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	if admitted != 1 || throttled != n-1 {
		t.Fatalf("admitted %d (want the burst, 1), throttled %d", admitted, throttled)
	}
	if overlap.Load() {
		t.Fatal("two promises ran at once")
	}
}

// TestShadowMode: shadow mode decides and counts, reports and logs, but
// produces everything; classes outside it are enforced.
func TestShadowMode(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	hook := new(decisions)
	p := start(t, e.brokers, WithHooks(hook), MaxWait(0), Measure(time.Hour, time.Second),
		Shadow(func(topic string, c priority.Class) bool { return topic == "orders" && c != priority.Normal }))
	publish(t, pub, signal(lagmonitor.LevelCritical, 0.001))
	waitLevel(t, p, lagmonitor.LevelCritical)

	for range 3 {
		if err := produce(t, p, testCtx(t), rec(priority.Bulk)); err != nil {
			t.Fatalf("bulk in shadow mode: %v", err)
		}
		if err := produce(t, p, testCtx(t), rec(priority.Critical)); err != nil {
			t.Fatalf("critical in shadow mode: %v", err)
		}
	}
	if err := produce(t, p, testCtx(t), rec(priority.Normal)); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("normal, not in shadow mode: %v, want ErrOverloaded", err)
	}
	testkit.ReadTopic(t, e.brokers, "orders", 6, 30*time.Second)

	st := p.Stats()
	// Bulk would have been shed 3 times; critical would have been
	// throttled twice (one record had the burst).
	if st.Shadow.Shed != 3 || st.Shadow.Throttled != 2 || st.Shed != 0 || st.Throttled != 0 || st.FailedFast != 1 || st.Admitted != 6 {
		t.Fatalf("stats %+v shadow %+v", st.Counts, st.Shadow)
	}
	var shadowed int
	for _, d := range hook.all() {
		if d.Shadow {
			shadowed++
			if d.Level != lagmonitor.LevelCritical || d.Instance == "" || d.Reason == "" {
				t.Errorf("a shadow decision without its level, signal or reason: %+v", d)
			}
		}
	}
	if shadowed != 5 {
		t.Fatalf("hook saw %d shadow decisions, want 5", shadowed)
	}
}

// TestStartupCatchUp: a producer started after a critical signal obeys
// it from its first record.
func TestStartupCatchUp(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	publish(t, pub, signal(lagmonitor.LevelCritical, 1e6))
	p := start(t, e.brokers)
	if st := p.Stats(); !st.CaughtUp || topicStats(p).Level != lagmonitor.LevelCritical {
		t.Fatalf("after Start: caught up %v, level %v", st.CaughtUp, topicStats(p).Level)
	}
	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); !errors.Is(err, ErrShed) {
		t.Fatalf("the first bulk record of a producer started at critical: %v, want ErrShed", err)
	}
}

// controlErrors counts the control errors a producer reports.
type controlErrors struct{ n atomic.Int32 }

func (h *controlErrors) OnControlError(error) { h.n.Add(1) }

// TestStartupBound: past the startup bound the producer admits
// everything; it obeys the signal once the reader has caught up.
func TestStartupBound(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	publish(t, pub, signal(lagmonitor.LevelCritical, 1e6))
	var block atomic.Bool
	block.Store(true)
	testkit.FailFetches(e.c, &block)

	hook := new(controlErrors)
	p := start(t, e.brokers, StartupTimeout(300*time.Millisecond), WithHooks(hook))
	st := p.Stats()
	if st.CaughtUp || !errors.Is(st.StartError, lagmonitor.ErrStartupTimeout) || hook.n.Load() == 0 {
		t.Fatalf("past the bound: caught up %v, start error %v, control errors reported %d", st.CaughtUp, st.StartError, hook.n.Load())
	}
	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); err != nil {
		t.Fatalf("bulk past the startup bound, the signal unread: %v, want admitted", err)
	}
	block.Store(false)
	waitLevel(t, p, lagmonitor.LevelCritical)
	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); !errors.Is(err, ErrShed) {
		t.Fatalf("bulk once the reader caught up: %v, want ErrShed", err)
	}
}

// TestUnreadableControlTopic: a control topic that cannot be read never
// blocks producing: missing, or every fetch failing.
func TestUnreadableControlTopic(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		_, brokers := testkit.Cluster(t, 1, "orders")
		hook := new(controlErrors)
		p := start(t, brokers, WithHooks(hook), ReaderOpts(lagmonitor.ReadMetadataInterval(50*time.Millisecond)))
		st := p.Stats()
		if st.CaughtUp || !errors.Is(st.StartError, kerr.UnknownTopicOrPartition) || st.ControlErrors == 0 || hook.n.Load() == 0 {
			t.Fatalf("without a control topic: caught up %v, start error %v, control errors %d (hook %d)",
				st.CaughtUp, st.StartError, st.ControlErrors, hook.n.Load())
		}
		for _, c := range []priority.Class{priority.Critical, priority.Normal, priority.Bulk} {
			if err := produce(t, p, testCtx(t), rec(c)); err != nil {
				t.Fatalf("%s without a control topic: %v", c, err)
			}
		}
	})
	t.Run("fetches failing", func(t *testing.T) {
		e := newEnv(t)
		pub := e.publisher(t, "billing-1")
		publish(t, pub, signal(lagmonitor.LevelCritical, 1e6))
		var block atomic.Bool
		block.Store(true)
		testkit.FailFetches(e.c, &block)
		p := start(t, e.brokers, StartupTimeout(200*time.Millisecond))
		res := p.ProduceSync(testCtx(t), rec(priority.Bulk), rec(priority.Normal), rec(priority.Critical))
		if err := res.FirstErr(); err != nil {
			t.Fatalf("with the control topic unreadable: %v", err)
		}
		block.Store(false) // let the reader end cleanly
	})
}

// TestForgedAndReplayedSignals: with a verifier, forged, unsigned and
// replayed signals are rejected and throttle nothing.
func TestForgedAndReplayedSignals(t *testing.T) {
	e := newEnv(t)
	key := []byte("0123456789abcdef-the-fleet-key")
	signer, err := lagmonitor.NewSigner("k1", key)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := lagmonitor.NewSigner("k1", []byte("0123456789abcdef-a-guessed-key"))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := lagmonitor.NewVerifier(map[string][]byte{"k1": key}, true)
	if err != nil {
		t.Fatal(err)
	}

	// A forged critical signal, an unsigned one, and a genuine one
	// replayed after the instance moved on to ok.
	publish(t, e.publisher(t, "forger-1", lagmonitor.PublishSigner(forger)), signal(lagmonitor.LevelCritical, 1e6))
	publish(t, e.publisher(t, "unsigned-1"), signal(lagmonitor.LevelCritical, 1e6))
	genuine := e.publisher(t, "billing-1", lagmonitor.PublishSigner(signer))
	publish(t, genuine, signal(lagmonitor.LevelCritical, 1e6))
	replay := readLast(t, e.brokers) // the genuine critical record, as it is on the control topic
	publish(t, genuine, signal(lagmonitor.LevelOK, 0))
	replay.Topic = ctl
	if err := e.pubCl.ProduceSync(testCtx(t), replay).FirstErr(); err != nil {
		t.Fatal(err)
	}

	rejected := new(rejections)
	p := start(t, e.brokers, SignalVerifier(verifier), WithHooks(rejected))
	if lvl := topicStats(p).Level; lvl != lagmonitor.LevelOK {
		t.Fatalf("level %v after reading forged, unsigned and replayed critical signals; want ok", lvl)
	}
	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); err != nil {
		t.Fatalf("bulk: %v, want admitted", err)
	}
	st := p.Stats()
	if st.SignalsRejected != 3 || st.Control.Unauthenticated != 2 || st.Control.Replayed != 1 {
		t.Fatalf("rejected %d (unauthenticated %d, replayed %d); want 3 (2, 1)", st.SignalsRejected, st.Control.Unauthenticated, st.Control.Replayed)
	}
	if got := rejected.reasons(); !slices.Equal(got, []string{"replayed", "unauthenticated", "unauthenticated"}) {
		t.Fatalf("hook saw %v", got)
	}
}

type rejections struct {
	mu sync.Mutex
	rs []string
}

func (h *rejections) OnSignalRejected(r lagmonitor.Rejection) {
	h.mu.Lock()
	h.rs = append(h.rs, string(r.Reason))
	h.mu.Unlock()
}

func (h *rejections) reasons() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := slices.Clone(h.rs)
	slices.Sort(out)
	return out
}

// readLast returns the last record on orders' control partition.
func readLast(t *testing.T, brokers []string) *kgo.Record {
	t.Helper()
	part := lagmonitor.PartitionFor("orders", 4)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{ctl: {part: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(testCtx(t), ctl)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(ctl, part)
	var last *kgo.Record
	testkit.Eventually(t, 15*time.Second, "the control partition read to its end", func() bool {
		fs := cl.PollRecords(testCtx(t), 100)
		fs.EachRecord(func(r *kgo.Record) { last = r })
		return last != nil && last.Offset == end.Offset-1
	})
	return &kgo.Record{Key: last.Key, Value: last.Value, Headers: slices.Clone(last.Headers)}
}

// TestWaitersKeepTheirPlace: records waiting for their class's tokens
// are decided again at every change of the topic's state (here new
// signals that change nothing they depend on; during a recovery ramp,
// every step of another class's rate), and keep their reservations
// through it: each is admitted when its token frees, within the cap,
// rather than sent to the back of the queue, where the time it already
// waited makes it miss the cap, and where the tokens of the reservations
// given up are lost.
func TestWaitersKeepTheirPlace(t *testing.T) {
	e := newEnv(t)
	pub := e.publisher(t, "billing-1")
	// Normal is limited to 5/s (a burst of one), the cap 2s: five
	// records wait 0.2s to 1s each.
	p := start(t, e.brokers, MaxWait(2*time.Second), Measure(time.Hour, time.Second))
	publish(t, pub, signal(lagmonitor.LevelHigh, 5))
	waitLevel(t, p, lagmonitor.LevelHigh)
	testkit.Eventually(t, 15*time.Second, "normal limited to 5/s", func() bool { return topicStats(p).Classes[rNormal].Rate == 5 })
	if err := produce(t, p, testCtx(t), rec(priority.Normal)); err != nil { // the burst
		t.Fatal(err)
	}
	const waiters = 5
	errs := make(chan error, waiters)
	for range waiters {
		go p.Produce(context.Background(), rec(priority.Normal), func(_ *kgo.Record, err error) { errs <- err })
	}
	testkit.Eventually(t, 15*time.Second, "five records waiting", func() bool { return p.Stats().Waiting == waiters })
	// Signals that change nothing the waiters depend on, each waking
	// them.
	for range 10 {
		publish(t, pub, signal(lagmonitor.LevelHigh, 5))
	}
	for range waiters {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("a waiting record: %v, want admitted when its token frees (within its 2s cap)", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a waiting record got no answer within 30s")
		}
	}
}
