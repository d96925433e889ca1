package looptest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/producer"
)

// Transition is one level change of the monitor and when a producer's
// admission followed it.
type Transition struct {
	From, To lagmonitor.Level
	// Seq is the monitor's signal that changed the level; Issued is when
	// the monitor decided the change and issued it.
	Seq    uint64
	Issued time.Time
	// Seen is when the producer's level changed (its HookLevelChange):
	// from then on it admits by the new level.
	Seen time.Time
}

// Latency returns Seen − Issued.
func (tr Transition) Latency() time.Duration { return tr.Seen.Sub(tr.Issued) }

// Latency measures, over at least n transitions, the time from a
// monitor's level change (the signal it issues) to a producer's admission
// changing (the producer's level change). A held-back consumer is driven
// through cycles of ok → elevated (a held record ages past 300ms) → high
// (200 more records) → ok (released, after the 300ms dwell); each step
// waits, within a generous bound, for the producer to follow, and every
// change of the monitor must be matched by the producer's. It asserts
// nothing about the figures: it returns them.
func Latency(t *testing.T, env *Env, n int) []Transition {
	ledger := env.ledger()
	c := StartConsumer(t, env, ConsumerConfig{Thresholds: LoopThresholds})
	var lv Levels
	p := NewProducer(t, env, false, producer.WithHooks(&lv))
	plain := plainClient(t, env.Brokers)
	const bound = 30 * time.Second
	for cycles := 0; cycles*3 < n; cycles++ {
		c.Hold()
		producePlain(t, plain, ledger, env.Topic, 1)
		WaitLevel(t, bound, lagmonitor.LevelElevated, p)
		producePlain(t, plain, ledger, env.Topic, 200)
		WaitLevel(t, bound, lagmonitor.LevelHigh, p)
		c.Release()
		WaitLevel(t, bound, lagmonitor.LevelOK, p)
	}
	ledger.WaitAll(t, time.Minute)
	// The monitor's hook records a signal once its publish returns, which
	// can be after the producer read it and acted on it: wait for the
	// hook to hold every signal the producer names.
	// (Bounded; past the bound match names what is missing.)
	changes := lv.All()
	recorded := func() bool {
		seqs := map[uint64]bool{}
		for _, s := range c.Signals.All() {
			seqs[s.Seq] = true
		}
		for _, ch := range changes {
			if ch.Pressure.Instance == c.Mon.Instance() && !seqs[ch.Pressure.Seq] {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(bound); !recorded() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded
	}
	trs, err := match(c.Signals.All(), changes, c.Mon.Instance())
	if err != nil {
		t.Fatal(err)
	}
	return trs
}

// match pairs each level change of the monitor's signals with the
// producer's change it caused. The producer names the signal it acted on
// (its Seq); the change began at the first signal of the run of equal
// levels that ends there (a heartbeat may arrive first). Every change of
// the monitor must be matched, and every change of the producer.
func match(signals []lagmonitor.Signal, changes []producer.LevelChange, instance string) ([]Transition, error) {
	bySeq := make(map[uint64]int, len(signals))
	for i, s := range signals {
		bySeq[s.Seq] = i
	}
	// The monitor's changes: a signal whose level differs from the one
	// before (the producer starts at ok).
	var trs []Transition
	index := map[uint64]int{} // the change's Seq -> its transition
	prev := lagmonitor.LevelOK
	for _, s := range signals {
		if s.Level != prev {
			index[s.Seq] = len(trs)
			trs = append(trs, Transition{From: prev, To: s.Level, Seq: s.Seq, Issued: s.IssuedAt})
			prev = s.Level
		}
	}
	var errs []string
	for _, c := range changes {
		i, ok := bySeq[c.Pressure.Seq]
		if c.Pressure.Instance != instance || !ok {
			errs = append(errs, fmt.Sprintf("the producer's change %s→%s at %v names signal %s/%d, not one the monitor published",
				c.From, c.To, c.Time.Format(time.StampMilli), c.Pressure.Instance, c.Pressure.Seq))
			continue
		}
		for i > 0 && signals[i-1].Level == c.To {
			i--
		}
		k, ok := index[signals[i].Seq]
		if !ok || trs[k].To != c.To || !trs[k].Seen.IsZero() {
			errs = append(errs, fmt.Sprintf("the producer's change %s→%s (signal %d) matches no change of the monitor", c.From, c.To, c.Pressure.Seq))
			continue
		}
		trs[k].Seen = c.Time
	}
	for _, tr := range trs {
		if tr.Seen.IsZero() {
			errs = append(errs, fmt.Sprintf("the monitor's change %s→%s (signal %d) never reached the producer", tr.From, tr.To, tr.Seq))
		}
	}
	if len(errs) > 0 {
		return trs, fmt.Errorf("%d mismatches: %s", len(errs), strings.Join(errs, "; "))
	}
	return trs, nil
}

// Summary returns the latencies' count, median, p99 and max, and each
// one, for a log line.
func Summary(trs []Transition) (string, []time.Duration) {
	ls := make([]time.Duration, len(trs))
	for i, tr := range trs {
		ls[i] = tr.Latency()
	}
	all := make([]string, len(ls))
	for i, l := range ls {
		all[i] = fmt.Sprintf("%s→%s %v", trs[i].From, trs[i].To, l.Round(100*time.Microsecond))
	}
	slices.Sort(ls)
	return fmt.Sprintf("transitions=%d median=%v p99=%v max=%v (each: %s)", len(ls),
		Quantile(ls, 0.5).Round(100*time.Microsecond), Quantile(ls, 0.99).Round(100*time.Microsecond),
		Quantile(ls, 1).Round(100*time.Microsecond), strings.Join(all, ", ")), ls
}
