// Package looptest drives the pressure loop end to end, for the tests of
// producer/ (on kfake) and integration/ (on a real broker): a consumer
// runtime slowed or held back on purpose, with a lag monitor publishing
// its pressure on a control topic, and pressure-aware producers
// (package producer) obeying it, under a paced load of every class.
//
// The same scenarios run on every broker: [Loop] checks what admission
// does at each level and that it recovers, [Latency] measures how long a
// level change takes to reach a producer, and [Burst] runs one burst
// against a slowed consumer, with plain or pressure-aware producers.
package looptest

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// Env is where a loop runs: a topic and a control topic that exist on
// Brokers, and the group that consumes the topic.
type Env struct {
	Brokers               []string
	Topic, Control, Group string
	// Partitions is the topic's partition count.
	Partitions int
	// Opts, if set, returns the runtime's options (brokers, group,
	// topic, and whatever the caller checks, such as a commit checker)
	// with extra appended; by default Brokers, Group and Topic.
	Opts func(extra ...consumer.Opt) []consumer.Opt
	// Ledger expects every record a scenario's producers had
	// acknowledged and is told of every record handled; one is made if
	// nil.
	Ledger *testkit.Ledger
}

func (e *Env) opts(extra ...consumer.Opt) []consumer.Opt {
	if e.Opts != nil {
		return e.Opts(extra...)
	}
	return append([]consumer.Opt{consumer.Brokers(e.Brokers...), consumer.Group(e.Group), consumer.Topics(e.Topic)}, extra...)
}

func (e *Env) ledger() *testkit.Ledger {
	if e.Ledger == nil {
		e.Ledger = testkit.NewLedger(nil)
	}
	return e.Ledger
}

// ConsumerConfig shapes a [Consumer].
type ConsumerConfig struct {
	// Thresholds decide its levels.
	Thresholds lagmonitor.Thresholds
	// Rate shapes the suggested rate; default lagmonitor's.
	Rate lagmonitor.RateConfig
	// Capacity caps the records handled per second, all partitions
	// together; 0: as fast as it can.
	Capacity float64
	// Heartbeat, TTL and RefreshInterval of the monitor; defaults 1s,
	// 5s and 200ms.
	Heartbeat, TTL, Refresh time.Duration
	// Hooks observe the monitor, beside the consumer's own.
	Hooks []lagmonitor.Hook
}

// Consumer is a runtime on Env's topic whose handler can be held back
// ([Consumer.Hold]) or is slowed to a rate, and its lag monitor.
type Consumer struct {
	RT  *consumer.Runtime
	Mon *lagmonitor.Monitor
	// Signals has what the monitor published or tried to.
	Signals *Signals
	// Handled counts the records handled.
	Handled atomic.Int64

	env    *Env
	gateMu sync.Mutex
	gate   chan struct{} // records wait until it closes
	lim    *rate.Limiter
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// StartConsumer starts a runtime and its monitor (both stop when the test
// ends) and waits until the runtime owns every partition of the topic.
func StartConsumer(t testing.TB, env *Env, cfg ConsumerConfig) *Consumer {
	t.Helper()
	c := &Consumer{env: env, gate: closed, Signals: new(Signals)}
	if cfg.Capacity > 0 {
		c.lim = rate.NewLimiter(rate.Limit(cfg.Capacity), 1)
	}
	ledger := env.ledger()
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		select {
		case <-c.held():
		case <-ctx.Done():
			return ctx.Err()
		}
		if c.lim != nil {
			if err := c.lim.Wait(ctx); err != nil {
				return err
			}
		}
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		c.Handled.Add(1)
		return nil
	}, env.opts(consumer.KgoOpts(lagmonitor.ClientOpts(env.Control)...))...)
	if err != nil {
		t.Fatal(err)
	}
	c.RT = rt
	testkit.Run(t, rt)
	hb, ttl, refresh := cfg.Heartbeat, cfg.TTL, cfg.Refresh
	if hb == 0 {
		hb = time.Second
	}
	if ttl == 0 {
		ttl = 5 * time.Second
	}
	if refresh == 0 {
		refresh = 200 * time.Millisecond
	}
	m, err := lagmonitor.New(rt, lagmonitor.Config{Group: env.Group, ControlTopic: env.Control, Thresholds: cfg.Thresholds, Rate: cfg.Rate,
		Heartbeat: hb, TTL: ttl, RefreshInterval: refresh, Hooks: append([]lagmonitor.Hook{c.Signals}, cfg.Hooks...)})
	if err != nil {
		t.Fatal(err)
	}
	c.Mon = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx); err != nil {
			t.Errorf("monitor: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, time.Minute, "the runtime to own every partition of "+env.Topic, func() bool {
		return len(rt.Assigned()[env.Topic]) == env.Partitions
	})
	return c
}

func (c *Consumer) held() chan struct{} {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	return c.gate
}

// Hold makes the handler hold every record, from now, until Release.
func (c *Consumer) Hold() {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	if c.gate == closed {
		c.gate = make(chan struct{})
	}
}

// Release lets every record go, the held ones and the next.
func (c *Consumer) Release() {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	if c.gate != closed {
		close(c.gate)
		c.gate = closed
	}
}

// Lag returns the monitor's latest measure of the topic (the zero
// TopicLag before the first).
func (c *Consumer) Lag() lagmonitor.TopicLag {
	for _, l := range c.Mon.Lag() {
		if l.Topic == c.env.Topic {
			return l
		}
	}
	return lagmonitor.TopicLag{}
}

// Signals records the signals a monitor published (a lagmonitor hook),
// those whose publishing failed too: a produce that timed out for the
// monitor may still have been written, and a producer may act on it.
type Signals struct {
	mu sync.Mutex
	ss []lagmonitor.Signal
}

// OnPublish implements lagmonitor.HookPublish.
func (s *Signals) OnPublish(sig lagmonitor.Signal, _ error) {
	if sig.Seq == 0 { // refused before a sequence was taken: never written
		return
	}
	s.mu.Lock()
	s.ss = append(s.ss, sig)
	s.mu.Unlock()
}

// All returns the signals published or attempted so far, in the order
// published (by sequence number).
func (s *Signals) All() []lagmonitor.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ss)
}

var _ lagmonitor.HookPublish = (*Signals)(nil)
