package lagmonitor

import (
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/consumer"
)

var lagT0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestEndHistoryInterpolates(t *testing.T) {
	var h endHistory
	h.observe(100, lagT0)
	h.observe(200, lagT0.Add(10*time.Second))
	h.observe(200, lagT0.Add(10500*time.Millisecond)) // within the spacing, same end: dropped
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
		{249, lagT0.Add(15 * time.Second), true},
		{300, time.Time{}, false}, // not appended yet
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
	for i := 0; i < 3*historyLen; i++ { // bounded: old points fall off
		h.observe(int64(100+i), lagT0.Add(time.Duration(3+i)*time.Second))
	}
	if h.n != historyLen {
		t.Fatalf("history holds %d points, want %d", h.n, historyLen)
	}
}

func TestPartitionLag(t *testing.T) {
	now := lagT0.Add(time.Minute)
	var h endHistory
	h.observe(1000, lagT0)
	h.observe(2000, lagT0.Add(20*time.Second))
	base := consumer.PartitionStats{Topic: "t", Partition: 1}
	cases := []struct {
		name string
		ps   func(consumer.PartitionStats) consumer.PartitionStats
		end  int64
		want PartitionLag
	}{
		{"caught up", func(p consumer.PartitionStats) consumer.PartitionStats { p.Next = 2000; return p }, 2000,
			PartitionLag{End: 2000, Next: 2000}},
		{"record in flight: its own timestamp", func(p consumer.PartitionStats) consumer.PartitionStats {
			p.Next, p.OldestTimestamp = 1500, now.Add(-42*time.Second)
			return p
		}, 2000, PartitionLag{End: 2000, Next: 1500, OffsetLag: 500, TimeLag: 42 * time.Second}},
		{"nothing in flight: interpolated", func(p consumer.PartitionStats) consumer.PartitionStats { p.Next = 1499; return p }, 2000,
			PartitionLag{End: 2000, Next: 1499, OffsetLag: 501, TimeLag: 50 * time.Second, TimeLagEstimated: true}},
		{"one offset short is one of lag (no guess at a marker)", func(p consumer.PartitionStats) consumer.PartitionStats { p.Next = 1999; return p }, 2000,
			PartitionLag{End: 2000, Next: 1999, OffsetLag: 1, TimeLag: 40 * time.Second, TimeLagEstimated: true}},
		{"unknown next", func(p consumer.PartitionStats) consumer.PartitionStats { p.Next = -1; return p }, 2000,
			PartitionLag{End: 2000, Next: -1}},
		{"next past a stale end", func(p consumer.PartitionStats) consumer.PartitionStats { p.Next = 2100; return p }, 2000,
			PartitionLag{End: 2000, Next: 2100}},
	}
	for _, c := range cases {
		got := partitionLag(c.ps(base), c.end, &h, now)
		c.want.Topic, c.want.Partition = "t", 1
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}
