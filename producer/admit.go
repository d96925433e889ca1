package producer

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/floodgate-kafka/floodgate/priority"
)

// admit decides r's fate, waiting for its class's rate until capAt at
// most (zero: [MaxWait] from when a wait begins, or ctx's deadline, so
// that a record admitted at once reads no clock for it). It returns the
// record's followed topic (nil if not followed) and class rank, and
// either an error (the record is refused: a [*RefusedError], or
// ErrNotStarted / ErrClosed) or nil with the decision (Outcome
// OutcomeDeferred: hand r to the Deferrer; otherwise produce it).
func (p *Producer) admit(ctx context.Context, r *kgo.Record, capAt time.Time) (*followed, int, Decision, error) {
	var d Decision
	if err := p.usable(); err != nil {
		return nil, 0, d, err
	}
	f := p.follow[p.topicOf(r)]
	if f == nil {
		p.cnt.unfollowed.Add(1)
		return nil, 0, d, nil
	}
	class, rank, known := p.classOf(ctx, r)
	if !known {
		p.cnt.unknownClass.Add(1)
		if p.logsAt(kgo.LogLevelWarn) {
			p.logSampled(kgo.LogLevelWarn, "unknown-class", "floodgate producer: a record's class is not in the order; it counts as the least important",
				"topic", f.topic, "class", class, "order", p.cfg.order.String())
		}
		class = p.ctl.classes[rank]
	}
	f.offered[rank].Add(1)
	cnt := &f.cnt[rank]
	if capAt.IsZero() && !isClosed(p.startDone) {
		capAt = p.capAt(ctx) // Start is still reading: a wait
	}
	if err := p.awaitStart(ctx, capAt); err != nil {
		if err == ErrClosed {
			return f, rank, d, err
		}
		d = Decision{Time: p.cfg.now(), Topic: f.topic, Class: class, Outcome: OutcomeThrottled, Reason: "the context ended while the producer read the control topic", RetryAfter: p.cfg.retryAfter}
		cnt.throttled.Add(1)
		p.emit(d)
		return f, rank, d, &RefusedError{Kind: ErrThrottled, Decision: d, RetryAfter: d.RetryAfter, Err: err}
	}

	if p.holder != nil && r.Key != nil && p.holder.Holds(f.topic, r.Key) {
		if d, held := p.holdKey(f, class, rank); held {
			return f, rank, d, nil
		}
	}

	// The partition a record is bound for matters only while signals
	// name hot partitions: a record admitted at once reads no hash for it.
	part := int32(partAny)
	if f.hotN.Load() > 0 {
		part = p.partitionOf(f, r)
	}
	var began time.Time // waits are real, whatever the clock: time.Now
	shadow, shadowKnown := false, false
	// held is the reservation a record woken by a change holds, on
	// heldLim: it keeps it (its place in the queue) while its class
	// stays limited by the same limiter, since giving it up would send
	// the record to the back of the queue with less time left, and the
	// token would be lost while records reserved after it.
	var (
		held    *rate.Reservation
		heldLim *rate.Limiter
	)
	for first := true; ; first = false {
		now := p.cfg.now()
		f.mu.Lock()
		lc := p.refreshLocked(f, now, false)
		c, hp := f.ctlFor(part)
		if first && hp != nil {
			hp.offered[rank].Add(1)
		}
		if c.tick(now) {
			f.broadcastLocked()
		}
		action, lim := c.decide(rank)
		if action == Admit && first { // the common case: no pressure
			f.mu.Unlock()
			p.levelChanged(lc)
			cnt.admitted.Add(1)
			return f, rank, d, nil
		}
		if first { // only a record under pressure reads these clocks
			began = time.Now()
			if capAt.IsZero() {
				capAt = p.capAt(ctx)
			}
		}
		if !shadowKnown { // asked only of a record under pressure
			shadow, shadowKnown = p.cfg.shadow != nil && p.cfg.shadow(f.topic, class), true
		}
		var res *rate.Reservation
		delay := time.Duration(0)
		if action == Limit {
			switch {
			case shadow:
				if lim == nil || !lim.AllowN(now, 1) {
					delay = rate.InfDuration
				}
			case lim == nil:
				delay = rate.InfDuration
			case held != nil && heldLim == lim:
				res = held
				delay = res.DelayFrom(now)
			default:
				res = lim.ReserveN(now, 1)
				delay = res.DelayFrom(now)
			}
		}
		if held != nil && res != held {
			held.CancelAt(now) // its class is no longer limited by that limiter
		}
		held, heldLim = nil, nil
		d = Decision{Time: now, Topic: f.topic, Class: class, Shadow: shadow, Waited: time.Since(began)}
		if !first || action != Admit && (action != Limit || delay > 0) {
			c.describe(&d, rank, action) // only for a decision to report: it formats
		}
		var expiry time.Duration
		if c.live {
			expiry = c.p.ExpiresAt.Sub(now)
		}
		changed := f.changed
		f.mu.Unlock()
		p.levelChanged(lc)

		switch {
		case action == Admit || (action == Limit && delay == 0):
			if !first {
				p.delayed(cnt, &d)
			}
			cnt.admitted.Add(1)
			return f, rank, d, nil
		case shadow:
			d.Outcome = outcomeOf(action)
			cnt.shadow[d.Outcome].Add(1)
			cnt.admitted.Add(1)
			p.emit(d)
			return f, rank, d, nil
		case action == Shed:
			return f, rank, d, p.refuse(cnt, d, OutcomeShed, ErrShed, p.cfg.retryAfter, nil)
		case action == FailFast:
			return f, rank, d, p.refuse(cnt, d, OutcomeFailedFast, ErrOverloaded, p.cfg.retryAfter, nil)
		case action == Defer:
			d.Outcome = OutcomeDeferred
			p.emit(d)
			return f, rank, d, nil
		}

		// Limit, and no token now: wait for one within the cap, deciding
		// again whenever the topic's state changes (its level, its rates)
		// or a signal it obeys expires.
		left := time.Until(capAt)
		if delay != rate.InfDuration && delay > left {
			res.CancelAt(now)
			d.Reason += fmt.Sprintf("; its next token frees in %v, past the %v left to wait", delay.Round(time.Millisecond), max(left, 0).Round(time.Millisecond))
			return f, rank, d, p.refuse(cnt, d, OutcomeThrottled, ErrThrottled, max(delay, time.Millisecond), nil)
		}
		if left <= 0 {
			d.Reason += "; no token came within the wait allowed"
			return f, rank, d, p.refuse(cnt, d, OutcomeThrottled, ErrThrottled, p.cfg.retryAfter, nil)
		}
		wait := min(delay, left)
		if expiry > 0 {
			wait = min(wait, expiry)
		}
		timer := time.NewTimer(wait)
		p.cnt.waiting.Add(1)
		select {
		case <-timer.C:
			p.cnt.waiting.Add(-1)
			if res != nil && wait == delay { // its token is due
				d.Waited = time.Since(began)
				p.delayed(cnt, &d)
				cnt.admitted.Add(1)
				return f, rank, d, nil
			}
			held, heldLim = res, lim // the signal expired, or the cap passed: decide again
		case <-changed:
			p.cnt.waiting.Add(-1)
			timer.Stop()
			held, heldLim = res, lim // kept, if its class stays limited by lim
		case <-ctx.Done():
			p.cnt.waiting.Add(-1)
			d.Waited = time.Since(began)
			d.Reason += "; the context ended while it waited"
			err := p.refuse(cnt, d, OutcomeThrottled, ErrThrottled, p.cfg.retryAfter, ctx.Err())
			cancelReservation(res, p.cfg.now(), timer)
			return f, rank, d, err
		case <-p.quit:
			p.cnt.waiting.Add(-1)
			cancelReservation(res, p.cfg.now(), timer)
			return f, rank, d, fmt.Errorf("%w while the record waited for admission", ErrClosed)
		}
	}
}

