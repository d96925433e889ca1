package integration_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/looptest"
	"github.com/floodgate-kafka/floodgate/producer"
)

// loopEnv is a pressure scenario's topic (its own, of partitions
// partitions), control topic, group, ledger and commit checker, for the
// scenarios of internal/looptest (which also run on kfake in producer/).
func loopEnv(t *testing.T, partitions int32) (*pressureScenario, *looptest.Env) {
	c := integration.Shared(t)
	s := newPressureScenario(t, c, partitions)
	return s, &looptest.Env{Brokers: c.Brokers, Topic: s.topic, Control: s.control, Group: s.group,
		Partitions: int(partitions), Opts: s.opts, Ledger: s.ledger}
}

// TestLoop closes the pressure loop on the broker: a consumer held back
// on purpose raises its level through elevated, high and critical;
// pressure-aware producers throttle normal, shed bulk and keep critical
// flowing; once the consumer catches up, admission recovers. See
// looptest.Loop for every check; every record acknowledged is handled,
// and no commit passes a record not handled.
func TestLoop(t *testing.T) {
	s, env := loopEnv(t, 3)
	looptest.Loop(t, env)
	s.report("loop", 0, "")
}

// TestLoopLatency measures the time from a lag monitor's level change
// (the signal it issues) to a pressure-aware producer's admission
// changing (its level change), over 24 transitions (times
// FLOODGATE_SCENARIO_SCALE). The goal is a p99 under 250ms on loopback;
// the test logs the figures and asserts only that every transition
// reached the producer (each within 30s).
func TestLoopLatency(t *testing.T) {
	s, env := loopEnv(t, 3)
	trs := looptest.Latency(t, env, integration.Scale(24))
	sum, _ := looptest.Summary(trs)
	t.Logf("%s: %s", s.c.Kind, sum)
	s.report("loop-latency", 0, strings.SplitN(sum, " (", 2)[0])
}

// burstEnv is the variable that runs TestLoopBurstComparison without
// naming it in -run.
const burstEnv = "FLOODGATE_LOOP_BURST"

// TestLoopBurstComparison runs the same burst twice against a consumer
// slowed to 200 records/s: 250 normal and 250 bulk records/s for 20s,
// and 10 critical records/s whose produce latency is measured, all
// through one producer; first a plain kgo client, then a pressure-aware
// producer around one. It logs the consumer's lag over time (its
// monitor's measure, every 500ms) and the critical latencies side by
// side. It asserts the qualitative outcome only, with room for slow
// machines: the pressure-aware run's largest backlog is under half the
// plain run's, and its critical records are never shed nor failed.
//
// It takes about two minutes: skipped under -short, and run only when
// -run names it or FLOODGATE_LOOP_BURST=1.
func TestLoopBurstComparison(t *testing.T) {
	if testing.Short() {
		t.Skip("the burst comparison takes about two minutes")
	}
	if run := flag.Lookup("test.run"); os.Getenv(burstEnv) == "" && (run == nil || !strings.Contains(run.Value.String(), "BurstComparison")) {
		t.Skipf("the burst comparison takes about two minutes: run it with -run TestLoopBurstComparison or %s=1", burstEnv)
	}
	cfg := looptest.BurstConfig{Duration: 20 * time.Second, Capacity: 200, Normal: 250, Bulk: 250, Critical: 10,
		Opts: []producer.Opt{producer.MaxWait(250 * time.Millisecond), producer.Ramp(3 * time.Second), producer.Measure(500*time.Millisecond, 2*time.Second)}}
	var plain, aware looptest.BurstResult
	var kind integration.Kind
	for _, aw := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "aware"}[aw]
		t.Run(name, func(t *testing.T) {
			s, env := loopEnv(t, 3)
			kind = s.c.Kind
			cfg := cfg
			cfg.Aware = aw
			res := looptest.Burst(t, env, cfg)
			if aw {
				aware = res
			} else {
				plain = res
			}
			maxO, maxT := res.MaxLag()
			s.report("loop-burst-"+name, 0, fmt.Sprintf("max_lag=%d max_time_lag=%v drained=%v", maxO, maxT.Round(100*time.Millisecond), res.Drained.Round(100*time.Millisecond)))
		})
	}
	if t.Failed() {
		return
	}
	t.Log(burstTable(kind, cfg, plain, aware))
	po, _ := plain.MaxLag()
	ao, _ := aware.MaxLag()
	if ao*2 >= po {
		t.Errorf("the pressure-aware producer's largest backlog (%d records) is not under half the plain producer's (%d)", ao, po)
	}
	if c := aware.Critical; c.Shed+c.Overloaded+c.Failed > 0 {
		t.Errorf("critical through the pressure-aware producer: %v, want never shed nor failed", c)
	}
	for name, r := range map[string]looptest.BurstResult{"plain": plain, "aware": aware} {
		for _, tl := range []looptest.Tally{r.Critical, r.Normal, r.Bulk} {
			if tl.Failed > 0 {
				t.Errorf("%s run: %v", name, tl)
			}
		}
	}
}

// burstTable renders the two runs side by side.
func burstTable(kind integration.Kind, cfg looptest.BurstConfig, plain, aware looptest.BurstResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "burst on %s: %v of %.0f normal + %.0f bulk + %.0f critical records/s, consumer capacity %.0f/s\n",
		kind, cfg.Duration, cfg.Normal, cfg.Bulk, cfg.Critical, cfg.Capacity)
	fmt.Fprintf(&b, "| t | plain: lag (records) | time lag | level | aware: lag (records) | time lag | level |\n|---|---|---|---|---|---|---|\n")
	cell := func(s looptest.Sample, ok bool) string {
		if !ok {
			return "drained | | "
		}
		return fmt.Sprintf("%d | %v | %s", s.OffsetLag, s.TimeLag.Round(100*time.Millisecond), s.Level)
	}
	for _, at := range []time.Duration{5, 10, 15, 20, 25, 30, 40, 50, 60} {
		at *= time.Second
		if at > max(plain.Drained, aware.Drained) {
			break
		}
		p, pok := plain.At(at)
		a, aok := aware.At(at)
		fmt.Fprintf(&b, "| %v | %s | %s |\n", at, cell(p, pok), cell(a, aok))
	}
	po, pt := plain.MaxLag()
	ao, at := aware.MaxLag()
	fmt.Fprintf(&b, "| max | %d | %v | | %d | %v | |\n", po, pt.Round(100*time.Millisecond), ao, at.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "drained (every record handled) at: plain %v, aware %v\n", plain.Drained.Round(100*time.Millisecond), aware.Drained.Round(100*time.Millisecond))
	for _, r := range []struct {
		name string
		r    looptest.BurstResult
	}{{"plain", plain}, {"aware", aware}} {
		l := r.r.CriticalLatency
		fmt.Fprintf(&b, "%s: critical %v (latency median %v, p99 %v, max %v); normal %v; bulk %v; ticks skipped %d; levels %s\n", r.name,
			r.r.Critical, looptest.Quantile(l, 0.5).Round(100*time.Microsecond), looptest.Quantile(l, 0.99).Round(100*time.Microsecond),
			looptest.Quantile(l, 1).Round(100*time.Microsecond), r.r.Normal, r.r.Bulk, r.r.Skipped, r.r.Levels())
	}
	return b.String()
}
