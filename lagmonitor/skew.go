package lagmonitor

import "time"

// brokerClockBucket is the span of each of the two buckets over which a
// brokerClock keeps its smallest sample: the estimate follows a reader
// clock stepped forward within two of them.
const brokerClockBucket = 30 * time.Second

// brokerClock estimates the offset of a reader's clock from the broker's
// (the reader's time minus the broker's) from records the broker stamped
// with LogAppendTime. A record is read after it was appended, so each
// sample, the reader's time at reading minus the record's broker
// timestamp, is at least the offset. Samples from records read live
// (appended after the reader started reading their partition, so read
// within moments) are tight: the smallest of the last minute or so (two
// buckets) is the estimate, exact but for the fastest read's delay.
// Records read from the log's history are older by an unknown age and
// bound the offset from above only: until a live record has been read,
// the estimate is the smallest of them, or 0 if that is larger (the
// reader takes the broker's clock for its own unless the records prove
// its own behind). With no live sample for two buckets, the estimate
// stays as it was. It is pure (every time is an argument) and not safe
// for concurrent use.
type brokerClock struct {
	start     time.Time     // the current bucket's start, on the reader's clock
	cur, prev time.Duration // each bucket's smallest live sample
	curN      int           // live samples in the current bucket
	prevN     int           // live samples in the previous one
	boot      time.Duration // the smallest sample before the first live one
	bootN     int
	offset    time.Duration // the estimate
}

// observe adds the sample of a record stamped broker by the broker and
// read at now by the reader's clock; live says it was appended after the
// reader started reading its partition.
func (c *brokerClock) observe(broker, now time.Time, live bool) {
	d := now.Sub(broker)
	if !live {
		if c.curN+c.prevN == 0 && (c.bootN == 0 || d < c.boot) {
			c.boot, c.bootN = d, c.bootN+1
			c.offset = min(c.boot, 0)
		}
		return
	}
	switch age := now.Sub(c.start); {
	case c.curN == 0 || age < 0 || age >= 2*brokerClockBucket:
		// The first live sample, a reader clock stepped back, or no
		// live sample for two buckets: start afresh.
		c.start, c.cur, c.curN, c.prevN = now, d, 0, 0
	case age >= brokerClockBucket:
		c.prev, c.prevN = c.cur, c.curN
		c.start, c.cur, c.curN = now, d, 0
	}
	c.cur = min(c.cur, d)
	c.curN++
	c.offset = c.cur
	if c.prevN > 0 {
		c.offset = min(c.offset, c.prev)
	}
}

// toReader converts a broker timestamp to the reader's clock: broker plus
// the estimated offset (0 before any sample).
func (c *brokerClock) toReader(broker time.Time) time.Time { return broker.Add(c.offset) }

// estimate returns the estimated offset, and whether it rests on a record
// read live.
func (c *brokerClock) estimate() (time.Duration, bool) { return c.offset, c.curN+c.prevN > 0 }
