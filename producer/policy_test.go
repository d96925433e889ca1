package producer

import (
	"errors"
	"strings"
	"testing"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

var (
	lvOK       = lagmonitor.LevelOK
	lvElevated = lagmonitor.LevelElevated
	lvHigh     = lagmonitor.LevelHigh
	lvCritical = lagmonitor.LevelCritical
)

// TestDefaultPolicyCells checks every level × class cell of the default
// table against the rules.
func TestDefaultPolicyCells(t *testing.T) {
	p := DefaultPolicy(priority.Default)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[lagmonitor.Level]map[priority.Class]Action{
		lvOK:       {priority.Critical: Admit, priority.Normal: Admit, priority.Bulk: Admit},
		lvElevated: {priority.Critical: Admit, priority.Normal: Admit, priority.Bulk: Limit},
		lvHigh:     {priority.Critical: Admit, priority.Normal: Limit, priority.Bulk: Shed},
		lvCritical: {priority.Critical: Limit, priority.Normal: FailFast, priority.Bulk: Shed},
	}
	cells := 0
	for l, row := range want {
		for c, a := range row {
			cells++
			if got := p.Action(l, c); got != a {
				t.Errorf("%s × %s: %s, want %s", l, c, got, a)
			}
		}
	}
	if cells != 12 {
		t.Fatalf("checked %d cells, want 12", cells)
	}
	// Out-of-range levels read as the nearest; an unknown class as the
	// least important.
	if p.Action(lagmonitor.Level(9), priority.Normal) != FailFast || p.Action(lagmonitor.Level(-1), priority.Bulk) != Admit {
		t.Error("levels out of range are not clamped")
	}
	if p.Action(lvHigh, "vip") != Shed {
		t.Errorf("an unknown class at high: %s, want bulk's shed", p.Action(lvHigh, "vip"))
	}
}

// TestDefaultPolicyByRank checks the mapping of orders of one's own.
func TestDefaultPolicyByRank(t *testing.T) {
	cases := []struct {
		classes []priority.Class
		// the column (c critical, n normal, b bulk) each class takes
		columns string
	}{
		{[]priority.Class{"only"}, "c"},
		{[]priority.Class{"gold", "silver"}, "cb"},
		{[]priority.Class{"a", "b", "c"}, "cnb"},
		{[]priority.Class{"p0", "p1", "p2", "p3", "p4"}, "cnnnb"},
	}
	col := map[byte]priority.Class{'c': priority.Critical, 'n': priority.Normal, 'b': priority.Bulk}
	def := DefaultPolicy(priority.Default)
	for _, tc := range cases {
		o, err := priority.NewOrder(tc.classes...)
		if err != nil {
			t.Fatal(err)
		}
		p := DefaultPolicy(o)
		if err := p.Validate(); err != nil {
			t.Fatalf("%s: %v", o, err)
		}
		for i, c := range tc.classes {
			for _, l := range levels {
				if got, want := p.Action(l, c), def.Action(l, col[tc.columns[i]]); got != want {
					t.Errorf("order %s, %s × %s: %s, want %s (the %s column)", o, l, c, got, want, col[tc.columns[i]])
				}
			}
		}
	}
}

func TestPolicyWithAndValidate(t *testing.T) {
	def := DefaultPolicy(priority.Default)

	// A valid override: critical is limited from high on; bulk is
	// deferred rather than shed.
	p := def.With(lvHigh, priority.Critical, Limit).With(lvHigh, priority.Bulk, Defer).With(lvCritical, priority.Bulk, Defer)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.Action(lvHigh, priority.Critical) != Limit || p.Action(lvCritical, priority.Bulk) != Defer {
		t.Fatalf("overrides not applied:\n%s", p)
	}
	if def.Action(lvHigh, priority.Critical) != Admit {
		t.Fatal("With changed the policy it was called on")
	}
	if l, c, ok := p.hasDefer(); !ok || l != lvHigh || c != priority.Bulk {
		t.Fatalf("hasDefer = %v %v %v", l, c, ok)
	}

	bad := []struct {
		p    Policy
		cell string // what the error must name
	}{
		{def.With(lvOK, priority.Bulk, Limit), "Policy[ok][bulk]"},
		{def.With(lvCritical, priority.Bulk, Limit), "Policy[critical][bulk]"},        // relaxes bulk: shed at high
		{def.With(lvHigh, priority.Critical, Shed), "Policy[high][critical]"},         // stricter than normal's limit
		{def.With(lvElevated, priority.Normal, FailFast), "Policy[elevated][normal]"}, // stricter than bulk's limit
		{def.With(lvHigh, "vip", Shed), "unknown class"},
		{def.With(lagmonitor.Level(7), priority.Bulk, Shed), "unknown level"},
		{def.With(lvHigh, priority.Bulk, Action(42)), "unknown action"},
		{Policy{}, "zero value"},
		{DefaultPolicy(priority.Order{}), "empty order"},
	}
	for _, b := range bad {
		err := b.p.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), b.cell) {
			t.Errorf("want an error naming %q, got %v", b.cell, err)
		}
	}
}

// TestDeferringShed: the least important class (or the classes named) is
// deferred exactly where the table shed it; an unknown class is an error.
func TestDeferringShed(t *testing.T) {
	p := DefaultPolicy(priority.Default).DeferringShed()
	for _, l := range []lagmonitor.Level{lagmonitor.LevelOK, lagmonitor.LevelElevated, lagmonitor.LevelHigh, lagmonitor.LevelCritical} {
		for _, c := range priority.Default.Classes() {
			want := DefaultPolicy(priority.Default).Action(l, c)
			if want == Shed && c == priority.Bulk {
				want = Defer
			}
			if got := p.Action(l, c); got != want {
				t.Errorf("[%s][%s] = %s, want %s", l, c, got, want)
			}
		}
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := DefaultPolicy(priority.Default).DeferringShed("nope").Validate(); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown class: %v", err)
	}
}
