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
// the runtime's OnPartitionsAssigned/Revoked/Lost callbacks,
// kgo.KeepControlRecords and a marker hook. Wrap rejects a client without
// a group, with autocommit on, without BlockRebalanceOnPoll, without the
// callbacks or without KeepControlRecords, with [ErrClientMisconfigured]
// naming the option; a callback replaced by a later option is detected
// while running (see [GroupOpts]). Run does not close a wrapped client.
//
// A client built by New produces diverts with batches as large as each
// destination topic's max.message.bytes allows (it reads the topic's
// config before the first produce to it). A wrapped client keeps its own
// kgo.ProducerBatchMaxBytes (1,000,012 by default): keep it at or below the
// max.message.bytes of the retry and quarantine topics, and above the
// largest record you expect to divert. If a topic refuses batches of
// records that each fit, the runtime produces to it one record at a time.
//
// # Guarantees
//
// At-least-once: a record's offset is committed only once it and every
// record before it in its partition reached a terminal state (handled, or
// diverted by a [Router] with the broker's acknowledgement). Commits happen
// every [CommitInterval], synchronously when partitions are revoked, and
// when Run returns. A handler error or panic ([PanicError]) is retried in
// place with capped exponential backoff and jitter ([RetryBackoff]); the
// record's lane waits and nothing after it is committed. A record whose
// handler fails while its partition is being revoked, or while Run stops,
// is aborted (left to the next owner), never retried or routed.
//
// With a [Router] ([WithRouter]; package retrytopics provides one) a failed
// record can instead be diverted: the runtime produces its replacement to a
// retry tier or the quarantine lane, and the record becomes terminal once
// the broker acknowledged that produce. A produce that retrying cannot fix
// ([IsUnretryableProduceError]) goes to [Router.Undeliverable] for
// something else to produce (the quarantine lane, a trimmed copy); when
// nothing is left the partition pauses (partition.DivertFailed), the
// failure is reported loudly and the produce is retried slowly until it
// succeeds. A router can also hold records that are not yet due: their
// partition is paused (partition.RetryDue) until the head record is due.
//
// Bounded memory: a partition holds at most [PartitionMaxRecords] records
// and [PartitionMaxBytes] bytes in flight (admitted, not yet terminal), and
// all partitions together at most [MaxBufferedBytes]. A record that does not
// fit is not admitted: the partition is paused and its fetch position
// rewound to that record, so it is fetched again once the window drained.
// A rewind restarts the client's fetch session, dropping what it buffered
// for every partition, so the runtime pauses a partition before a fetch
// could overflow it and sizes fetches to the room a resumed window has;
// refusals remain when one record batch holds more than a window's room
// (Kafka returns whole batches), so keep PartitionMaxRecords and
// PartitionMaxBytes well above the producers' batch size. [Stats] counts
// refetched records and session restarts. Memory held by kgo itself (at
// most one fetch response per broker) is outside these bounds; see
// kgo.FetchMaxBytes.
//
// Bounded redelivery: what a crash or rebalance hands to the next owner of
// a partition again is the records from its last commit to the newest
// admitted one, that is at most [PartitionMaxSpan] records (oldest not yet
// terminal to newest admitted; default 2 × PartitionMaxRecords) plus what
// completed since the last successful commit (at most [MaxUncommitted]
// records, or that age, while commits fail or hang; what one CommitInterval
// completes while they succeed). A partition at either bound pauses with a
// reason (partition.SpanFull, partition.CommitStalled) and the record or
// commit error holding it is reported.
//
// Transactions: a transaction's end is written to each of its partitions
// as a control record (a commit or abort marker) that takes an offset of
// its own, and under read_committed (kgo.FetchIsolationLevel) the client
// leaves an aborted transaction's records out of what it returns. The
// runtime's client keeps the markers (kgo.KeepControlRecords) so that the
// runtime can pass them: a control record is terminal on admission. It
// never reaches the handler, a hook or a [Router]; it takes no handler,
// window room or bytes and is not counted as handled
// ([Stats].ControlRecords and [PartitionStats].ControlRecords count
// them); the watermark, and so the commits, pass it as soon as every
// record before it is terminal, in every ordering mode, and pass the
// offsets of the aborted records before an abort marker as an ordinary
// gap. It does take a place in the span ([PartitionMaxSpan]) until the
// watermark passes it. So a consumer that handled every record it reads
// commits, and its [PartitionStats].Next stands at, the end of the log
// (the high watermark; the last stable offset under read_committed),
// however many markers or aborted records end it. Without the markers it
// would stop short of them, and a partition ending in one would read as
// lagging for ever.
//
// Stopping and rewrapping: when Run returns, the client's position on
// every partition it owned is its first record not yet terminal (records
// polled after the context ended included), so a wrapped client can be
// wrapped again and nothing is skipped.
//
// # Pressure across hops
//
// A handler that passes its record on (produces it to the next topic,
// calls a service) may be refused by that downstream for pressure rather
// than fail: a floodgate producer sheds or throttles the record
// (*producer.RefusedError), a service answers HTTP 429 or 503. Such an
// error is not the record's fault, and retrying it through retry tiers
// into a quarantine lane would turn a busy downstream into dead letters
// upstream. A handler error whose chain holds a [Refusal] (the producer's
// refusal as it is, or any error wrapped with [Refused]) is therefore
// pressure, not failure: the record is tried again in place after the
// refusal's hint (capped by [RetryBackoff]'s max), is never handed to the
// [Router] (never diverted, never charged to a retry budget, never
// quarantined) and is not counted among [Stats].Failures
// ([Stats].Refusals counts the refused attempts); a refusal followed by
// an ordinary error is a failure from then on. While one of its records
// waits on its downstream, the partition fetches nothing more
// (partition.DownstreamPressure; [PartitionStats].Refusing,
// DownstreamLevel and LastRefusal say so), so the pressure shows as this
// consumer's own lag instead of as records moved elsewhere, and a lag
// monitor (package lagmonitor) publishes it upstream at once, at the
// level the refusal named, so that the producers at the head of the
// pipeline slow down. A record refused when its partition is revoked or
// Run stops is aborted like any other, left to the next owner.
//
// # Nothing stalls silently
//
// A partition that stops making progress has a named reason in
// [PartitionStats].Paused, reaching [HookPartitionsPaused]: its window or
// the byte budget is full, it waits for a retry's due time, a stuck record
// holds its span ([StuckRecord], [HookStuck]), commits fail
// ([Stats].CommitErr, LastCommit), a divert cannot be produced, its
// handler's downstream refuses its records, or the application paused it. Poll errors reach [HookFetchError] and
// [Stats].FetchErr; those retrying cannot fix (no authorization, a batch
// too large to decompress) end Run with a [*FetchError]. Data loss the
// client reports (*kgo.ErrDataLoss) or the runtime detects ([DataLossError]:
// records deleted while their partition was paused, offsets reused after a
// truncation) is reported, and tracking restarts from the new log; a
// record admitted before that is still in flight keeps commits (and the
// restart offset of a revoke) at or below it until it finished.
//
// Without any hook, the runtime logs through the client's logger
// (kgo.WithLogger, in KgoOpts or on the wrapped client): commit failures
// and stuck partitions at warn, undeliverable diverts, data loss and fatal
// errors at error, each repeated error at most every 30 seconds.
//
// # Pausing
//
// A partition is paused while any [partition.Reasons] holds it: its window
// is full (cleared once it drains to [ResumeFraction] of the caps), the
// global byte budget is spent, its span or its uncommitted work reached
// their bound, a divert cannot be produced, a record waits on a
// downstream that refused it, or an application reason set
// through [Runtime.Pause] (lag, priority, retry due time, manual). One
// reason's resume never clears another. Changes are applied in batches, one
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
// # Rebalances, group protocols and session timeouts
//
// On revoke the runtime stops dispatching the revoked partitions and drops
// their queued records, waits up to [RevokeTimeout] for their running
// handlers, then cancels the handlers' context and commits the watermark of
// what completed. Lost partitions are dropped without a commit. Run, once
// its context ends, does the same for every partition with
// [ShutdownTimeout], then returns. With no handler running it returns
// within [CommitTimeout] and about five seconds (the final commit, then,
// for a client built by New, leaving the group, bounded at three seconds).
//
// Under Kafka's classic group protocol, a member that dies without leaving
// (a SIGKILL, a lost host) stays in the group until its session times out
// (kgo.SessionTimeout, 45s by default). When another member joins or
// rejoins meanwhile, the rebalance waits for the dead one, and kgo holds
// every member's commits until it completes: the survivors go on handling
// records they cannot commit. [MaxUncommitted] bounds that exposure (the
// partitions pause), but the cure is a protocol without the wait: with
// [GroupProtocolConsumer] (KIP-848, Kafka 4.0+, 4.3+ recommended) the
// broker assigns partitions and no member waits for another, so commits go
// on; only the dead member's partitions idle until its session expires.
// [InstanceID] (static membership) lets a restarted member take its
// partitions back without a rebalance; a static member that dies for good
// leaves them idle until its session times out.
//
// Session timeout guidance: it is how long a dead member's partitions
// idle (and, under the classic protocol, how long commits can be held).
// Keep it short enough for that (10-30s), and long enough that a healthy
// member never misses it: heartbeats run on their own goroutine, so only
// GC pauses, CPU starvation and network trouble count against it, not slow
// handlers. Keep RevokeTimeout well below the rebalance timeout
// (kgo.RebalanceTimeout, 60s by default). Under KIP-848 the session timeout
// is the broker's group.consumer.session.timeout.ms (or the group's
// consumer.session.timeout.ms), not kgo.SessionTimeout.
//
// # Observing
//
// [Hook] values passed with [WithHooks] implement any of [HookRecordDone],
// [HookPartitionsPaused], [HookPartitionsResumed], [HookRecordsRefetch],
// [HookCommit], [HookRebalance], [HookRecordDiverted], [HookStuck] and
// [HookFetchError]; metrics and log adapters are built on them, so this
// package depends on neither. [Runtime.Stats] returns a consistent snapshot
// of windows, spans, pauses, watermarks, commit and fetch health.
//
// # Concurrency
//
// A Runtime's methods are safe for concurrent use. Run may be called once;
// Close may be called any number of times, from any goroutine.
package consumer
