package lagmonitor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/partition"
	"github.com/floodgate-kafka/floodgate/priority"
)

// levelLog is a HookLevelChange recording the events.
type levelLog struct {
	mu     sync.Mutex
	events []LevelEvent
}

func (l *levelLog) OnLevelChange(e LevelEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *levelLog) has(from, to Level) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.From == from && e.To == to {
			return true
		}
	}
	return false
}

// testThresholds enter elevated at 300ms of time lag and leave it after a
// 300ms dwell; the higher levels are out of reach.
func testThresholds() Thresholds {
	return Thresholds{Elevated: Mark{TimeLag: 300 * time.Millisecond}, High: Mark{TimeLag: time.Hour},
		Critical: Mark{TimeLag: 2 * time.Hour}, ExitFraction: 0.5, Dwell: 300 * time.Millisecond}
}

// gatedRuntime runs a runtime whose handler waits while the gate is shut.
func gatedRuntime(t *testing.T, brokers []string, group string, gate *atomic.Pointer[chan struct{}], handled *atomic.Int64) *consumer.Runtime {
	t.Helper()
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if g := gate.Load(); g != nil {
			select {
			case <-*g:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		handled.Add(1)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group(group), consumer.Topics("orders"),
		consumer.KgoOpts(append(ClientOpts("ctl"), kgo.SessionTimeout(2*time.Second), kgo.HeartbeatInterval(200*time.Millisecond))...))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, rt)
	return rt
}

