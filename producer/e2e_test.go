package producer

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

// fakeClock is a clock the test moves, shared by the producers, their
// readers and the publisher.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := new(fakeClock)
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// TestProducersShareTheSuggestedRate: two producers of one topic, each
// offered 100 normal records per second while the consumers' signal
// (published on the control topic) says high with a suggested rate of
// 40/s. Each takes the share of the rate that its own traffic is of the
// topic's, measured from the topic's end offsets on kfake, so that
// together they admit near 40/s rather than 80/s. Time is logical: a
// shared fake clock moves 10ms per record; MaxWait 0 makes every
// decision immediate; the rates are measured once per logical second.
func TestProducersShareTheSuggestedRate(t *testing.T) {
	const (
		suggested = 40.0
		offered   = 100 // records per logical second, per producer
		secs      = 60
	)
	e := newEnv(t)
	clock := newFakeClock(time.Now())
	pub := e.publisher(t, "billing-1", lagmonitor.PublishClock(clock.now))
	publish(t, pub, signal(lagmonitor.LevelHigh, suggested)) // live for 10 logical minutes, with the readers' cap raised

	ps := make([]*Producer, 2)
	for i := range ps {
		ps[i] = start(t, e.brokers, Clock(clock.now), MaxWait(0), Measure(time.Hour, 5*time.Second),
			ReaderOpts(lagmonitor.ReadMaxTTL(time.Hour)))
		waitLevel(t, ps[i], lagmonitor.LevelHigh)
	}
	ctx := testCtx(t)
	var mid [2]Counts
	for s := range secs {
		if s == secs/2 {
			for k, p := range ps {
				mid[k] = p.Stats().Counts
			}
		}
		for range offered {
			clock.add(time.Second / offered)
			for _, p := range ps {
				p.Produce(ctx, rec(priority.Normal), nil)
			}
		}
		for _, p := range ps {
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range ps {
			p.measure(ctx)
		}
	}

	window := float64(secs - secs/2)
	var total float64
	for k, p := range ps {
		st := p.Stats()
		admitted := float64(st.Admitted-mid[k].Admitted) / window
		refused := st.Throttled - mid[k].Throttled
		ts := st.Topics[0]
		t.Logf("producer %d: %.1f records/s admitted, %d throttled in the last %vs; share %.2f (own %.1f/s of %.1f/s)",
			k, admitted, refused, window, ts.Share, ts.OwnRate, ts.IncomingRate)
		if admitted >= 0.8*suggested {
			t.Errorf("producer %d alone admitted %.1f/s of the %v/s suggested", k, admitted, suggested)
		}
		if refused == 0 {
			t.Errorf("producer %d refused nothing, offered %d/s", k, offered)
		}
		total += admitted
	}
	if total < 0.7*suggested || total > 1.3*suggested {
		t.Fatalf("together %.1f records/s, want near the suggested %v/s (not %v/s, each taking all of it)", total, suggested, 2*suggested)
	}
}

// TestFailOpenWinsOverRamp: back to ok, the limits ramp up; but a
// signal that expires lifts them at once, ramp or not.
func TestFailOpenWinsOverRamp(t *testing.T) {
	e := newEnv(t)
	clock := newFakeClock(time.Now())
	pub := e.publisher(t, "billing-1", lagmonitor.PublishClock(clock.now))
	p := start(t, e.brokers, Clock(clock.now), MaxWait(0), Measure(time.Hour, time.Second), Ramp(time.Minute))

	s := signal(lagmonitor.LevelCritical, 1e6)
	s.TTL = 15 * time.Second
	publish(t, pub, s)
	waitLevel(t, p, lagmonitor.LevelCritical)
	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); !errors.Is(err, ErrShed) {
		t.Fatalf("bulk at critical: %v", err)
	}

	// Back to ok: recovering; bulk, shed under pressure, ramps from 0
	// and its demand is unknown (not measured): no rate yet.
	ok := signal(lagmonitor.LevelOK, 0)
	ok.TTL = 15 * time.Second
	publish(t, pub, ok)
	testkit.Eventually(t, 15*time.Second, "the producer to recover", func() bool { return topicStats(p).Recovering })
	err := produce(t, p, testCtx(t), rec(priority.Bulk))
	var re *RefusedError
	if !errors.Is(err, ErrThrottled) || !errors.As(err, &re) || !re.Decision.Recovering || re.Decision.Level != lagmonitor.LevelOK {
		t.Fatalf("bulk at the start of the ramp: %v, want throttled while recovering", err)
	}

	// The ok signal expires (no heartbeat): every limit lifts at once,
	// though the ramp has 45s to go.
	clock.add(15 * time.Second)
	if err := produce(t, p, testCtx(t), rec(priority.Bulk)); err != nil {
		t.Fatalf("bulk once the signal expired: %v, want admitted (fail-open)", err)
	}
	if ts := topicStats(p); ts.Recovering || ts.Level != lagmonitor.LevelOK || ts.Pressure.Instance != "" {
		t.Fatalf("after expiry: recovering %v, level %v, deciding instance %q", ts.Recovering, ts.Level, ts.Pressure.Instance)
	}
}
