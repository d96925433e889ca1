package consumer

import (
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/partition"
)

// Router moves failed records off the hot path and holds records that are
// not yet due. Package retrytopics implements it; a Router is set with
// [WithRouter]. Without one, a failed record is retried in place forever
// with [RetryBackoff].
//
// Its methods are called from the runtime's goroutines (Due from the poll
// loop while admitting, Failed from a worker, Undeliverable from a produce
// callback) and must be fast and safe for concurrent use.
type Router interface {
	// Due returns when r may be handled; a zero or past time means now.
	// It is asked in offset order at admission: the first record of a
	// partition that is not yet due is not admitted, and the partition is
	// paused (for partition.RetryDue) and refetched from that record once
	// it is due. Records behind it wait too, so Due should grow with the
	// offset, as it does on a retry tier with one delay.
	Due(r *kgo.Record) time.Time

	// Failed decides what happens after attempt (1-based, counted within
	// this delivery of r) failed with err. It is not asked about records
	// whose partition is being revoked or whose runtime is stopping: those
	// are aborted (left for the next owner), never routed.
	Failed(r *kgo.Record, attempt int, err error) Decision

	// Undeliverable is asked when producing failed, the replacement of r
	// that a Decision or an earlier Undeliverable returned, failed with an
	// error that no retry can fix ([IsUnretryableProduceError]: a record
	// too large for the destination topic, a record the broker rejects, a
	// topic the client may not write). It returns the record to produce
	// instead (the quarantine lane instead of a retry tier, a trimmed copy
	// instead of the whole record), or nil when nothing is left to try: the
	// partition then pauses with reason partition.DivertFailed, the failure
	// is reported (hooks, Stats, the client's logger at error level) and
	// the last produce is retried with the maximum [RetryBackoff] until it
	// succeeds, so that fixing the cause (an ACL, a topic's
	// max.message.bytes) lets the partition go on.
	Undeliverable(r, failed *kgo.Record, err error) *kgo.Record
}

// Decision is a [Router]'s answer for a failed attempt.
type Decision struct {
	// Divert, if not nil, is produced in r's place (to a retry tier or the
	// quarantine lane). r reaches its terminal state once the broker
	// acknowledged Divert; until then r stays in flight and its offset is
	// not committed past. A failed produce is retried with RetryBackoff
	// until it succeeds or the partition is revoked; one that cannot
	// succeed goes to [Router.Undeliverable].
	Divert *kgo.Record
	// RetryAfter, when Divert is nil, is the wait before the next in-place
	// attempt; zero means the runtime's RetryBackoff.
	RetryAfter time.Duration
}

// WithRouter sets the router that diverts failed records and holds records
// not yet due. The runtime produces diverted records with its client
// (its own, or the wrapped one, which must be able to produce).
func WithRouter(r Router) Opt { return opt(func(c *cfg) { c.router = r }) }

// HookRecordDiverted is called when a diverted record was acknowledged
// (err nil) and after each failed produce of one (err set; it is retried).
type HookRecordDiverted interface {
	OnRecordDiverted(from, to *kgo.Record, err error)
}

// outcome is how processing a record ended.
type outcome uint8

const (
	outcomeAborted  outcome = iota // revoked or stopped before a terminal state
	outcomeHandled                 // the handler succeeded
	outcomeDiverted                // a divert produce is in flight; it finishes the record
)

// divert produces to in the place of it's record. The record stays in
// flight (counted in ps.running) until the produce is acknowledged. A
// failed produce is tried again after a backoff, from a goroutine of its
// own, so that kgo's promise never produces; one that cannot succeed goes
// to the router's Undeliverable, and when that has nothing else to try
// (stuck), the partition pauses (DivertFailed) and the produce is retried
// with the maximum backoff until it succeeds or the partition is revoked.
func (rt *Runtime) divert(ps *pstate, it item, to *kgo.Record, try int, stuck bool) {
	if try == 1 && !stuck {
		rt.noteFailure(ps, it, 0, nil, to.Topic)
	}
	rt.topicMax.ensure(to.Topic)
	if sem := rt.serial.of(to.Topic); sem != nil {
		// The topic refused a batch of records that each fit it: produce
		// to it one record at a time, so that kgo never batches them.
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ps.quit:
				rt.abortDivert(ps, it, stuck)
				return
			}
			rt.cl.Produce(rt.baseCtx, to, func(_ *kgo.Record, err error) {
				<-sem
				rt.divertDone(ps, it, to, try, stuck, err)
			})
		}()
		return
	}
	rt.cl.Produce(rt.baseCtx, to, func(_ *kgo.Record, err error) {
		rt.divertDone(ps, it, to, try, stuck, err)
	})
}

// serialTopics holds, for topics that refused a batch as too large although
// each of its records fit, a one-slot semaphore through which diverts to
// the topic are produced one at a time.
type serialTopics struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (s *serialTopics) of(topic string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[topic]
}

// add makes diverts to topic go one at a time; it reports whether that is
// new.
func (s *serialTopics) add(topic string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[topic] != nil {
		return false
	}
	if s.m == nil {
		s.m = make(map[string]chan struct{})
	}
	s.m[topic] = make(chan struct{}, 1)
	return true
}

