package lagmonitor

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// outItem is what is due for one topic: its latest signal, or a
// tombstone.
type outItem struct {
	sig  Signal
	tomb bool
}

// outbox hands what is due from the evaluation to the publish loop, one
// item per topic: a newer item replaces one not yet taken, since only
// the topic's latest state matters. Its items are guarded by the
// monitor's mu.
type outbox struct {
	items map[string]outItem
	wake  chan struct{} // holds a token while items wait
	quit  chan struct{} // closed by close: the loop stops
	done  chan struct{} // closed when the loop returned
	once  sync.Once
}

func newOutbox() outbox {
	return outbox{items: make(map[string]outItem), wake: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
}

// put queues it for topic. Called with mu held.
func (o *outbox) put(topic string, it outItem) { o.items[topic] = it }

// kick wakes the publish loop if items wait.
func (o *outbox) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// close stops the publish loop, cancelling what it publishes, and waits
// for it to return, at most until ctx ends. A loop never started counts
// as returned.
func (o *outbox) close(ctx context.Context) {
	o.once.Do(func() { close(o.quit) })
	select {
	case <-o.done:
	case <-ctx.Done():
	}
}

// publishLoop publishes what the evaluations hand over, until the outbox
// is closed: each round takes every topic's item and publishes them
// together, so that one topic whose publish hangs does not hold the
// others beyond the round's bound (each publish is bounded by
// Heartbeat), and never holds the evaluation.
func (m *Monitor) publishLoop() {
	defer close(m.out.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.out.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-m.out.quit:
			return
		case <-m.out.wake:
		}
		m.mu.Lock()
		items := m.out.items
		m.out.items = make(map[string]outItem)
		m.mu.Unlock()
		var wg sync.WaitGroup
		for topic, it := range items {
			if it.tomb {
				wg.Go(func() { m.tombstone(ctx, topic) })
				continue
			}
			wg.Go(func() { m.record(it.sig, m.publish(ctx, it.sig)) })
		}
		wg.Wait()
	}
}

// record notes a publish's outcome: a success is the topic's last
// publish; a failure makes its signal due again after a backoff from
// EvalInterval doubling up to Heartbeat.
func (m *Monitor) record(s Signal, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tm := m.topics[s.Topic]
	switch {
	case tm == nil:
	case err == nil:
		tm.last.LastPublished, tm.retry = s.IssuedAt, 0
	default:
		tm.retry = min(max(2*tm.retry, m.cfg.EvalInterval), m.cfg.Heartbeat)
		tm.next = s.IssuedAt.Add(tm.retry)
	}
}

// publish writes s, bounded by the heartbeat interval and ctx.
func (m *Monitor) publish(ctx context.Context, s Signal) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
	defer cancel()
	s, err := m.pub.Publish(ctx, s)
	for _, h := range m.pubHooks {
		h.OnPublish(s, err)
	}
	if err != nil && !m.isStopped() { // a publish cut short by the stop is no news
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: publishing a pressure signal failed; it is published again soon, and producers fall back to no pressure when the last one expires",
			"topic", s.Topic, "level", s.Level, "err", err)
	}
	return err
}

func (m *Monitor) isStopped() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopped
}

// tombstone lifts this instance's signal of topic, bounded by ctx and the
// heartbeat interval.
func (m *Monitor) tombstone(ctx context.Context, topic string) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
	defer cancel()
	if err := m.pub.Tombstone(ctx, topic, m.cfg.Instance, m.cfg.Group); err != nil {
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: writing a tombstone failed; the signal expires at its TTL", "topic", topic, "err", err)
	}
}
