package producer

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	rCritical = iota
	rNormal
	rBulk
)

func testCtlConfig(p Policy) *ctlConfig {
	c := &ctlConfig{
		policy:   p,
		classes:  p.Order().Classes(),
		minShare: DefaultMinShare,
		headroom: DefaultHeadroom,
		ramp:     30 * time.Second,
		tau:      5 * time.Second,
	}
	c.noRate[lvElevated], c.noRate[lvHigh], c.noRate[lvCritical] = DefaultNoRateElevated, DefaultNoRateHigh, DefaultNoRateCritical
	return c
}

// feed drives a topicCtl's meters with steady rates on a fake clock.
type feed struct {
	ctl     *topicCtl
	now     time.Time
	offered []uint64
	acked   uint64
	end     int64
}

func newFeed(ctl *topicCtl) *feed {
	return &feed{ctl: ctl, now: t0, offered: make([]uint64, len(ctl.cfg.classes))}
}

// run advances the clock by secs seconds, one second at a time, with the
// classes offering demand records/s, this producer's records
// acknowledged at own records/s and the topic's end growing at incoming
// records/s, observing each second.
func (f *feed) run(secs int, demand []float64, own, incoming float64) {
	for range secs {
		f.now = f.now.Add(time.Second)
		for i, d := range demand {
			f.offered[i] += uint64(d)
		}
		f.acked += uint64(own)
		f.end += int64(incoming)
		f.ctl.observe(f.now, f.end, true, f.acked, f.offered)
	}
}

func pressure(level lagmonitor.Level, suggested float64, at time.Time) lagmonitor.Pressure {
	return lagmonitor.Pressure{Topic: "orders", Level: level, Rate: suggested, Group: "g", Instance: "i-1", Seq: 7,
		Reason: "test", ExpiresAt: at.Add(15 * time.Second)}
}

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-6*max(1, math.Abs(want)) }

func checkAllow(t *testing.T, what string, ctl *topicCtl, want []float64, actions []Action) {
	t.Helper()
	for r := range want {
		a, lim := ctl.decide(r)
		if a != actions[r] {
			t.Errorf("%s: class %s action %s, want %s", what, ctl.cfg.classes[r], a, actions[r])
		}
		got := 0.0
		if a == Limit {
			got = ctl.allow[r]
			if (lim != nil) != (got > 0) {
				t.Errorf("%s: class %s rate %v but limiter %v", what, ctl.cfg.classes[r], got, lim)
			}
			if lim != nil && !near(float64(lim.Limit()), got) {
				t.Errorf("%s: class %s limiter at %v, rate %v", what, ctl.cfg.classes[r], lim.Limit(), got)
			}
		}
		if !near(got, want[r]) {
			t.Errorf("%s: class %s rate %v, want %v", what, ctl.cfg.classes[r], got, want[r])
		}
	}
}

// TestRateSplitByClass: the suggested rate goes to critical first, then
// normal, and bulk gets what is left; admitted classes' demand is
// reserved; the least important limited class gets all that is left.
func TestRateSplitByClass(t *testing.T) {
	ctl := newTopicCtl(testCtlConfig(DefaultPolicy(priority.Default)))
	f := newFeed(ctl)
	f.run(10, []float64{30, 50, 40}, 100, 100) // share 1: this producer is the topic's only one

	cases := []struct {
		level   lagmonitor.Level
		rate    float64
		actions []Action
		allow   []float64
	}{
		// elevated: critical and normal admitted (30 + 50 reserved),
		// bulk limited to the 20/s left.
		{lvElevated, 100, []Action{Admit, Admit, Limit}, []float64{0, 0, 20}},
		// high: critical admitted (30 reserved), normal limited to the
		// 70/s left, bulk shed.
		{lvHigh, 100, []Action{Admit, Limit, Shed}, []float64{0, 70, 0}},
		// critical: critical limited to all of it, normal fails fast,
		// bulk shed.
		{lvCritical, 100, []Action{Limit, FailFast, Shed}, []float64{100, 0, 0}},
		// elevated with more important demand above the rate: bulk has
		// no rate (its records wait for one, within the cap).
		{lvElevated, 60, []Action{Admit, Admit, Limit}, []float64{0, 0, 0}},
	}
	for _, c := range cases {
		// Each case from no pressure: a drop in level eases (see
		// TestEasingOnLevelDrop), which is not what this checks.
		ctl.setPressure(lagmonitor.Pressure{Topic: "orders", Reason: "no live signal"}, f.now)
		ctl.setPressure(pressure(c.level, c.rate, f.now), f.now)
		checkAllow(t, c.level.String(), ctl, c.allow, c.actions)
	}

	// A policy limiting two classes at one level: normal, not the last
	// limited, gets its demand × headroom (50 × 1.2); bulk the rest.
	pol := DefaultPolicy(priority.Default).With(lvElevated, priority.Normal, Limit)
	ctl2 := newTopicCtl(testCtlConfig(pol))
	f2 := newFeed(ctl2)
	f2.run(10, []float64{30, 50, 40}, 100, 100)
	ctl2.setPressure(pressure(lvElevated, 100, f2.now), f2.now)
	checkAllow(t, "elevated, normal limited too", ctl2, []float64{0, 60, 10}, []Action{Admit, Limit, Limit})
	// Less than its demand × headroom left: normal gets what is left,
	// bulk nothing.
	ctl2.setPressure(pressure(lvElevated, 80, f2.now), f2.now)
	checkAllow(t, "elevated at 80/s", ctl2, []float64{0, 50, 0}, []Action{Admit, Limit, Limit})
}

