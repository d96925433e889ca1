package lagmonitor

import (
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"
)

func TestEndHistoryInterpolates(t *testing.T) {
	var h endHistory
	h.observe(100, lagT0)
	h.observe(200, lagT0.Add(10*time.Second))
	h.observe(200, lagT0.Add(10500*time.Millisecond)) // same end: the flat stretch's last observation
	h.observe(300, lagT0.Add(20*time.Second))
	cases := []struct {
		offset int64
		want   time.Time
		ok     bool
	}{
		{50, lagT0, true}, // older than the history: its oldest time, a lower bound
		{100, lagT0.Add(100 * time.Millisecond), true}, // the first record after the first point
		{149, lagT0.Add(5 * time.Second), true},
		{199, lagT0.Add(10 * time.Second), true},
		{249, lagT0.Add(15250 * time.Millisecond), true}, // appended after the end stopped moving at 10.5s
		{300, time.Time{}, false},                        // not appended yet
	}
	for _, c := range cases {
		got, ok := h.appendedAt(c.offset)
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("appendedAt(%d) = %v %v, want %v %v", c.offset, got, ok, c.want, c.ok)
		}
	}
}

func TestEndHistoryRestartsOnTruncation(t *testing.T) {
	var h endHistory
	h.observe(100, lagT0)
	h.observe(200, lagT0.Add(time.Second))
	h.observe(50, lagT0.Add(2*time.Second)) // truncated: start over
	if got, ok := h.appendedAt(10); !ok || !got.Equal(lagT0.Add(2*time.Second)) {
		t.Fatalf("after a truncation appendedAt(10) = %v %v, want the new history's start", got, ok)
	}
	h.observe(60, lagT0.Add(time.Second)) // out of order: start over
	if h.n != 1 {
		t.Fatalf("after an observation out of order the history holds %d points, want 1", h.n)
	}
}

// TestEndHistoryResolution: whatever the listing interval, and however
// bursty the appends, the age of any record up to ten minutes old is
// estimated within max(2s, age/50) plus the listing interval, from a
// history of fixed size: a paused partition 4 minutes behind (twice the
// default critical mark) reads within 5 seconds of the truth.
func TestEndHistoryResolution(t *testing.T) {
	if size := unsafe.Sizeof(endHistory{}); size > 3<<10 {
		t.Errorf("an endHistory takes %d bytes, want at most 3 KiB", size)
	}
	for _, every := range []time.Duration{100 * time.Millisecond, time.Second, 3 * time.Second} {
		rng := rand.New(rand.NewPCG(1, uint64(every)))
		var h endHistory
		appended := map[int64]time.Time{} // offset -> when it was appended
		var end int64
		span := time.Hour
		for at := time.Duration(0); at <= span; at += every {
			now := lagT0.Add(at)
			// Bursts: most listings see nothing new, some many records.
			if rng.IntN(4) == 0 {
				n := rng.Int64N(400)
				for i := int64(0); i < n; i++ {
					// appended somewhere since the last listing
					appended[end+i] = now.Add(-time.Duration(rng.Int64N(int64(every))))
				}
				end += n
			}
			h.observe(end, now)
		}
		now := lagT0.Add(span)
		var worst time.Duration
		for off, at := range appended {
			age := now.Sub(at)
			if age > 10*time.Minute {
				continue
			}
			got, ok := h.appendedAt(off)
			if !ok {
				t.Fatalf("every %v: offset %d appended %v ago not in the history", every, off, age)
			}
			allowed := max(historyMinGap, age/historyRes) + every
			if err := got.Sub(at).Abs(); err > allowed {
				t.Fatalf("every %v: offset %d appended %v ago estimated %v off, allowed %v", every, off, age.Round(time.Second), err, allowed)
			}
			if age >= 4*time.Minute && age < 4*time.Minute+10*time.Second {
				worst = max(worst, got.Sub(at).Abs())
			}
		}
		if worst > 5*time.Second+every {
			t.Errorf("every %v: a record 4 minutes old estimated %v off", every, worst)
		}
		t.Logf("listing every %v: %d points kept; at 4 minutes, off by %v at most", every, h.n, worst)
	}
}
