package looptest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

// BurstThresholds are the levels of [Burst]: elevated at 1s of time lag,
// high at 5s, critical at 20s, each left at half its mark after 1s.
var BurstThresholds = lagmonitor.Thresholds{
	Elevated:     lagmonitor.Mark{TimeLag: time.Second},
	High:         lagmonitor.Mark{TimeLag: 5 * time.Second},
	Critical:     lagmonitor.Mark{TimeLag: 20 * time.Second},
	ExitFraction: 0.5,
	Dwell:        time.Second,
}

// BurstConfig shapes a [Burst].
type BurstConfig struct {
	// Aware produces through a pressure-aware producer (producer.Wrap
	// around a kgo client); otherwise through the plain kgo client.
	Aware bool
	// Duration is the burst's; Capacity the consumer's records per
	// second.
	Duration time.Duration
	Capacity float64
	// Normal, Bulk and Critical are the records offered per second, by
	// class, all through one producer.
	Normal, Bulk, Critical float64
	// Sample is how often the lag is sampled; default 500ms.
	Sample time.Duration
	// Opts are the pressure-aware producer's options.
	Opts []producer.Opt
}

// Sample is the consumer's lag at one time of a burst, as its monitor
// measured it.
type Sample struct {
	At        time.Duration // since the burst began
	OffsetLag int64
	TimeLag   time.Duration
	Level     lagmonitor.Level
}

// BurstResult is what a burst measured.
type BurstResult struct {
	Samples []Sample
	// Drained is when, from the burst's start, every record acknowledged
	// had been handled.
	Drained time.Duration
	// Tallies by class (critical, normal, bulk), and the latencies
	// (Produce to acknowledgement) of the critical records admitted,
	// sorted.
	Critical, Normal, Bulk Tally
	CriticalLatency        []time.Duration
	// Skipped counts ticks no worker was free for, over the classes.
	Skipped int64
}

// MaxLag returns the largest offset and time lags sampled.
func (r BurstResult) MaxLag() (int64, time.Duration) {
	var o int64
	var d time.Duration
	for _, s := range r.Samples {
		o, d = max(o, s.OffsetLag), max(d, s.TimeLag)
	}
	return o, d
}

// At returns the sample nearest to at, or false when the run was over
// by then.
func (r BurstResult) At(at time.Duration) (Sample, bool) {
	best, ok := Sample{}, false
	for _, s := range r.Samples {
		if s.At > at+r.step()/2 {
			break
		}
		best, ok = s, at-s.At <= r.step()/2
	}
	return best, ok
}

func (r BurstResult) step() time.Duration {
	if len(r.Samples) < 2 {
		return time.Second
	}
	return r.Samples[1].At - r.Samples[0].At
}

// Levels returns the levels sampled, run-length encoded: "ok 2s,
// elevated 3.5s, ...".
func (r BurstResult) Levels() string {
	var parts []string
	for i := 0; i < len(r.Samples); {
		j := i
		for j < len(r.Samples) && r.Samples[j].Level == r.Samples[i].Level {
			j++
		}
		end := r.Samples[len(r.Samples)-1].At + r.step()
		if j < len(r.Samples) {
			end = r.Samples[j].At
		}
		parts = append(parts, fmt.Sprintf("%s %v", r.Samples[i].Level, (end-r.Samples[i].At).Round(100*time.Millisecond)))
		i = j
	}
	return strings.Join(parts, ", ")
}

// Burst runs one burst against a consumer slowed to cfg.Capacity: for
// cfg.Duration the classes' loads are offered through one producer,
// pressure-aware or plain; the consumer's lag is sampled all along, and
// after the burst until every record acknowledged was handled (within
// 5 minutes). It asserts nothing about the figures.
func Burst(t *testing.T, env *Env, cfg BurstConfig) BurstResult {
	if cfg.Sample == 0 {
		cfg.Sample = 500 * time.Millisecond
	}
	ledger := env.ledger()
	c := StartConsumer(t, env, ConsumerConfig{Thresholds: BurstThresholds, Capacity: cfg.Capacity, Refresh: 500 * time.Millisecond})
	var s Sender
	if cfg.Aware {
		s = NewProducer(t, env, true, cfg.Opts...)
	} else {
		s = plainClient(t, env.Brokers)
	}
	start := time.Now()
	loads := []*Load{
		StartLoad(t, s, ledger, LoadConfig{Topic: env.Topic, Class: priority.Critical, PerSec: cfg.Critical, ByContext: true}),
		StartLoad(t, s, ledger, LoadConfig{Topic: env.Topic, Class: priority.Normal, PerSec: cfg.Normal, Workers: 64}),
		StartLoad(t, s, ledger, LoadConfig{Topic: env.Topic, Class: priority.Bulk, PerSec: cfg.Bulk, Workers: 64}),
	}
	var res BurstResult
	tick := time.NewTicker(cfg.Sample)
	defer tick.Stop()
	sample := func() {
		l := c.Lag()
		res.Samples = append(res.Samples, Sample{At: time.Since(start), OffsetLag: l.OffsetLag, TimeLag: l.TimeLag, Level: l.Level})
	}
	for range tick.C {
		sample()
		if time.Since(start) >= cfg.Duration {
			break
		}
	}
	for _, l := range loads {
		l.Stop()
	}
	deadline := time.Now().Add(5 * time.Minute)
	for range tick.C {
		sample()
		if exp, handled := ledger.Progress(); handled == exp {
			res.Drained = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backlog did not drain within 5 minutes of the burst: %s", ledger.Missing(5))
		}
	}
	res.Critical, res.Normal, res.Bulk = loads[0].Since(0), loads[1].Since(0), loads[2].Since(0)
	res.CriticalLatency = Latencies(loads[0].Outcomes(0))
	for _, l := range loads {
		res.Skipped += l.Skipped()
	}
	return res
}
