package consumer

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floodgate-kafka/floodgate/partition"
)

// binding connects the rebalance callbacks of one client to the runtime
// that wraps it. GroupOpts installs it both as the callbacks' receiver and
// as a (no-op) kgo hook, which is how Wrap finds it on a client.
type binding struct {
	rt atomic.Pointer[Runtime]
}

// kgo accepts only hooks that implement a hook interface; this one is cheap
// (called once, at client creation) and does nothing.
var _ kgo.HookNewClient = (*binding)(nil)

// OnNewClient implements kgo.HookNewClient; it does nothing.
func (*binding) OnNewClient(*kgo.Client) {}

// GroupOpts returns the kgo options a client needs to be wrapped by [Wrap]:
//
//   - kgo.DisableAutoCommit: the runtime commits only offsets whose records
//     all reached a terminal state (kgo.AutoCommitMarks is accepted too,
//     as the runtime never marks);
//   - kgo.BlockRebalanceOnPoll: no rebalance between a poll and the
//     admission of its records, so every admitted record is owned;
//   - kgo.OnPartitionsAssigned, kgo.OnPartitionsRevoked and
//     kgo.OnPartitionsLost: the runtime drains and commits revoked
//     partitions and drops lost ones;
//   - kgo.WithHooks with a marker by which Wrap recognises the client.
//
// Add them last, after the caller's own options: a rebalance callback set
// after them would replace the runtime's, and kgo offers no way to detect
// that. kgo.ConsumerGroup and the topics are the caller's to set. Each call
// returns options for one client.
func GroupOpts() []kgo.Opt {
	b := new(binding)
	return []kgo.Opt{
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.WithHooks(b),
		kgo.OnPartitionsAssigned(b.onAssigned),
		kgo.OnPartitionsRevoked(b.onRevoked),
		kgo.OnPartitionsLost(b.onLost),
	}
}

func (b *binding) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	if rt := b.rt.Load(); rt != nil {
		for _, h := range rt.hooks.rebalance {
			h.OnAssigned(assigned)
		}
	}
}

func (b *binding) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if rt := b.rt.Load(); rt != nil {
		n := rt.revoke(revoked, false, rt.cfg.revokeTimeout)
		for _, h := range rt.hooks.rebalance {
			h.OnRevoked(revoked, n)
		}
	}
}

func (b *binding) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	if rt := b.rt.Load(); rt != nil {
		n := rt.revoke(lost, true, 0)
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
	disabled, _ := cl.OptValue(kgo.DisableAutoCommit).(bool)
	marks, _ := cl.OptValue(kgo.AutoCommitMarks).(bool)
	if !disabled && !marks {
		return bad("autocommit is on: set kgo.DisableAutoCommit (or kgo.AutoCommitMarks)")
	}
	if block, _ := cl.OptValue(kgo.BlockRebalanceOnPoll).(bool); !block {
		return bad("kgo.BlockRebalanceOnPoll is not set")
	}
	b := findBinding(cl)
	if b == nil {
		return bad("the runtime's rebalance callbacks are not installed")
	}
	if !b.rt.CompareAndSwap(nil, rt) {
		return fmt.Errorf("%w: client is already wrapped by another Runtime", ErrClientMisconfigured)
	}
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
// flight were abandoned unhandled.
func (rt *Runtime) revoke(tps map[string][]int32, lost bool, wait time.Duration) (abandoned int) {
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
		return 0
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
	var offsets map[string]map[int32]kgo.EpochOffset
	rt.mu.Lock()
	for _, ps := range gone {
		ps.gone = true
		abandoned += ps.running + ps.aborted // left behind unhandled
		if lost {
			continue
		}
		offsets = ps.addUncommitted(offsets)
	}
	rt.mu.Unlock()
	if offsets != nil {
		rt.commit(offsets)
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
	return abandoned
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
		rt.buffered -= it.size
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

// addUncommitted adds ps's watermark to offsets if it moved past the last
// commit, allocating offsets as needed. Called with mu held.
func (ps *pstate) addUncommitted(offsets map[string]map[int32]kgo.EpochOffset) map[string]map[int32]kgo.EpochOffset {
	wm, epoch, ok := ps.tr.Watermark()
	if !ok || wm <= ps.commit {
		return offsets
	}
	if offsets == nil {
		offsets = make(map[string]map[int32]kgo.EpochOffset)
	}
	if offsets[ps.topic] == nil {
		offsets[ps.topic] = make(map[int32]kgo.EpochOffset)
	}
	offsets[ps.topic][ps.partition] = kgo.EpochOffset{Epoch: epoch, Offset: wm}
	return offsets
}

// commitOwned commits the watermark of every owned partition that moved
// since its last commit.
func (rt *Runtime) commitOwned() {
	rt.commitMu.Lock()
	defer rt.commitMu.Unlock()
	var offsets map[string]map[int32]kgo.EpochOffset
	rt.mu.Lock()
	for _, ps := range rt.parts {
		if ps.revoking {
			continue
		}
		offsets = ps.addUncommitted(offsets)
	}
	rt.mu.Unlock()
	if offsets == nil {
		return
	}
	if rt.commit(offsets) != nil {
		return
	}
	rt.mu.Lock()
	for t, parts := range offsets {
		for p, eo := range parts {
			if ps := rt.parts[tp{t, p}]; ps != nil && eo.Offset > ps.commit {
				ps.commit = eo.Offset
			}
		}
	}
	rt.mu.Unlock()
}

// commit sends offsets synchronously and reports them to the hooks. Called
// with commitMu held.
func (rt *Runtime) commit(offsets map[string]map[int32]kgo.EpochOffset) error {
	ctx, cancel := context.WithTimeout(context.Background(), rt.cfg.commitTimeout)
	defer cancel()
	var err error
	rt.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, cerr error) {
		if cerr != nil {
			err = cerr
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil && err == nil {
					err = fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, perr)
				}
			}
		}
	})
	if err != nil {
		err = fmt.Errorf("consumer: commit: %w", err)
	}
	for _, h := range rt.hooks.commit {
		h.OnCommit(offsets, err)
	}
	return err
}

// shutdown revokes every partition with the shutdown bound, then stops the
// workers. Handlers that ignore their cancelled context are waited for a
// short grace period, then abandoned with ErrShutdownTimeout.
func (rt *Runtime) shutdown() error {
	rt.mu.Lock()
	all := make(map[string][]int32)
	for k := range rt.parts {
		all[k.topic] = append(all[k.topic], k.partition)
	}
	rt.mu.Unlock()
	rt.revoke(all, false, rt.cfg.shutdownTimeout)

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
