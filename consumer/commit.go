package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floodgate-kafka/floodgate/partition"
)

// commitSnap is what a commit of one partition covers, taken under mu.
type commitSnap struct {
	ps     *pstate
	gen    uint32
	offset int64
	passed uint64    // ps.tr.Passed() at the snapshot
	at     time.Time // when the snapshot was taken
}

// addUncommitted adds ps's watermark to offsets (and its snapshot to snaps)
// if it moved past the last commit. Called with mu held.
func (ps *pstate) addUncommitted(offsets map[string]map[int32]kgo.EpochOffset, snaps []commitSnap, now time.Time) (map[string]map[int32]kgo.EpochOffset, []commitSnap) {
	wm, epoch, ok := ps.tr.Watermark()
	if ok && ps.floor >= 0 && ps.floor < wm {
		wm, epoch = ps.floor, -1 // an older generation's record is not terminal
	}
	if !ok || wm <= ps.commit {
		return offsets, snaps
	}
	if offsets == nil {
		offsets = make(map[string]map[int32]kgo.EpochOffset)
	}
	if offsets[ps.topic] == nil {
		offsets[ps.topic] = make(map[int32]kgo.EpochOffset)
	}
	offsets[ps.topic][ps.partition] = kgo.EpochOffset{Epoch: epoch, Offset: wm}
	return offsets, append(snaps, commitSnap{ps: ps, gen: ps.gen, offset: wm, passed: ps.tr.Passed(), at: now})
}

// commitOwned commits the watermark of every owned partition that moved
// since its last commit. The controller runs it every CommitInterval, with
// a context that shutdown cancels.
func (rt *Runtime) commitOwned(ctx context.Context) {
	rt.commitMu.Lock()
	defer rt.commitMu.Unlock()
	var (
		offsets map[string]map[int32]kgo.EpochOffset
		snaps   []commitSnap
		now     = time.Now()
	)
	rt.mu.Lock()
	for _, ps := range rt.parts {
		if !ps.revoking {
			offsets, snaps = ps.addUncommitted(offsets, snaps, now)
		}
	}
	rt.mu.Unlock()
	if offsets != nil {
		rt.commitSnaps(ctx, offsets, snaps)
	}
}

// commitSnaps commits offsets and records the outcome: on success the
// partitions' commit marks move and CommitStalled lifts; on failure the
// error is kept for Stats, logged, and partitions whose uncommitted work
// passed its bound pause. Called with commitMu held.
func (rt *Runtime) commitSnaps(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset, snaps []commitSnap) error {
	failed, err := rt.commit(ctx, offsets)
	now := time.Now()
	rt.mu.Lock()
	prevErr, fails := rt.commitErr, rt.commitFails
	since := now.Sub(rt.lastCommit)
	if err == nil {
		rt.commitErr, rt.lastCommit = nil, now
	} else {
		rt.commitErr = err
		rt.commitFails++
		fails++
	}
	lifted := false
	for _, sn := range snaps {
		ps := sn.ps
		if ps.gone || ps.gen != sn.gen || err != nil && (failed == nil || failed[ps.tp]) {
			continue
		}
		ps.commit = max(ps.commit, sn.offset)
		ps.commitPassed = sn.passed
		if ps.tr.Passed() == sn.passed {
			ps.uncommittedSince = time.Time{}
		} else {
			ps.uncommittedSince = sn.at
		}
		lifted = rt.clearReason(ps, partition.CommitStalled) || lifted
	}
	stalled := 0
	for _, ps := range rt.parts {
		rt.checkUncommitted(ps, now)
		if ps.reasons&partition.CommitStalled != 0 {
			stalled++
		}
	}
	rt.mu.Unlock()
	if lifted {
		rt.wake()
	}
	switch {
	case err != nil:
		rt.logf(kgo.LogLevelWarn, "floodgate: commit failed; completed records stay uncommitted (a crash would hand them to the next owner again) until a commit succeeds",
			"err", err, "consecutive_failures", countSince(prevErr, fails), "since_last_commit", since.Round(time.Millisecond), "partitions_paused_commit_stalled", stalled)
	case prevErr != nil:
		rt.logf(kgo.LogLevelInfo, "floodgate: commits succeed again", "after", since.Round(time.Millisecond), "last_err", prevErr)
	}
	return err
}

// countSince is 1 for the first failure after a success, else the running
// count (a rough figure for the log line; Stats has the exact total).
func countSince(prevErr error, fails uint64) uint64 {
	if prevErr == nil {
		return 1
	}
	return fails
}

// checkUncommitted pauses ps (CommitStalled) once its completed but
// uncommitted work passed MaxUncommitted: its age, whatever holds commits
// up, or its records while commits fail. Called with mu held.
func (rt *Runtime) checkUncommitted(ps *pstate, now time.Time) {
	if ps.revoking || ps.uncommittedSince.IsZero() || ps.reasons&partition.CommitStalled != 0 {
		return
	}
	if now.Sub(ps.uncommittedSince) >= rt.cfg.maxUncommittedAge ||
		rt.commitErr != nil && ps.tr.Passed()-ps.commitPassed >= uint64(rt.cfg.maxUncommitted) {
		rt.setReason(ps, partition.CommitStalled)
	}
}

// commit sends offsets synchronously, bounded by CommitTimeout, and reports
// them to the hooks. failed names the partitions the broker refused when
// only some were; it is nil when the whole request failed (or nothing did).
func (rt *Runtime) commit(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) (failed map[tp]bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.commitTimeout)
	defer cancel()
	rt.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, cerr error) {
		if cerr != nil {
			err = cerr
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					if failed == nil {
						failed = make(map[tp]bool)
						err = fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, perr)
					}
					failed[tp{t.Topic, p.Partition}] = true
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
	return failed, err
}
