// Package lagmonitor measures how far a consumer lags, turns it into a
// pressure level, and publishes it as signals on a control topic that the
// producers feeding the consumer follow; it also reads those signals back
// (the reader producers use).
//
// # Using it
//
// A consumer service runs a [Monitor] beside its runtime; the runtime's
// client publishes the signals, so it needs [ClientOpts]:
//
//	rt, err := consumer.New(handle, consumer.Brokers(seeds...), consumer.Group("billing"),
//		consumer.Topics("orders"), consumer.KgoOpts(lagmonitor.ClientOpts("floodgate.pressure")...))
//	mon, err := lagmonitor.New(rt, lagmonitor.Config{Group: "billing", ControlTopic: "floodgate.pressure"})
//	go rt.Run(ctx)
//	go mon.Run(ctx) // publishes per topic: at once on a level change, and every Heartbeat
//
// A publish that fails (the control topic unwritable for a moment) is
// logged, reported to [HookPublish], and tried again soon with the
// topic's current figures, after a backoff from EvalInterval doubling up
// to Heartbeat; meanwhile producers obey the last signal they hold until
// it expires.
//
// [EnsureControlTopic] creates the control topic. A producer service runs a
// [Reader] on the topics it produces to and asks it for their [Pressure]
// (package producer builds admission on it). [DescribeGroupLag] measures
// any group's lag from outside, as kafka-consumer-groups does, and
// `floodgate lag` and `floodgate pressure watch` show both.
//
// # What is measured
//
// Per partition ([PartitionLag]): the offset lag, from the end offset (the
// high watermark, or the last stable offset for a read_committed consumer)
// to the next record to handle (the runtime passes transactions' commit
// and abort markers and the aborted records read_committed skips, so a
// consumer that handled everything stands at the end, whatever markers
// end the log); the time lag, the age of that record (its own
// timestamp while the runtime holds it; else when the log's end passed it,
// interpolated between observations of the end, as kafka-lag-exporter
// does); records completed and diverted; and a trend. The runtime's Stats
// and fetches give these without a request of their own; end and committed
// offsets are listed every RefreshInterval for partitions fetches do not
// refresh (paused, idle). Per topic: the largest time lag, the summed
// offset lag, the drain rate, and from them the level and the suggested
// rate. A retry tier lags by its delay by design: with Config.TierDelay its
// time lag counts from the due time.
//
// The decisions of the sections below (levels, rates, trends,
// aggregation) are pure types with no I/O and no clock of their own: every
// time is an argument, so they are tested with an injected clock, and none
// is safe for concurrent use (their owner guards them).
//
// # Levels
//
// A [LevelMachine] per group and topic turns observations (time, time
// lag, offset lag) into a [Level] with hysteresis, following
// [Thresholds]: each level above ok has an entry [Mark] on the time lag
// (the primary measure) and optionally on the offset lag. A level is
// entered at once when any of its entry marks is reached, skipping levels
// if need be; it is left only once the observations have stayed at or
// below all of its exit marks (ExitFraction of the entry marks) for Dwell,
// and then drops to the highest level still held, possibly several at
// once. Defaults ([DefaultThresholds]): elevated at 5s of time lag, high
// at 30s, critical at 2m, offset marks off, exit at half the entry marks,
// a dwell of 30s. Every [Decision] carries a reason in words ("time lag
// 45s >= high 30s").
//
// # Rates
//
// A [RateMeter] smooths a cumulative count into a rate per second with a
// time-weighted moving average (time constant [DefaultRateTau], 10s),
// exact for a steady rate however irregular the sampling; a [DrainMeter]
// keeps records handled (the drain rate) apart from records diverted to
// retry tiers or the quarantine lane, which are not work done.
//
// A consumer that keeps up drains exactly what arrives, so its capacity
// shows only while a backlog waits: a [CapacityEstimator] takes the drain
// rate as the capacity only while the consumer is saturated, and holds it
// for [DefaultCapacityHold] (5m) after. [RateConfig.Suggest] turns the
// capacity and the backlog into the rate producers should stay under:
//
//	suggested = clamp(capacity − backlog / Recovery, Floor × capacity, Ceiling × capacity)
//
// (defaults: Recovery 1m, Floor 0.1, Ceiling 0.9), and 0 — no suggestion —
// when the level is ok, the backlog is gone, or the capacity is unknown.
//
// # Trends
//
// A [TrendWindow] per partition keeps the last samples (time, committed
// offset, lag) and judges, after the rules of LinkedIn's Burrow adapted to
// samples taken every second, whether the lag is ok, steady, falling,
// rising, stalled (the committed offset did not move while lag stayed
// above zero) or rewound ([TrendConfig.Classify] says how).
//
// # Aggregation
//
// A producer obeys the aggregate pressure on the topic it writes to
// ([Aggregate], [Pressure]), computed from the live signals of every group
// and instance that consumes it. Per group, the level is the worst of its
// live instances and the rate the sum of their suggested rates (an
// instance that suggests none counts with its drain rate; a group none of
// whose instances suggests a rate has no rate). Across groups, the level
// is the worst group's and the rate the smallest group rate. Expired or
// absent signals mean no pressure (fail-open); [Pressure.ExpiresAt] says
// when the aggregate must be computed again. A [Table] keeps the latest
// signal per topic, group and instance as a reader receives them:
// replays (a Seq not above the last seen of the instance) are rejected, a
// tombstone deletes, and expired signals stop counting at once.
//
// # Control topic
//
// Consumers publish signals with a [Publisher]; producers follow them with
// a [Reader]. The format below is all another language needs to read or
// write them; [Encode], [Decode], [Signer] and [Verifier] implement it.
//
// Topic. One control topic serves a fleet. [EnsureControlTopic] creates it
// with cleanup.policy=compact,delete, retention.ms = [RetentionTTLs] (4) ×
// the signals' TTL, segment.ms = [SegmentMs] (one minute) and the cluster's
// default replication factor; it leaves an existing topic as it is.
//
// Key. "<topic>/<instance>/<group>" in UTF-8 ([Key], [ParseKey]): the
// destination topic (a legal Kafka topic name: 1 to 249 of A-Z a-z 0-9 .
// _ -), the publishing instance's id (1 to 255 bytes, no '/' and no control
// characters; it carries a start nonce, see [NewInstanceID]) and the
// consumer group (1 to 1024 bytes; it may hold '/', since it comes last).
// Compaction keeps the latest record per key: per instance, group and
// topic.
//
// Partition. Every record about a destination topic goes to partition
// (murmur2(topic) & 0x7fffffff) mod n of the control topic, n its
// partition count: what Kafka's default partitioner computes for a record
// keyed by the destination topic's name (not by the whole key;
// [PartitionFor]), so that a producer reads only the
// partitions of the topics it writes (kcat -C -t <control> -p <partition>).
// A Publisher's client partitions this way with [Partitioner]. When the
// control topic gains partitions, publishers move to the new partition as
// their metadata shows it (kgo's MetadataMaxAge); running readers read the
// new partition too, and keep reading the old one.
//
// Value. A JSON object in UTF-8, at most [MaxValueBytes] (16 KiB), fields
// named exactly so (snake_case), written in this order:
//
//	version         integer  required, 1 (SignalVersion)
//	group           string   required, as in the key
//	topic           string   required, as in the key
//	instance        string   required, as in the key
//	seq             integer  required, >= 1, strictly increasing per instance
//	level           string   required, "ok", "elevated", "high" or "critical"
//	offset_lag      integer  required, >= 0: records not yet handled
//	time_lag_ms     integer  required, >= 0: age of the oldest record not yet handled
//	drain_rate      number   required, >= 0: records handled per second
//	suggested_rate  number   required, >= 0: records per second producers together
//	                         should stay under; 0 means no suggestion
//	paused          object   optional: pause reason -> partitions paused for it
//	                         (names of 1 to 64 of a-z 0-9 _ . + -, counts >= 0,
//	                         at most 32 reasons)
//	reason          string   optional, at most 1024 bytes: why the level is what it is
//	issued_at_ms    integer  required, Unix milliseconds (13 digits)
//	ttl_ms          integer  required, 1 to 3600000 (MaxTTL): the signal holds
//	                         until issued_at_ms + ttl_ms, then means no pressure
//
// Integers are plain JSON integers (no fraction, no exponent) up to
// 2⁵³−1, so that readers whose numbers are doubles read them exactly. A
// reader rejects a value that breaks any of these rules, names a field
// twice, or names another topic, instance or group than its key; it
// ignores fields it does not know, so that a later writer may add optional
// ones within version 1 (a change older readers must not ignore comes with
// a new version, which they reject: fail-open). As kcat shows one:
//
//	{"version":1,"group":"billing","topic":"orders","instance":"billing-host1-4242-9f8e7d6c5b4a","seq":17,"level":"high","offset_lag":120000,"time_lag_ms":42500,"drain_rate":1520.25,"suggested_rate":1400,"paused":{"lag":2,"window_full":1},"reason":"time lag 42.5s over 30s","issued_at_ms":1767225600123,"ttl_ms":15000}
//
// Tombstone. A record with a null value (not an empty one) under an
// instance's key: the instance stopped publishing for that topic and
// group ([Publisher.Tombstone]). Readers drop its signal at once.
//
// Signature. Optional. With a [Signer], each record, tombstones included,
// carries the header floodgate-signature ([SignatureHeader]) with the
// value "<key id>:<mac>", the key id 1 to 64 of A-Z a-z 0-9 . _ - and mac
// the lowercase hex of HMAC-SHA256(secret, M), where M is the bytes
//
//	"floodgate-signal-v1" 0x00
//	len(key)   as 4 bytes, big-endian, signed
//	key
//	len(value) as 4 bytes, big-endian, signed; -1 (FF FF FF FF) for a null value
//	value      (nothing for a null value)
//
// A [Verifier] holds several key ids (rotation: add the new key to every
// reader, then sign with it, then drop the old one) and, when required,
// rejects records without a signature; a signature present must verify,
// required or not. Secrets are at least [MinKeyBytes] (16) bytes.
//
// Reading. A reader reads the partitions of the topics it follows, from
// the first record stamped at most its lookback ago ([ReadLookback],
// default 2 minutes) up to the end offsets it finds at start, within a
// startup timeout, then follows them. Per topic, group and instance it
// keeps the latest signal it accepted. It rejects a signal whose seq is
// not above the last one it accepted from that instance (a replay; a
// restarted instance has a new id, so its seq starting again at 1 is no
// replay), and one issued more than [ReadMaxClockSkew] (30 seconds) in its
// future. A tombstone carries no seq: replaying one can only remove
// pressure until the instance's next signal. Signals expire at
// issued_at_ms + ttl_ms; expired or absent means no pressure (fail-open),
// and so does a control topic that is missing or unreadable.
package lagmonitor
