package consumer

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/partition"
)

// binding connects the rebalance callbacks of one client to the runtime
// that wraps it. GroupOpts installs it both as the callbacks' receiver and
// as a (no-op) kgo hook, which is how Wrap finds it on a client.
type binding struct {
	rt atomic.Pointer[Runtime]

	// owned is the assignment as the callbacks saw it, kept whether or not
	// a runtime is bound (a client may be assigned before Wrap, and wrapped
	// again after Run). Records of a partition not in it, or a partition
	// assigned twice without a revoke in between, mean a caller's callback
	// replaced one of ours.
	mu     sync.Mutex
	owned  map[tp]struct{}
	broken error
}

// kgo accepts only hooks that implement a hook interface; this one is cheap
// (called once, at client creation) and does nothing.
var _ kgo.HookNewClient = (*binding)(nil)

// OnNewClient implements kgo.HookNewClient; it does nothing.
func (*binding) OnNewClient(*kgo.Client) {}

// GroupOpts returns the kgo options a client needs to be wrapped by [Wrap]:
//
//   - kgo.DisableAutoCommit: the runtime commits only offsets whose records
//     all reached a terminal state;
//   - kgo.BlockRebalanceOnPoll: no rebalance between a poll and the
//     admission of its records, so every admitted record is owned;
//   - kgo.OnPartitionsAssigned, kgo.OnPartitionsRevoked and
//     kgo.OnPartitionsLost: the runtime drains and commits revoked
//     partitions and drops lost ones;
//   - kgo.KeepControlRecords: the client returns the control records of
//     transactions (commit and abort markers) instead of skipping them, so
//     that the runtime passes their offsets and commits up to the log's
//     end; the handler never sees them (see "Transactions" in the package
//     documentation);
//   - kgo.WithHooks with a marker by which Wrap recognises the client.
//
// Add them last, after the caller's own options: a rebalance callback set
// after them replaces the runtime's. Go cannot compare functions, so the
// runtime detects that by behaviour: records of a partition whose
// assignment its callback never saw, or a partition assigned twice without
// its revoke or loss seen in between, end Run with
// [ErrClientMisconfigured]. (A replaced revoke callback is only seen that
// way once a revoked partition comes back; until then the runtime neither
// commits nor unpauses it on revoke.) kgo.ConsumerGroup and the topics are
// the caller's to set. Each call returns options for one client.
func GroupOpts() []kgo.Opt {
	b := new(binding)
	return []kgo.Opt{
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.WithHooks(b),
		kgo.OnPartitionsAssigned(b.onAssigned),
		kgo.OnPartitionsRevoked(b.onRevoked),
		kgo.OnPartitionsLost(b.onLost),
		kgo.KeepControlRecords(),
	}
}

func (b *binding) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	b.mu.Lock()
	if b.owned == nil {
		b.owned = make(map[tp]struct{})
	}
	for t, ps := range assigned {
		for _, p := range ps {
			if _, dup := b.owned[tp{t, p}]; dup && b.broken == nil {
				b.broken = fmt.Errorf("%w: %s[%d] was assigned again without the runtime's OnPartitionsRevoked or OnPartitionsLost seeing it go: a later kgo.OnPartitionsRevoked/Lost option replaced the runtime's (add consumer.GroupOpts() last)",
					ErrClientMisconfigured, t, p)
			}
			b.owned[tp{t, p}] = struct{}{}
		}
	}
	broken := b.broken
	b.mu.Unlock()
	if rt := b.rt.Load(); rt != nil {
		if broken != nil {
			rt.logf(kgo.LogLevelError, "floodgate: stopping: "+broken.Error())
			rt.fail(broken)
		}
		for _, h := range rt.hooks.rebalance {
			h.OnAssigned(assigned)
		}
	}
}

// disown removes partitions from owned.
func (b *binding) disown(tps map[string][]int32) {
	b.mu.Lock()
	for t, ps := range tps {
		for _, p := range ps {
			delete(b.owned, tp{t, p})
		}
	}
	b.mu.Unlock()
}

// owns reports whether the callbacks saw key assigned.
func (b *binding) owns(key tp) bool {
	b.mu.Lock()
	_, ok := b.owned[key]
	b.mu.Unlock()
	return ok
}

// misconfigured returns the evidence, if any, that a callback of ours was
// replaced.
func (b *binding) misconfigured() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.broken
}

func (b *binding) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	defer b.disown(revoked)
	if rt := b.rt.Load(); rt != nil {
		n, _ := rt.revoke(revoked, false, rt.cfg.revokeTimeout)
		for _, h := range rt.hooks.rebalance {
			h.OnRevoked(revoked, n)
		}
	}
}

func (b *binding) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	defer b.disown(lost)
	if rt := b.rt.Load(); rt != nil {
		n, _ := rt.revoke(lost, true, 0)
		for _, h := range rt.hooks.rebalance {
			h.OnLost(lost, n)
		}
	}
}

