package lagmonitor

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestRateMeterSteadyRateIrregularSampling(t *testing.T) {
	var m RateMeter // zero value: DefaultRateTau
	if m.Known() || m.Observe(at(0), 0) != 0 {
		t.Fatal("a rate before any interval")
	}
	// 250 records/s, sampled at irregular intervals: the rate is exact
	// from the first interval on.
	var now time.Duration
	var count uint64
	for i, step := range []time.Duration{2 * time.Second, 36 * time.Millisecond, 5 * time.Second, 1100 * time.Millisecond, time.Minute, 4 * time.Millisecond} {
		now += step
		count += uint64(250 * step.Seconds())
		r := m.Observe(at(now), count)
		if i == 0 && !m.Known() {
			t.Fatal("unknown after a 2s interval")
		}
		if !near(r, 250) || !near(m.Rate(), 250) {
			t.Fatalf("step %d (%v): rate %v, want 250", i, step, r)
		}
	}
}

// After a step in rate, the reading depends only on the time elapsed, not
// on how it was cut into samples: r2 + (r1 − r2)·e^(−t/τ).
func TestRateMeterStepResponseIndependentOfSampling(t *testing.T) {
	run := func(step time.Duration) float64 {
		m := NewRateMeter(10 * time.Second)
		m.Observe(at(0), 0)
		m.Observe(at(10*time.Second), 1000) // 100/s
		var count uint64 = 1000
		var now time.Duration = 10 * time.Second
		for now < 30*time.Second {
			now += step
			count += uint64(500 * step.Seconds()) // 500/s from 10s on
			m.Observe(at(now), count)
		}
		return m.Rate()
	}
	want := 500 + (100-500)*math.Exp(-2) // 20s after the step, τ = 10s
	for _, step := range []time.Duration{20 * time.Second, 5 * time.Second, time.Second, 100 * time.Millisecond} {
		if got := run(step); math.Abs(got-want) > 1e-6 {
			t.Errorf("sampled every %v: %v, want %v", step, got, want)
		}
	}
}

func TestRateMeterIrregularInput(t *testing.T) {
	m := NewRateMeter(10 * time.Second)
	m.Observe(at(0), 100)
	// A first interval shorter than τ/10 folds into the next.
	if m.Observe(at(500*time.Millisecond), 200); m.Known() {
		t.Fatal("rate from a 0.5s first interval with τ = 10s")
	}
	if r := m.Observe(at(2*time.Second), 300); !m.Known() || !near(r, 100) {
		t.Fatalf("first rate %v, want 100 (200 records over 2s)", r)
	}
	// Same instant: folded into the next interval, nothing lost.
	if r := m.Observe(at(2*time.Second), 1000); !near(r, 100) {
		t.Fatalf("a zero interval changed the rate to %v", r)
	}
	// The 700 records counted at 2s stay in the interval from 2s: at 12s
	// it holds 1700 records (170/s), which pulls the rate above 100.
	if r := m.Observe(at(12*time.Second), 2000); !(r > 100) {
		t.Fatalf("records of a zero interval were dropped: rate %v", r)
	}
	before := m.Rate()
	// Counter reset: restart the interval, keep the rate.
	if r := m.Observe(at(13*time.Second), 5); r != before {
		t.Fatalf("counter reset changed the rate: %v -> %v", before, r)
	}
	if r := m.Observe(at(23*time.Second), 5); !(r < before) || r <= 0 {
		t.Fatalf("after a reset and 10s without records: %v, want between 0 and %v", r, before)
	}
	// Clock backwards: restart the interval from it, keep the rate.
	before = m.Rate()
	if r := m.Observe(at(time.Second), 10_000); r != before {
		t.Fatalf("a backward clock changed the rate: %v -> %v", before, r)
	}
	if r := m.Observe(at(11*time.Second), 10_000); !(r < before) {
		t.Fatalf("the backward sample was not taken as the new start: %v", r)
	}
	m.Reset()
	if m.Known() || m.Rate() != 0 || m.Tau != 10*time.Second {
		t.Fatalf("after Reset: %+v", m)
	}
}

func TestDrainMeterCountsDivertsApart(t *testing.T) {
	d := NewDrainMeter(0)
	d.Observe(at(0), 0, 0)
	r := d.Observe(at(10*time.Second), 1000, 4000)
	if !d.Known() || !near(r.Handled, 100) || !near(r.Diverted, 400) || d.Rates() != r {
		t.Fatalf("%+v, want handled 100/s, diverted 400/s", r)
	}
}