// runMonitor runs m until the test ends (or the returned stop).
func runMonitor(t *testing.T, m *Monitor) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Monitor.Run: %v", err)
				}
			case <-time.After(time.Minute):
				t.Errorf("Monitor.Run did not return within a minute")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testReader(t *testing.T, brokers []string) *Reader {
	t.Helper()
	r, err := NewReader(brokers, "ctl", []string{"orders"}, ReadLookback(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func monitorConfig(group string, hooks ...Hook) Config {
	return Config{Group: group, ControlTopic: "ctl", Thresholds: testThresholds(), EvalInterval: 20 * time.Millisecond,
		Heartbeat: 200 * time.Millisecond, TTL: time.Second, RefreshInterval: 100 * time.Millisecond, Hooks: hooks}
}

// TestMonitorRaisesAndLowersLevel: a consumer held back raises its topic's
// level, and the signal appears on the control topic; once it catches up
// the level returns to ok after the dwell; when the monitor stops, its
// tombstone lifts the signal at once.
func TestMonitorRaisesAndLowersLevel(t *testing.T) {
	c, brokers := testkit.Cluster(t, 2, "orders")
	if err := c.CreateTopic("ctl", 4, nil); err != nil {
		t.Fatal(err)
	}
	var gate atomic.Pointer[chan struct{}]
	shut := make(chan struct{})
	gate.Store(&shut)
	var handled atomic.Int64
	rt := gatedRuntime(t, brokers, "g", &gate, &handled)
	levels := &levelLog{}
	m, err := New(rt, monitorConfig("g", levels))
	if err != nil {
		t.Fatal(err)
	}
	stopMonitor := runMonitor(t, m)
	r := testReader(t, brokers)
	testkit.Produce(t, brokers, "orders", 100, 10, 10)

	testkit.Eventually(t, time.Minute, "the control topic to say orders is elevated", func() bool {
		return r.Pressure("orders", time.Now()).Level == LevelElevated
	})
	sigs := r.Signals("orders", time.Now())
	if len(sigs) != 1 || sigs[0].Group != "g" || sigs[0].Instance != m.Instance() || sigs[0].OffsetLag <= 0 || sigs[0].TimeLag < 300*time.Millisecond {
		t.Fatalf("signals %+v: want one of group g from %s with the lag", sigs, m.Instance())
	}
	if !levels.has(LevelOK, LevelElevated) {
		t.Fatal("no ok → elevated event reached the hook")
	}
	lag := m.Lag()
	if len(lag) != 1 || lag[0].Level != LevelElevated || lag[0].OffsetLag <= 0 || len(lag[0].Partitions) != 2 {
		t.Fatalf("Lag() = %+v", lag)
	}

	close(shut)
	testkit.Eventually(t, time.Minute, "every record handled", func() bool { return handled.Load() == 100 })
	testkit.Eventually(t, time.Minute, "the control topic to say orders is ok again", func() bool {
		p := r.Pressure("orders", time.Now())
		return p.Level == LevelOK && len(r.Signals("orders", time.Now())) == 1
	})
	if !levels.has(LevelElevated, LevelOK) {
		t.Fatal("no elevated → ok event reached the hook")
	}
	stopMonitor()
	testkit.Eventually(t, 30*time.Second, "the tombstone to lift the instance's signal", func() bool {
		return len(r.Signals("orders", time.Now())) == 0 && r.Stats().Tombstones > 0
	})
}

// TestMonitorInstancesAggregate: two instances of one group, each with its
// own partition of the topic, publish apart; the reader aggregates them.
func TestMonitorInstancesAggregate(t *testing.T) {
	c, brokers := testkit.Cluster(t, 2, "orders")
	if err := c.CreateTopic("ctl", 4, nil); err != nil {
		t.Fatal(err)
	}
	var gate atomic.Pointer[chan struct{}]
	shut := make(chan struct{})
	gate.Store(&shut)
	defer close(shut)
	var h1, h2 atomic.Int64
	rt1 := gatedRuntime(t, brokers, "g", &gate, &h1)
	rt2 := gatedRuntime(t, brokers, "g", &gate, &h2)
	testkit.Eventually(t, time.Minute, "each member to own one partition", func() bool {
		return len(rt1.Assigned()["orders"]) == 1 && len(rt2.Assigned()["orders"]) == 1
	})
	for _, rt := range []*consumer.Runtime{rt1, rt2} {
		m, err := New(rt, monitorConfig("g"))
		if err != nil {
			t.Fatal(err)
		}
		runMonitor(t, m)
	}
	r := testReader(t, brokers)
	testkit.Produce(t, brokers, "orders", 100, 10, 10)
	testkit.Eventually(t, time.Minute, "both instances to signal elevated", func() bool {
		p := r.Pressure("orders", time.Now())
		return p.Level == LevelElevated && len(p.Groups) == 1 && p.Groups[0].Instances == 2
	})
	p := r.Pressure("orders", time.Now())
	var sum int64
	for _, s := range r.Signals("orders", time.Now()) {
		sum += s.OffsetLag
	}
	if p.Groups[0].OffsetLag != sum || sum <= 0 {
		t.Fatalf("group offset lag %d, the instances' sum %d", p.Groups[0].OffsetLag, sum)
	}
}

func TestMonitorConfig(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "orders")
	plain, err := consumer.New(func(context.Context, *kgo.Record) error { return nil },
		consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{ControlTopic: "ctl"}, "Group"},
		{Config{Group: "g"}, "ControlTopic"},
		{Config{Group: "g", ControlTopic: "ctl", Heartbeat: time.Second, TTL: time.Second}, "TTL"},
		{Config{Group: "g", ControlTopic: "ctl", EvalInterval: -1}, "EvalInterval"},
		{Config{Group: "g", ControlTopic: "ctl"}, "ClientOpts"}, // the client lacks the partitioner
	}
	for _, c := range cases {
		if _, err := New(plain, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
}

// TestMonitorTierLagsAgainstDueTime: a retry tier's records wait by design:
// the monitor measures the tier's time lag past the tier's delay, so a
// tier whose records are younger than its delay is not under pressure.
func TestMonitorTierLagsAgainstDueTime(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, "orders")
	if err := c.CreateTopic("ctl", 1, nil); err != nil {
		t.Fatal(err)
	}
	var gate atomic.Pointer[chan struct{}]
	shut := make(chan struct{})
	gate.Store(&shut)
	defer close(shut)
	var handled atomic.Int64
	rt := gatedRuntime(t, brokers, "g", &gate, &handled)
	cfg := monitorConfig("g")
	cfg.TierDelay = func(topic string) (time.Duration, bool) { return time.Hour, topic == "orders" }
	m, err := New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	produced := time.Now()
	testkit.Produce(t, brokers, "orders", 10, 1, 1)
	testkit.Eventually(t, time.Minute, "the held records to be older than the elevated mark", func() bool {
		l := m.Lag()
		return len(l) == 1 && l[0].OffsetLag > 0 && time.Since(produced) > 3*testThresholds().Elevated.TimeLag
	})
	if l := m.Lag()[0]; l.Level != LevelOK || l.TimeLag != 0 {
		t.Fatalf("a tier with records younger than its delay: level %s, time lag %v; want ok and 0", l.Level, l.TimeLag)
	}
}

// TestMonitorCreatesControlTopic: Run creates a missing control topic,
// compact,delete, with ControlPartitions partitions.
func TestMonitorCreatesControlTopic(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "orders")
	var gate atomic.Pointer[chan struct{}]
	var handled atomic.Int64
	rt := gatedRuntime(t, brokers, "g", &gate, &handled)
	cfg := monitorConfig("g")
	cfg.ControlPartitions = 5
	m, err := New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	adm := kadm.NewClient(rt.Client())
	testkit.Eventually(t, time.Minute, "the control topic to be created with 5 partitions", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tds, err := adm.ListTopics(ctx, "ctl")
		return err == nil && tds["ctl"].Err == nil && len(tds["ctl"].Partitions) == 5
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rcs, err := adm.DescribeTopicConfigs(ctx, "ctl")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("ctl", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && (c.Value == nil || *c.Value != "compact,delete") {
			t.Fatalf("cleanup.policy %v, want compact,delete", c.Value)
		}
	}
}

// TestMonitorTombstonesWhenRuntimeStops: stopping the runtime first (which
// closes the client the monitor publishes with) still writes the
// tombstones, and the monitor publishes nothing after them.
func TestMonitorTombstonesWhenRuntimeStops(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, "orders")
	if err := c.CreateTopic("ctl", 1, nil); err != nil {
		t.Fatal(err)
	}
	rt, err := consumer.New(func(context.Context, *kgo.Record) error { return nil },
		consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("orders"),
		consumer.KgoOpts(ClientOpts("ctl")...))
	if err != nil {
		t.Fatal(err)
	}
	stopRuntime := testkit.Run(t, rt)
	m, err := New(rt, monitorConfig("g"))
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	r := testReader(t, brokers)
	testkit.Produce(t, brokers, "orders", 10, 1, 1)
	testkit.Eventually(t, time.Minute, "a signal of orders", func() bool { return len(r.Signals("orders", time.Now())) == 1 })
	stopRuntime() // the monitor keeps running
	testkit.Eventually(t, time.Minute, "the tombstone", func() bool {
		return r.Stats().Tombstones == 1 && len(r.Signals("orders", time.Now())) == 0
	})
	m.mu.Lock()
	stopped := m.stopped
	m.mu.Unlock()
	if !stopped {
		t.Fatal("the monitor goes on publishing after the runtime stopped")
	}
}

// pubLog is a HookPublish counting failed publishes.
type pubLog struct{ failed atomic.Int32 }

func (l *pubLog) OnPublish(_ Signal, err error) {
	if err != nil {
		l.failed.Add(1)
	}
}

// TestMonitorRetriesFailedPublish: the control topic refuses the first
// signal; the monitor publishes it again after a short backoff, not at
// the next heartbeat (half an hour away here).
func TestMonitorRetriesFailedPublish(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, "orders")
	if err := c.CreateTopic("ctl", 1, nil); err != nil {
		t.Fatal(err)
	}
	var refused atomic.Bool
	testkit.OnProduceTo(t, c, "ctl", func() *kerr.Error {
		if refused.CompareAndSwap(false, true) {
			return kerr.PolicyViolation
		}
		return nil
	})
	rt, err := consumer.New(func(context.Context, *kgo.Record) error { return nil },
		consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("orders"),
		consumer.KgoOpts(ClientOpts("ctl")...))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, rt)
	pubs := &pubLog{}
	cfg := monitorConfig("g", pubs)
	cfg.Heartbeat, cfg.TTL = 30*time.Minute, time.Hour
	m, err := New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	r := testReader(t, brokers)
	testkit.Produce(t, brokers, "orders", 10, 1, 1)
	testkit.Eventually(t, time.Minute, "a signal of orders on the control topic after the refused one", func() bool {
		return len(r.Signals("orders", time.Now())) == 1
	})
	if !refused.Load() || pubs.failed.Load() != 1 {
		t.Fatalf("refused %v, %d failed publishes: want the first publish refused and reported", refused.Load(), pubs.failed.Load())
	}
	testkit.Eventually(t, time.Minute, "Lag() to show the publish that succeeded as LastPublished", func() bool {
		lag := m.Lag()
		return len(lag) == 1 && !lag[0].LastPublished.IsZero()
	})
}

