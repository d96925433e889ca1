package deferred

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// TestRelayCloseBeforeRun: a relay closed without running leaves no
// goroutine behind, and will not run.
func TestRelayCloseBeforeRun(t *testing.T) {
	e := newEnv(t)
	defer goleak.VerifyNone(t, clientLeaks()...)
	r, err := NewRelay(RelayConfig{Brokers: e.brokers, ControlTopic: ctl, Topics: []string{"orders"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertClosed(t, r)
}

// TestRelayCloseDuringRun: Close ends a running Run, which returns nil,
// and returns once it has; Close after Run is a no-op.
func TestRelayCloseDuringRun(t *testing.T) {
	e := newEnv(t)
	e.level(t, lagmonitor.LevelOK)
	cl := e.client(t)
	e.lane(t, cl, Config{}) // creates orders.deferred
	defer goleak.VerifyNone(t, clientLeaks()...)
	r, err := NewRelay(RelayConfig{Brokers: e.brokers, ControlTopic: ctl, Topics: []string{"orders"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	// The runtime's client joins its group when NewRelay builds it, so
	// an assignment alone does not say that Run began.
	testkit.Eventually(t, 30*time.Second, "the relay to run, assigned its deferred partition", func() bool {
		r.runMu.Lock()
		ran := r.ran
		r.runMu.Unlock()
		return ran && len(r.Runtime().Assigned()) > 0
	})
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run ended by Close: %v", err)
		}
	default:
		t.Fatal("Close returned before Run")
	}
	assertClosed(t, r)
}

// assertClosed checks that a closed relay closes again without an error
// and will not run.
func assertClosed(t *testing.T, r *Relay) {
	t.Helper()
	if err := r.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	if err := r.Run(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
}

// TestRelayStopsUnderPressure: a relay whose handlers wait for their
// destination to be ok stops within a few seconds (its short shutdown
// timeout), not after the consumer runtime's default 30s.
func TestRelayStopsUnderPressure(t *testing.T) {
	e := newEnv(t)
	e.level(t, lagmonitor.LevelHigh)
	cl := e.client(t)
	e.lane(t, cl, Config{}) // creates orders.deferred
	for i := range 30 {
		r := &kgo.Record{Topic: "orders.deferred", Key: []byte{byte(i)}, Value: []byte("v")}
		if err := cl.ProduceSync(testCtx(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	relay, stop := e.relay(t, RelayConfig{})
	testkit.Eventually(t, 30*time.Second, "the relay's handlers to wait for ok", func() bool { return relay.Stats().Waiting > 0 })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the relay took %v to stop under pressure", d)
	}
	if got := endOffsets(t, cl, "orders"); got != 0 {
		t.Fatalf("the relay delivered %d records at high", got)
	}
}

// TestRelayGates: the relay's gate follows the signals: an ok signal's
// suggested rate (the room) sets the relay's, its share of it once its
// ramp is over; a high signal closes the gate; when it expires, with no
// new signal, the gate stays closed (no signal is no "go" for deferred
// work) and says why; a new ok signal opens it and the waiting records
// are delivered; WithoutSignal relays without one.
func TestRelayGates(t *testing.T) {
	e := newEnv(t)
	s := lagmonitor.Signal{Topic: "orders", Group: "billing", Level: lagmonitor.LevelOK, SuggestedRate: 40, TTL: 10 * time.Minute}
	if _, err := e.pub.Publish(testCtx(t), s); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t)
	e.lane(t, cl, Config{}) // creates orders.deferred
	relay, _ := e.relay(t, RelayConfig{Rate: 1000, SuggestedShare: 0.5, Ramp: 100 * time.Millisecond})
	testkit.Eventually(t, 15*time.Second, "the relay to take its share of the room", func() bool {
		return float64(relay.lims["orders"].Limit()) == 20
	})
	s.Level, s.SuggestedRate, s.TTL = lagmonitor.LevelHigh, 0, 3*time.Second
	if _, err := e.pub.Publish(testCtx(t), s); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "the gate to close at high", func() bool {
		open, _ := relay.gate("orders")
		return !open
	})
	if err := cl.ProduceSync(testCtx(t), &kgo.Record{Topic: "orders.deferred", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the high signal to expire, the gate saying it waits for a live one", func() bool {
		d := relay.Stats().Destinations
		return len(d) == 1 && !d[0].Open && strings.Contains(d[0].Reason, "no live signal")
	})
	if got := endOffsets(t, cl, "orders"); got != 0 {
		t.Fatalf("%d records delivered without a live signal", got)
	}
	s.Level, s.SuggestedRate, s.TTL = lagmonitor.LevelOK, 40, 10*time.Minute
	if _, err := e.pub.Publish(testCtx(t), s); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the record to be delivered once a live ok signal says there is room", func() bool {
		return endOffsets(t, cl, "orders") == 1
	})
}

// clientLeaks are goleak's options for a test that checks that a relay
// leaves no goroutine of its own behind: the goroutines already running,
// and the kfake broker's side of any connection (a client of the test
// that stays open, such as a lane's, may open one meanwhile; the broker
// ends it only when that client closes it).
func clientLeaks() []goleak.Option {
	return []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read"),
		goleak.IgnoreTopFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).write")}
}
