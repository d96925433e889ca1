package integration_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// benchConfig shapes BenchmarkLoopControl; defaultBenchConfig has the
// values the benchmark runs with.
type benchConfig struct {
	// Partitions of each run's topic; Instances producing to it.
	Partitions int32
	Instances  int
	// Service is the time the handler takes per record; a partition
	// handles one record at a time, so the consumer's capacity is
	// Partitions / Service.
	Service time.Duration
	// Overload and Recovery are the phases' lengths; the demand is
	// OverloadFactor, then RecoveryFactor, times the capacity.
	Overload, Recovery             time.Duration
	OverloadFactor, RecoveryFactor float64
	// HotShare is the share of the records keyed to partition 0 (the
	// others share the rest evenly).
	HotShare float64
	// Mix is the demand's share of each class (benchClasses).
	Mix [3]float64
}

func defaultBenchConfig() benchConfig {
	return benchConfig{Partitions: 6, Instances: 3, Service: 5 * time.Millisecond,
		Overload: 5 * time.Minute, Recovery: 5 * time.Minute, OverloadFactor: 2, RecoveryFactor: 0.5,
		HotShare: 1.5 / 6, Mix: [3]float64{0.1, 0.4, 0.5}}
}

// capacity is the consumer's records per second, all partitions.
func (c benchConfig) capacity() float64 {
	return float64(c.Partitions) * float64(time.Second) / float64(c.Service)
}

// settled is the window over which the overload is judged: its last
// three minutes, or its last 60% when that is shorter (a short run),
// so that the first reaction is left out.
func (c benchConfig) settled() (from, to time.Duration) {
	w := min(3*time.Minute, c.Overload*6/10)
	return c.Overload - w, c.Overload
}

// drainThreshold is one second of the recovery demand, in records: the
// total offset lag under which the backlog counts as drained.
func (c benchConfig) drainThreshold() int64 {
	return int64(math.Round(c.RecoveryFactor * c.capacity()))
}

// drawPartition draws the partition a record is keyed to.
func (c benchConfig) drawPartition(rng *rand.Rand) int {
	if rng.Float64() < c.HotShare {
		return 0
	}
	return 1 + rng.IntN(int(c.Partitions)-1)
}

// benchSample is one run's state at one second.
type benchSample struct {
	At time.Duration // since the run's start
	// The monitor's measure of the topic: level, summed offset lag,
	// largest time lag, suggested rate, estimated capacity, drain rate,
	// and each partition's offset and time lag.
	Level                      lagmonitor.Level
	OffsetLag                  int64
	TimeLag                    time.Duration
	Suggested, Capacity, Drain float64
	PartOffset                 []int64
	PartTime                   []time.Duration
	// ProducerLevel is the highest level a producer instance obeys (-1:
	// plain producers); Recovering the instances ramping up.
	ProducerLevel lagmonitor.Level
	Recovering    int
	// Handled counts the records handled, PartHandled per partition;
	// Class each class's counts.
	Handled     int64
	PartHandled []int64
	Class       [3]classCounts
}

// benchFigures are what a run is judged by.
type benchFigures struct {
	// Utilisation is handled / capacity over the settled window.
	Utilisation float64
	// LagMax and LagP95 are the worst partition's time lag over the
	// settled window's samples.
	LagMax, LagP95 time.Duration
	// ChangesPerMin are the monitor's level changes per minute in the
	// settled window.
	ChangesPerMin float64
	// Drain is the time from the overload's end until the total offset
	// lag stayed below the drain threshold (Drained false: it did not
	// within the recovery phase; LagAtEnd is the lag then).
	Drain    time.Duration
	Drained  bool
	LagAtEnd int64
}

// judge computes a run's figures from its samples and the times of its
// monitor's level changes (both from the run's start).
func judge(cfg benchConfig, samples []benchSample, changes []time.Duration) benchFigures {
	from, to := cfg.settled()
	var f benchFigures
	f.Utilisation = utilisation(samples, from, to, cfg.capacity())
	f.LagMax, f.LagP95 = worstLag(samples, from, to)
	f.ChangesPerMin = changesPerMinute(changes, from, to)
	f.Drain, f.Drained = drainTime(samples, cfg.Overload, cfg.drainThreshold())
	if len(samples) > 0 {
		f.LagAtEnd = samples[len(samples)-1].OffsetLag
	}
	return f
}

// window returns the samples taken within [from, to].
func window(samples []benchSample, from, to time.Duration) []benchSample {
	i := slices.IndexFunc(samples, func(s benchSample) bool { return s.At >= from })
	if i < 0 {
		return nil
	}
	j := i
	for j < len(samples) && samples[j].At <= to {
		j++
	}
	return samples[i:j]
}

// utilisation returns the records handled between the first and the last
// sample within [from, to], over what the capacity handles in that time;
// 0 with fewer than two samples there.
func utilisation(samples []benchSample, from, to time.Duration, capacity float64) float64 {
	w := window(samples, from, to)
	if len(w) < 2 || capacity <= 0 {
		return 0
	}
	first, last := w[0], w[len(w)-1]
	return float64(last.Handled-first.Handled) / (capacity * (last.At - first.At).Seconds())
}