// TestShare: a producer takes the share of the suggested rate its own
// traffic is of the topic's, never 0 and at most all of it.
func TestShare(t *testing.T) {
	cases := []struct {
		name            string
		own, incoming   float64
		measure         bool
		wantShare, want float64 // want: normal's rate at high, suggested 200, critical demand 0
	}{
		{"a quarter of the topic", 25, 100, true, 0.25, 50},
		{"half", 50, 100, true, 0.5, 100},
		{"no traffic of its own: the floor", 0, 100, true, DefaultMinShare, 200 * DefaultMinShare},
		{"more than the topic measured (lag between the two): at most 1", 120, 100, true, 1, 200},
		{"nothing arriving: all of it", 0, 0, true, 1, 200},
		{"not measured yet: all of it", 0, 0, false, 1, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctl := newTopicCtl(testCtlConfig(DefaultPolicy(priority.Default)))
			f := newFeed(ctl)
			if c.measure {
				f.run(10, []float64{0, 30, 0}, c.own, c.incoming)
			}
			ctl.setPressure(pressure(lvHigh, 200, f.now), f.now)
			if !near(ctl.share, c.wantShare) {
				t.Errorf("share %v, want %v", ctl.share, c.wantShare)
			}
			checkAllow(t, "high", ctl, []float64{0, c.want, 0}, []Action{Admit, Limit, Shed})
		})
	}
}

// TestNoSuggestedRate: without a suggested rate a limited class is held
// to a fraction of its own demand when the limit began, frozen so that
// the limit does not feed on itself.
func TestNoSuggestedRate(t *testing.T) {
	ctl := newTopicCtl(testCtlConfig(DefaultPolicy(priority.Default)))
	f := newFeed(ctl)
	f.run(10, []float64{20, 40, 60}, 120, 120)

	ctl.setPressure(pressure(lvElevated, 0, f.now), f.now)
	checkAllow(t, "elevated", ctl, []float64{0, 0, 0.8 * 60}, []Action{Admit, Admit, Limit})
	ctl.setPressure(pressure(lvHigh, 0, f.now), f.now)
	checkAllow(t, "high", ctl, []float64{0, 0.5 * 40, 0}, []Action{Admit, Limit, Shed})

	// The demand doubles under the limit (callers retry): the limit
	// stays where it began.
	f.run(30, []float64{20, 80, 60}, 60, 60)
	checkAllow(t, "high, demand doubled", ctl, []float64{0, 0.5 * 40, 0}, []Action{Admit, Limit, Shed})

	// Critical: critical is held to a quarter of its demand.
	ctl.setPressure(pressure(lvCritical, 0, f.now), f.now)
	checkAllow(t, "critical", ctl, []float64{0.25 * 20, 0, 0}, []Action{Limit, FailFast, Shed})

	// A suggested rate appears: it wins.
	ctl.setPressure(pressure(lvCritical, 10, f.now), f.now)
	checkAllow(t, "critical with a rate", ctl, []float64{10, 0, 0}, []Action{Limit, FailFast, Shed})

	// Once free, the baseline is taken again next time.
	f.run(1, []float64{20, 80, 60}, 60, 60)
	ctl.setPressure(lagmonitor.Pressure{Topic: "orders", Reason: "no live signal"}, f.now)
	f.run(40, []float64{20, 80, 60}, 160, 160) // the demand meters settle at the new demand
	ctl.setPressure(pressure(lvHigh, 0, f.now), f.now)
	checkAllow(t, "high again", ctl, []float64{0, 0.5 * 80, 0}, []Action{Admit, Limit, Shed})
}