// TestMonitorPausesLessImportantClasses: while a critical topic lags, the
// runtime's bulk partitions pause (reason lag) so the handlers serve the
// critical one, including a bulk partition the runtime first fetches
// after the pause began; once the critical topic is back to ok they
// resume.
func TestMonitorPausesLessImportantClasses(t *testing.T) {
	for _, logsLater := range []bool{false, true} {
		t.Run(fmt.Sprintf("logs_first_fetched_under_pressure=%v", logsLater), func(t *testing.T) {
			c, brokers := testkit.Cluster(t, 1, "pay", "logs")
			if err := c.CreateTopic("ctl", 1, nil); err != nil {
				t.Fatal(err)
			}
			classes, err := priority.NewTopics(priority.Default, priority.Normal, map[string]priority.Class{"pay": priority.Critical, "logs": priority.Bulk})
			if err != nil {
				t.Fatal(err)
			}
			hold := make(chan struct{})
			var released atomic.Bool
			rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
				if r.Topic == "pay" && !released.Load() {
					select {
					case <-hold:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("pay", "logs"),
				consumer.WithPriorities(priority.Default, classes), consumer.KgoOpts(ClientOpts("ctl")...))
			if err != nil {
				t.Fatal(err)
			}
			testkit.Run(t, rt)
			m, err := New(rt, monitorConfig("g"))
			if err != nil {
				t.Fatal(err)
			}
			runMonitor(t, m)
			logsPaused := func() bool {
				for _, ps := range rt.Stats().Partitions {
					if ps.Topic == "logs" {
						return ps.Paused.Has(partition.Lag)
					}
				}
				return false
			}
			logsDone := func() bool {
				for _, ps := range rt.Stats().Partitions {
					if ps.Topic == "logs" && ps.Completed == 10 {
						return true
					}
				}
				return false
			}
			if !logsLater {
				testkit.Produce(t, brokers, "logs", 10, 1, 1) // logs flows: its partition is known
				testkit.Eventually(t, time.Minute, "logs to be consumed", logsDone)
			}
			testkit.Produce(t, brokers, "pay", 10, 1, 1)
			if logsLater {
				// pay lags, and logs' partition, never fetched so far, is
				// unknown to the runtime when the monitor first pauses the
				// topic: once it is fetched, it is paused too.
				testkit.Eventually(t, time.Minute, "the monitor to pause logs for pay's lag", func() bool {
					m.mu.Lock()
					defer m.mu.Unlock()
					return m.classPaused["logs"]
				})
				testkit.Produce(t, brokers, "logs", 10, 1, 1)
			}
			testkit.Eventually(t, time.Minute, "the bulk partitions to pause while pay lags", logsPaused)
			released.Store(true)
			close(hold)
			testkit.Eventually(t, time.Minute, "the bulk partitions to resume once pay is ok", func() bool { return !logsPaused() })
		})
	}
}

// TestMonitorLeavesPressureWhenStopped: an instance that stops while its
// topic is above ok writes no tombstone: its last signal stands on the
// control topic until its TTL, so that a restarted instance, which says
// nothing until it has measured, is no all-clear meanwhile.
func TestMonitorLeavesPressureWhenStopped(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, "orders")
	if err := c.CreateTopic("ctl", 1, nil); err != nil {
		t.Fatal(err)
	}
	var gate atomic.Pointer[chan struct{}]
	shut := make(chan struct{})
	gate.Store(&shut)
	var handled atomic.Int64
	rt := gatedRuntime(t, brokers, "g", &gate, &handled)
	cfg := monitorConfig("g")
	cfg.TTL = time.Hour // the signal must still be live when the test reads it
	m, err := New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runMonitor(t, m)
	r := testReader(t, brokers)
	testkit.Produce(t, brokers, "orders", 10, 1, 1)
	testkit.Eventually(t, time.Minute, "the control topic to say orders is elevated", func() bool {
		return r.Pressure("orders", time.Now()).Level == LevelElevated
	})
	stop()
	// The stop is done: what the control topic holds now is all there
	// is. A fresh reader reads it from the start.
	r2, err := NewReader(brokers, "ctl", []string{"orders"}, ReadLookback(0))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := r2.Stats(); st.Tombstones != 0 || r2.Pressure("orders", time.Now()).Level != LevelElevated {
		t.Fatalf("after the stop: %d tombstones, level %v; want none, and the elevated signal standing", st.Tombstones, r2.Pressure("orders", time.Now()).Level)
	}
	close(shut)
}

