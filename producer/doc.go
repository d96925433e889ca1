// Package producer admits the records a service produces by their class
// and by the pressure their topic's consumers publish: it slows, sheds or
// fails fast the less important work while the consumers fall behind, so
// that they can catch up, and lets everything through again, gradually,
// once they have.
//
// # Using it
//
// A [Producer] wraps a *kgo.Client, its own ([New]) or the caller's
// ([Wrap], which, like consumer.Wrap, leaves the client to its owner),
// and follows the control topic on which lagmonitor's monitors publish
// their signals:
//
//	p, err := producer.New(producer.Brokers(seeds...),
//		producer.ControlTopic("floodgate.pressure"), producer.Topics("orders"))
//	if err != nil { ... }
//	defer p.Close()
//	if err := p.Start(ctx); err != nil { ... } // reads the control topic to its end
//	p.Produce(producer.WithClass(ctx, priority.Bulk), rec, func(r *kgo.Record, err error) { ... })
//	res := p.ProduceSync(ctx, recs...)
//
// [Producer.Produce] and [Producer.ProduceSync] have kgo's signatures and
// hand the records admitted to the client's own. Records to topics not
// listed in [Topics] are admitted freely: no signal is read for them and
// nothing limits them. Records produced with the client directly bypass
// admission.
//
// # Classes
//
// A record's class is, in this order: the value of its floodgate-priority
// header ([priority.Header]); the class of its context ([WithClass]: kgo's
// Produce takes no per-call option, so the context carries it); the
// [DefaultClass] (normal). The classes and their order of importance are
// [ClassOrder]'s (priority.Default: critical, normal, bulk). A class the
// order does not list counts as its least important (as
// priority.Order.MoreImportant ranks it), and is counted
// ([Stats].UnknownClass) and logged.
//
// # Admission
//
// Each record is decided by its destination topic's aggregate pressure
// (lagmonitor.Pressure: the worst live level of the groups consuming the
// topic, and the smallest of their suggested rates) and its class, after
// a table, the [Policy] ([DefaultPolicy]):
//
//	level      critical   normal     bulk
//	ok         admit      admit      admit
//	elevated   admit      admit      limit
//	high       admit      limit      shed
//	critical   limit      fail-fast  shed
//
// [Admit] produces the record; [Limit] produces it within its class's
// rate (below), waiting for a token if need be; [Shed] refuses it with
// [ErrShed]; [FailFast] refuses it with [ErrOverloaded], so that the
// caller can answer its own caller at once; [Defer] hands it to a
// [Deferrer]. Any cell may be overridden ([Policy.With]) and the table is
// checked once: the ok row admits everything (an ok signal is no
// stricter than none), pressure never relaxes a class, and a class is
// never treated more strictly than a less important one. An order of
// one's own takes the default's columns by rank: its most important class
// the critical column, its least important the bulk column, the others
// the normal column (one class alone: critical; two: critical and bulk).
//
// # Rates
//
// A signal suggests the rate, in records per second, that a topic's
// producers together should stay under. Each producer takes its share of
// it, proportional to its own recent traffic to the topic:
//
//	share = clamp(own rate / topic's incoming rate, MinShare, 1)
//	topic limit = share × suggested rate
//
// where own rate is the rate of this producer's records acknowledged on
// the topic and the incoming rate the topic's, from its end offsets
// listed (kadm ListEndOffsets) every Measure interval, always (not only
// under a limit, so that the rates are known the moment a limit begins;
// one small request per interval), both smoothed alike (lagmonitor's
// RateMeter, time constant tau). N producers sending to one topic thus
// share the suggested rate, instead of each taking all of it. The share
// is 1 until both rates are measured (it keeps its last value while end
// offsets cannot be listed), and never below [MinShare] (0.05): a producer that
// starts sending under a limit is not held to nothing. The share follows
// traffic, not fairness: while a limit holds, producers keep roughly the
// proportions they had when it began (a producer whose demand grows gains
// share as the others' traffic falls). Records that other producers send
// to the topic count in its incoming rate, so floodgate's producers take
// only their part.
//
// The floor alone would let more than 1/MinShare producers together take
// more than the suggested rate (50 producers each at the floor: 2.5 ×).
// Each producer therefore also scales its limits by a correction that
// follows suggested rate / the topic's incoming rate, with a time
// constant of 3 × tau, while the topic receives more than the rate, and
// returns toward 1 while it receives less: at equilibrium the topic
// receives the rate however many producers share it (50 producers settle
// at the rate with a correction of 0.4). The correction never goes below
// 0.1, so that producers held above the rate by others (plain ones) keep
// a tenth of their share.
//
// The topic limit is split by class, most important first, using each
// class's demand (its records offered to admission per second, admitted
// or not, smoothed the same way): a class the row admits has its demand
// reserved; a limited class gets its demand × [Headroom] (1.2), or what
// is left if less; the least important limited class gets all that is
// left. Under the default table one class at most is limited per level,
// so: at elevated bulk gets the limit minus the demand of critical and
// normal; at high normal gets it minus critical's demand; at critical,
// critical gets it all. A class may get no rate at all (the more
// important classes take everything): its records wait for one, within
// the cap.
//
// Without a suggested rate (a signal above ok whose consumers do not know
// their capacity yet), a limited class is held to a fraction of its own
// demand when its limit began, by level ([NoRateFractions]: 0.8 at
// elevated, 0.5 at high, 0.25 at critical). The demand is taken once and
// frozen while the topic stays under pressure: a limit measured on the
// traffic it limits would shrink forever, and one measured on demand
// would grow as callers retry.
//
// A class's rate is enforced with a golang.org/x/time/rate limiter whose
// burst is 100ms of the rate (at least one record).
//
// # Waiting and errors
//
// A limited record without a token waits for one, capped by [MaxWait]
// (1s) and by its context's deadline; if the limiter says its token
// frees later than the cap allows, it fails at once rather than at the
// cap, its RetryAfter saying when the token frees. While it waits it is
// decided again whenever the topic's state changes (a new signal, a
// level change, an expiry, new rates): a record waiting at high is
// admitted at once when the level drops to one that admits its class, or
// when the signal goes away; while its class stays limited by the same
// limiter (its rate may move), it keeps its token's reservation, and so
// its place among the records waiting. A record whose class has no rate
// waits for such a change until the cap. A refused record fails with a
// [*RefusedError] that matches [ErrRefused] and its kind with errors.Is:
//
//	ErrThrottled   no token within the cap or the context (HTTP 429)
//	ErrShed        its class is shed at this level (HTTP 503)
//	ErrOverloaded  its class fails fast at this level (HTTP 503)
//
// and carries the decision (topic, class, level, reason, the signal) and
// a retry hint, read with errors.As ([RefusedError.RetryAfterSeconds] is
// a Retry-After header's value, [RefusedError.StatusCode] the status).
// The hint is when the next token frees, for a throttled record whose
// class has a rate, else [RetryAfter] (5s: the monitors' heartbeat, when
// the pressure may next change). A wait that the context ends fails
// with ErrThrottled wrapping the context's error.
//
// [Producer.Produce] never blocks its caller past the cap: a refused
// record fails its promise (called on the producer's own goroutine, soon
// after Produce returns; promises run one at a time, as kgo's do).
// [Producer.ProduceSync] caps the whole call once.
//
// # Pipelines
//
// A service in the middle of a pipeline consumes one topic with a
// floodgate consumer and produces to the next through a Producer. When
// the next topic's consumers are under pressure, the Producer refuses the
// service's less important records; the handler returns the refusal as it
// is (wrapped with %w if it likes). A *RefusedError is a
// consumer.Refusal, so the consumer treats it as its downstream's
// pressure, not a failure: the record is tried again after RetryAfter,
// never sent to a retry tier or a quarantine lane, its partition stops
// fetching, and the service's own lag monitor publishes the refused level
// on the topic it consumes at once. The producers at the head of the
// pipeline slow down by class, one hop after another, and nothing in
// between ends up in a dead-letter topic for it.
//
// # Hot partitions
//
// A signal may name partitions that lag worse than the rest of the topic
// (lagmonitor.Signal.Hot): one partition can melt while the topic's
// average looks healthy (a hot key range, a slow partition). A record
// bound for a hot partition is admitted by that partition's own level
// and rate (the policy's row for its level, its suggested rate split by
// class as above); a record bound for another partition by the level of
// the rest of the topic. kgo picks a record's partition inside Produce,
// after admission, so the producer computes it ahead where it can:
//
//   - a keyed record, when the client partitions keys by murmur2 (kgo's
//     default, kgo.StickyKeyPartitioner(nil), UniformBytesPartitioner
//     with a nil hasher; asked of the client's partitioner at
//     construction): murmur2 of its key over the partition count the
//     producer lists every Measure interval;
//   - any record, when the client partitions manually
//     (kgo.ManualPartitioner): its Partition field;
//   - an unkeyed record, when the client's partitioner is a [Steering]
//     ([SteerUnkeyed] for a producer built by [New]): it is steered to a
//     partition that is not hot, and admitted by the rest's level.
//
// Any other record (an unkeyed one under kgo's default partitioner, or
// under a partitioner of your own: calling a stateful partitioner out of
// band would corrupt its state) is admitted by the topic's worst level,
// as if no partition were named. [TopicStats] shows the rest's level and
// each hot partition's admission.
//
// # Recovery and fail-open
//
// When a topic's level drops (back to ok, or to any lower level), a class
// the new level's row admits but the old one limited or refused is not
// admitted at once: it eases. During [Ramp] (30s) its rate rises
// linearly, in 20 steps, from its rate under the old level (0 if it was
// refused) to its part of the rate the new level's signal suggests (the
// room at ok: a little under the consumers' capacity), split by class as
// under pressure, or to its demand when the signal suggests none. Past
// the ramp the limit lifts, unless the demand exceeds that rate: it then
// holds there until the demand falls under 0.9 of it, so that a demand
// the consumers cannot take does not climb back and overload them, cycle
// after cycle. A class admitted at the old level stays admitted; a rise
// in level ends the easing of the classes its row does not admit. A
// partition no longer named hot eases likewise, at the rest's level, held
// at its room (0.95 of the capacity its owner last named).
//
// Expired or absent signals mean no pressure: every limit lifts at once,
// the ramp included (fail-open wins over the ramp). A signal's expiry is
// checked on every decision, so it takes effect at its TTL, not at the
// next read. A control topic that cannot be read (missing, no rights,
// fetches failing) is logged, counted and reported ([HookControlError]),
// and never blocks producing: what the producer does not know to be under
// pressure is admitted. The same holds for end offsets that cannot be
// listed (the last rates are kept; the share is 1 until first measured).
//
// # Start-up
//
// [Producer.Start] reads the control-topic partitions of the followed
// topics up to their end offsets (lagmonitor.Reader.Start) before the
// producer decides its first record, so that a producer restarted in the
// middle of an incident obeys it at once. Past [StartupTimeout] (10s), or
// at once if the topic cannot be read, it admits what it knows of (fail-
// open) and goes on reading; Start still returns nil then (the cause is in
// [Stats].StartError). Records produced during Start wait for it within
// their cap; records produced before Start fail with [ErrNotStarted].
//
// # Shadow mode
//
// [Shadow] (or [ShadowAll]) puts topics and classes in shadow mode: their
// records are decided as usual, the decision counted ([Stats].Shadow),
// reported to [HookDecision] with Shadow set and logged (sampled), but
// every record is produced: operators watch a policy before enforcing it.
// A limited record counts as throttled when its class has no token at
// once (shadow mode does not wait); a deferred one is not handed to the
// Deferrer.
//
// # Tracing
//
// Every decision that delays, refuses or defers a record (or would, in
// shadow mode) is a [Decision]: topic, class, level, action, outcome,
// reason in words with the figures, and the deciding signal's group,
// instance and sequence number (lagmonitor.Pressure's Group, Instance and
// Seq), with the rate, share and wait. [HookDecision] receives each one;
// [HookLevelChange] each change of a topic's level; [HookSignalRejected]
// each control-topic record rejected (forged or unsigned with a
// [SignalVerifier], replayed, malformed, from the future or too far from
// its broker timestamp: a rejected signal never counts);
// [HookControlError] each failure to know or
// measure the pressure. Hooks are small interfaces found by type
// assertion ([Hook]), as consumer's are. [Producer.Stats] snapshots the
// counters and each topic's state (level, signal, share, rates, each
// class's action, rate and demand). Without hooks the producer logs
// through the client's kgo.Logger, if it has one: level changes, control
// errors, rejected signals and decisions, sampled: the first line of each
// kind (per topic, class and outcome) at once, then at most one per 30s
// with the number held back.
//
// # Deferred lane
//
// A [Defer] cell hands a record to the [Deferrer] set by [WithDeferrer],
// to be delivered later, instead of shedding it; a [Shed] cell sheds it
// whether or not a Deferrer is set, and a policy with a Defer cell needs
// one ([Policy.DeferringShed] turns the shed cells of the least important
// class into Defer cells). Package producer/deferred is the lane: its
// Lane parks the records on a deferred topic per destination, and its
// Relay produces them to their destination, at least once, once the
// destination's level is back to ok. A deferred record's promise gets nil
// once it is durably parked.
//
// Records admitted directly can overtake deferred records of the same
// key, which reach the topic only when the relay delivers them. A
// Deferrer that is also a [KeyHolder] (a key-ordered lane) prevents it:
// while a key has deferred records not yet delivered, the key's later
// records are deferred behind them.
//
// # Concurrency
//
// A Producer is safe for concurrent use. Policy, Decision and the errors
// are values. Admission's decisions are a pure type inside (no I/O, every
// time an argument), tested with an injected clock ([Clock]).
//
// # Defaults
//
//	MaxWait            1s     cap on a limited record's wait
//	StartupTimeout     10s    bound on reading the control topic at Start
//	Measure            1s, 10s    end offsets listed, rates sampled; rates' time constant
//	MinShare           0.05   least share of a suggested rate
//	Headroom           1.2    a limited class's demand multiplier, when not the last
//	NoRateFractions    0.8, 0.5, 0.25   of a class's demand, at elevated, high, critical
//	Ramp               30s    recovery back at ok
//	RetryAfter         5s     retry hint without a better one
//	ClassOrder         priority.Default (critical, normal, bulk)
//	DefaultClass       normal
//	WithPolicy         DefaultPolicy(ClassOrder)
package producer