// TestRecoveryRamp: back to ok, a class limited or refused under
// pressure rises linearly, in steps, to its demand over the ramp; an
// expired or absent signal lifts every limit at once.
func TestRecoveryRamp(t *testing.T) {
	ctl := newTopicCtl(testCtlConfig(DefaultPolicy(priority.Default)))
	f := newFeed(ctl)
	demand := []float64{30, 150, 40}
	f.run(10, demand, 100, 100)
	ctl.setPressure(pressure(lvHigh, 100, f.now), f.now)
	checkAllow(t, "high", ctl, []float64{0, 70, 0}, []Action{Admit, Limit, Shed})

	// Back to ok (a live ok signal): the ramp begins where the limits
	// were; critical, admitted under pressure, stays admitted.
	ok := pressure(lvOK, 0, f.now)
	ok.Seq = 8
	if !ctl.setPressure(ok, f.now) {
		t.Fatal("the ok signal is no change")
	}
	start := f.now
	if ctl.mode != modeRecovering {
		t.Fatalf("mode %v, want recovering", ctl.mode)
	}
	checkAllow(t, "ramp start", ctl, []float64{0, 70, 0}, []Action{Admit, Limit, Limit})

	// Half way: normal at 70 + (150 − 70)/2, bulk at 40/2. Without a
	// step due, nothing moves; tick computes the step.
	f.now = start.Add(15 * time.Second)
	if !ctl.tick(f.now) {
		t.Fatal("no step half way through the ramp")
	}
	checkAllow(t, "half way", ctl, []float64{0, 110, 20}, []Action{Admit, Limit, Limit})
	if ctl.tick(f.now.Add(time.Second)) { // a step is 30s/20 = 1.5s
		t.Error("a step 1s after the last one")
	}
	steps := 0
	for at := start.Add(15 * time.Second); at.Before(start.Add(30 * time.Second)); at = at.Add(100 * time.Millisecond) {
		before := ctl.allow[rNormal]
		ctl.tick(at)
		if ctl.mode == modeRecovering && ctl.allow[rNormal] > before {
			steps++
		}
	}
	if steps < 5 {
		t.Errorf("the ramp's second half rose in %d steps: not gradual", steps)
	}
	// Past the ramp: free.
	ctl.tick(start.Add(30 * time.Second))
	checkAllow(t, "past the ramp", ctl, []float64{0, 0, 0}, []Action{Admit, Admit, Admit})
	if ctl.mode != modeFree {
		t.Fatalf("mode %v after the ramp, want free", ctl.mode)
	}

	// Fail-open wins over the ramp: pressure, then the signal absent.
	f.now = start.Add(time.Minute)
	ctl.setPressure(pressure(lvCritical, 100, f.now), f.now)
	checkAllow(t, "critical", ctl, []float64{100, 0, 0}, []Action{Limit, FailFast, Shed})
	ctl.setPressure(lagmonitor.Pressure{Topic: "orders", Reason: "no live signal"}, f.now)
	checkAllow(t, "no live signal", ctl, []float64{0, 0, 0}, []Action{Admit, Admit, Admit})
	if ctl.mode != modeFree {
		t.Fatalf("mode %v without a live signal, want free", ctl.mode)
	}

	// ... and during a ramp too.
	ctl.setPressure(pressure(lvHigh, 100, f.now), f.now)
	ok.Seq, ok.ExpiresAt = 9, f.now.Add(15*time.Second)
	ctl.setPressure(ok, f.now)
	if ctl.mode != modeRecovering {
		t.Fatalf("mode %v, want recovering", ctl.mode)
	}
	if ctl.stale(f.now.Add(15*time.Second-time.Nanosecond)) || !ctl.stale(f.now.Add(15*time.Second)) {
		t.Fatal("stale must turn true exactly at the signal's expiry")
	}
	ctl.setPressure(lagmonitor.Pressure{Topic: "orders", Reason: "no live signal"}, f.now.Add(15*time.Second))
	checkAllow(t, "expired during the ramp", ctl, []float64{0, 0, 0}, []Action{Admit, Admit, Admit})

	// Ramp 0: limits lift at once when the level returns to ok.
	cfg := testCtlConfig(DefaultPolicy(priority.Default))
	cfg.ramp = 0
	ctl0 := newTopicCtl(cfg)
	f0 := newFeed(ctl0)
	f0.run(10, demand, 100, 100)
	ctl0.setPressure(pressure(lvHigh, 100, f0.now), f0.now)
	ctl0.setPressure(pressure(lvOK, 0, f0.now), f0.now)
	checkAllow(t, "ramp 0", ctl0, []float64{0, 0, 0}, []Action{Admit, Admit, Admit})
}

