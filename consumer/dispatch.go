package consumer

import (
	"context"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/partition"
)

// enqueue puts an admitted record on its lane (or, in OrderNone, straight on
// the run queue). Called with mu held. It never blocks: the bound on what
// can be queued is the partition window, enforced at admission.
func (rt *Runtime) enqueue(ps *pstate, it item) {
	var l *lane
	switch rt.cfg.ordering {
	case OrderNone:
		rt.runq.push(task{ps: ps, it: it})
		rt.work.Signal()
		return
	case OrderPartition:
		l = ps.lane
	case OrderKey:
		l = ps.keys[string(it.rec.Key)]
		if l == nil {
			l = rt.newLane(ps, string(it.rec.Key))
			ps.keys[l.key] = l
		} else if !l.queued {
			ps.idleLanes--
		}
	}
	l.q.push(it)
	if !l.queued {
		l.queued = true
		rt.runq.push(task{ps: ps, l: l})
		rt.work.Signal()
	}
}

func (rt *Runtime) newLane(ps *pstate, key string) *lane {
	if n := len(rt.freeLanes); n > 0 {
		l := rt.freeLanes[n-1]
		rt.freeLanes[n-1] = nil
		rt.freeLanes = rt.freeLanes[:n-1]
		l.ps, l.key = ps, key
		return l
	}
	return &lane{ps: ps, key: key}
}

// maxIdleLanes bounds the idle key lanes a partition keeps in OrderKey.
const maxIdleLanes = 1024

// sweepLanes frees every idle lane of ps. Called with mu held.
func (rt *Runtime) sweepLanes(ps *pstate) {
	for k, l := range ps.keys {
		if !l.queued {
			delete(ps.keys, k)
			rt.freeLane(l)
		}
	}
	ps.idleLanes = 0
}

func (rt *Runtime) freeLane(l *lane) {
	l.ps, l.key, l.queued = nil, "", false
	if len(rt.freeLanes) < 1024 {
		rt.freeLanes = append(rt.freeLanes, l)
	}
}

// worker runs tasks from the run queue until the runtime stops. There are
// MaxConcurrency workers, which is the bound on concurrent handlers.
func (rt *Runtime) worker() {
	defer rt.wg.Done()
	rt.mu.Lock()
	for {
		for rt.runq.len() == 0 && !rt.stopping {
			rt.work.Wait()
		}
		if rt.stopping {
			rt.mu.Unlock()
			return
		}
		t, _ := rt.runq.pop()
		ps, it := t.ps, t.it
		if ps.revoking {
			if t.l != nil {
				t.l.queued = false
			}
			continue
		}
		if t.l != nil {
			var ok bool
			if it, ok = t.l.q.pop(); !ok {
				t.l.queued = false // drained by a revocation
				continue
			}
		}
		ps.running++
		rt.running++
		rt.mu.Unlock()

		out := rt.process(ps, it)

		rt.mu.Lock()
		rt.running--
		if out != outcomeDiverted { // a divert finishes when acknowledged
			rt.finish(ps, it, out == outcomeHandled)
		}
		if l := t.l; l != nil {
			switch {
			case l.q.len() > 0 && !ps.revoking:
				rt.runq.push(t) // to the back: partitions (keys) take turns
			case rt.cfg.ordering == OrderKey && !ps.revoking:
				// Keep the idle lane for the key's next record; sweep
				// idle lanes only once there are many, so that a key
				// seen again soon costs no allocation.
				l.queued = false
				if ps.idleLanes++; ps.idleLanes > maxIdleLanes {
					rt.sweepLanes(ps)
				}
			default:
				l.queued = false
			}
		}
	}
}

// finish accounts for a record leaving processing. Called with mu held.
func (rt *Runtime) finish(ps *pstate, it item, terminal bool) {
	ps.running--
	rt.buffered -= int64(it.size)
	rt.inflight--
	if !terminal {
		ps.aborted++
	}
	if !ps.gone {
		if terminal {
			ps.completed++
		}
		if it.gen != ps.gen {
			ps.oldPending--
			ps.oldAborted = ps.oldAborted || !terminal
			if ps.oldPending == 0 && !ps.oldAborted {
				ps.floor = -1
			}
		}
		if terminal && it.gen == ps.gen {
			if ps.fails != nil {
				delete(ps.fails, it.rec.Offset)
			}
			if ps.tr.Done(it.seq) {
				rt.advanced(ps)
			}
		}
		if ps.win.Release(int64(it.size)) && rt.clearReason(ps, partition.WindowFull) {
			rt.wake()
		}
	}
	if ps.revoking && ps.running == 0 && ps.idle != nil {
		close(ps.idle)
		ps.idle = nil
	}
	rt.liftMemory()
	if rt.prioPaused > 0 {
		rt.checkPriorities()
	}
}

// advanced accounts for ps's watermark moving: its completed work is
// uncommitted from now on, and a span that drained to its resume mark
// lifts SpanFull. Called with mu held.
func (rt *Runtime) advanced(ps *pstate) {
	if ps.uncommittedSince.IsZero() {
		ps.uncommittedSince = time.Now()
	}
	if ps.reasons&partition.SpanFull != 0 && ps.tr.Pending() <= rt.spanResume && rt.clearReason(ps, partition.SpanFull) {
		rt.wake()
	}
}

