package looptest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

// Sender is what a load produces through: a *producer.Producer, or a
// plain *kgo.Client.
type Sender interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// LoadConfig shapes a [Load].
type LoadConfig struct {
	Topic string
	Class priority.Class
	// PerSec is the records offered per second.
	PerSec float64
	// Workers bounds the records in flight (waiting for admission or
	// for the broker): each worker is a caller that waits for its
	// record's result, as a request handler does. A tick that finds
	// every worker busy is skipped (counted). Default 32.
	Workers int
	// ByContext gives records their class with producer.WithClass
	// rather than the floodgate-priority header.
	ByContext bool
}

// Outcome is what became of one record of a load.
type Outcome struct {
	// At is when it was handed to Produce; Latency how long until its
	// promise was called.
	At      time.Time
	Latency time.Duration
	Err     error
}

// Load offers records of one class at a steady pace until stopped,
// through a pool of workers, and records each one's outcome; records
// acknowledged are expected in the ledger.
type Load struct {
	cfg     LoadConfig
	s       Sender
	ledger  *testkit.Ledger
	t       testing.TB
	mu      sync.Mutex
	outs    []Outcome
	skipped atomic.Int64
	quit    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// StartLoad starts a load through s; it stops when the test ends, if not
// before.
func StartLoad(t testing.TB, s Sender, ledger *testkit.Ledger, cfg LoadConfig) *Load {
	if cfg.Workers == 0 {
		cfg.Workers = 32
	}
	l := &Load{cfg: cfg, s: s, ledger: ledger, t: t, quit: make(chan struct{})}
	ticks := make(chan time.Time, cfg.Workers)
	l.wg.Add(1 + cfg.Workers)
	go func() {
		defer l.wg.Done()
		defer close(ticks)
		tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.PerSec))
		defer tick.Stop()
		for {
			select {
			case <-l.quit:
				return
			case at := <-tick.C:
				select {
				case ticks <- at:
				default:
					l.skipped.Add(1)
				}
			}
		}
	}()
	for w := range cfg.Workers {
		go func() {
			defer l.wg.Done()
			for range ticks {
				select {
				case <-l.quit:
					continue // drain without producing
				default:
				}
				l.one(w)
			}
		}()
	}
	t.Cleanup(l.Stop)
	return l
}

var seq atomic.Int64

// one produces one record and waits for its promise.
func (l *Load) one(worker int) {
	ctx := context.Background()
	r := &kgo.Record{Topic: l.cfg.Topic, Key: fmt.Appendf(nil, "%s-%d", l.cfg.Class, worker),
		Value: fmt.Appendf(nil, "%s %d", l.cfg.Class, seq.Add(1))}
	if l.cfg.ByContext {
		ctx = producer.WithClass(ctx, l.cfg.Class)
	} else {
		r.Headers = []kgo.RecordHeader{{Key: priority.Header, Value: []byte(l.cfg.Class)}}
	}
	done := make(chan error, 1)
	at := time.Now()
	l.s.Produce(ctx, r, func(r *kgo.Record, err error) {
		if err == nil {
			l.ledger.Expect(r.Topic, r.Partition, r.Offset)
		}
		done <- err
	})
	err := <-done
	l.mu.Lock()
	l.outs = append(l.outs, Outcome{At: at, Latency: time.Since(at), Err: err})
	l.mu.Unlock()
}

// Stop stops offering records and waits for those in flight.
func (l *Load) Stop() {
	l.once.Do(func() { close(l.quit) })
	l.wg.Wait()
}

// Mark returns the number of outcomes so far, for [Load.Since].
func (l *Load) Mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.outs)
}

// Outcomes returns the outcomes from mark on.
func (l *Load) Outcomes(mark int) []Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.outs[mark:])
}

// Skipped returns the ticks skipped because every worker was busy.
func (l *Load) Skipped() int64 { return l.skipped.Load() }

// Since tallies the outcomes from mark on.
func (l *Load) Since(mark int) Tally { return TallyOf(l.Outcomes(mark)) }

// Tally counts outcomes by kind.
type Tally struct {
	Admitted, Throttled, Shed, Overloaded int
	// Failed counts errors that are no refusal (the first is
	// FirstFailure).
	Failed       int
	FirstFailure error
	// Refusals are the refused records' errors, in order.
	Refusals []*producer.RefusedError
}

// TallyOf counts outs.
func TallyOf(outs []Outcome) Tally {
	var t Tally
	for _, o := range outs {
		var re *producer.RefusedError
		switch {
		case o.Err == nil:
			t.Admitted++
			continue
		case errors.Is(o.Err, producer.ErrThrottled):
			t.Throttled++
		case errors.Is(o.Err, producer.ErrShed):
			t.Shed++
		case errors.Is(o.Err, producer.ErrOverloaded):
			t.Overloaded++
		default:
			t.Failed++
			if t.FirstFailure == nil {
				t.FirstFailure = o.Err
			}
			continue
		}
		if errors.As(o.Err, &re) {
			t.Refusals = append(t.Refusals, re)
		}
	}
	return t
}

// Refused returns the records refused.
func (t Tally) Refused() int { return t.Throttled + t.Shed + t.Overloaded }

func (t Tally) String() string {
	s := fmt.Sprintf("admitted %d, throttled %d, shed %d, failed fast %d", t.Admitted, t.Throttled, t.Shed, t.Overloaded)
	if t.Failed > 0 {
		s += fmt.Sprintf(", failed %d (%v)", t.Failed, t.FirstFailure)
	}
	return s
}

// Latencies returns the latencies of the records admitted and
// acknowledged among outs, sorted.
func Latencies(outs []Outcome) []time.Duration {
	var ls []time.Duration
	for _, o := range outs {
		if o.Err == nil {
			ls = append(ls, o.Latency)
		}
	}
	slices.Sort(ls)
	return ls
}

// Quantile returns the q-quantile of sorted ds (nearest rank), 0 if
// empty.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}
