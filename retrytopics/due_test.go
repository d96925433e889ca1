package retrytopics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDueClamped: a tier record's due time is trusted only up to its
// timestamp plus the tier's delay plus the clock-skew allowance; a
// timestamp beyond the allowance in the future makes the record due at
// once; and the answer for one record does not move as the clock does.
func TestDueClamped(t *testing.T) {
	start := time.UnixMilli(1_700_000_000_000)
	now := start
	p, err := New(Config{Group: "g", Topics: []string{"orders"}, Tiers: []time.Duration{time.Second, time.Minute},
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	const skew = 30 * time.Second // the default
	tier := p.TierTopics("orders")[1]
	rec := func(ts, due time.Time) *kgo.Record {
		return &kgo.Record{Topic: tier, Timestamp: ts, Headers: Meta{
			OriginalTopic: "orders", OriginalPartition: 0, OriginalOffset: 1, Attempt: 2, Due: due,
		}.Encode(nil)}
	}
	year := 365 * 24 * time.Hour
	cases := []struct {
		name    string
		ts, due time.Time
		want    time.Time
	}{
		{"genuine", start, start.Add(time.Minute), start.Add(time.Minute)},
		{"late but within the allowance", start, start.Add(time.Minute + 10*time.Second), start.Add(time.Minute + 10*time.Second)},
		{"ten years ahead", start, start.Add(10 * year), start.Add(time.Minute + skew)},
		{"2^53 ms", start, time.UnixMilli(1 << 53), start.Add(time.Minute + skew)},
		{"timestamp ahead within the allowance", start.Add(20 * time.Second), start.Add(10 * year), start.Add(20*time.Second + time.Minute + skew)},
		{"timestamp ten years ahead", start.Add(10 * year), start.Add(10*year + time.Minute), time.Time{}},
	}
	for _, c := range cases {
		now = start
		r := rec(c.ts, c.due)
		first := p.Due(r)
		if !first.Equal(c.want) {
			t.Errorf("%s: due %v, want %v", c.name, first, c.want)
			continue
		}
		// Refetched while its partition waits, it is asked again later.
		now = start.Add(10 * time.Second)
		if again := p.Due(r); !again.Equal(first) {
			t.Errorf("%s: due moved from %v to %v as the clock advanced", c.name, first, again)
		}
	}
}

func TestClockSkewValidated(t *testing.T) {
	_, err := New(Config{Group: "g", Topics: []string{"orders"}, ClockSkew: -time.Second})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "ClockSkew") {
		t.Fatalf("negative ClockSkew: %v", err)
	}
	p, err := New(Config{Group: "g", Topics: []string{"orders"}})
	if err != nil || p.cfg.ClockSkew != 30*time.Second {
		t.Fatalf("default ClockSkew %v (err %v), want 30s", p.cfg.ClockSkew, err)
	}
}