// TestSharedRateConverges: two producers of one topic, each offering
// 100 normal records/s at high level with a suggested rate of 60/s,
// admitting a record only if its class has a token at once. Together
// they converge near 60/s, not 120/s: each takes the share of the
// topic's traffic that is its own. A logical window on a fake clock.
func TestSharedRateConverges(t *testing.T) {
	const suggested, offered, secs = 60.0, 100, 120
	a := newTopicCtl(testCtlConfig(DefaultPolicy(priority.Default)))
	b := newTopicCtl(testCtlConfig(DefaultPolicy(priority.Default)))
	ctls := []*topicCtl{a, b}
	offeredN := [2][]uint64{make([]uint64, 3), make([]uint64, 3)}
	acked := [2]uint64{}
	var end int64
	admittedLate := [2]int{}
	now := t0
	for _, c := range ctls {
		c.setPressure(pressure(lvHigh, suggested, now), now)
	}
	for s := 0; s < secs; s++ {
		for i := 0; i < offered; i++ {
			now = now.Add(time.Second / offered)
			for k, c := range ctls {
				offeredN[k][rNormal]++
				_, lim := c.decide(rNormal)
				if lim != nil && lim.AllowN(now, 1) {
					acked[k]++
					end++
					if s >= secs/2 {
						admittedLate[k]++
					}
				}
			}
		}
		for k, c := range ctls {
			p := pressure(lvHigh, suggested, now) // a heartbeat
			p.Seq = uint64(s)
			c.setPressure(p, now)
			c.observe(now, end, true, acked[k], offeredN[k])
		}
	}
	window := float64(secs / 2)
	total := float64(admittedLate[0]+admittedLate[1]) / window
	t.Logf("admitted over the last %vs: %.1f/s and %.1f/s, %.1f/s together (suggested %v/s); shares %.2f %.2f",
		window, float64(admittedLate[0])/window, float64(admittedLate[1])/window, total, suggested, a.share, b.share)
	if total < 0.8*suggested || total > 1.2*suggested {
		t.Fatalf("together %.1f/s, want near the suggested %v/s (not %v/s, each taking all of it)", total, suggested, 2*suggested)
	}
	for k := range ctls {
		if r := float64(admittedLate[k]) / window; r >= 0.8*suggested {
			t.Errorf("producer %d alone took %.1f/s of the %v/s", k, r, suggested)
		}
	}
}

// TestRecoveryHoldsAtRoom: back at ok with a signal that says what room
// there is (the rate an ok signal suggests), the ramp climbs to the
// classes' parts of the room, not to their demand, and holds there while
// the demand exceeds it, so that a demand the consumers cannot take does
// not overload them again at ok; once the demand falls under 0.9 of the
// room, every limit lifts.
func TestRecoveryHoldsAtRoom(t *testing.T) {
	ctl := newTopicCtl(testCtlConfig(DefaultPolicy(priority.Default)))
	f := newFeed(ctl)
	demand := []float64{30, 150, 120} // 300/s offered
	f.run(10, demand, 100, 100)       // share 1
	ctl.setPressure(pressure(lvHigh, 100, f.now), f.now)
	ok := pressure(lvOK, 200, f.now) // room: 200/s
	ok.Seq = 8
	ctl.setPressure(ok, f.now)
	// Half way: normal from 70 toward 150 × 1.2 capped by what is left
	// (200 − 30 = 170: 170), bulk from 0 toward 0 (nothing left).
	f.run(15, demand, 100, 100)
	checkAllow(t, "half way", ctl, []float64{0, 120, 0}, []Action{Admit, Limit, Limit})
	// Past the ramp: held at the room while the demand (300) exceeds it.
	f.run(15, demand, 100, 100)
	if ctl.mode != modeRecovering || !ctl.capped {
		t.Fatalf("mode %v capped %v past the ramp with a demand of 300/s and a room of 200/s, want held", ctl.mode, ctl.capped)
	}
	checkAllow(t, "held at the room", ctl, []float64{0, 170, 0}, []Action{Admit, Limit, Limit})
	var d Decision
	ctl.describe(&d, rNormal, Limit)
	if !strings.Contains(d.Reason, "held at its part of the 200/s") {
		t.Errorf("reason %q does not say it is held at the room", d.Reason)
	}
	// The demand falls to 190 (above 0.9 × 200): still held.
	f.run(60, []float64{30, 100, 60}, 100, 100)
	if ctl.mode != modeRecovering {
		t.Fatalf("mode %v at a demand of 190/s, want still held (release under 180/s)", ctl.mode)
	}
	// Under 180: every limit lifts.
	f.run(60, []float64{30, 80, 50}, 100, 100)
	checkAllow(t, "demand under the room", ctl, []float64{0, 0, 0}, []Action{Admit, Admit, Admit})
	if ctl.mode != modeFree {
		t.Fatalf("mode %v with the demand under the room, want free", ctl.mode)
	}
}