// divertDone handles the outcome of a divert's produce.
func (rt *Runtime) divertDone(ps *pstate, it item, to *kgo.Record, try int, stuck bool, err error) {
	for _, h := range rt.hooks.diverted {
		h.OnRecordDiverted(it.rec, to, err)
	}
	if err == nil {
		rt.diverted.Add(1)
		rt.mu.Lock()
		ps.divertedN++
		if stuck {
			ps.divertFailing--
			if ps.divertFailing == 0 && rt.clearReason(ps, partition.DivertFailed) {
				rt.wake()
			}
		}
		rt.finish(ps, it, true)
		rt.mu.Unlock()
		if stuck {
			rt.logf(kgo.LogLevelInfo, "floodgate: a divert that had failed was produced; the partition goes on",
				"topic", ps.topic, "partition", ps.partition, "offset", it.rec.Offset, "divert_topic", to.Topic)
		}
		return
	}
	select {
	case <-ps.quit:
		rt.abortDivert(ps, it, stuck)
		return
	default:
	}
	rt.noteFailure(ps, it, 0, err, to.Topic)
	wait := backoff(rt.cfg.backoffInitial, rt.cfg.backoffMax, try)
	switch {
	case errors.Is(err, kerr.MessageTooLarge) && !rt.unretryableDivert(to, err):
		if rt.serial.add(to.Topic) {
			rt.logf(kgo.LogLevelWarn, "floodgate: a topic refused a batch of diverted records as too large although each fits the client's batch cap: its max.message.bytes is below the cap; producing to it one record at a time from now on (set kgo.ProducerBatchMaxBytes(Fn) at or below the topic's max.message.bytes)",
				"divert_topic", to.Topic, "batch_cap", rt.batchLimit(to.Topic), "err", err)
		}
	case stuck:
		wait = rt.cfg.backoffMax
	case rt.unretryableDivert(to, err):
		if next := rt.cfg.router.Undeliverable(it.rec, to, err); next != nil {
			rt.logf(kgo.LogLevelWarn, "floodgate: a divert cannot be produced; producing the router's replacement instead",
				"topic", ps.topic, "partition", ps.partition, "offset", it.rec.Offset, "divert_topic", to.Topic, "err", err, "instead_topic", next.Topic)
			rt.retryDivert(ps, it, next, 1, false, 0)
			return
		}
		stuck, wait = true, rt.cfg.backoffMax
		rt.mu.Lock()
		ps.divertFailing++
		rt.setReason(ps, partition.DivertFailed)
		s, ok := rt.stuckRecord(ps, partition.DivertFailed, time.Now())
		if !ok || s.Offset != it.rec.Offset { // the stuck record is not the oldest: describe it anyway
			s = StuckRecord{Topic: ps.topic, Partition: ps.partition, Offset: it.rec.Offset, Reason: partition.DivertFailed}
			if f := ps.fails[it.rec.Offset]; f != nil {
				s.Attempts = f.attempts
			}
		}
		s.Err, s.DivertTopic = err, to.Topic
		rt.mu.Unlock()
		rt.wake()
		rt.reportStuck(s)
	}
	rt.retryDivert(ps, it, to, try+1, stuck, wait)
}

// retryDivert produces to again after wait, from a goroutine that the
// partition's revocation ends (leaving the record unfinished).
func (rt *Runtime) retryDivert(ps *pstate, it item, to *kgo.Record, try int, stuck bool, wait time.Duration) {
	go func() {
		if wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ps.quit:
				rt.abortDivert(ps, it, stuck)
				return
			}
		}
		rt.divert(ps, it, to, try, stuck)
	}()
}

// abortDivert leaves a diverting record unfinished because its partition
// is being revoked.
func (rt *Runtime) abortDivert(ps *pstate, it item, stuck bool) {
	rt.mu.Lock()
	if stuck {
		ps.divertFailing--
	}
	rt.finish(ps, it, false)
	rt.mu.Unlock()
}

// unretryableDivert reports whether producing to again cannot succeed. The
// broker refuses a whole batch with MESSAGE_TOO_LARGE, so small records
// batched together past a topic's limit (one below the client's batch cap:
// a wrapped client's, or a topic whose max.message.bytes could not be
// read) fail with it too, and succeed when retried in smaller batches: the
// error is final only for a record that alone comes near the cap.
func (rt *Runtime) unretryableDivert(to *kgo.Record, err error) bool {
	if !IsUnretryableProduceError(err) {
		return false
	}
	if !errors.Is(err, kerr.MessageTooLarge) {
		return true
	}
	overhead := int64(128 + 16*len(to.Headers)) // batch and record framing
	return RecordSize(to)+overhead >= int64(rt.batchLimit(to.Topic))
}

// batchLimit returns the record batch cap the client applies to topic.
func (rt *Runtime) batchLimit(topic string) int32 {
	if rt.own {
		return rt.topicMax.get(topic)
	}
	if fn, ok := rt.cl.OptValue(kgo.ProducerBatchMaxBytesFn).(func(string) int32); ok && fn != nil {
		return fn(topic)
	}
	return defaultBatchMax
}
