package deferred

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// pacer hands out service slots of a fixed length: a handler that waits
// for its slot handles at most one record per slot, so that a consumer's
// capacity is exactly 1/slot, whatever its handlers' timer overshoot (a
// record that arrives while the consumer is idle starts a slot at once).
type pacer struct {
	mu   sync.Mutex
	slot time.Duration
	next time.Time
}

func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	at := time.Now()
	if p.next.After(at) {
		at = p.next
	}
	p.next = at.Add(p.slot)
	p.mu.Unlock()
	t := time.NewTimer(time.Until(at.Add(p.slot)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// levelLog records a monitor's level changes.
type levelLog struct {
	mu      sync.Mutex
	changes []lagmonitor.LevelEvent
}

func (l *levelLog) OnLevelChange(e lagmonitor.LevelEvent) {
	l.mu.Lock()
	l.changes = append(l.changes, e)
	l.mu.Unlock()
}

func (l *levelLog) all() []lagmonitor.LevelEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]lagmonitor.LevelEvent(nil), l.changes...)
}

// TestRelayFillsTheRoomLeft: a consumer that handles 50 records a second,
// producers that send it 30 a second, and 10,000 deferred records. The
// relay delivers only under the consumers' live ok signal, and fills only
// what the producers leave of the room the signal suggests, starting low
// and probing up: the consumers' monitor probes above its drain rate
// while it keeps up, finds the capacity once it saturates, and then
// suggests 47.5/s (0.95 of it). The level stays ok all along (the relay never pushes the
// consumer back under pressure), and the deferred records drain at 15 to
// 25 a second: the room left, not the relay's flat cap of 1,000/s.
func TestRelayFillsTheRoomLeft(t *testing.T) {
	if testing.Short() {
		t.Skip("the relay's probing takes two minutes of real time to settle")
	}
	e := newEnv(t)
	cl := e.client(t)
	const deferredRecords = 10_000
	rs := make([]*kgo.Record, deferredRecords)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: "orders.deferred", Value: []byte("deferred")}
	}
	live := e.client(t)
	if err := live.ProduceSync(testCtx(t), &kgo.Record{Topic: "orders", Value: []byte("warm")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.lane(t, cl, Config{}) // creates orders.deferred
	if err := cl.ProduceSync(testCtx(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The consumer: one partition's worth of capacity, 50/s, on the
	// three partitions of orders (one slot for them all).
	p := &pacer{slot: 20 * time.Millisecond}
	rt, err := consumer.New(func(ctx context.Context, _ *kgo.Record) error { return p.wait(ctx) },
		consumer.Brokers(e.brokers...), consumer.Group("billing"), consumer.Topics("orders"),
		consumer.WithOrdering(consumer.OrderNone), consumer.MaxConcurrency(1),
		consumer.KgoOpts(lagmonitor.ClientOpts(ctl)...))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, rt)
	levels := &levelLog{}
	mon, err := lagmonitor.New(rt, lagmonitor.Config{Group: "billing", ControlTopic: ctl, Heartbeat: time.Second, TTL: 5 * time.Second,
		RefreshInterval: 500 * time.Millisecond, Hooks: []lagmonitor.Hook{levels}})
	if err != nil {
		t.Fatal(err)
	}
	mctx, mcancel := context.WithCancel(context.Background())
	mdone := make(chan error, 1)
	go func() { mdone <- mon.Run(mctx) }()
	defer func() {
		mcancel()
		if err := <-mdone; err != nil {
			t.Error(err)
		}
	}()

	// The producers: 30/s, open loop.
	var produced atomic.Int64
	pctx, pcancel := context.WithCancel(context.Background())
	var pwg sync.WaitGroup
	pwg.Go(func() {
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
				live.Produce(pctx, &kgo.Record{Topic: "orders", Value: []byte("live")}, func(*kgo.Record, error) { produced.Add(1) })
			}
		}
	})
	defer func() { pcancel(); pwg.Wait() }()

	relay, _ := e.relay(t, RelayConfig{Ramp: 5 * time.Second})
	start := time.Now()
	// Settle: the relay probes up until the consumer saturates and its
	// capacity is measured, then holds to the room left.
	testkit.Eventually(t, 3*time.Minute, "the signal to suggest the room of a measured capacity", func() bool {
		for _, l := range mon.Lag() {
			if l.Capacity > 0 && l.SuggestedRate > 0 && l.Level == lagmonitor.LevelOK {
				return true
			}
		}
		return false
	})
	settled := time.Now()
	from := relay.Stats().Relayed
	time.Sleep(60 * time.Second) // the measuring window itself, not a synchronisation
	relayed := relay.Stats().Relayed - from
	window := time.Since(settled)
	rate := float64(relayed) / window.Seconds()
	l := mon.Lag()[0]
	t.Logf("settled after %v; then %.1f deferred records/s relayed over %v (producers %d records in all); capacity %.1f/s, room %.1f/s; relay: %+v",
		settled.Sub(start).Round(time.Second), rate, window.Round(time.Second), produced.Load(), l.Capacity, l.SuggestedRate, relay.Stats().Destinations)
	for _, c := range levels.all() {
		t.Errorf("the level changed while the relay drained (%v after it started): %v -> %v (%s)", c.At.Sub(start).Round(time.Second), c.From, c.To, c.Reason)
	}
	if rate < 15 || rate > 25 {
		t.Errorf("the relay delivered %.1f/s once settled, want 15 to 25 (the room of 47.5/s less the producers' 30/s, up to 50/s)", rate)
	}
}