// TestShareCorrectionCapsManyProducers: 50 producers of one topic, each
// offering 20% of the suggested rate (so each is held at the MinShare
// floor, 5%, above its 2% share of the traffic): without a correction
// they would together take 50 × 5% = 2.5 × the rate. Each sees the
// topic's incoming rate exceed the rate and scales its limits down, and
// together they settle at the rate. A logical window on a fake clock.
func TestShareCorrectionCapsManyProducers(t *testing.T) {
	const n, suggested, secs = 50, 1000.0, 600
	ctls := make([]*topicCtl, n)
	offered := make([][]uint64, n)
	acked := make([]float64, n)
	for i := range ctls {
		ctls[i] = newTopicCtl(testCtlConfig(DefaultPolicy(priority.Default)))
		offered[i] = make([]uint64, 3)
	}
	var end float64
	now := t0
	observe := func() {
		for i, c := range ctls {
			c.observe(now, int64(end), true, uint64(acked[i]), offered[i])
		}
	}
	// A free start: each sends its demand.
	for range 20 {
		now = now.Add(time.Second)
		for i := range ctls {
			offered[i][rBulk] += uint64(suggested / 5)
			acked[i] += suggested / 5
			end += suggested / 5
		}
		observe()
	}
	for _, c := range ctls {
		c.setPressure(pressure(lvElevated, suggested, now), now)
	}
	var sum float64
	for s := range secs {
		now = now.Add(time.Second)
		sum = 0
		for i, c := range ctls {
			offered[i][rBulk] += uint64(suggested / 5)
			got := min(suggested/5, c.allow[rBulk]) // what its limiter lets through
			acked[i] += got
			end += got
			sum += got
		}
		observe()
		if s == 0 && sum < 2*suggested {
			t.Fatalf("at the first second the producers took %.0f/s; the test needs the floor to overshoot (> 2 × %v)", sum, suggested)
		}
	}
	if sum > 1.1*suggested || sum < 0.85*suggested {
		t.Fatalf("after %ds, 50 producers together take %.0f/s of a suggested %v/s (correction %.2f, share %.3f), want within [0.85, 1.1] of it",
			secs, sum, suggested, ctls[0].corr, ctls[0].share)
	}
	t.Logf("50 producers settle at %.0f/s of %v/s (correction %.3f each)", sum, suggested, ctls[0].corr)
}

