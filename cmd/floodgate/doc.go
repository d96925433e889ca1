// Floodgate is floodgate's command-line tool.
//
// Usage:
//
//	floodgate <command> [flags]
//
// The commands are:
//
//	demo    produce a burst into a slow consumer and watch the backpressure
//	dlq     inspect and replay the quarantine lane (dead-letter topic): "dlq inspect", "dlq replay"
//	help    list the commands; "floodgate help <command>" shows its flags
//
// # demo
//
//	go run ./cmd/floodgate demo [flags]
//
// The demo needs no broker. It starts an embedded kfake cluster (franz-go's
// in-process fake Kafka) with one topic, produces a burst of records into it
// at full speed, and consumes them with a [consumer.Runtime] whose handler
// is deliberately slow. The backlog builds up faster than the handler drains
// it, so partition windows fill and the runtime pauses their fetching,
// resuming each once its window has drained to the low mark. Once a second
// the demo prints a live view:
//
//	t=3s  produced=30000 handled=7532 rate=2479/s  in-flight=573 (max 600)  buffered=59KiB  paused=6/6 [p0 p1 p2 p3 p4 p5]  pauses=156 resumes=150  lag=22468
//
// Its fields:
//
//   - produced: records the broker acknowledged to the producer;
//   - handled: of those, records the handler finished at least once;
//   - rate: records handled per second since the previous line;
//   - in-flight and buffered: records and bytes fetched and not yet
//     handled ([consumer.Stats]); the max is partitions times
//     --partition-max-records;
//   - paused: partitions whose fetching is paused now, out of the topic's
//     partitions, and which ones;
//   - pauses and resumes: partitions paused and resumed so far, counted by
//     a [consumer.HookPartitionsPaused] and [consumer.HookPartitionsResumed];
//   - lag: produced minus handled, that is records acknowledged and not yet
//     handled, counted by the demo itself rather than from broker
//     watermarks.
//
// The demo ends once every produced record was handled, at the latest after
// --duration, or on SIGINT or SIGTERM (a second signal kills it). It then
// stops the runtime gracefully (running handlers finish, completed offsets
// are committed) and prints one accounting line:
//
//	floodgate demo: produced=30000 handled=30000 lost=0 duplicates=0 pauses=589 resumes=589 elapsed=11.3s
//
// The accounting tracks every acknowledged record and every handled one by
// (partition, offset). duplicates counts handlings beyond the first. When the
// run did not drain (duration reached, interrupted, or the runtime stopped
// on an error), the records never handled are split by the offsets the
// group committed, as the broker reports them:
//
//	floodgate demo: produced=30000 handled=8041 lost=0 unhandled=21959 (duration reached) duplicates=0 ...
//
// Those records are:
//
//   - lost: never handled, yet below the committed offset of its partition:
//     committed past, so no consumer of the group would ever read it. Any
//     such record breaks the at-least-once guarantee.
//   - unhandled: never handled and not committed past: the group's next
//     consumer reads it. Not a loss.
//
// unexpected=N (records handled that were never acknowledged) and
// produce-errors=N are shown only when not zero.
//
// The exit status is 0 when no record was lost, 1 when some were or the
// accounting could not be completed (the committed offsets could not be
// read, or the runtime failed), 2 for a usage error.
//
// Flags (defaults make a 10–15 s show on a 2-core machine):
//
//	--duration 15s               run at most this long
//	--records 30000              records in the burst (100-byte values, 256 keys,
//	                             spread round-robin over the partitions)
//	--partitions 6               partitions of the topic
//	--handler-delay 2ms          time the handler spends on each record
//	--concurrency 8              handlers running at once (consumer.MaxConcurrency)
//	--partition-max-records 100  records of one partition in flight before it
//	                             pauses (consumer.PartitionMaxRecords)
//	--ordering partition         partition, key or none (consumer.Ordering)
//	--brokers ""                 seed brokers of an existing cluster to use
//	                             instead of kfake, comma-separated
//	--topic floodgate-demo       the topic
//
// With --ordering partition the handlers of one partition run one at a
// time, so at most --partitions handlers run at once whatever --concurrency
// says; key and none let --concurrency handlers run.
//
// With --brokers the topic is created (with --partitions partitions and the
// broker's default replication factor) if it does not exist; an existing
// topic keeps its partition count. Each run consumes with a fresh consumer
// group that starts at the first record produced by this run, so records
// the topic already holds are neither consumed nor counted.
package main
