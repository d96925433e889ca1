// Package consumer is floodgate's consumer runtime: a franz-go group
// consumer that bounds the records in flight per partition, pauses a
// partition's fetching while its window is full, and commits only offsets
// whose records all reached a terminal state.
//
// # Building a runtime
//
// [New] builds its own *kgo.Client from [Brokers], [Group], [Topics] and any
// extra [KgoOpts]:
//
//	rt, err := consumer.New(handle,
//		consumer.Brokers("localhost:9092"),
//		consumer.Group("orders"),
//		consumer.Topics("orders"),
//		consumer.WithOrdering(consumer.OrderKey),
//	)
//	if err != nil { ... }
//	err = rt.Run(ctx) // blocks until ctx ends, then drains and commits
//
// [Wrap] runs around a client the caller built. The client must carry
// [GroupOpts] (added last): kgo.DisableAutoCommit, kgo.BlockRebalanceOnPoll,
// the runtime's OnPartitionsAssigned/Revoked/Lost callbacks and a marker
// hook. Wrap rejects a client without a group, with autocommit on, without
// BlockRebalanceOnPoll or without the callbacks, with
// [ErrClientMisconfigured] naming the option. Run does not close a wrapped
// client.
//
// # Guarantees
//
// At-least-once: a record's offset is committed only once it and every
// record before it in its partition was handled. Commits happen every
// [CommitInterval], synchronously when partitions are revoked, and when Run
// returns. A handler error or panic ([PanicError]) is retried in place with
// capped exponential backoff and jitter ([RetryBackoff]); the record's lane
// waits and nothing after it is committed.
//
// With a [Router] ([WithRouter]; package retrytopics provides one) a failed
// record can instead be diverted: the runtime produces its replacement to a
// retry tier or the quarantine lane, and the record becomes terminal once
// the broker acknowledged that produce. A router can also hold records that
// are not yet due: their partition is paused (partition.RetryDue) until
// the head record is due.
//
// Bounded memory: a partition holds at most [PartitionMaxRecords] records
// and [PartitionMaxBytes] bytes in flight (admitted, not yet terminal), and
// all partitions together at most [MaxBufferedBytes]. A record that does not
// fit is not admitted: the partition is paused and its fetch position
// rewound to that record, so it is fetched again once the window drained.
// Kafka returns whole record batches, so keep PartitionMaxBytes well above
// the producers' batch size, or records will often be fetched twice. The
// runtime also sizes fetches to the room a resumed window has. Memory held
// by kgo itself (at most one fetch response per broker) is outside these
// bounds; see kgo.FetchMaxBytes.
//
// # Pausing
//
// A partition is paused while any [partition.Reasons] holds it: its window
// is full (cleared once it drains to [ResumeFraction] of the caps), the
// global byte budget is spent, or an application reason set through
// [Runtime.Pause] (lag, priority, retry due time, manual). One reason's
// resume never clears another. Changes are applied in batches, one
// PauseFetchPartitions and one ResumeFetchPartitions call at a time, never
// one per record. Revoked and lost partitions have their pauses cleared
// (kgo keeps pauses across rebalances).
//
// A resumed partition is fetched in the next fetch request, after the one
// in flight returns; clients built by New long-poll for at most 100ms
// (kgo.FetchMaxWait) so that resumes take effect promptly. Give a wrapped
// client a similar FetchMaxWait.
//
// # Ordering
//
// [OrderPartition] (the default) handles a partition's records one at a
// time in offset order. [OrderKey] does so per key, running different keys
// of a partition concurrently. [OrderNone] runs any records concurrently.
// At most [MaxConcurrency] handlers run at once across all partitions.
//
// # Rebalances and shutdown
//
// On revoke the runtime stops dispatching the revoked partitions and drops
// their queued records, waits up to [RevokeTimeout] for their running
// handlers, then cancels the handlers' context and commits the watermark of
// what completed. Lost partitions are dropped without a commit. Run, once
// its context ends, does the same for every partition with
// [ShutdownTimeout], then returns. Duplicates after a rebalance or a crash
// are bounded by what was in flight (and, after a crash, what completed
// since the last periodic commit).
//
// # Observing
//
// [Hook] values passed with [WithHooks] implement any of [HookRecordDone],
// [HookPartitionsPaused], [HookPartitionsResumed], [HookRecordsRefetch],
// [HookCommit] and [HookRebalance]; metrics and log adapters are built on
// them, so this package depends on neither. [Runtime.Stats] returns a
// consistent snapshot of windows, pauses and watermarks.
//
// # Concurrency
//
// A Runtime's methods are safe for concurrent use. Run may be called once;
// Close may be called any number of times, from any goroutine.
package consumer
