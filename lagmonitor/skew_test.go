package lagmonitor

import (
	"testing"
	"time"
)

// A reader whose clock is 45s ahead of the broker's learns it from records
// read live, whatever their read delays, and converts broker timestamps
// to its own clock.
func TestBrokerClockLearnsOffset(t *testing.T) {
	const ahead = 45 * time.Second
	var c brokerClock
	broker := t0
	if got := c.toReader(broker); !got.Equal(broker) {
		t.Fatalf("before any record: %v, want the broker's time as it is", got)
	}
	for i, delay := range []time.Duration{80 * time.Millisecond, 3 * time.Millisecond, 2 * time.Second, 40 * time.Millisecond} {
		broker = broker.Add(5 * time.Second)
		c.observe(broker, broker.Add(ahead+delay), true)
		if i >= 1 {
			if off, live := c.estimate(); off != ahead+3*time.Millisecond || !live {
				t.Fatalf("after record %d: offset %v live %v; want %v (the fastest read)", i, off, live, ahead+3*time.Millisecond)
			}
		}
	}
	if got, want := c.toReader(broker), broker.Add(ahead+3*time.Millisecond); !got.Equal(want) {
		t.Errorf("toReader %v, want %v", got, want)
	}
}

// A slow read, even the first of a bucket, does not loosen the estimate:
// the previous bucket's smallest sample still counts.
func TestBrokerClockSlowReads(t *testing.T) {
	const ahead = 10 * time.Second
	var c brokerClock
	for i := 0; i < 36; i++ { // 3 minutes of records, every 5s
		broker := t0.Add(time.Duration(i) * 5 * time.Second)
		delay := time.Millisecond
		if i%6 == 0 { // one read in 30s takes 2s
			delay = 2 * time.Second
		}
		c.observe(broker, broker.Add(ahead+delay), true)
		if off, _ := c.estimate(); i > 0 && off != ahead+time.Millisecond {
			t.Fatalf("record %d (read in %v): offset %v, want %v", i, delay, off, ahead+time.Millisecond)
		}
	}
}

// Records from the log's history bound the offset from above only: they
// cannot make a signal read at start look younger than it is (its age
// would be taken for clock skew), but they do show a reader behind.
func TestBrokerClockHistory(t *testing.T) {
	var ahead brokerClock                            // the reader's clock agrees with the broker's
	ahead.observe(t0, t0.Add(90*time.Second), false) // a record 90s old
	ahead.observe(t0.Add(60*time.Second), t0.Add(90*time.Second), false)
	if off, live := ahead.estimate(); off != 0 || live {
		t.Errorf("history of positive samples: offset %v live %v; want 0, not live", off, live)
	}
	var behind brokerClock                                                              // the reader's clock is 60s behind the broker's
	behind.observe(t0.Add(70*time.Second), t0.Add(10*time.Second+5*time.Second), false) // 5s old
	behind.observe(t0.Add(10*time.Second), t0.Add(10*time.Second), false)               // 60s old
	if off, _ := behind.estimate(); off != -55*time.Second {
		t.Errorf("history showing the reader behind: offset %v, want -55s (its freshest record bounds it)", off)
	}
	// The first live record takes over; history no longer counts.
	behind.observe(t0.Add(80*time.Second), t0.Add(20*time.Second+time.Millisecond), true)
	behind.observe(t0.Add(10*time.Second), t0.Add(25*time.Second), false)
	if off, live := behind.estimate(); off != -60*time.Second+time.Millisecond || !live {
		t.Errorf("after a live record: offset %v live %v; want -59.999s", off, live)
	}
}

// The estimate follows the reader's clock when it is stepped: back at
// once (a smaller sample), forward within two buckets (the smallest
// sample of the last two is the estimate).
func TestBrokerClockFollowsSteps(t *testing.T) {
	var c brokerClock
	now := t0
	step := func(readerAhead time.Duration) {
		now = now.Add(5 * time.Second)
		c.observe(now.Add(-readerAhead), now, true)
	}
	step(10 * time.Second)
	step(-20 * time.Second) // the reader's clock stepped back 30s
	if off, _ := c.estimate(); off != -20*time.Second {
		t.Fatalf("after a step back: %v, want -20s at once", off)
	}
	var off time.Duration
	for i := 0; i < 20; i++ { // stepped forward to 40s ahead: 100s of records
		step(40 * time.Second)
		off, _ = c.estimate()
		if i == 0 && off != -20*time.Second {
			t.Fatalf("just after a step forward: %v, want the older -20s still", off)
		}
	}
	if off != 40*time.Second {
		t.Errorf("100s after a step forward: %v, want 40s", off)
	}
	// No record for a long while, then one: it alone is the estimate.
	now = now.Add(10 * time.Minute)
	c.observe(now.Add(-5*time.Second), now, true)
	if off, _ := c.estimate(); off != 5*time.Second {
		t.Errorf("after a silence: %v, want 5s", off)
	}
}
