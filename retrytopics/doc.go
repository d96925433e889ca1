// Package retrytopics moves failed records off the hot path: through
// delayed retry tiers (topics), within a retry budget, and finally to the
// quarantine lane (dead-letter topic), carrying their history in
// floodgate- headers ([Meta]).
//
// # Wiring
//
//	p, err := retrytopics.New(retrytopics.Config{
//		Group:  "billing",
//		Topics: []string{"orders"},
//		Tiers:  []time.Duration{time.Second, 10 * time.Second, time.Minute},
//	})
//	if err != nil { ... }                       // names the bad field
//	err = p.EnsureTopics(ctx, adminClient)      // tiers and lane, like their source
//	rt, err := consumer.New(p.Handler(handle),
//		append(p.Opts(), consumer.Brokers(seeds...), consumer.Group("billing"))...)
//
// The runtime then consumes the source and tier topics ("orders.billing.retry.1"
// and so on; see [Config.TierTopic]) with the same handler.
//
// # What happens to a failed record
//
//   - A [Permanent] error, or floodgate headers that do not decode
//     ([ErrUndecodable]), send it straight to the quarantine lane
//     ("orders.billing.dlq") with reason permanent or undecodable. A record
//     undecodable on a retry tier names the tier's source as its original
//     topic, so that a replay sends it there; as the origin its headers
//     claim cannot be trusted, its original partition and offset are the
//     tier record's own, and the error text names the tier record
//     ("undecodable on retry tier orders.billing.retry.1[0]@5: ...").
//   - A source record is retried in place up to [Config.InPlaceRetries]
//     times (its lane waits), each retry paid from the budget.
//   - Then it is produced to the next tier with its key, value and headers
//     plus floodgate metadata: original topic, partition, offset and
//     timestamp, attempts so far, first failure, the latest error (bounded),
//     and the due time. Only the latest error is kept; headers do not grow.
//     The attempt count saturates at [MaxAttempt].
//   - After the last tier it is quarantined with reason handler-error (or
//     attempts-exhausted when no tiers are configured).
//   - When the retry budget is spent it is quarantined with reason
//     budget-exhausted instead of retried.
//
// A record reaches its terminal state only once the broker acknowledged the
// tier or quarantine produce; until then its offset is not committed past,
// and a failed produce is retried (see consumer.Decision), unless no retry
// can fix it (below).
//
// # When a tier or the lane refuses a record
//
// Some produce errors no retry can fix: a record larger than the topic's
// max.message.bytes, a record the broker rejects, a topic the client may
// not write (consumer.IsUnretryableProduceError). The runtime then asks
// [Policy.Undeliverable] what to produce instead:
//
//   - A tier move falls through to the quarantine lane, with the metadata
//     it would have carried, reason handler-error, and an error text that
//     names the tier and its refusal before the handler's error.
//   - A quarantine move becomes a trimmed copy in the same lane: an empty
//     value, the key only if at most [MaxTrimmedKeyLen] bytes, none of the
//     record's own headers, and the floodgate metadata, whose original
//     topic, partition and offset say where the whole record lives.
//     [HeaderTrimmed] names what was dropped ("value", "value,headers",
//     "value,key,headers"), [HeaderOriginalSize] the refused record's key,
//     value and header bytes, and the error text names the lane and its
//     refusal. A trimmed entry cannot be replayed as it was: its value is
//     gone.
//   - When even the trimmed copy is refused there is nothing left to try:
//     the runtime pauses the partition (reason partition.DivertFailed),
//     reports the failure and retries the trimmed copy until the cause is
//     fixed.
//
// [Stats] counts each outcome (TierFallThroughs, Trimmed, Undeliverable).
//
// # Due times
//
// A tier record is never handled before its due time: the runtime asks
// [Policy.Due] at admission and pauses the tier partition (reason
// partition.RetryDue) until its head record is due, so waiting holds no
// worker, no other partition and not the poll loop. Records of one tier
// partition are due in the order they were produced, so the head is the
// first due.
//
// The due time in a record's header is trusted only up to the record's
// timestamp plus its tier's delay plus [Config.ClockSkew] (default 30s):
// a record due years ahead, whether a hostile producer wrote it or the
// tier's delay was shortened since, waits no longer than that, and neither
// do the retries behind it. A tier record stamped more than ClockSkew in
// the future is due at once, so that its timestamp cannot lift the bound.
//
// # Budget
//
// Over a sliding window ([Config.BudgetWindow], default 10s), retries (in
// place and through tiers) may be at most [Config.BudgetRatio] of first
// attempts (default 0.1) plus [Config.BudgetFloor] per second (default 10),
// in the spirit of Finagle's RetryBudget and gRPC retry throttling: an
// outage downstream cannot multiply the traffic it receives.
//
// # Ordering
//
// A record sent to a tier leaves its partition's order: records after it
// are handled before it is retried. Use in-place retries alone (no tiers)
// where order matters more than throughput.
package retrytopics
