package integration_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/integration"
)

// The environment variables BenchmarkLoopControl reads.
const (
	// envLoopOverload and envLoopRecovery set the phases' lengths (Go
	// durations; default 5m each).
	envLoopOverload = "FLOODGATE_LOOPBENCH_OVERLOAD"
	envLoopRecovery = "FLOODGATE_LOOPBENCH_RECOVERY"
	// envLoopOut names the directory the CSV files and the plot are
	// written to (created if missing); default a new temporary directory.
	envLoopOut = "FLOODGATE_LOOPBENCH_OUT"
)

// BenchmarkLoopControl judges the pressure loop as a control system, on
// a real broker in another process. Two runs go side by side, at the same
// time, each on its own topic, group and control topic: producers that
// obey the pressure (producer.New and producer.Wrap) and plain kgo
// producers, offering the same demand.
//
// Each run's topic has 6 partitions and skewed keys: partition 0 gets a
// quarter of the records (1.5 times the average; kgo's murmur2 key
// partitioning). Three producer instances each offer a third of the
// demand, open loop (a ticker per class; a record refused is counted and
// not retried): critical 10%, normal 40%, bulk 50% (producer.WithClass
// for the aware producers, the floodgate-priority header for the plain
// ones). The consumer handles each partition serially, 5ms a record: 200
// records/s per partition, 1200 in all. Its lag monitor runs with the
// default thresholds (elevated 5s, high 30s, critical 2m of time lag,
// dwell 30s) and rate configuration, the producers with the default
// options. The demand is 2x the capacity for FLOODGATE_LOOPBENCH_OVERLOAD
// (5m), then 0.5x for FLOODGATE_LOOPBENCH_RECOVERY (5m). Every second
// each run samples the monitor's lag (per partition and topic) and level,
// the producers' level, and its counts per class; afterwards the consumer
// handles what is left at full speed, and every record acknowledged must
// have been handled.
//
// It reports, per run: the utilisation while overloaded (handled over
// capacity in the settled window: the overload's last 3 minutes, or its
// last 60% when shorter), the worst partition's time lag in that window
// (max and p95), the monitor's level changes per minute in it, the
// critical records refused, the time to drain after the overload (until
// the total offset lag stays under one second of the recovery demand),
// and the ledger (lost, duplicates). It writes the samples as CSV and a
// plot to FLOODGATE_LOOPBENCH_OUT (default a temporary directory; the
// path is printed).
//
//	FLOODGATE_KAFKA_BROKERS=127.0.0.1:19092 go test -run '^$' -bench LoopControl -benchtime 1x -timeout 40m ./integration/
//
// A pass takes the two phases and about a minute more, whatever b.N
// (-benchtime 1x). On kfake it skips: kfake runs in the test process, and
// the loop must not share it with the broker.
func BenchmarkLoopControl(b *testing.B) {
	c := integration.Shared(b)
	if !c.Real() {
		b.Skip("the loop benchmark needs a real broker in another process: set " + integration.EnvBrokers + " (kfake would run in this process)")
	}
	cfg, out, err := loopBenchEnv()
	if err != nil {
		b.Fatal(err)
	}
	fmt.Printf("loopbench: on %s; overload %v, recovery %v; output in %s\n", c, cfg.Overload, cfg.Recovery, out)
	runs := []*loopRun{newLoopRun(b, c, cfg, "plain", false), newLoopRun(b, c, cfg, "aware", true)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ResetTimer()
	start := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() { r.drive(ctx, start) })
	}
	progressLines(runs, &wg)
	b.StopTimer()
	var fwg sync.WaitGroup
	flushErr := make([]error, len(runs))
	for i, r := range runs {
		fwg.Go(func() { flushErr[i] = r.flush(10 * time.Minute) })
	}
	fwg.Wait()
	results := make([]benchResult, len(runs))
	for i, r := range runs {
		results[i] = r.result(cfg, start)
		if flushErr[i] != nil {
			b.Errorf("%s: records acknowledged and never handled (%d of %d) %v after the run: %s", r.name,
				results[i].ledger.expected-results[i].ledger.handled, results[i].ledger.expected, flushErr[i], r.ledger.missing(10))
		}
		reportRun(b, results[i])
	}
	fmt.Print(benchTable(cfg, results))
	if err := writeLoopBench(out, cfg, runs); err != nil {
		b.Error(err)
	}
}

// loopBenchEnv returns the configuration and the output directory the
// environment asks for.
func loopBenchEnv() (benchConfig, string, error) {
	cfg := defaultBenchConfig()
	for _, v := range []struct {
		name string
		d    *time.Duration
	}{{envLoopOverload, &cfg.Overload}, {envLoopRecovery, &cfg.Recovery}} {
		s := os.Getenv(v.name)
		if s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 10*time.Second {
			return cfg, "", fmt.Errorf("%s=%q: want a duration of at least 10s", v.name, s)
		}
		*v.d = d
	}
	out := os.Getenv(envLoopOut)
	if out == "" {
		dir, err := os.MkdirTemp("", "floodgate-loopbench-")
		return cfg, dir, err
	}
	return cfg, out, os.MkdirAll(out, 0o755)
}

// progressLines prints a line about both runs every 30s until wg is done.
func progressLines(runs []*loopRun, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		var parts []string
		for _, r := range runs {
			if s := r.latest.Load(); s != nil {
				parts = append(parts, fmt.Sprintf("%s: lag %d, time lag %v, level %s, handled %d", r.name, s.OffsetLag, s.TimeLag.Round(100*time.Millisecond), s.Level, s.Handled))
				if r == runs[0] {
					parts[0] = fmt.Sprintf("%4.0fs %s", s.At.Seconds(), parts[0])
				}
			}
		}
		fmt.Println("loopbench: " + strings.Join(parts, " | "))
	}
}

// result sums up a finished run.
func (r *loopRun) result(cfg benchConfig, start time.Time) benchResult {
	res := benchResult{name: r.name, fig: judge(cfg, r.samples, r.levels.since(start)), ledger: r.ledger.counts(),
		misrouted: r.misrouted.Load(), firstErr: r.firstErr}
	var deferred [3]int64
	if n := len(r.samples); n > 0 {
		for i := range deferred {
			deferred[i] = r.samples[n-1].Class[i].Deferred
		}
	}
	for i := range res.classes {
		res.classes[i] = r.counts(i)
		res.classes[i].Deferred = deferred[i]
	}
	var total int64
	for i := range r.acked {
		total += r.acked[i].Load()
	}
	for i := range r.acked {
		res.shares = append(res.shares, float64(r.acked[i].Load())/float64(max(total, 1)))
	}
	return res
}

// reportRun reports a run's figures as benchmark metrics, prefixed with
// its name. A drain of -1 means not drained within the recovery phase.
func reportRun(b *testing.B, r benchResult) {
	drain := -1.0
	if r.fig.Drained {
		drain = r.fig.Drain.Seconds()
	}
	for _, m := range []struct {
		v    float64
		unit string
	}{
		{r.fig.Utilisation, "utilisation"},
		{r.fig.LagMax.Seconds(), "lag-max-s"},
		{r.fig.LagP95.Seconds(), "lag-p95-s"},
		{r.fig.ChangesPerMin, "level-changes/min"},
		{float64(r.classes[0].Refused() + r.classes[0].Failed), "critical-refused"},
		{drain, "drain-s"},
		{float64(r.ledger.expected - r.ledger.handled), "lost"},
		{float64(r.ledger.duplicates), "duplicates"},
	} {
		b.ReportMetric(m.v, r.name+"-"+m.unit)
	}
}
