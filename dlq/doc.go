// Package dlq reads floodgate's quarantine lane, the dead-letter topic where
// records end once their retries are spent, and replays (redrives) chosen
// entries to the topics they came from.
//
// # What it does
//
// A quarantined record keeps the original key, value and headers, plus the
// floodgate headers of package retrytopics ([retrytopics.Meta]): original
// topic, partition, offset and timestamp, attempts, first failure, error
// text, reason, and how often it was replayed already. Its Kafka timestamp is
// the quarantine time. [NewEntry] decodes one into an [Entry]; a [Filter]
// selects entries by reason, quarantine time, key and original topic.
//
// Headers that do not decode (a record quarantined as "undecodable", or one
// that is not floodgate's at all) never stop anything: the entry carries the
// error in [Entry.Err], is listed by [Inspect], counts as reason
// [retrytopics.ReasonUndecodable] for a Filter, and is replayed only if the
// caller's [ReplayConfig.Target] asks for it.
//
// Both [Inspect] and [Replay] take seed brokers and kgo options, not a
// client: each builds the client it needs (consuming partitions directly,
// and for Replay producing) and closes it before returning. Pass options for
// connecting (TLS, SASL, dialer, client ID, logger); consuming options such
// as kgo.ConsumerGroup, and a transactional ID, are refused.
//
// # Inspect
//
// [Inspect] reads every partition of the dead-letter topic from its start to
// the end offsets it captured when it started, without a consumer group and
// committing nothing, and calls a function for each entry the Filter
// selects. It returns once every partition reached its captured end, so it
// works on a topic that is still being written to; an empty topic returns at
// once.
//
// # Replay
//
// [Replay] reads the topic the same way and produces each selected entry to
// its target (its original topic by default): same key and value, the
// original non-floodgate headers, and [retrytopics.HeaderReplayCount] one
// more than the entry's. No other floodgate header goes with it, so the
// record is a fresh first attempt on its target. A record replayed to its
// original topic goes to its original partition when that partition still
// exists, others are partitioned by key. Replays are paced to
// [ReplayConfig.Rate] records per second, without bursts. [ReplayStats]
// counts what was read, selected, replayed and passed over, and why.
//
// With [ReplayConfig.DryRun], Replay reads and counts as it would replay,
// and neither produces nor commits.
//
// # Entries that cannot be replayed
//
// Retrying does not help some entries: one trimmed when it was quarantined
// ([Entry.Trimmed]: the original was too large for the dead-letter topic,
// so its value, or more, was dropped), one whose target topic does not
// exist, and one whose replay is rejected with an error that producing it
// again cannot fix ([consumer.IsUnretryableProduceError]: too large for the
// target topic, refused by a policy, not authorized, ...). Replay counts
// each in [ReplayStats.Unreplayable], gives it with the reason to
// [ReplayConfig.OnUnreplayable], passes over it and goes on: one such entry
// does not hold back the entries after it, and is not looked at again by
// the next run with the same resume group (see Resuming).
//
// A broker rejects a batch as a whole, so a good record may fail with a
// bad one of its batch. A record whose replay failed so is produced again
// alone, once no other replay is in flight, and only if that fails too is
// its entry called unreplayable; it may then land on its target after
// records replayed after it. Target topics are looked up once per run. A
// dry run finds trimmed entries and missing target topics, not what a
// produce would reject.
//
// # Resuming
//
// Replay records its progress as the committed offsets of the consumer group
// [ReplayConfig.ResumeGroup] on the dead-letter topic, and starts where they
// point (or at the start of the topic). An offset is committed only when
// every entry below it in its partition was passed over, replayed and
// acknowledged by the broker, or reported as unreplayable. Entries passed
// over (not selected, loop guarded, no target, unreplayable) are consumed
// by the run: they are committed past too, and the next run with the same
// ResumeGroup does not look at them again. A new ResumeGroup replays the
// topic from the start.
//
// The resume group records a position in the dead-letter topic, not a
// selection: a run with another Filter or Target and the same ResumeGroup
// starts at the same position, so it never re-sends what an earlier run
// replayed, and does not look at what an earlier run passed over either.
// To replay entries an earlier run passed over, use a new ResumeGroup (it
// starts at the beginning of the topic) with a Filter that selects only
// them.
//
// Replay does not join the group as a member: it reads the committed
// offsets, consumes the partitions directly, and commits as a group without
// members (a "simple" commit, like kadm.Client.CommitOffsets). So it needs
// no rebalance and knows exactly when every partition reached its end. It
// commits its starting point before replaying anything, every 100 entries
// read and at least every 5 seconds while reading, and when it stops.
//
// Interrupted runs re-send a bounded number of records. At most 100 replayed
// records are, at any time, waiting for their acknowledgement or behind one
// that is in their partition of the dead-letter topic. When ctx ends, Replay
// stops reading, waits up to 10 seconds for the records in flight, commits
// and returns: the next run re-sends only the records whose acknowledgement
// did not come in time and those behind them, at most 100, normally none. If
// the process dies instead, the next run re-sends at most what was replayed
// since the last commit: at most 200 records (100 read since it, plus the 100
// pending then). Replay is at-least-once: a record is never committed past
// before the broker acknowledged its replay.
//
// # Loop guard
//
// A replayed record that fails again is quarantined again, carrying its
// replay count. An entry whose replay count is [ReplayConfig.MaxReplays] or
// more is not replayed: it is counted in [ReplayStats.LoopGuarded] and
// committed past. So a record that can never succeed goes round at most
// MaxReplays times, however often Replay runs. For an undecodable entry the
// replay count is read from its replay-count header alone (0 if that does
// not parse either).
//
// # Concurrency
//
// Inspect and Replay may run at the same time as each other, as the
// consumers quarantining records, and as other Inspect and Replay calls with
// other resume groups: entries quarantined after a call started lie beyond
// its captured end and are left for the next call. The Filter, Target,
// OnUnreplayable and the function given to Inspect are called from the
// calling goroutine only.
//
// Do not run two Replays with the same ResumeGroup at once: neither is a
// member of the group, so Kafka does not keep them apart, and both would
// replay the same entries. Replay refuses a group that has members, with
// [ErrResumeGroupActive]: an application's consumer group is not a resume
// group.
package dlq