// TestMonitorEvaluatesWhilePublishHangs: with the control topic holding
// every produce request, the monitor goes on measuring, deciding and
// pausing (publishing never holds an evaluation), and its stop returns
// within the bound of its context.
func TestMonitorEvaluatesWhilePublishHangs(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, "orders", "payments", "refunds")
	if err := c.CreateTopic("ctl", 1, nil); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var held atomic.Int32
	testkit.OnProduceTo(t, c, "ctl", func() *kerr.Error {
		held.Add(1)
		c.SleepControl(func() { <-release })
		return nil
	})
	defer close(release)
	var gate atomic.Pointer[chan struct{}]
	shut := make(chan struct{})
	gate.Store(&shut)
	var handled atomic.Int64
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		select {
		case <-*gate.Load():
		case <-ctx.Done():
			return ctx.Err()
		}
		handled.Add(1)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("orders", "payments", "refunds"),
		consumer.KgoOpts(ClientOpts("ctl")...))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, rt)
	levels := &levelLog{}
	cfg := monitorConfig("g", levels)
	cfg.Heartbeat, cfg.TTL = 30*time.Second, time.Minute // a publish may hang this long
	m, err := New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	for _, topic := range []string{"orders", "payments", "refunds"} {
		testkit.Produce(t, brokers, topic, 10, 1, 1)
	}
	testkit.Eventually(t, time.Minute, "a publish held by the control topic", func() bool { return held.Load() > 0 })
	testkit.Eventually(t, time.Minute, "every topic elevated while the publishes hang", func() bool {
		n := 0
		for _, l := range m.Lag() {
			if l.Level == LevelElevated {
				n++
			}
		}
		return n == 3
	})
	// Released: the level goes back to ok, still without any publish
	// going through.
	close(shut)
	testkit.Eventually(t, time.Minute, "every topic back to ok while the publishes hang", func() bool {
		for _, l := range m.Lag() {
			if l.Level != LevelOK {
				return false
			}
		}
		return levels.has(LevelElevated, LevelOK)
	})
	// The stop is bounded by its context, not by the hanging publishes
	// (each bounded by the 30s heartbeat).
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelStop()
	stopped := make(chan struct{})
	go func() { m.stop(stopCtx); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the monitor's stop did not return within 20s of a 2s bound")
	}
	cancelRun()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// refusal is a downstream's refusal at a level (a consumer.Refusal).