// TestEasingOnLevelDrop: a drop from high to elevated (not only to ok)
// does not admit normal's demand at once: normal, limited at high, eases
// up over the ramp to its part of the rate elevated's signal suggests,
// and holds there while the demand exceeds that rate, so that a
// partition or topic that cannot take the demand is not overloaded again
// at the lower level; bulk, refused at high, is limited at elevated by the
// row (it gets what the others leave). A rise to high ends the easing.
func TestEasingOnLevelDrop(t *testing.T) {
	ctl := newTopicCtl(testCtlConfig(DefaultPolicy(priority.Default)))
	f := newFeed(ctl)
	demand := []float64{60, 240, 300} // 600/s offered
	f.run(10, demand, 100, 100)       // share 1
	ctl.setPressure(pressure(lvHigh, 100, f.now), f.now)
	checkAllow(t, "high", ctl, []float64{0, 40, 0}, []Action{Admit, Limit, Shed})
	el := pressure(lvElevated, 180, f.now)
	el.Seq = 8
	ctl.setPressure(el, f.now)
	// Normal eases from 40 toward 180 − 60 = 120; bulk, last limited,
	// gets what is left: nothing.
	checkAllow(t, "elevated, easing starts", ctl, []float64{0, 40, 0}, []Action{Admit, Limit, Limit})
	if !ctl.easing() || ctl.mode != modePressured {
		t.Fatalf("easing %v, mode %v: want easing under pressure", ctl.easing(), ctl.mode)
	}
	f.run(15, demand, 100, 100)
	checkAllow(t, "half way", ctl, []float64{0, 80, 0}, []Action{Admit, Limit, Limit})
	f.run(15, demand, 100, 100)
	checkAllow(t, "held at its part", ctl, []float64{0, 120, 0}, []Action{Admit, Limit, Limit})
	f.run(60, demand, 100, 100)
	if !ctl.capped || !ctl.easing() {
		t.Fatalf("capped %v easing %v a minute on, the demand (600/s) above the rate (180/s): want held", ctl.capped, ctl.easing())
	}
	// The demand falls under 0.9 × 180: the row's own actions.
	f.run(120, []float64{60, 80, 10}, 100, 100)
	checkAllow(t, "demand under the rate", ctl, []float64{0, 0, 40}, []Action{Admit, Admit, Limit})
	if ctl.easing() {
		t.Fatal("still easing with the demand under the rate")
	}
	// Easing again after a drop, then a rise: high's row at once.
	ctl.setPressure(pressure(lvCritical, 100, f.now), f.now)
	ctl.setPressure(el, f.now)
	if !ctl.easing() {
		t.Fatal("no easing after critical -> elevated")
	}
	hi := pressure(lvHigh, 100, f.now)
	hi.Seq = 9
	ctl.setPressure(hi, f.now)
	if a, _ := ctl.decide(rNormal); a != Limit || ctl.rampFrom[rNormal] >= 0 {
		t.Fatalf("normal at high after a rise: %v, easing %v; want the row's limit, not easing", a, ctl.rampFrom[rNormal] >= 0)
	}
}

// TestHotPartitionEasesAfterward: a partition no longer named hot keeps
// its own limits while they ease: its records are held at its room (0.95
// of the capacity its owner last named) while their demand exceeds it,
// rather than admitted in full at the rest's level, which would melt it
// again; once its demand fits, its controller goes.
func TestHotPartitionEasesAfterward(t *testing.T) {
	cfg := testCtlConfig(DefaultPolicy(priority.Default))
	f := &followed{topic: "orders", ctl: newTopicCtl(cfg)}
	hot := pressure(lvHigh, 100, t0)
	hot.RestLevel = lvOK
	hot.Partitions = map[int32]lagmonitor.PartitionPressure{0: {Level: lvHigh, Rate: 100, Capacity: 200, Group: "g", Instance: "i-1"}}
	f.ctl.setPressure(hot, t0)
	f.setHot(cfg, hot, t0)
	hp := f.hot[0]
	if hp == nil || f.rest == nil {
		t.Fatal("no controllers for the hot partition and the rest")
	}
	fd := newFeed(hp.ctl)
	fd.now = t0
	demand := []float64{60, 240, 300}
	fd.run(10, demand, 100, 100)
	if c, _ := f.ctlFor(0); c != hp.ctl {
		t.Fatal("records bound for partition 0 are not admitted by its controller")
	}
	if a, _ := hp.ctl.decide(rNormal); a != Limit {
		t.Fatalf("normal bound for the hot partition at high: %v, want limit", a)
	}
	// The next signal names no hot partition: the topic is ok.
	ok := pressure(lvOK, 0, fd.now)
	ok.Seq, ok.RestLevel = 8, lvOK
	f.ctl.setPressure(ok, fd.now)
	f.setHot(cfg, ok, fd.now)
	if f.hot[0] != hp || !hp.ctl.easing() {
		t.Fatal("the partition's controller went at once; want it easing at its room")
	}
	fd.run(60, demand, 100, 100)
	if a, _ := hp.ctl.decide(rNormal); a != Limit || !hp.ctl.capped || !near(hp.ctl.p.Rate, 190) {
		t.Fatalf("a minute on, normal %v, capped %v, rate %v: want held at the room of 190/s", a, hp.ctl.capped, hp.ctl.p.Rate)
	}
	if c, _ := f.ctlFor(3); c != f.rest {
		t.Fatal("records bound for another partition are not admitted by the rest's controller")
	}
	// Its demand falls under the room: the controller goes.
	fd.run(120, []float64{60, 80, 10}, 100, 100)
	f.setHot(cfg, ok, fd.now)
	if f.hot != nil || f.rest != nil {
		t.Fatalf("controllers kept after the partition's demand fell under its room: hot %v", f.hot)
	}
}
