// Package lagmonitor measures how far a consumer lags, turns it into a
// pressure level, and publishes it as signals on a control topic that the
// producers feeding the consumer follow; it also reads those signals back
// (the reader producers use).
//
// This package is being built (issue 8): the signal type and its key and
// partition are the contract between publishers and readers.
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
package lagmonitor