// holdKey decides a record whose key the [KeyHolder] holds: deferred
// (held true) unless the policy refuses its class now or the class is in
// shadow mode; then the record takes the usual path.
func (p *Producer) holdKey(f *followed, class priority.Class, rank int) (Decision, bool) {
	now := p.cfg.now()
	f.mu.Lock()
	lc := p.refreshLocked(f, now, false)
	if f.ctl.tick(now) {
		f.broadcastLocked()
	}
	action, _ := f.ctl.decide(rank)
	d := Decision{Time: now, Topic: f.topic, Class: class}
	held := action == Admit || action == Limit
	if held {
		f.ctl.describe(&d, rank, action)
	}
	f.mu.Unlock()
	p.levelChanged(lc)
	if !held || p.cfg.shadow != nil && p.cfg.shadow(f.topic, class) {
		return Decision{}, false
	}
	d.Outcome = OutcomeDeferred
	d.Reason = "its key has deferred records not yet delivered (key-ordered lane); " + d.Reason
	p.emit(d)
	return d, true
}

// cancelReservation gives back a token not used, and stops the timer.
func cancelReservation(res *rate.Reservation, now time.Time, timer *time.Timer) {
	timer.Stop()
	if res != nil {
		res.CancelAt(now)
	}
}

// delayed counts and reports a record admitted after waiting.
func (p *Producer) delayed(cnt *classCounters, d *Decision) {
	d.Outcome = OutcomeDelayed
	cnt.delayed.Add(1)
	p.cnt.waitedNs.Add(int64(d.Waited))
	p.emit(*d)
}

