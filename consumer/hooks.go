package consumer

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/partition"
)

// Hook observes the runtime. A hook implements any of the Hook* interfaces
// below; the runtime finds them by type assertion once, at construction.
// This mirrors kgo.Hook: metrics and log adapters live outside the core.
//
// Hooks are called synchronously from the runtime's goroutines (poll loop,
// workers, rebalance callbacks), never while the runtime holds a lock. They
// must be fast and safe for concurrent use.
type Hook any

// HookRecordDone is called once per handler attempt.
type HookRecordDone interface {
	// OnRecordDone reports one handler attempt: its duration, its error
	// (nil on success) and the attempt number (1 for the first call).
	OnRecordDone(r *kgo.Record, attempt int, took time.Duration, err error)
}

// HookPartitionsPaused is called after the runtime paused fetching.
type HookPartitionsPaused interface {
	// OnPartitionsPaused reports partitions paused in one batched call,
	// with the reasons each one holds.
	OnPartitionsPaused(paused map[string]map[int32]partition.Reasons)
}

// HookPartitionsResumed is called after the runtime resumed fetching,
// including when it clears the pause of a revoked or lost partition, so that
// pauses minus resumes is the number of partitions paused now.
type HookPartitionsResumed interface {
	OnPartitionsResumed(resumed map[string][]int32)
}

// HookRecordsRefetch is called when records that did not fit a window or
// the global byte budget were given back: the partition's fetch position
// was rewound to offset and they will be fetched again on resume.
type HookRecordsRefetch interface {
	OnRecordsRefetch(topic string, partition int32, offset int64, records int)
}

// HookCommit is called after every commit attempt with the offsets sent.
// A failed commit is also counted in [Stats] (CommitErr, LastCommit) and
// logged at warn level by the client's logger, if it has one.
type HookCommit interface {
	OnCommit(offsets map[string]map[int32]kgo.EpochOffset, err error)
}

// HookRebalance observes assignment changes.
type HookRebalance interface {
	OnAssigned(assigned map[string][]int32)
	// OnRevoked is called after the revoked partitions were drained and
	// committed; abandoned counts records in flight that were not handled
	// (the next owner reads them again).
	OnRevoked(revoked map[string][]int32, abandoned int)
	// OnLost is called after lost partitions were dropped without commit.
	OnLost(lost map[string][]int32, abandoned int)
}

// HookStuck is called when a partition pauses because of a record that does
// not reach a terminal state: its span reached [PartitionMaxSpan]
// (partition.SpanFull) or its divert could not be produced and the router
// had nothing else to try (partition.DivertFailed). It is called once per
// transition into such a pause, not repeatedly.
type HookStuck interface {
	OnStuck(s StuckRecord)
}

// HookFetchError is called for each error a poll returned: a partition's
// (partition >= 0), a topic's (partition -1) or the client's (topic "",
// partition -1 or 0). Data loss is reported here too, as a *kgo.ErrDataLoss
// from the client or a [*DataLossError] the runtime detected. fatal says
// whether the error ends Run. The same error repeating is reported each
// time.
type HookFetchError interface {
	OnFetchError(topic string, partition int32, err error, fatal bool)
}

type hooks struct {
	stuck      []HookStuck
	fetchErr   []HookFetchError
	recordDone []HookRecordDone
	paused     []HookPartitionsPaused
	resumed    []HookPartitionsResumed
	refetch    []HookRecordsRefetch
	commit     []HookCommit
	rebalance  []HookRebalance
	diverted   []HookRecordDiverted
}

func newHooks(hs []Hook) hooks {
	var h hooks
	for _, x := range hs {
		if v, ok := x.(HookRecordDone); ok {
			h.recordDone = append(h.recordDone, v)
		}
		if v, ok := x.(HookPartitionsPaused); ok {
			h.paused = append(h.paused, v)
		}
		if v, ok := x.(HookPartitionsResumed); ok {
			h.resumed = append(h.resumed, v)
		}
		if v, ok := x.(HookRecordsRefetch); ok {
			h.refetch = append(h.refetch, v)
		}
		if v, ok := x.(HookCommit); ok {
			h.commit = append(h.commit, v)
		}
		if v, ok := x.(HookRebalance); ok {
			h.rebalance = append(h.rebalance, v)
		}
		if v, ok := x.(HookRecordDiverted); ok {
			h.diverted = append(h.diverted, v)
		}
		if v, ok := x.(HookStuck); ok {
			h.stuck = append(h.stuck, v)
		}
		if v, ok := x.(HookFetchError); ok {
			h.fetchErr = append(h.fetchErr, v)
		}
	}
	return h
}