func TestCapacityEstimator(t *testing.T) {
	var c CapacityEstimator // zero value: DefaultCapacityHold
	if c.Capacity(at(0)) != 0 {
		t.Fatal("capacity before any observation")
	}
	// Unsaturated: a consumer that keeps up drains what arrives, which
	// says nothing of its capacity.
	c.Observe(at(0), 300, false)
	if c.Capacity(at(0)) != 0 {
		t.Fatal("capacity estimated while not saturated")
	}
	c.Observe(at(time.Second), 800, true)
	c.Observe(at(2*time.Second), 900, true)
	if got := c.Capacity(at(2 * time.Second)); got != 900 {
		t.Fatalf("capacity %v, want the last saturated drain rate 900", got)
	}
	// Held while not saturated, for the hold, then unknown.
	c.Observe(at(3*time.Second), 50, false)
	if got := c.Capacity(at(2*time.Second + DefaultCapacityHold)); got != 900 {
		t.Fatalf("capacity %v at the end of the hold, want 900", got)
	}
	if got := c.Capacity(at(2*time.Second + DefaultCapacityHold + 1)); got != 0 {
		t.Fatalf("capacity %v past the hold, want 0", got)
	}
	// A saturated consumer that drains nothing has no capacity to speak of.
	c.Observe(at(time.Hour), 0, true)
	if got := c.Capacity(at(time.Hour)); got != 0 {
		t.Fatalf("capacity %v, want 0", got)
	}
	c.Observe(at(time.Hour), math.Inf(1), true)
	if got := c.Capacity(at(time.Hour)); got != 0 {
		t.Fatalf("capacity %v from an infinite rate, want 0", got)
	}
	short := NewCapacityEstimator(time.Second)
	short.Observe(at(0), 10, true)
	if short.Capacity(at(time.Second)) != 10 || short.Capacity(at(2*time.Second)) != 0 {
		t.Fatal("custom hold not applied")
	}
}

func TestRateConfigValidateNamesField(t *testing.T) {
	if err := DefaultRateConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	d := DefaultRateConfig()
	if d.Recovery != time.Minute || d.Floor != 0.1 || d.Ceiling != 0.9 {
		t.Fatalf("defaults changed without updating the docs: %+v", d)
	}
	for _, c := range []struct {
		field string
		c     RateConfig
	}{
		{"RateConfig.Recovery", RateConfig{Recovery: 0, Floor: 0.1, Ceiling: 0.9}},
		{"RateConfig.Ceiling", RateConfig{Recovery: time.Second, Floor: 0.1, Ceiling: 1.5}},
		{"RateConfig.Ceiling", RateConfig{Recovery: time.Second, Floor: 0.1, Ceiling: math.NaN()}},
		{"RateConfig.Floor", RateConfig{Recovery: time.Second, Floor: 0, Ceiling: 0.9}},
		{"RateConfig.Floor", RateConfig{Recovery: time.Second, Floor: 0.95, Ceiling: 0.9}},
	} {
		err := c.c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want ErrInvalidConfig naming it", c.field, err)
		}
	}
	if err := (RateConfig{Recovery: time.Second, Floor: 1, Ceiling: 1}).Validate(); err != nil {
		t.Fatalf("Floor = Ceiling = 1: %v", err)
	}
}

func TestSuggestFormula(t *testing.T) {
	c := DefaultRateConfig() // recover within 1m, between 10% and 90%
	for _, tc := range []struct {
		name     string
		capacity float64
		backlog  int64
		level    Level
		want     float64
	}{
		{"within the clamp", 1000, 30_000, LevelHigh, 500},           // 1000 − 30000/60
		{"just above the floor", 1000, 53_940, LevelHigh, 101},       // 1000 − 899
		{"at the floor", 1000, 54_000, LevelHigh, 100},               // 1000 − 900
		{"floor holds", 1000, 10_000_000, LevelCritical, 100},        // far below: 10%
		{"at the ceiling", 1000, 6_000, LevelElevated, 900},          // 1000 − 100
		{"ceiling holds", 1000, 1, LevelElevated, 900},               // tiny backlog: 90%
		{"just below the ceiling", 1000, 6_060, LevelHigh, 899},      // 1000 − 101
		{"caught up", 1000, 0, LevelHigh, 900},                       // held above ok: the ceiling keeps it caught up
		{"negative backlog", 1000, -5, LevelHigh, 900},               // as caught up
		{"level ok", 1000, 30_000, LevelOK, 0},                       // no pressure: none
		{"unknown level", 1000, 30_000, Level(7), 0},                 // none
		{"capacity unknown", 0, 30_000, LevelCritical, 0},            // none
		{"capacity negative", -1, 30_000, LevelCritical, 0},          // none
		{"capacity NaN", math.NaN(), 30_000, LevelCritical, 0},       // none
		{"capacity inf", math.Inf(1), 30_000, LevelCritical, 0},      // none
		{"tiny capacity still > 0", 0.5, 1_000_000, LevelHigh, 0.05}, // floor of a tiny capacity
	} {
		got := c.Suggest(tc.capacity, tc.backlog, tc.level)
		if !near(got, tc.want) {
			t.Errorf("%s: Suggest(%v, %d, %v) = %v, want %v", tc.name, tc.capacity, tc.backlog, tc.level, got, tc.want)
		}
	}
	// The suggestion never grows with the backlog.
	prev := math.Inf(1)
	for b := int64(1); b < 100_000; b += 997 {
		s := c.Suggest(1000, b, LevelHigh)
		if s > prev || s < 100 || s > 900 {
			t.Fatalf("backlog %d: %v after %v", b, s, prev)
		}
		prev = s
	}
}
