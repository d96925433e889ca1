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
// Publishing runs in a goroutine of its own: a control topic that is
// slow or unwritable never holds the measuring, the levels or the class
// pauses. A publish that fails is logged, reported to [HookPublish], and
// tried again soon with the topic's current figures, after a backoff
// from EvalInterval doubling up to Heartbeat; meanwhile producers obey
// the last signal they hold until it expires.
//
// A monitor publishes nothing for a topic until it has measured every
// partition it owns there (Config.MeasureTimeout bounds the wait), so
// that a restarted instance never says "ok" for what it has not seen.
// When it stops (its context ends, or the runtime stops), it writes a
// tombstone for each topic whose last signal said ok, so that producers
// drop it at once; a signal above ok is left to stand until its TTL, so
// that a restart in the middle of an incident is no all-clear. A topic
// whose partitions are revoked is kept (its level, its history) for a
// grace of one Heartbeat, so that a rebalance that gives them back
// changes nothing; past it, the same rule applies as at a stop.
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
// high watermark, or the last stable offset for a read_committed
// consumer) to the next record to handle; the time lag, the age of that
// record (its own timestamp while the runtime holds it; else when the
// log's end passed it, interpolated between observations of the end, as
// kafka-lag-exporter does); records completed and diverted, the drain
// rate and the capacity; the partition's own level; and a trend. The
// runtime's Stats and fetches give these without a request of their own;
// end and committed offsets are listed every RefreshInterval for
// partitions fetches do not refresh (paused, idle, not fetched yet). A
// partition is measured once both its end and its position are known: a
// fetch answered, or its end and the group's committed offset were
// listed (without a commit, the start offset the client's
// kgo.ConsumeStartOffset gives, listed).
//
// The history of a partition's end takes a fixed 2.6 KiB whatever the
// lag and however often the end is observed (fetches, listings every
// 100ms): its points are kept at a resolution that coarsens with age, so
// that a paused partition's time lag is estimated within max(2s, age/50)
// up to ten minutes (4.8s at twice the default critical mark), and is a
// lower bound beyond. All of a partition's state takes under 4 KiB.
//
// Transactions. The runtime passes commit and abort markers and skips
// aborted data (package consumer), so a consumer that handled every
// record it can see is at its end offset, whatever the log ends with. A
// transaction left open (a producer that died inside one) freezes a
// read_committed consumer's end offset, the last stable offset: the
// records above it are reported ([TopicLag] UnstableOffsets and
// LSOStall, the signal's unstable_offsets and lso_stall_ms) and count as
// lag, with a time lag of at least the stall, once that offset has not
// moved for Config.StalledLSO (1m).
//
// Per topic: the largest time lag, the summed offset lag, the drain rate
// and the capacity, and from them the level, the suggested rate and the
// hot partitions: those whose own level is above all the others', worst
// first, at most [MaxHot] and at most half the topic's partitions, each
// with its own lags, drain and suggested rate, so that producers can
// hold the records bound for a partition that melts while the topic's
// average looks healthy. A retry tier lags by its delay by design: with
// Config.TierDelay its time lag counts from the due time.
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
// 45s >= high 30s"). A machine with no history ([LevelMachine.Seed]: a
// monitor that just started, a topic just assigned) starts at the
// highest level its first observation could be held at, so that a lag
// inside a level's hysteresis band reads as that level rather than the
// one below it.
//
// A consumer whose handler's downstream refuses its records for pressure
// (a consumer.Refusal: a floodgate producer's refusal, a service's 429 or
// 503) passes that pressure on at once rather than once the lag it causes
// reaches a mark: a partition with a refused record waiting, or refused
// within the last Dwell, is at least at the refused level (elevated when
// the refusal named none; [PartitionLag].Downstream), and so is its
// topic, the reason saying so. Such a partition is not saturated (what it
// drains is what the downstream takes), and above ok the rate suggested
// for it is computed from its drain rather than from a capacity measured
// before: what passes the downstream is what it can drain. A pipeline
// slows from its end to its head, one monitor's evaluation per hop.
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
// rate as the capacity only while the consumer is saturated (its lags at
// half the lowest level's entry marks, or a window full:
// [Thresholds.Saturated]), and holds it for [DefaultCapacityHold] (5m)
// after, renewed while the consumer drains at least [CapacityRefresh] of
// it (producers holding it just under its capacity). Above ok,
// [RateConfig.Suggest] turns the capacity and the backlog into the rate
// producers should stay under:
//
//	suggested = clamp(capacity − backlog / Recovery, Floor × capacity, Ceiling × capacity)
//
// (defaults: Recovery 1m, Floor 0.1, Ceiling 0.9), the ceiling once the
// backlog is gone (the level held by its dwell), or 0 — no suggestion —
// while the capacity is unknown. At ok the signal
// suggests the room, [RateConfig.Room]: RoomFraction (0.95) × capacity, so that
// producers recovering from pressure, and a relay of deferred work, climb
// back to a little under what the consumer drains rather than past it.
// The capacity is measured from a drain rate smoothed over
// [CapacityRateTau] (2s), the highest of each saturated stretch. While
// the consumer is caught up and its capacity was last measured
// [ProbeAfter] (1m) ago or more, or never, the room is at least
// [ProbeFactor] (1.2) × the drain rate: the capacity is then a lower
// bound, and whoever fills the room offers a little more until the
// consumer saturates and is measured again. And while the consumer is
// caught up and its handlers are busy less than [UtilisationCapacity]
// (0.8) of the time (the runtime's running handlers over the slots they
// could fill, sampled each evaluation, smoothed over 5s), its capacity is
// at least drain rate / utilisation: a consumer that was slow (a
// downstream outage) and is fast again does not keep producers at the
// room it measured while slow. The signal carries the capacity itself
// too.
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
// live instances. Its rate gives each instance that suggests one its
// rate for its share of the records: the smallest suggested rate ×
// topic_partitions / partitions (an instance behind on half the
// partitions asking for 100/s holds the topic to 200/s), when every
// instance says its share; a group with an instance that does not (an
// older release) gets the sum of the instances' suggested rates (drain
// rates for those that suggest none), as older readers compute it; a
// group none of whose instances suggests a rate has no rate. Across
// groups, the level is the worst group's and the rate the smallest group
// rate. Records bound for a hot partition ([Pressure.Partitions]) get its
// own level (the worst named for it) and rate (the smallest); the others
// get [Pressure.RestLevel], the worst level the signals give to the
// partitions they do not name. Expired or
// absent signals mean no pressure (fail-open); [Pressure.ExpiresAt] says
// when the aggregate must be computed again. A [Table] keeps the latest
// signal per topic, group and instance as a reader receives them:
// replays (a Seq not above the last seen of the instance) are rejected, a
// tombstone deletes (one that carries a Seq only above the last), and
// expired signals stop counting at once.
//
// # Control topic
//
// Consumers publish signals with a [Publisher]; producers follow them with
// a [Reader]. The format below is all another language needs to read or
// write them; [Encode], [Decode], [Signer] and [Verifier] implement it.
//
// Topic. One control topic serves a fleet. [EnsureControlTopic] creates it
// with cleanup.policy=compact,delete, retention.ms = [RetentionTTLs] (4) ×
// the signals' TTL, segment.ms = [SegmentMs] (one minute),
// message.timestamp.type=LogAppendTime ([TimestampType]: the broker
// stamps each record with its own clock, from which readers count TTLs;
// see Reading) and the cluster's default replication factor; it leaves an
// existing topic as it is, and warns of what in it differs and matters.
// An existing topic is switched to broker time with kafka-configs --alter
// --entity-type topics --entity-name <topic> --add-config
// message.timestamp.type=LogAppendTime, at any time: readers of earlier
// releases count from issued_at_ms whatever the topic's timestamps.
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
//	capacity        number   optional, >= 0: records per second the instance's
//	                         partitions were last measured to drain at most
//	                         (while saturated); absent or 0: unknown
//	partitions      integer  optional, >= 0: partitions of the topic the
//	                         instance owns
//	topic_partitions integer optional, >= partitions: partitions of the topic;
//	                         partitions / topic_partitions is the instance's
//	                         share of the topic's records
//	paused          object   optional: pause reason -> partitions paused for it
//	                         (names of 1 to 64 of a-z 0-9 _ . + -, counts >= 0,
//	                         at most 32 reasons)
//	hot             array    optional, at most 8 (MaxHot) objects, worst first:
//	                         the instance's partitions whose level is above
//	                         rest_level, each {"partition" integer below
//	                         topic_partitions when known, "level" string above
//	                         rest_level and at most level, "offset_lag" integer,
//	                         "time_lag_ms" integer, "drain_rate" number
//	                         (optional), "suggested_rate" number (optional, 0:
//	                         none), "capacity" number (optional, 0: unknown)},
//	                         partitions distinct
//	rest_level      string   present exactly when hot is: the level of the
//	                         instance's other partitions, at most level
//	unstable_offsets integer optional, >= 0: records above the last stable
//	                         offsets (open transactions), summed
//	lso_stall_ms    integer  optional, >= 0: the longest time a last stable
//	                         offset has not moved with records above it
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
// group ([Publisher.Tombstone]). Readers drop its signal at once. It
// carries two headers, their values UTF-8 decimal digits without sign or
// leading zero, so that kcat -f '%h' shows them ([TombstoneHeaders],
// [ParseTombstoneHeaders]):
//
//	floodgate-seq           1 to 2⁵³−1: the publisher's next sequence number, from
//	                        the counter of its signals' seq; absent when it writes
//	                        the tombstone for another (dead) instance, whose
//	                        sequence it does not know
//	floodgate-issued-at-ms  13 digits: its issue time, Unix milliseconds
//
// Both are optional: tombstones of earlier releases carry neither, and
// readers take them as before. A reader rejects a tombstone whose
// headers are malformed or repeated. Signals carry neither (their value
// says both).
//
// Signature. Optional. With a [Signer], each record, tombstones included,
// carries one or two signature headers, each with the value
// "<key id>:<mac>", the key id 1 to 64 of A-Z a-z 0-9 . _ - and mac the
// lowercase hex of an HMAC-SHA256 under the key's secret:
//
//	floodgate-signature     v1: HMAC-SHA256(secret, M1)
//	floodgate-signature-v2  v2: HMAC-SHA256(secret, M2)
//
// ([SignatureHeader], [SignatureV2Header]) where M1 and M2 are the concatenation of these fields, each but the
// first written as Kafka writes nullable bytes: its length as 4 bytes,
// big-endian, signed, then its bytes; for a null field the length -1
// (FF FF FF FF) and no bytes:
//
//	M1: "floodgate-signal-v1" 0x00   (20 bytes, as they are)
//	    key
//	    value                        (null for a tombstone)
//	M2: "floodgate-signal-v2" 0x00   (20 bytes, as they are)
//	    the control topic's name     (the topic the record is written to)
//	    key
//	    value                        (null for a tombstone)
//	    floodgate-seq's value        (null when the header is absent)
//	    floodgate-issued-at-ms's value (null when absent)
//
// A test vector: secret "0123456789abcdef" (16 ASCII bytes), key id k1,
// control topic "floodgate.pressure", key "orders/i-1/billing", a
// tombstone with floodgate-seq "17" and floodgate-issued-at-ms
// "1767225600123". M2, in hex:
//
//	666c6f6f64676174652d7369676e616c2d763200
//	00000012 666c6f6f64676174652e7072657373757265
//	00000012 6f72646572732f692d312f62696c6c696e67
//	ffffffff
//	00000002 3137
//	0000000d 31373637323235363030313233
//
// and the headers:
//
//	floodgate-signature:    k1:63c78a1479e34aa6379285bd3d619b8623008b0b9ee26c56f2ca96071a59f713
//	floodgate-signature-v2: k1:5ecb024c844e04ed8c194a7a3d98cc6d7ac201891e13ad838f42210d213a54e0
//
// (For the value {"x":1} without either header, v2's MAC is
// b43dd15b1c6f39474f1d5d16d747d9719b7f10ae67e0040e5dcdc40d8a2dfbf8.)
//
// v1 covers key and value only: a tombstone's value must stay null to be
// compacted, so v1 cannot bind it to a moment, and a captured one could
// be replayed at will; v2 binds it to its seq and issue time, and every
// record to its control topic. A Signer writes both, unless
// [SignV2Only]. A [Verifier] holds several key ids (rotation: add the new
// key to every reader, then sign with it, then drop the old one). It
// rejects a record with two headers of one signature's name, or, under
// v2, two floodgate-seq or floodgate-issued-at-ms; every signature present
// must verify; a record with v1 alone (an earlier release's) is accepted
// unless [VerifyRequireV2]; when required, a record without any signature
// is rejected. Secrets are at least [MinKeyBytes] (16) bytes.
//
// Rolling out v2, in steps; each works with the fleet the last one left:
//
//  1. Upgrade readers (producers, relays, floodgate pressure watch) and
//     publishers (monitors), in any order. New publishers sign with v1
//     and v2, and readers of earlier releases verify v1 and ignore the
//     rest; new readers verify v2 where present and accept v1 alone from
//     publishers not yet upgraded.
//  2. Once every publisher is upgraded (floodgate pressure watch
//     --hmac-keys shows which signature each record verified with),
//     require v2 in every reader: NewVerifier(keys, true,
//     VerifyRequireV2()), or --require-v2. Only from now on is a
//     tombstone replayed without its v2 header rejected.
//  3. Once every reader is upgraded, publishers may stop writing v1:
//     NewSigner(id, secret, SignV2Only()). A reader of an earlier release
//     would reject their records.
//
// What a process that can write to the control topic can do:
//
//   - Unsigned (readers without a Verifier): anything a publisher can.
//     It can forge a signal of any level for any topic, group and instance
//     (each record holds at most ReadMaxTTL, 1 minute, and it can write
//     another), delete any instance's signal with a tombstone, or take an
//     instance's sequence (a forged seq of 2⁵³−1 makes readers reject the
//     instance's own signals as replays while they remember it). An
//     unsigned control topic must be protected by ACLs: WRITE on it for
//     the monitors' principals only.
//   - Signed, readers accepting v1 alone (before step 2): it cannot forge
//     or alter a signal or tombstone, or make readers believe a header. It
//     can replay a captured record. A signal's replay is rejected while a
//     reader remembers a seq of its instance at least as high (see
//     Reading); otherwise it expires as the original did (CreateTime) or
//     is rejected unless replayed within ReadMaxPublisherSkew of its issue
//     (LogAppendTime), and holds at most ReadMaxTTL. A tombstone's replay
//     stripped of its v2 header passes for an earlier release's: it
//     deletes the instance's signal until the instance's next one, as
//     often as it is replayed. A record copied from another control topic
//     signed with the same key passes on v1.
//   - Signed, readers requiring v2 (after step 2): as above, but a
//     tombstone's replay is rejected by its seq, and a record copied from
//     another control topic by its MAC. What remains: replaying, within
//     ReadMaxPublisherSkew of its issue, a signal of an instance that a
//     reader does not remember (one gone for longer than the reader's
//     memory whose records left the log, to a reader started since)
//     revives it for at most ReadMaxTTL; replaying a tombstone written for
//     another instance (without seq) deletes that instance's signal,
//     harmless for the dead instance it was written for.
//   - In every case it can fill the control topic with records that
//     readers reject and count; a reader that cannot read to the end
//     within its startup timeout starts without pressure (fail-open).
//
// Reading. A reader reads the partitions of the topics it follows, from
// the first record stamped at most its lookback ago ([ReadLookback],
// default 2 minutes) up to the end offsets it finds at start, within a
// startup timeout, then follows them. Per topic, group and instance it
// keeps the latest signal it accepted; a record goes through these
// steps:
//
//  1. Signature, with a [Verifier] (see Signature). A tombstone's
//     floodgate-seq and floodgate-issued-at-ms count when no Verifier is
//     set, or when its v2 signature verified; under v1 alone, or none (not
//     required), they are ignored: it is taken as an earlier release's.
//  2. Issue time. A record the broker stamped (LogAppendTime: bit 3 of
//     its batch's attributes) was issued, for the reader, at its broker
//     timestamp converted to the reader's clock: plus the reader's
//     estimate of its own clock minus the broker's, the smallest value of
//     (the reader's time at reading a record − the record's broker
//     timestamp) over the records read live (appended after the reader
//     began reading their partition) in the last 30 to 60 seconds, a
//     record being read after it was appended; before the first live
//     record, the smallest over the records read, or 0 if that is larger
//     (a record of the log's history is older than its reading by an
//     unknown age). If it says an issue time (issued_at_ms, or a
//     tombstone's floodgate-issued-at-ms) more than
//     [ReadMaxPublisherSkew] (2 minutes) either way from its broker
//     timestamp, it is rejected (skewed: a replay, which the broker stamps
//     afresh, or a publisher whose clock is that far off). A record its
//     producer stamped (CreateTime) was issued when its issued_at_ms says,
//     and a signal issued more than [ReadMaxClockSkew] (30 seconds) in the
//     reader's future is rejected (future).
//  3. Expiry. A signal holds from its issue time for ttl_ms, at most
//     [ReadMaxTTL] (1 minute, whatever ttl_ms says): expired or absent
//     means no pressure (fail-open), and so does a control topic that is
//     missing or unreadable. [Reader.Signals] gives signals with IssuedAt
//     and TTL so counted.
//  4. Replays. A signal whose seq is not above the last seq the reader
//     accepted from that instance (of a signal or a tombstone) is
//     rejected (replayed), and so is a tombstone whose floodgate-seq is
//     not; a tombstone without one deletes as before. A restarted
//     instance has a new id, so its seq starting again at 1 is no replay.
//     The reader remembers an instance's last seq until its signals have
//     expired and, after the issue of its last record, ReadMaxTTL + 2 ×
//     ReadMaxPublisherSkew have passed: no replay of it could be accepted
//     before then otherwise.
//
// Clock skew. On a LogAppendTime topic, a publisher's clock skew against
// the broker does not change how long its signals hold (a TTL from their
// write, by the broker's clock, converted), up to ReadMaxPublisherSkew;
// beyond it, its records are rejected and counted (fail-open for that
// instance). The reader's own skew is learned from the records, to within
// the fastest read's delay; until it reads one live, a reader whose clock
// is ahead of the broker's may take the signals it reads at start for
// older than they are. On a CreateTime topic, as in earlier releases,
// a publisher behind the reader by more than TTL − Heartbeat (10 seconds
// with the monitor's defaults) sees its signals expire between
// heartbeats, and one ahead by more than ReadMaxClockSkew is rejected.
package lagmonitor