type refusal struct{ level Level }

func (r refusal) Error() string                  { return "refused at " + r.level.String() }
func (refusal) RefusalRetryAfter() time.Duration { return 10 * time.Millisecond }
func (r refusal) RefusalLevel() int              { return int(r.level) }

// TestMonitorPassesDownstreamPressure: a consumer whose handler's
// downstream refuses its records at high publishes high at once, though
// its lag is far below every mark, with a reason that says why; once the
// downstream takes records again, the level returns to ok after the
// dwell.
func TestMonitorPassesDownstreamPressure(t *testing.T) {
	c, brokers := testkit.Cluster(t, 2, "orders")
	if err := c.CreateTopic("ctl", 4, nil); err != nil {
		t.Fatal(err)
	}
	var refusing atomic.Bool
	refusing.Store(true)
	var handled atomic.Int64
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if refusing.Load() {
			return fmt.Errorf("producing onwards: %w", refusal{LevelHigh})
		}
		handled.Add(1)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("orders"),
		consumer.KgoOpts(append(ClientOpts("ctl"), kgo.SessionTimeout(2*time.Second), kgo.HeartbeatInterval(200*time.Millisecond))...))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, rt)
	levels := &levelLog{}
	cfg := monitorConfig("g", levels)
	cfg.Thresholds.Elevated.TimeLag = 30 * time.Minute // out of reach of the lag
	m, err := New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	r := testReader(t, brokers)
	testkit.Produce(t, brokers, "orders", 100, 10, 10)

	testkit.Eventually(t, time.Minute, "the control topic to say orders is high", func() bool {
		return r.Pressure("orders", time.Now()).Level == LevelHigh
	})
	lag := m.Lag()
	if len(lag) != 1 || !strings.Contains(lag[0].Reason, "downstream refuses") {
		t.Fatalf("Lag() = %+v: want the downstream's refusals as the reason", lag)
	}
	if lag[0].TimeLag >= cfg.Thresholds.Elevated.TimeLag {
		t.Fatalf("time lag %v reached the elevated mark: the test shows nothing", lag[0].TimeLag)
	}
	var down int
	for _, p := range lag[0].Partitions {
		if p.Downstream > LevelOK {
			down++
			if p.Level < p.Downstream || p.Saturated {
				t.Fatalf("partition %+v: level below its downstream's, or saturated while held by it", p)
			}
		}
	}
	if down == 0 {
		t.Fatalf("no partition says its downstream refuses: %+v", lag[0].Partitions)
	}

	refusing.Store(false)
	testkit.Eventually(t, time.Minute, "every record handled", func() bool { return handled.Load() == 100 })
	testkit.Eventually(t, time.Minute, "the control topic to say orders is ok again", func() bool {
		return r.Pressure("orders", time.Now()).Level == LevelOK
	})
	if !levels.has(LevelOK, LevelHigh) || !levels.has(LevelHigh, LevelOK) {
		t.Fatal("the hook did not see both ok → high and high → ok")
	}
}
