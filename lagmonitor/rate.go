package lagmonitor

import (
	"math"
	"time"
)

// DefaultRateTau is the default time constant of a [RateMeter]: a change
// in rate shows 63% after 10s and 95% after 30s, a few publishing
// intervals, whatever the sampling.
const DefaultRateTau = 10 * time.Second

// RateMeter turns a cumulative count (records handled, ever) sampled at
// irregular times into a smoothed rate per second: an exponentially
// weighted moving average with time constant Tau, weighted by time rather
// than by sample, so that how often it is sampled does not change what it
// reports.
//
// Each interval of length Δt in which the count grew by Δn moves the rate
// toward that interval's own rate Δn/Δt by the fraction 1 − e^(−Δt/Tau):
//
//	rate ← rate + (1 − e^(−Δt/Tau)) × (Δn/Δt − rate)
//
// A steady rate reads exactly; after a step from r1 to r2 the rate reads
// r2 + (r1 − r2)·e^(−t/Tau) at t after the step, however the time was
// cut into samples.
//
// The first rate is the plain mean over the first interval of at least
// Tau/10 (samples before that fold into it), so the meter neither starts
// from zero nor trusts a sliver of time. Until then the rate is unknown
// ([RateMeter.Known] is false) and reads 0.
//
// Irregular input:
//   - a sample at the same time as the previous one is folded into the
//     next interval (its count is not lost);
//   - a sample earlier than the previous one (a clock that went back)
//     restarts the interval from it, keeping the rate;
//   - a count lower than the previous one (a counter that restarted)
//     restarts the interval from it, keeping the rate; the records of
//     that interval are not counted.
//
// The zero value is ready to use with [DefaultRateTau]. A RateMeter is
// pure (no clock, no I/O) and not safe for concurrent use.
type RateMeter struct {
	// Tau is the time constant. Zero or negative means DefaultRateTau.
	Tau time.Duration

	at      time.Time // start of the current interval
	count   uint64    // count at its start
	started bool
	rate    float64
	known   bool
}

// NewRateMeter returns a meter with time constant tau (zero or negative
// means [DefaultRateTau]).
func NewRateMeter(tau time.Duration) RateMeter { return RateMeter{Tau: tau} }

func (m *RateMeter) tau() time.Duration {
	if m.Tau <= 0 {
		return DefaultRateTau
	}
	return m.Tau
}

// Observe records that the cumulative count was count at now, and returns
// the rate per second (0 while unknown).
func (m *RateMeter) Observe(now time.Time, count uint64) float64 {
	if !m.started || count < m.count {
		m.at, m.count, m.started = now, count, true
		return m.rate
	}
	dt := now.Sub(m.at)
	switch {
	case dt < 0:
		m.at, m.count = now, count
		return m.rate
	case dt == 0:
		return m.rate
	}
	tau := m.tau()
	if !m.known && dt < tau/10 {
		return m.rate // too short a first interval: fold into the next
	}
	inst := float64(count-m.count) / dt.Seconds()
	if !m.known {
		m.rate, m.known = inst, true
	} else {
		alpha := -math.Expm1(-float64(dt) / float64(tau)) // 1 − e^(−Δt/τ), exact for small Δt
		m.rate += alpha * (inst - m.rate)
	}
	m.at, m.count = now, count
	return m.rate
}

// Rate returns the smoothed rate per second (0 while unknown).
func (m *RateMeter) Rate() float64 { return m.rate }

// Known reports whether the meter has measured a rate yet.
func (m *RateMeter) Known() bool { return m.known }

// Reset forgets every sample and the rate, keeping Tau.
func (m *RateMeter) Reset() { *m = RateMeter{Tau: m.Tau} }

