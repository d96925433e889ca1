package lagmonitor

import (
	"testing"
	"time"
)

var lagT0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestPartitionLag(t *testing.T) {
	now := lagT0.Add(time.Minute)
	var h endHistory
	h.observe(1000, lagT0)
	h.observe(2000, lagT0.Add(20*time.Second))
	cases := []struct {
		name      string
		end, next int64
		oldest    time.Time
		wantLag   int64
		wantTime  time.Duration
		wantEstim bool
	}{
		{"caught up", 2000, 2000, time.Time{}, 0, 0, false},
		{"record in flight: its own timestamp", 2000, 1500, now.Add(-42 * time.Second), 500, 42 * time.Second, false},
		{"nothing in flight: interpolated", 2000, 1499, time.Time{}, 501, 50 * time.Second, true},
		{"unknown next", 2000, -1, time.Time{}, 0, 0, false},
		{"unknown end", -1, 1500, time.Time{}, 0, 0, false},
		{"next past a stale end", 2000, 2100, time.Time{}, 0, 0, false},
	}
	for _, c := range cases {
		l := PartitionLag{End: c.end, Next: c.next}
		l.lagOf(c.oldest, &h, now)
		if l.OffsetLag != c.wantLag || l.TimeLag != c.wantTime || l.TimeLagEstimated != c.wantEstim {
			t.Errorf("%s: offset lag %d, time lag %v (estimated %v); want %d, %v (%v)", c.name,
				l.OffsetLag, l.TimeLag, l.TimeLagEstimated, c.wantLag, c.wantTime, c.wantEstim)
		}
	}
}
