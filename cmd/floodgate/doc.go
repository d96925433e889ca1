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
//
// # dlq
//
//	floodgate dlq inspect --brokers host:port --topic dlq-topic [filter flags] [--limit n] [--json]
//	floodgate dlq replay --brokers host:port --topic dlq-topic [filter flags] [flags]
//
// The dlq commands read the quarantine lane, the dead-letter topic where
// records end once their retries are spent (see package [dlq]). Both take
// the same filter flags, and an entry must pass all of those given:
// --reason (repeatable or comma-separated: handler-error, permanent,
// attempts-exhausted, budget-exhausted, undecodable), --from and --to
// (RFC 3339; the quarantine time, from included, to excluded), --key (exactly
// this key) and --original-topic.
//
// # dlq inspect
//
// Inspect lists the selected entries, from the start of the topic to its end
// as of when it starts, joining no consumer group and committing nothing:
//
//	dlq[0]@0 2030-01-02T03:00:00.000Z permanent orders[1]@7 attempt=3 replays=0 key="k1" value=5B error="boom"
//	dlq[1]@0 2030-01-02T03:02:00.000Z UNDECODABLE key="bad" value=5B decode-error="retrytopics: malformed floodgate header: ..."
//	dlq[1]@1 2030-01-02T03:03:00.000Z permanent orders[0]@12 attempt=3 replays=0 key="big" value=0B TRIMMED=value original-size=2097152B error="boom"
//
// Each line gives where the entry is, its quarantine time, the reason, where
// it was first consumed, the attempts and replays so far, the key and the
// value's size, and the last error. An entry whose floodgate headers do not
// decode is marked UNDECODABLE with the decoding error. An entry trimmed when
// it was quarantined (the original was too large for the dead-letter topic,
// so its value, or more, was dropped) is marked TRIMMED= with what was
// dropped, and original-size= when known: replay skips it. With --json each
// line is an object instead, with trimmed and original_size for a trimmed
// entry ('floodgate dlq inspect -h' lists the fields). The count ends on
// stderr ("floodgate dlq inspect: 1 entry"). The exit status is 0, 1 for an
// error, 2 for bad flags.
//
// # dlq replay
//
// Replay produces the selected entries back to their original topics (or
// --to-topic) as fresh first attempts, at most --rate records per second,
// and not the entries already replayed --max-replays times (the loop
// guard). --dry-run reads and counts without producing or committing.
//
//	replaying "dlq" to their original topics at 100/s, max replays 3, resume id floodgate-dlq-replay.dlq (the topic's default)
//	floodgate dlq replay: skipped dlq[0]@1 (ghost[0]@11): dlq: target topic does not exist: "ghost"
//	floodgate dlq replay: scanned=4 not-selected=0 matched=4 replayed=3 loop-guarded=0 undecodable=0 no-target=0 unreplayable=1 elapsed=0.1s
//	floodgate dlq replay: skipped 1 entry that cannot be replayed (listed above); later runs with resume id floodgate-dlq-replay.dlq do not retry them
//
// scanned entries are either not-selected by the filter flags or matched;
// matched ones were replayed (acknowledged by the broker; a dry run counts
// those it would replay), loop-guarded, undecodable (no known original
// topic; --undecodable with --to-topic replays them), no-target, or
// unreplayable. The stats line goes to stdout with the first line; the
// warnings go to stderr. A run that fails before it read anything prints
// its error alone.
//
// Resuming. A run records how far it got in the dead-letter topic as the
// committed offsets of a consumer group, the resume id:
// floodgate-dlq-replay.<topic>, or --resume-id. The next run with the same
// resume id starts there. The default depends on the topic alone, not on the
// filter flags, --to-topic or --undecodable: whatever the flags, running the
// command again never re-sends what an earlier run replayed, and an
// interrupted run goes on where it stopped (re-sending at most the last 100
// records, 200 if the process was killed). The price is that a run moves
// past the entries it passes over as well: those the filter flags did not
// select, loop guarded, undecodable and skipped ones. Later runs with that
// resume id do not look at them again, and the command says how many the
// filter passed over. To replay them later, use a new --resume-id, which
// starts at the beginning of the topic, with filter flags that select only
// them: after a run with --original-topic orders, a run with
// --original-topic payments --resume-id payments-fixed. (An id derived from
// the filter flags would have a run with other flags re-send everything an
// earlier run replayed; an id that each run prints, to be passed back, would
// have a run re-send everything whenever it was forgotten.) Replay never
// joins the group
// as a member, and refuses one that has members: do not name an
// application's consumer group.
//
// Entries that cannot be replayed. An entry trimmed when quarantined, one
// whose target topic does not exist, and one that the broker or the client
// rejects with an error that retrying cannot fix (too large for the target
// topic, refused by a policy, not authorized) are skipped: each gets a
// warning line on stderr naming it (where it is in the lane, where it came
// from) and why, it is counted as unreplayable, the run goes on, and the
// progress moves past it, so that it does not hold back the entries after
// it. To replay such an entry once its cause is fixed (the topic created,
// the limit raised), use a new --resume-id with filter flags that select it.
// A --to-topic that does not exist would have every entry skipped: the
// command checks it first and fails without reading anything.
//
// The exit status is:
//
//   - 0: the run went through the topic; every selected entry was replayed
//     or passed over as the stats say;
//   - 1: an error stopped the run or kept it from starting (no such
//     dead-letter topic or --to-topic, a resume group with members, an
//     interrupt); what was replayed and acknowledged is recorded, and the
//     same command goes on from there;
//   - 2: bad flags;
//   - 3: the run went through the topic, but skipped entries that cannot be
//     replayed (with --dry-run: would skip them).
package main