// DrainRates are the rates a [DrainMeter] reports, in records per second.
type DrainRates struct {
	// Handled is the drain rate proper: records whose handler succeeded.
	// It is what a [Signal] carries as DrainRate.
	Handled float64
	// Diverted is the records moved to a retry tier or the quarantine
	// lane: they left the partition's backlog, but their work is not
	// done (a retry tier feeds them back), so they are counted apart and
	// never as drain. A consumer whose handlers fail fast "drains" its
	// backlog by diverting it; this keeps it from looking healthy.
	Diverted float64
}

// DrainMeter meters the drain of one group on one topic: records handled
// and records diverted, each its own [RateMeter] with one time constant,
// fed the cumulative counts of the consumer's Stats (Handled, Diverted).
// The zero value is ready to use with [DefaultRateTau]. Pure and not safe
// for concurrent use.
type DrainMeter struct {
	handled, diverted RateMeter
}

// NewDrainMeter returns a drain meter with time constant tau (zero or
// negative means [DefaultRateTau]).
func NewDrainMeter(tau time.Duration) DrainMeter {
	return DrainMeter{handled: NewRateMeter(tau), diverted: NewRateMeter(tau)}
}

// Observe records the cumulative counts of records handled and diverted
// at now, and returns the smoothed rates.
func (d *DrainMeter) Observe(now time.Time, handled, diverted uint64) DrainRates {
	return DrainRates{Handled: d.handled.Observe(now, handled), Diverted: d.diverted.Observe(now, diverted)}
}

// Rates returns the smoothed rates as of the last observation.
func (d *DrainMeter) Rates() DrainRates {
	return DrainRates{Handled: d.handled.Rate(), Diverted: d.diverted.Rate()}
}

// Known reports whether the handled rate has been measured yet.
func (d *DrainMeter) Known() bool { return d.handled.Known() }

// DefaultCapacityHold is how long a [CapacityEstimator] keeps its estimate
// once the consumer stops being saturated: long enough to bridge the calm
// between the waves of one overload, short enough that a fleet scaled or
// redeployed since is measured again rather than assumed.
const DefaultCapacityHold = 5 * time.Minute

// CapacityEstimator estimates a consumer's capacity: the records per
// second it can handle at most. An unsaturated consumer handles exactly
// what arrives, so its drain rate says nothing of its capacity; only while
// records wait for it (a backlog) is its drain rate its capacity. The
// estimator therefore takes the drain rate as the capacity only from
// observations made while saturated: the highest rate of each saturated
// stretch (a rate smoothed over a few seconds rises toward the capacity
// as a backlog is worked off, and a stretch may begin with the consumer
// held up), replacing the estimate of the stretch before. Between
// stretches it holds the estimate for Hold, renewed while the consumer
// drains at least [CapacityRefresh] of it, and raised to a drain rate
// above it; past the hold the capacity is unknown (0).
//
// What "saturated" means is the caller's to say; a sound choice is: the
// lags at half the lowest level's entry marks ([Thresholds.Saturated]),
// or a partition's in-flight window full. Feed it the handled rate
// ([DrainRates.Handled]), not the diverted one: diverted records are not
// work done; and a rate smoothed over a few seconds rather than a
// publishing interval, so that a short catch-up shows.
//
// The zero value is ready to use with [DefaultCapacityHold]. Pure and not
// safe for concurrent use.
type CapacityEstimator struct {
	// Hold is how long the estimate holds after the last saturated
	// observation. Zero or negative means DefaultCapacityHold.
	Hold time.Duration

	value    float64
	at       time.Time // the last saturated observation, or renewal
	measured time.Time // the last saturated observation
	set      bool
	stretch  bool // the last observation was saturated
}

// NewCapacityEstimator returns an estimator whose estimate holds for hold
// after saturation ends (zero or negative means [DefaultCapacityHold]).
func NewCapacityEstimator(hold time.Duration) CapacityEstimator {
	return CapacityEstimator{Hold: hold}
}

// CapacityRateTau is the time constant of the drain rate a monitor feeds
// its [CapacityEstimator]s: short, so that the rate reaches the capacity
// within a catch-up of a few seconds.
const CapacityRateTau = 2 * time.Second

