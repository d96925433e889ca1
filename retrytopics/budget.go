package retrytopics

import (
	"sync"
	"time"
)

// budget is a retry budget in the spirit of Finagle's RetryBudget and gRPC
// retry throttling: over a sliding window, retries may be at most ratio
// times the first attempts plus floor per second. When it is spent a failed
// record is quarantined instead of retried, so an outage cannot multiply
// the traffic it receives.
//
// The window is kept in one-second buckets. Safe for concurrent use.
type budget struct {
	mu       sync.Mutex
	ratio    float64
	floor    float64
	buckets  []bucket // ring indexed by Unix second
	spent    uint64   // retries refused, for stats
	attempts uint64
	retries  uint64
}

type bucket struct {
	sec       int64
	deposits  float64
	withdraws float64
}

func newBudget(ratio, floor float64, window time.Duration) *budget {
	n := max(1, int(window/time.Second))
	return &budget{ratio: ratio, floor: floor, buckets: make([]bucket, n)}
}

func (b *budget) at(now time.Time) *bucket {
	sec := now.Unix()
	bk := &b.buckets[int(uint64(sec)%uint64(len(b.buckets)))]
	if bk.sec != sec {
		*bk = bucket{sec: sec}
	}
	return bk
}

// deposit records a first attempt.
func (b *budget) deposit(now time.Time) {
	b.mu.Lock()
	b.at(now).deposits++
	b.attempts++
	b.mu.Unlock()
}

// withdraw asks for one retry; it reports whether the budget allows it.
func (b *budget) withdraw(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.at(now)
	var deposits, withdraws float64
	oldest := now.Unix() - int64(len(b.buckets)) + 1
	for i := range b.buckets {
		if bk := &b.buckets[i]; bk.sec >= oldest && bk.sec <= now.Unix() {
			deposits += bk.deposits
			withdraws += bk.withdraws
		}
	}
	if withdraws+1 > b.ratio*deposits+b.floor*float64(len(b.buckets)) {
		b.spent++
		return false
	}
	cur.withdraws++
	b.retries++
	return true
}