// bind checks that cl carries the options of GroupOpts and binds rt to its
// callbacks.
func bind(cl *kgo.Client, rt *Runtime) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s (add consumer.GroupOpts() to the client's options)", ErrClientMisconfigured, fmt.Sprintf(format, args...))
	}
	if g, _ := cl.OptValue(kgo.ConsumerGroup).(string); g == "" {
		return bad("kgo.ConsumerGroup is not set")
	}
	if disabled, _ := cl.OptValue(kgo.DisableAutoCommit).(bool); !disabled {
		return bad("autocommit is on: set kgo.DisableAutoCommit")
	}
	if block, _ := cl.OptValue(kgo.BlockRebalanceOnPoll).(bool); !block {
		return bad("kgo.BlockRebalanceOnPoll is not set")
	}
	b := findBinding(cl)
	if b == nil {
		return bad("the runtime's rebalance callbacks are not installed")
	}
	if keep, _ := cl.OptValue(kgo.KeepControlRecords).(bool); !keep {
		return bad("kgo.KeepControlRecords is not set: without the transactions' markers the runtime cannot commit past them, and a partition ending in one would read as lagging")
	}
	if !b.rt.CompareAndSwap(nil, rt) {
		return fmt.Errorf("%w: client is already wrapped by another Runtime", ErrClientMisconfigured)
	}
	rt.bind = b
	return nil
}

// unbind detaches rt from its client's callbacks: a rebalance after Run
// returned finds no runtime and does nothing.
func unbind(cl *kgo.Client, rt *Runtime) {
	if b := findBinding(cl); b != nil {
		b.rt.CompareAndSwap(rt, nil)
	}
}

// findBinding returns the binding among cl's hooks. kgo returns its hooks
// as an unexported slice type, hence the reflection.
func findBinding(cl *kgo.Client) *binding {
	v := reflect.ValueOf(cl.OptValue(kgo.WithHooks))
	if v.Kind() != reflect.Slice {
		return nil
	}
	var b *binding
	for i := 0; i < v.Len(); i++ {
		if x, ok := v.Index(i).Interface().(*binding); ok {
			b = x // the last GroupOpts wins, as its callbacks do
		}
	}
	return b
}

// revoke takes partitions away from the runtime. It stops dispatching them
// and drops their queued records; unless lost, it waits up to wait for their
// running handlers, cancels the handlers' context, and commits the
// watermark of what completed. Finally it clears the client's pauses on them
// (kgo keeps pauses across rebalances). It returns how many records in
// flight were abandoned unhandled and, per partition that had records,
// the position of its first record not yet terminal (where a consumer of
// it must start again).
func (rt *Runtime) revoke(tps map[string][]int32, lost bool, wait time.Duration) (abandoned int, restart map[string]map[int32]kgo.EpochOffset) {
	rt.revokeMu.Lock()
	defer rt.revokeMu.Unlock()

	var (
		gone  []*pstate
		idles []chan struct{}
	)
	rt.mu.Lock()
	for t, parts := range tps {
		for _, p := range parts {
			ps := rt.parts[tp{t, p}]
			if ps == nil || ps.revoking {
				continue
			}
			gone = append(gone, ps)
			abandoned += rt.stopPartition(ps)
			if ps.running > 0 {
				ps.idle = make(chan struct{})
				idles = append(idles, ps.idle)
			}
		}
	}
	rt.purgeRunq()
	rt.liftMemory()
	rt.mu.Unlock()
	if len(gone) == 0 {
		return 0, nil
	}

	if !lost && len(idles) > 0 {
		timer := time.NewTimer(wait)
	waiting:
		for _, ch := range idles {
			select {
			case <-ch:
			case <-timer.C:
				break waiting
			}
		}
		timer.Stop()
	}
	for _, ps := range gone {
		ps.cancel()
	}

	rt.commitMu.Lock()
	var (
		offsets map[string]map[int32]kgo.EpochOffset
		snaps   []commitSnap
		now     = time.Now()
	)
	rt.mu.Lock()
	for _, ps := range gone {
		abandoned += ps.running + ps.aborted // left behind unhandled
		if !lost {
			offsets, snaps = ps.addUncommitted(offsets, snaps, now)
			if at, ok := ps.restartAt(); ok {
				if restart == nil {
					restart = make(map[string]map[int32]kgo.EpochOffset)
				}
				if restart[ps.topic] == nil {
					restart[ps.topic] = make(map[int32]kgo.EpochOffset)
				}
				restart[ps.topic][ps.partition] = at
			}
		}
		ps.gone = true
	}
	rt.mu.Unlock()
	if offsets != nil {
		rt.commitSnaps(context.Background(), offsets, snaps)
	}
	rt.commitMu.Unlock()

	rt.pauseMu.Lock()
	var resume map[string][]int32
	rt.mu.Lock()
	for _, ps := range gone {
		if ps.kpaused {
			ps.kpaused = false
			if resume == nil {
				resume = make(map[string][]int32)
			}
			resume[ps.topic] = append(resume[ps.topic], ps.partition)
		}
	}
	rt.mu.Unlock()
	if resume != nil {
		rt.cl.ResumeFetchPartitions(resume)
		for _, h := range rt.hooks.resumed {
			h.OnPartitionsResumed(resume)
		}
	}
	rt.pauseMu.Unlock()
	return abandoned, restart
}