// Probing: a monitor whose consumer is caught up (its lags under a tenth
// of the lowest level's marks) and whose capacity was last measured
// ProbeAfter ago or more (or never) suggests at ok ProbeFactor × its
// drain rate if that exceeds the room its capacity gives: the capacity is
// then a lower bound, perhaps stale, and producers held at the room (and
// a relay of deferred work) may offer a little more, until the consumer
// saturates and its capacity is measured again.
const (
	ProbeAfter  = time.Minute
	ProbeFactor = 1.2
)

// CapacityRefresh is the fraction of a [CapacityEstimator]'s estimate at
// or above which an unsaturated drain rate keeps the estimate alive: a
// consumer that producers hold just under its capacity (the room its
// signals give at ok) drains close to it without saturating, and its
// capacity is still what it was.
const CapacityRefresh = 0.8

// Observe records the drain rate at now and whether the consumer was
// saturated then. A saturated observation sets the estimate to the
// highest drain rate of the saturated stretch it belongs to (a drain
// rate of 0, negative or not finite counts as 0: a consumer stuck behind
// a backlog has no capacity to speak of). An unsaturated one raises a
// live estimate the drain rate exceeds (the consumer drains that much, so
// it can), and renews one it reaches [CapacityRefresh] of; otherwise it
// changes nothing.
func (c *CapacityEstimator) Observe(now time.Time, drainRate float64, saturated bool) {
	if !(drainRate > 0) || math.IsInf(drainRate, 1) {
		drainRate = 0
	}
	switch {
	case saturated && c.stretch:
		c.value, c.at, c.measured = max(c.value, drainRate), now, now
	case saturated:
		c.value, c.at, c.measured, c.set = drainRate, now, now, true
	case c.Capacity(now) > 0 && drainRate >= CapacityRefresh*c.value:
		c.value, c.at = max(c.value, drainRate), now
	}
	c.stretch = saturated
}

// MeasuredAt returns when the consumer was last observed saturated (the
// zero time if never): how fresh the estimate is, renewals aside.
func (c *CapacityEstimator) MeasuredAt() time.Time { return c.measured }

// Capacity returns the estimated capacity in records per second as of
// now, or 0 when unknown: never measured while saturated, measured as 0,
// or last measured (or renewed) more than Hold before now.
func (c *CapacityEstimator) Capacity(now time.Time) float64 {
	hold := c.Hold
	if hold <= 0 {
		hold = DefaultCapacityHold
	}
	if !c.set || now.Sub(c.at) > hold {
		return 0
	}
	return c.value
}

// RateConfig configures the producer rate a consumer suggests
// ([RateConfig.Suggest]). Start from [DefaultRateConfig]; check with
// [RateConfig.Validate].
type RateConfig struct {
	// Recovery sets the pace of recovery: the suggested rate lets the
	// backlog shrink by backlog/Recovery records per second, so that it
	// decays with time constant Recovery (see [RateConfig.Suggest]).
	// Must be > 0. Default 1m.
	Recovery time.Duration
	// Floor is the least rate ever suggested, as a fraction of the
	// capacity: slowing producers further is the job of shedding by
	// priority class, not of the rate. Must be in (0, Ceiling].
	// Default 0.1.
	Floor float64
	// Ceiling is the most ever suggested, as a fraction of the capacity:
	// below 1, so that even a small backlog drains at a steady
	// (1 − Ceiling) × capacity instead of ever more slowly. Must be in
	// (0, 1]. Default 0.9.
	Ceiling float64
	// RoomFraction is the room an ok signal suggests, as a fraction of
	// the capacity ([RateConfig.Room]): what producers recovering from
	// pressure, and relays of deferred work, may fill without a backlog
	// building. Must be in [0, 1]; 0 means the default, 0.95.
	RoomFraction float64
}

// The defaults of [RateConfig]; see its fields.
const (
	DefaultRecovery     = time.Minute
	DefaultRateFloor    = 0.1
	DefaultRateCeiling  = 0.9
	DefaultRoomFraction = 0.95
)