// worstLag returns the largest and the 95th percentile (nearest rank) of
// the worst partition's time lag over the samples within [from, to].
func worstLag(samples []benchSample, from, to time.Duration) (maxLag, p95 time.Duration) {
	var lags []time.Duration
	for _, s := range window(samples, from, to) {
		worst := s.TimeLag
		for _, l := range s.PartTime {
			worst = max(worst, l)
		}
		lags = append(lags, worst)
	}
	if len(lags) == 0 {
		return 0, 0
	}
	slices.Sort(lags)
	i := int(math.Ceil(0.95*float64(len(lags)))) - 1
	return lags[len(lags)-1], lags[max(i, 0)]
}

// changesPerMinute returns the changes within [from, to) per minute.
func changesPerMinute(changes []time.Duration, from, to time.Duration) float64 {
	if to <= from {
		return 0
	}
	n := 0
	for _, c := range changes {
		if c >= from && c < to {
			n++
		}
	}
	return float64(n) / (to - from).Minutes()
}

// drainTime returns the time from overloadEnd to the first sample after
// it from which every later sample's total offset lag is below
// threshold; false if the last sample's is not.
func drainTime(samples []benchSample, overloadEnd time.Duration, threshold int64) (time.Duration, bool) {
	if len(samples) == 0 || samples[len(samples)-1].OffsetLag >= threshold {
		return 0, false
	}
	at := samples[len(samples)-1].At
	for i := len(samples) - 1; i >= 0 && samples[i].At >= overloadEnd && samples[i].OffsetLag < threshold; i-- {
		at = samples[i].At
	}
	return at - overloadEnd, true
}

// benchResult is a finished run, for the table.
type benchResult struct {
	name    string
	fig     benchFigures
	classes [3]classCounts // at the end, after the flush
	shares  []float64      // of the records acknowledged, per partition
	ledger  ledgerCounts
	// misrouted counts records acknowledged on another partition than
	// their key was drawn for (kgo's partitioner disagreeing: 0).
	misrouted int64
	firstErr  error
}

// benchTable renders the runs side by side, with the goals.
func benchTable(cfg benchConfig, rs []benchResult) string {
	var b strings.Builder
	from, to := cfg.settled()
	fmt.Fprintf(&b, "loop control: %d partitions, consumer capacity %.0f/s (%v per record, serial per partition); demand %.1fx for %v, then %.1fx for %v; %d producer instances; settled window %v–%v; drained below %d records\n",
		cfg.Partitions, cfg.capacity(), cfg.Service, cfg.OverloadFactor, cfg.Overload, cfg.RecoveryFactor, cfg.Recovery, cfg.Instances, from, to, cfg.drainThreshold())
	row := func(what, goal string, cell func(benchResult) string) {
		fmt.Fprintf(&b, "| %s |", what)
		for _, r := range rs {
			fmt.Fprintf(&b, " %s |", cell(r))
		}
		fmt.Fprintf(&b, " %s |\n", goal)
	}
	fmt.Fprintf(&b, "| figure |")
	for _, r := range rs {
		fmt.Fprintf(&b, " %s |", r.name)
	}
	fmt.Fprintf(&b, " goal |\n|---|%s---|\n", strings.Repeat("---|", len(rs)))
	row("partition shares (acknowledged)", fmt.Sprintf("p0 ≈ %.2f", cfg.HotShare), func(r benchResult) string {
		s := make([]string, len(r.shares))
		for i, x := range r.shares {
			s[i] = fmt.Sprintf("%.3f", x)
		}
		return strings.Join(s, " ")
	})
	row("utilisation, settled", "≥ 0.9", func(r benchResult) string { return fmt.Sprintf("%.3f", r.fig.Utilisation) })
	row("worst partition time lag, settled: max", "< 30s (high)", func(r benchResult) string { return r.fig.LagMax.Round(100 * time.Millisecond).String() })
	row("worst partition time lag, settled: p95", "< 30s (high)", func(r benchResult) string { return r.fig.LagP95.Round(100 * time.Millisecond).String() })
	row("level changes per minute, settled", "≤ 1", func(r benchResult) string { return fmt.Sprintf("%.2f", r.fig.ChangesPerMin) })
	row("critical records refused", "0", func(r benchResult) string { return fmt.Sprint(r.classes[0].Refused() + r.classes[0].Failed) })
	row("drain after the overload", "", func(r benchResult) string {
		if !r.fig.Drained {
			return fmt.Sprintf("not within %v (lag %d)", cfg.Recovery, r.fig.LagAtEnd)
		}
		return r.fig.Drain.Round(time.Second).String()
	})
	row("acknowledged / handled / lost / duplicates", "lost 0", func(r benchResult) string {
		return fmt.Sprintf("%d / %d / %d / %d", r.ledger.expected, r.ledger.handled, r.ledger.expected-r.ledger.handled, r.ledger.duplicates)
	})
	for i, c := range benchClasses {
		row(string(c)+": offered / admitted / throttled / shed / failed fast / deferred / failed / handled", "", func(r benchResult) string {
			x := r.classes[i]
			return fmt.Sprintf("%d / %d / %d / %d / %d / %d / %d / %d", x.Offered, x.Admitted, x.Throttled, x.Shed, x.FailedFast, x.Deferred, x.Failed, x.Handled)
		})
	}
	for _, r := range rs {
		if r.firstErr != nil || r.misrouted > 0 || r.ledger.unexpected > 0 {
			fmt.Fprintf(&b, "%s: first failure %v; misrouted %d; handled but never acknowledged %d\n", r.name, r.firstErr, r.misrouted, r.ledger.unexpected)
		}
	}
	return b.String()
}
