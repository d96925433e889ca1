package integration_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestLoopBenchFigures checks the figures BenchmarkLoopControl judges the
// loop by, on samples made up here (no broker).
func TestLoopBenchFigures(t *testing.T) {
	cfg := defaultBenchConfig()
	cfg.Overload, cfg.Recovery = 100*time.Second, 50*time.Second
	if from, to := cfg.settled(); from != 40*time.Second || to != 100*time.Second {
		t.Errorf("settled window of a 100s overload: %v–%v, want 40s–100s (its last 60%%)", from, to)
	}
	long := defaultBenchConfig()
	long.Overload = 10 * time.Minute
	if from, to := long.settled(); from != 7*time.Minute || to != 10*time.Minute {
		t.Errorf("settled window of a 10m overload: %v–%v, want 7m–10m (its last 3 minutes)", from, to)
	}
	if c, th := cfg.capacity(), cfg.drainThreshold(); c != 1200 || th != 600 {
		t.Errorf("capacity %v, drain threshold %d; want 1200/s and 600 records", c, th)
	}

	// One sample a second for 150s. Handled: 1200/s until 40s, 600/s
	// after. Worst time lag: 10s, but partition 3's 20s..39s at 60s..79s
	// (the topic's figure lags behind: the worst partition counts).
	// Offset lag: 5000 during the overload, 1000 at 100..119s, 700 at
	// 120s, 100 at 121..130s, 599 after.
	var ss []benchSample
	var handled int64
	for i := range 151 {
		s := benchSample{At: time.Duration(i) * time.Second, Handled: handled, TimeLag: 10 * time.Second,
			PartTime: make([]time.Duration, cfg.Partitions)}
		if i >= 60 && i < 80 {
			s.PartTime[3] = time.Duration(i-40) * time.Second
		}
		switch {
		case i < 100:
			s.OffsetLag = 5000
		case i < 120:
			s.OffsetLag = 1000
		case i == 120:
			s.OffsetLag = 700
		case i <= 130:
			s.OffsetLag = 100
		default:
			s.OffsetLag = 599
		}
		ss = append(ss, s)
		if i < 40 {
			handled += 1200
		} else {
			handled += 600
		}
	}
	changes := []time.Duration{5 * time.Second, 39 * time.Second, 40 * time.Second, 70 * time.Second, 99 * time.Second, 100 * time.Second}
	f := judge(cfg, ss, changes)
	if f.Utilisation != 0.5 {
		t.Errorf("utilisation %v, want 0.5 (600 of 1200/s in the window)", f.Utilisation)
	}
	// 61 samples (40s..100s): 20 of them 20s..39s, 41 at 10s; the p95 is
	// the 58th smallest: 36s.
	if f.LagMax != 39*time.Second || f.LagP95 != 36*time.Second {
		t.Errorf("worst lag max %v, p95 %v; want 39s and 36s", f.LagMax, f.LagP95)
	}
	if f.ChangesPerMin != 3 { // 40s, 70s, 99s in a minute
		t.Errorf("level changes per minute %v, want 3", f.ChangesPerMin)
	}
	if !f.Drained || f.Drain != 21*time.Second || f.LagAtEnd != 599 {
		t.Errorf("drain %v (drained %v, lag at end %d), want 21s: below 600 from 121s on", f.Drain, f.Drained, f.LagAtEnd)
	}
	ss[len(ss)-1].OffsetLag = 600
	if f := judge(cfg, ss, nil); f.Drained || f.LagAtEnd != 600 {
		t.Errorf("drained %v (lag at end %d) with the last sample at the threshold, want not drained", f.Drained, f.LagAtEnd)
	}
	if f := judge(cfg, nil, nil); f != (benchFigures{}) {
		t.Errorf("figures of no samples: %+v, want zero", f)
	}

	// The key skew: partition 0 draws HotShare, the others the rest.
	rng := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, cfg.Partitions)
	const n = 60000
	for range n {
		counts[cfg.drawPartition(rng)]++
	}
	if hot := float64(counts[0]) / n; hot < 0.24 || hot > 0.26 {
		t.Errorf("partition 0 drew %.3f of the records, want 0.25", hot)
	}
	for p := 1; p < len(counts); p++ {
		if x := float64(counts[p]) / n; x < 0.14 || x > 0.16 {
			t.Errorf("partition %d drew %.3f of the records, want 0.15", p, x)
		}
	}
	keys := keysByPartition("loopbench-keys", int(cfg.Partitions), 8)
	for p, ks := range keys {
		if len(ks) != 8 {
			t.Errorf("partition %d has %d keys, want 8", p, len(ks))
		}
	}

	// The ledger: lost, duplicates, and records handled before their
	// acknowledgement arrived.
	l := newBenchLedger(2)
	l.expect(0, 0)
	l.expect(0, 1)
	l.handled(0, 0)
	l.handled(0, 0)
	l.handled(1, 5) // before its acknowledgement
	l.expect(1, 5)
	l.handled(1, 9) // never acknowledged
	if c := l.counts(); c != (ledgerCounts{expected: 3, handled: 2, duplicates: 1, unexpected: 1}) {
		t.Errorf("ledger counts %+v, want 3 expected, 2 handled, 1 duplicate, 1 unexpected", c)
	}
	if l.complete() {
		t.Error("the ledger is complete with offset 0/1 never handled")
	}
	if m := l.missing(5); !strings.Contains(m, "0/1") {
		t.Errorf("missing %s, want 0/1 named", m)
	}
	l.handled(0, 1)
	if !l.complete() {
		t.Error("the ledger is not complete with every record handled")
	}
}