// restartAt returns where consuming ps must start again: its oldest record
// not yet terminal, or, when every admitted record is terminal, the
// watermark; no later than an older generation's record not yet terminal
// (ps.floor). ok is false when nothing was admitted since the last rebase
// and no such record is left.
// Called with mu held.
func (ps *pstate) restartAt() (at kgo.EpochOffset, ok bool) {
	if _, off, _, has := ps.tr.Oldest(); has {
		at, ok = kgo.EpochOffset{Epoch: -1, Offset: off}, true
	} else if wm, epoch, has := ps.tr.Watermark(); has {
		at, ok = kgo.EpochOffset{Epoch: epoch, Offset: wm}, true
	}
	if ps.floor >= 0 && (!ok || ps.floor < at.Offset) {
		// An older generation's record below the reset is not terminal.
		at, ok = kgo.EpochOffset{Epoch: -1, Offset: ps.floor}, true
	}
	return at, ok
}

// stopPartition marks ps revoking, removes it from the runtime and drops its
// queued (not running) records, returning how many. Called with mu held.
func (rt *Runtime) stopPartition(ps *pstate) int {
	ps.revoking = true
	close(ps.quit)
	if ps.due != nil {
		ps.due.Stop()
	}
	delete(rt.parts, ps.tp)
	if ps.reasons&partition.Memory != 0 {
		rt.memPaused--
	}
	ps.reasons = 0
	dropped := 0
	release := func(it item) {
		dropped++
		rt.buffered -= int64(it.size)
		rt.inflight--
	}
	if ps.lane != nil {
		ps.lane.q.drain(release)
	}
	for _, l := range ps.keys {
		l.q.drain(release)
	}
	if rt.cfg.ordering == OrderNone {
		for i, n := 0, rt.runq.len(); i < n; i++ {
			t, _ := rt.runq.pop()
			if t.ps == ps {
				release(t.it)
				continue
			}
			rt.runq.push(t)
		}
	}
	return dropped
}

// purgeRunq removes lane tasks of revoking partitions from the run queue.
// Called with mu held.
func (rt *Runtime) purgeRunq() {
	if rt.cfg.ordering == OrderNone {
		return // stopPartition removed the records themselves
	}
	for i, n := 0, rt.runq.len(); i < n; i++ {
		t, _ := rt.runq.pop()
		if t.ps.revoking {
			t.l.queued = false
			continue
		}
		rt.runq.push(t)
	}
}

// shutdown revokes every partition with the shutdown bound, then rewinds
// the client to the first record of each partition that is not terminal
// (including records polled but not admitted, leftover) and lifts the
// poll's rebalance block, so that a wrapped client can be wrapped again
// without skipping records. Then it stops the workers. Handlers that ignore
// their cancelled context are waited for a short grace period, then
// abandoned with ErrShutdownTimeout.
func (rt *Runtime) shutdown(leftover kgo.Fetches) error {
	rt.mu.Lock()
	all := make(map[string][]int32)
	for k := range rt.parts {
		all[k.topic] = append(all[k.topic], k.partition)
	}
	rt.mu.Unlock()
	_, rewinds := rt.revoke(all, false, rt.cfg.shutdownTimeout)
	leftover.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		r := p.Records[0]
		if rewinds == nil {
			rewinds = make(map[string]map[int32]kgo.EpochOffset)
		}
		if rewinds[p.Topic] == nil {
			rewinds[p.Topic] = make(map[int32]kgo.EpochOffset)
		}
		if cur, ok := rewinds[p.Topic][p.Partition]; !ok || r.Offset < cur.Offset {
			rewinds[p.Topic][p.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
	})
	if len(rewinds) > 0 {
		rt.cl.SetOffsets(rewinds)
	}
	rt.cl.AllowRebalance()

	rt.mu.Lock()
	rt.stopping = true
	rt.work.Broadcast()
	rt.mu.Unlock()

	workersDone := make(chan struct{})
	go func() { rt.wg.Wait(); close(workersDone) }()
	grace := time.NewTimer(5 * time.Second)
	defer grace.Stop()
	select {
	case <-workersDone:
		return nil
	case <-grace.C:
		rt.mu.Lock()
		n := rt.running
		rt.mu.Unlock()
		return fmt.Errorf("%w: %d handlers still running after their context was cancelled", ErrShutdownTimeout, n)
	}
}