// outcomeOf returns the outcome enforcing a would have had (in shadow
// mode: Limit counts as throttled, since shadow mode does not wait).
func outcomeOf(a Action) Outcome {
	switch a {
	case Shed:
		return OutcomeShed
	case FailFast:
		return OutcomeFailedFast
	case Defer:
		return OutcomeDeferred
	}
	return OutcomeThrottled
}

// refuse counts and reports a refusal and returns its error.
func (p *Producer) refuse(cnt *classCounters, d Decision, o Outcome, kind error, retryAfter time.Duration, cause error) error {
	d.Outcome, d.RetryAfter = o, retryAfter
	cnt.outcome(o).Add(1)
	p.emit(d)
	return &RefusedError{Kind: kind, Decision: d, RetryAfter: retryAfter, Err: cause}
}

// usable returns ErrNotStarted before Start and ErrClosed after Close.
func (p *Producer) usable() error {
	switch p.state.Load() {
	case stateNew:
		return ErrNotStarted
	case stateClosed:
		return ErrClosed
	}
	return nil
}

// awaitStart waits, until capAt at most, for Start to have read the
// control topic; past capAt it returns nil (the record is decided with
// what the reader knows: fail-open). It returns ErrClosed if the
// producer closes, and ctx's error if ctx ends.
func (p *Producer) awaitStart(ctx context.Context, capAt time.Time) error {
	select {
	case <-p.startDone:
		return nil
	default:
	}
	left := time.Until(capAt)
	if left <= 0 {
		return nil
	}
	timer := time.NewTimer(left)
	defer timer.Stop()
	select {
	case <-p.startDone:
	case <-timer.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.quit:
		return ErrClosed
	}
	return nil
}

// refreshLocked reads the topic's pressure again when the reader's
// signals changed since it last did, a signal counted has expired, or
// force; it wakes the waiting records if the pressure changed, and
// returns the level change to report, if any. f.mu is held.
func (p *Producer) refreshLocked(f *followed, now time.Time, force bool) *LevelChange {
	stale := force || f.ctl.stale(now) || f.rest != nil && f.rest.stale(now)
	if !stale {
		select {
		case <-f.readerCh:
			stale = true
		default:
		}
	}
	if !stale {
		return nil
	}
	f.readerCh = p.reader.Changed() // before reading: a change from now on closes it
	from := f.ctl.level()
	pr := p.reader.Pressure(f.topic, now)
	changed := f.ctl.setPressure(pr, now)
	if f.setHot(p.ctl, pr, now) || changed {
		f.broadcastLocked()
	}
	if p.steer != nil {
		p.steer.setHot(f.topic, pr.Partitions)
	}
	if to := f.ctl.level(); to != from {
		return &LevelChange{Time: now, Topic: f.topic, From: from, To: to, Pressure: pr}
	}
	return nil
}
