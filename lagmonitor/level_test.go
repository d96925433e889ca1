package lagmonitor

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// t0 is the start of every injected clock in these tests.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func newMachine(t *testing.T, th Thresholds) *LevelMachine {
	t.Helper()
	m, err := NewLevelMachine(th)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestThresholdsDefaultsValid(t *testing.T) {
	d := DefaultThresholds()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Elevated.TimeLag != 5*time.Second || d.High.TimeLag != 30*time.Second || d.Critical.TimeLag != 2*time.Minute ||
		d.Elevated.OffsetLag != 0 || d.High.OffsetLag != 0 || d.Critical.OffsetLag != 0 ||
		d.ExitFraction != 0.5 || d.Dwell != 30*time.Second {
		t.Fatalf("defaults changed without updating the docs: %+v", d)
	}
}

func TestThresholdsValidateNamesField(t *testing.T) {
	mod := func(f func(*Thresholds)) Thresholds {
		th := DefaultThresholds()
		f(&th)
		return th
	}
	for _, c := range []struct {
		field string
		th    Thresholds
	}{
		{"Thresholds.Elevated.TimeLag", mod(func(t *Thresholds) { t.Elevated.TimeLag = -1 })},
		{"Thresholds.High.OffsetLag", mod(func(t *Thresholds) { t.High.OffsetLag = -5 })},
		{"Thresholds.High.TimeLag", mod(func(t *Thresholds) { t.High.TimeLag = 5 * time.Second })},
		{"Thresholds.Critical.TimeLag", mod(func(t *Thresholds) { t.Critical.TimeLag = time.Second })},
		{"Thresholds.Critical.OffsetLag", mod(func(t *Thresholds) { t.Elevated.OffsetLag = 100; t.Critical.OffsetLag = 100 })},
		{"Thresholds.ExitFraction", mod(func(t *Thresholds) { t.ExitFraction = 0 })},
		{"Thresholds.ExitFraction", mod(func(t *Thresholds) { t.ExitFraction = 1 })},
		{"Thresholds.ExitFraction", mod(func(t *Thresholds) { t.ExitFraction = math.NaN() })},
		{"Thresholds.Dwell", mod(func(t *Thresholds) { t.Dwell = -time.Second })},
		{"Thresholds", Thresholds{ExitFraction: 0.5}},
	} {
		err := c.th.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig naming it", c.field, err)
		}
		if _, err := NewLevelMachine(c.th); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: NewLevelMachine = %v, want ErrInvalidConfig", c.field, err)
		}
	}
	// Off levels between on ones, and marks of one kind skipping a level,
	// are valid.
	ok := Thresholds{
		Elevated:     Mark{OffsetLag: 1000},
		Critical:     Mark{TimeLag: time.Minute, OffsetLag: 5000},
		ExitFraction: 0.5,
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestEntryLevel(t *testing.T) {
	th := DefaultThresholds()
	th.High.OffsetLag = 10_000
	for _, c := range []struct {
		tl   time.Duration
		ol   int64
		want Level
	}{
		{0, 0, LevelOK},
		{-time.Hour, -5, LevelOK},
		{5*time.Second - 1, 0, LevelOK},
		{5 * time.Second, 0, LevelElevated},
		{29 * time.Second, 9_999, LevelElevated},
		{time.Second, 10_000, LevelHigh}, // the offset mark alone suffices
		{30 * time.Second, 0, LevelHigh},
		{2 * time.Minute, 0, LevelCritical},
		{time.Hour, 1 << 40, LevelCritical},
	} {
		if got := th.EntryLevel(c.tl, c.ol); got != c.want {
			t.Errorf("EntryLevel(%v, %d) = %v, want %v", c.tl, c.ol, got, c.want)
		}
	}
}

// A time lag oscillating around the elevated mark enters elevated once and
// stays there: the dips stay above the exit mark (2.5s), so they never
// start the dwell.
func TestLevelOscillationAroundMarkDoesNotFlap(t *testing.T) {
	m := newMachine(t, DefaultThresholds())
	changes := 0
	for i := range 200 {
		lag := 6 * time.Second
		if i%2 == 1 {
			lag = 3 * time.Second
		}
		d := m.Observe(at(time.Duration(i)*time.Second), lag, 0)
		if d.Changed {
			changes++
		}
		if d.Level != LevelElevated {
			t.Fatalf("step %d (lag %v): level %v, want elevated", i, lag, d.Level)
		}
	}
	if changes != 1 {
		t.Fatalf("%d level changes, want 1 (entering elevated)", changes)
	}
	// Without hysteresis the same series would have flapped: the entry
	// level alone alternates.
	th := DefaultThresholds()
	if th.EntryLevel(6*time.Second, 0) == th.EntryLevel(3*time.Second, 0) {
		t.Fatal("test series does not cross the mark")
	}
}

// Dips at or below the exit mark that are shorter than the dwell do not
// release a level: the run restarts at each rise above the exit mark.
func TestLevelDwellRespected(t *testing.T) {
	m := newMachine(t, DefaultThresholds()) // dwell 30s, high exit 15s
	if d := m.Observe(at(0), 40*time.Second, 0); d.Level != LevelHigh || !d.Changed || d.Prev != LevelOK {
		t.Fatalf("entering high: %+v", d)
	}
	// 29s at or below the exit mark, then above it: still high.
	for s := 1; s <= 29; s++ {
		if d := m.Observe(at(time.Duration(s)*time.Second), 10*time.Second, 0); d.Level != LevelHigh {
			t.Fatalf("left high after %ds below its exit mark: %+v", s-1, d)
		}
	}
	if d := m.Observe(at(30*time.Second), 16*time.Second, 0); d.Level != LevelHigh || !strings.Contains(d.Reason, "high held: time lag 16s > exit 15s") {
		t.Fatalf("above exit: %+v", d)
	}
	// A new run starts at 31s; at 60s it has lasted 29s: held.
	for s := 31; s <= 60; s++ {
		d := m.Observe(at(time.Duration(s)*time.Second), 10*time.Second, 0)
		if d.Level != LevelHigh {
			t.Fatalf("left high at %ds, run started at 31s: %+v", s, d)
		}
		if s == 45 && d.Reason != "high held: at or below exit marks for 14s of 30s dwell" {
			t.Fatalf("reason while dwelling: %q", d.Reason)
		}
	}
	// At 61s the run has lasted 30s: high is released; 10s still reaches
	// elevated's entry mark.
	d := m.Observe(at(61*time.Second), 10*time.Second, 0)
	if d.Level != LevelElevated || !d.Changed || d.Prev != LevelHigh || d.Reason != "time lag 10s >= elevated 5s" {
		t.Fatalf("after dwell: %+v", d)
	}
}

func TestLevelJumpsStraightToCritical(t *testing.T) {
	m := newMachine(t, DefaultThresholds())
	m.Observe(at(0), 0, 0)
	d := m.Observe(at(time.Second), 3*time.Minute, 0)
	if d.Level != LevelCritical || d.Prev != LevelOK || !d.Changed {
		t.Fatalf("%+v, want ok -> critical at once", d)
	}
	if d.Reason != "time lag 3m0s >= critical 2m0s" {
		t.Fatalf("reason %q", d.Reason)
	}
	// Rising further, or to a lower entry level, changes nothing at once.
	if d := m.Observe(at(2*time.Second), 40*time.Second, 0); d.Level != LevelCritical || d.Changed {
		t.Fatalf("%+v, want critical held", d)
	}
}

func TestLevelDropsSeveralLevelsAfterDwell(t *testing.T) {
	m := newMachine(t, DefaultThresholds())
	m.Observe(at(0), 3*time.Minute, 0)
	var d Decision
	for s := 1; s < 31; s++ {
		d = m.Observe(at(time.Duration(s)*time.Second), 0, 0)
		if d.Level != LevelCritical {
			t.Fatalf("left critical %ds into the dwell: %+v", s-1, d)
		}
	}
	// The run started at 1s; at 31s it has lasted the dwell for every level.
	d = m.Observe(at(31*time.Second), 0, 0)
	if d.Level != LevelOK || d.Prev != LevelCritical || !d.Changed {
		t.Fatalf("%+v, want critical -> ok in one step", d)
	}
	if d.Reason != "time lag 0s < elevated 5s" {
		t.Fatalf("reason %q", d.Reason)
	}
}

// Dropping several levels at once needs each dropped level's own dwell: a
// lag below critical's exit mark but above high's only releases critical,
// and the level lands on high, held by its exit mark.
func TestLevelDropStopsAtLevelStillHeld(t *testing.T) {
	m := newMachine(t, DefaultThresholds())
	m.Observe(at(0), 3*time.Minute, 0)
	for s := 1; s <= 30; s++ {
		m.Observe(at(time.Duration(s)*time.Second), 50*time.Second, 0) // <= 1m, > 15s
	}
	d := m.Observe(at(31*time.Second), 20*time.Second, 0) // entry level: elevated
	if d.Level != LevelHigh || d.Prev != LevelCritical || d.Reason != "high held: time lag 20s > exit 15s" {
		t.Fatalf("%+v, want critical -> high, held", d)
	}
	// Now at zero: high's run starts at 32s, elevated's too; both released
	// together at 62s.
	for s := 32; s < 62; s++ {
		if d := m.Observe(at(time.Duration(s)*time.Second), 0, 0); d.Level != LevelHigh {
			t.Fatalf("left high at %ds: %+v", s, d)
		}
	}
	if d := m.Observe(at(62*time.Second), 0, 0); d.Level != LevelOK {
		t.Fatalf("%+v, want ok", d)
	}
}

// With the time marks off, the offset mark alone enters a level and the
// offset exit mark alone holds it.
func TestLevelOffsetLagOnlyEntry(t *testing.T) {
	th := Thresholds{
		High:         Mark{OffsetLag: 10_000},
		ExitFraction: 0.5,
		Dwell:        10 * time.Second,
	}
	m := newMachine(t, th)
	// An enormous time lag means nothing when no time mark is on.
	if d := m.Observe(at(0), time.Hour, 9_999); d.Level != LevelOK || d.Reason != "offset lag 9999 < high 10000" {
		t.Fatalf("%+v", d)
	}
	d := m.Observe(at(time.Second), 0, 10_000)
	if d.Level != LevelHigh || !d.Changed || d.Reason != "offset lag 10000 >= high 10000" {
		t.Fatalf("%+v, want high by the offset mark", d)
	}
	if d := m.Observe(at(2*time.Second), 0, 5_001); d.Level != LevelHigh || d.Reason != "high held: offset lag 5001 > exit 5000" {
		t.Fatalf("%+v", d)
	}
	m.Observe(at(3*time.Second), 0, 5_000) // the run starts at the exit mark itself
	if d := m.Observe(at(12*time.Second), 0, 4_000); d.Level != LevelHigh {
		t.Fatalf("left high 9s into a 10s dwell: %+v", d)
	}
	if d := m.Observe(at(13*time.Second), 0, 4_000); d.Level != LevelOK {
		t.Fatalf("%+v, want ok after the dwell", d)
	}
}

// With both marks on, any one reaching its entry mark enters the level,
// and leaving needs both at or below their exit marks.
func TestLevelBothMarks(t *testing.T) {
	th := DefaultThresholds()
	th.Elevated.OffsetLag = 1_000
	th.Dwell = 0
	m := newMachine(t, th)
	if d := m.Observe(at(0), 6*time.Second, 2_000); d.Reason != "time lag 6s >= elevated 5s, offset lag 2000 >= elevated 1000" {
		t.Fatalf("reason %q", d.Reason)
	}
	// Time lag at its exit mark, offset lag above its own: held.
	if d := m.Observe(at(time.Second), 2500*time.Millisecond, 501); d.Level != LevelElevated || d.Reason != "elevated held: offset lag 501 > exit 500" {
		t.Fatalf("%+v", d)
	}
	// Both at or below: with a zero dwell, released at once.
	if d := m.Observe(at(2*time.Second), 2500*time.Millisecond, 500); d.Level != LevelOK || !d.Changed {
		t.Fatalf("%+v, want ok at once with a zero dwell", d)
	}
}

// A level that is off is never entered nor held: the machine goes from ok
// to the next level that is on, and drops through an off level.
func TestLevelOffLevelSkipped(t *testing.T) {
	th := DefaultThresholds()
	th.High = Mark{}
	th.Dwell = 5 * time.Second
	m := newMachine(t, th)
	if d := m.Observe(at(0), time.Minute, 0); d.Level != LevelElevated {
		t.Fatalf("%+v, want elevated (high is off)", d)
	}
	m.Observe(at(time.Second), 3*time.Minute, 0)
	m.Observe(at(2*time.Second), 0, 0)
	if d := m.Observe(at(7*time.Second), 0, 0); d.Level != LevelOK || d.Prev != LevelCritical {
		t.Fatalf("%+v, want critical -> ok", d)
	}
}

// A clock that goes backwards never hastens a release.
func TestLevelClockBackwards(t *testing.T) {
	m := newMachine(t, DefaultThresholds())
	m.Observe(at(time.Minute), 40*time.Second, 0)
	m.Observe(at(2*time.Minute), 0, 0)
	if d := m.Observe(at(0), 0, 0); d.Level != LevelHigh {
		t.Fatalf("%+v, want high held", d)
	}
	if d := m.Observe(at(2*time.Minute+30*time.Second), 0, 0); d.Level != LevelOK {
		t.Fatalf("%+v, want ok once the dwell passed", d)
	}
}

func TestLevelReset(t *testing.T) {
	m := newMachine(t, DefaultThresholds())
	m.Observe(at(0), time.Hour, 0)
	m.Reset()
	if m.Level() != LevelOK || m.Thresholds() != DefaultThresholds() {
		t.Fatalf("after Reset: %v %+v", m.Level(), m.Thresholds())
	}
	if d := m.Observe(at(time.Second), 0, 0); d.Level != LevelOK || d.Changed {
		t.Fatalf("%+v", d)
	}
}