// liftMemory clears the Memory reason everywhere once the buffered bytes
// fell to the resume mark. Called with mu held.
func (rt *Runtime) liftMemory() {
	if rt.memPaused == 0 || rt.buffered > rt.memResume {
		return
	}
	for _, ps := range rt.parts {
		rt.clearReason(ps, partition.Memory)
	}
	rt.wake()
}

// process runs the handler until the record is handled or diverted, or its
// partition is revoked or the runtime stops. A failed record goes to the
// router, if any; otherwise (or when the router says so) it is retried in
// place with capped exponential backoff and jitter: its lane waits, nothing
// behind it is committed. A record that fails while its partition is being
// revoked (or the runtime stops) is aborted, never routed: its handler may
// have failed only because its context was cancelled. A record its
// downstream refused ([Refusal]) is not a failure: it is retried in place
// after the refusal's hint, never routed, and its partition pauses while it
// waits (see refusing).
func (rt *Runtime) process(ps *pstate, it item) outcome {
	var timer *time.Timer
	refusing := false // counted among ps's records refused by their downstream
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if refusing {
			rt.refusalEnds(ps)
		}
	}()
	wait := func(d time.Duration) bool {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
			return true
		case <-ps.quit:
			return false
		}
	}
	for try, attempt, refusals := 1, 0, 0; ; try++ {
		var start time.Time
		if len(rt.hooks.recordDone) > 0 {
			start = time.Now()
		}
		err := rt.call(ps.ctx, it.rec)
		if len(rt.hooks.recordDone) > 0 {
			took := time.Since(start)
			for _, h := range rt.hooks.recordDone {
				h.OnRecordDone(it.rec, try, took, err)
			}
		}
		if err == nil {
			rt.handled.Add(1)
			return outcomeHandled
		}
		if ref, ok := AsRefusal(err); ok {
			rt.refused.Add(1)
			refusals++
			refusing = rt.refuse(ps, it, ref.RefusalLevel(), !refusing, err) || refusing
			d := ref.RefusalRetryAfter()
			if d <= 0 {
				d = backoff(rt.cfg.backoffInitial, rt.cfg.backoffMax, refusals)
			}
			if !wait(min(d, rt.cfg.backoffMax)) {
				return outcomeAborted
			}
			continue
		}
		if refusing {
			rt.refusalEnds(ps)
			refusing = false
		}
		attempt++
		rt.failures.Add(1)
		select {
		case <-ps.quit:
			// Revoked or stopping: the failure may be the cancelled
			// context, and the next owner handles the record again.
			// Routing it would also send it to a retry tier.
			return outcomeAborted
		default:
		}
		rt.noteFailure(ps, it, attempt, err, "")
		d := backoff(rt.cfg.backoffInitial, rt.cfg.backoffMax, attempt)
		if rt.cfg.router != nil {
			dec := rt.cfg.router.Failed(it.rec, attempt, err)
			if dec.Divert != nil {
				rt.divert(ps, it, dec.Divert, 1, false)
				return outcomeDiverted
			}
			if dec.RetryAfter > 0 {
				d = dec.RetryAfter
			}
		}
		if !wait(d) {
			return outcomeAborted
		}
	}
}

// refuse notes that the downstream refused a record of ps at level (0:
// unsaid), at now: ps keeps the highest level the refusals named while it
// has refused records, and when and at what level the last one was. With
// first, the record is counted among them, and the first pauses ps
// (partition.DownstreamPressure) until the last is over (refusalEnds). It
// reports whether the record counts (a record of a replaced generation, or
// of a partition gone, does not).
func (rt *Runtime) refuse(ps *pstate, it item, level int, first bool, err error) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if it.gen != ps.gen || ps.gone {
		return false
	}
	level = min(max(level, 0), 3)
	ps.downLevel = max(ps.downLevel, level)
	ps.refusedAt, ps.refusedLevel = time.Now(), level
	ps.failure(it.rec.Offset).err = err
	if first {
		ps.refusing++
		if ps.refusing == 1 && rt.setReason(ps, partition.DownstreamPressure) {
			rt.wake()
		}
	}
	return true
}

// refusalEnds uncounts a record refuse counted: handled, failed
// otherwise, or abandoned.
func (rt *Runtime) refusalEnds(ps *pstate) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if ps.refusing == 0 {
		return
	}
	ps.refusing--
	if ps.refusing == 0 {
		ps.downLevel = 0
		if rt.clearReason(ps, partition.DownstreamPressure) {
			rt.wake()
		}
	}
}

// call runs the handler, turning a panic into a *PanicError.
func (rt *Runtime) call(ctx context.Context, r *kgo.Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return rt.handler(ctx, r)
}

// backoff returns the wait before retry number attempt (1-based): initial
// doubled per attempt, capped at max, with "equal jitter" (a uniform draw
// from the upper half) so that retries of many records spread out.
func backoff(initial, max time.Duration, attempt int) time.Duration {
	d := initial
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}