// DefaultRateConfig returns the default rate configuration: recover within
// 1m, suggest between 10% and 90% of the capacity.
func DefaultRateConfig() RateConfig {
	return RateConfig{Recovery: DefaultRecovery, Floor: DefaultRateFloor, Ceiling: DefaultRateCeiling, RoomFraction: DefaultRoomFraction}
}

// Validate reports the first invalid field of c, naming it, wrapped around
// [ErrInvalidConfig].
func (c RateConfig) Validate() error {
	switch {
	case c.Recovery <= 0:
		return configErr("RateConfig.Recovery", "must be > 0, got %v", c.Recovery)
	case !(c.Ceiling > 0 && c.Ceiling <= 1):
		return configErr("RateConfig.Ceiling", "must be in (0, 1], got %v", c.Ceiling)
	case !(c.Floor > 0 && c.Floor <= c.Ceiling):
		return configErr("RateConfig.Floor", "must be in (0, Ceiling=%v], got %v", c.Ceiling, c.Floor)
	case !(c.RoomFraction >= 0 && c.RoomFraction <= 1):
		return configErr("RateConfig.RoomFraction", "must be in [0, 1] (0: the default %v), got %v", DefaultRoomFraction, c.RoomFraction)
	}
	return nil
}

// Room returns the rate producers together may fill at ok, in records per
// second, for a consumer of capacity records per second: RoomFraction
// (0.95) × capacity, so that a recovery, or a relay of deferred work,
// climbs back to a little under what the consumer drains rather than
// past it; 0 when the capacity is unknown. c must be valid.
func (c RateConfig) Room(capacity float64) float64 {
	if !(capacity > 0) || math.IsInf(capacity, 1) {
		return 0
	}
	f := c.RoomFraction
	if f == 0 {
		f = DefaultRoomFraction
	}
	return f * capacity
}

// Suggest returns the rate, in records per second, that the producers of
// a topic should together stay under so that one consumer of capacity
// records per second (from a [CapacityEstimator]) works off its backlog
// (its offset lag, in records) at a pace set by Recovery:
//
//	suggested = clamp(capacity − backlog / Recovery, Floor × capacity, Ceiling × capacity)
//
// If producers keep to it, the backlog shrinks by capacity − suggested =
// backlog / Recovery records per second, held between (1 − Ceiling) ×
// capacity and (1 − Floor) × capacity. So a large backlog decays
// exponentially with time constant Recovery (as fast as the Floor
// allows); once it is at most Recovery × (1 − Ceiling) × capacity the
// Ceiling takes over and drains the rest at a steady (1 − Ceiling) ×
// capacity, within Recovery. With the defaults and a capacity of 1000/s:
// a backlog of 30000 gives 500/s, one of 54000 or more the floor of
// 100/s, one of 6000 or less the ceiling of 900/s.
//
// A consumer that has caught up while its level is held above ok (its
// dwell) gets Ceiling × capacity: the rate that keeps it caught up, not
// "no suggestion", which would lift the limits of the classes held to a
// rate and let the demand that put it under pressure back in at once.
//
// It returns 0, meaning no suggestion, when the level is ok (no pressure,
// so no limit; this includes a level outside the known ones; see
// [RateConfig.Room] for what an ok signal suggests), or when the capacity
// is unknown (zero, negative or not finite). The time lag does not
// enter: it shapes the level, while a rate acts on records, which the
// backlog counts. c must be valid ([RateConfig.Validate]).
func (c RateConfig) Suggest(capacity float64, backlog int64, level Level) float64 {
	if level <= LevelOK || level > LevelCritical || !(capacity > 0) || math.IsInf(capacity, 1) {
		return 0
	}
	backlog = max(backlog, 0)
	s := capacity - float64(backlog)/c.Recovery.Seconds()
	return min(max(s, c.Floor*capacity), c.Ceiling*capacity)
}
