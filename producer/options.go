package producer

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kname"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

// The defaults of the options below.
const (
	DefaultMaxWait         = time.Second
	DefaultStartupTimeout  = lagmonitor.DefaultStartupTimeout // 10s
	DefaultMeasureInterval = time.Second
	DefaultRateTau         = lagmonitor.DefaultRateTau // 10s
	DefaultMinShare        = 0.05
	DefaultHeadroom        = 1.2
	DefaultRamp            = 30 * time.Second
	DefaultRetryAfter      = 5 * time.Second
	DefaultNoRateElevated  = 0.8
	DefaultNoRateHigh      = 0.5
	DefaultNoRateCritical  = 0.25
)

// measureTimeout bounds one listing of the followed topics' end offsets.
const measureTimeout = 10 * time.Second

// Opt configures a [Producer]. Options are applied in order, then
// validated once by [New] or [Wrap]; every error wraps
// [ErrInvalidConfig] and names the option.
type Opt interface{ apply(*cfg) }

type opt func(*cfg)

func (o opt) apply(c *cfg) { o(c) }

type cfg struct {
	// own-client mode only
	brokers []string
	kopts   []kgo.Opt

	control    string
	topics     []string
	verifier   *lagmonitor.Verifier
	order      priority.Order
	orderSet   bool
	defClass   priority.Class
	policy     Policy
	policySet  bool
	maxWait    time.Duration
	startup    time.Duration
	interval   time.Duration
	tau        time.Duration
	minShare   float64
	headroom   float64
	noRate     [len(levels)]float64
	ramp       time.Duration
	steer      bool
	retryAfter time.Duration
	shadow     func(topic string, class priority.Class) bool
	deferrer   Deferrer
	hooks      []Hook
	readerOpts []lagmonitor.ReaderOpt
	now        func() time.Time
}

func defaultCfg() cfg {
	c := cfg{
		order:      priority.Default,
		maxWait:    DefaultMaxWait,
		startup:    DefaultStartupTimeout,
		interval:   DefaultMeasureInterval,
		tau:        DefaultRateTau,
		minShare:   DefaultMinShare,
		headroom:   DefaultHeadroom,
		ramp:       DefaultRamp,
		retryAfter: DefaultRetryAfter,
		now:        time.Now,
	}
	c.noRate[lagmonitor.LevelElevated] = DefaultNoRateElevated
	c.noRate[lagmonitor.LevelHigh] = DefaultNoRateHigh
	c.noRate[lagmonitor.LevelCritical] = DefaultNoRateCritical
	return c
}

func (c *cfg) validate(own bool) error {
	if own {
		if len(c.brokers) == 0 {
			return configErr("Brokers", "must name at least one seed broker")
		}
	} else if len(c.brokers) > 0 || len(c.kopts) > 0 {
		return configErr("Brokers/KgoOpts", "cannot be used with Wrap: configure the wrapped client instead")
	} else if c.steer {
		return configErr("SteerUnkeyed", "cannot be used with Wrap: build the wrapped client with kgo.RecordPartitioner(producer.NewSteering(...))")
	}
	if !kname.Topic(c.control) {
		return configErr("ControlTopic", "%q must be a legal topic name (1 to 249 of a-z A-Z 0-9 . _ -)", c.control)
	}
	if len(c.topics) == 0 {
		return configErr("Topics", "must name at least one topic to follow")
	}
	for _, t := range c.topics {
		if !kname.Topic(t) {
			return configErr("Topics", "%q is not a legal topic name", t)
		}
		if t == c.control {
			return configErr("Topics", "%q is the control topic", t)
		}
	}

	// The order: given, or the policy's, or the default.
	if c.policySet && !c.orderSet {
		c.order = c.policy.Order()
	}
	if len(c.order.Classes()) == 0 {
		return configErr("ClassOrder", "is the zero order: use priority.Default or priority.NewOrder")
	}
	if c.defClass == "" {
		if _, ok := c.order.Rank(priority.Normal); !ok {
			return configErr("DefaultClass", "must be set: the order %s does not list %q", c.order, priority.Normal)
		}
		c.defClass = priority.Normal
	}
	if _, ok := c.order.Rank(c.defClass); !ok {
		return configErr("DefaultClass", "%v %q (the order is %s)", priority.ErrUnknownClass, c.defClass, c.order)
	}
	if !c.policySet {
		c.policy = DefaultPolicy(c.order)
	}
	if err := c.policy.Validate(); err != nil {
		return err
	}
	if c.policy.Order().String() != c.order.String() {
		return configErr("WithPolicy", "is for the order %s, the producer's is %s", c.policy.Order(), c.order)
	}
	if l, class, ok := c.policy.hasDefer(); ok && c.deferrer == nil {
		return configErr(cellName(l, class), "is defer but no Deferrer is set (WithDeferrer)")
	}

	switch {
	case c.maxWait < 0:
		return configErr("MaxWait", "must be >= 0, got %v", c.maxWait)
	case c.startup <= 0:
		return configErr("StartupTimeout", "must be > 0, got %v", c.startup)
	case c.interval <= 0:
		return configErr("Measure", "interval must be > 0, got %v", c.interval)
	case c.tau <= 0:
		return configErr("Measure", "time constant must be > 0, got %v", c.tau)
	case !(c.minShare > 0 && c.minShare <= 1):
		return configErr("MinShare", "must be in (0, 1], got %v", c.minShare)
	case !(c.headroom >= 1) || c.headroom > 100:
		return configErr("Headroom", "must be in [1, 100], got %v", c.headroom)
	case c.ramp < 0:
		return configErr("Ramp", "must be >= 0, got %v", c.ramp)
	case c.retryAfter <= 0:
		return configErr("RetryAfter", "must be > 0, got %v", c.retryAfter)
	case c.now == nil:
		return configErr("Clock", "is nil")
	}
	for _, l := range levels[1:] {
		if f := c.noRate[l]; !(f > 0 && f <= 1) {
			return configErr("NoRateFractions", "%s must be in (0, 1], got %v", l, f)
		}
	}
	for i, h := range c.hooks {
		if h == nil {
			return configErr("WithHooks", "hook %d is nil", i)
		}
	}
	return nil
}

// Brokers sets the seed brokers of the client [New] builds. Required by
// New, rejected by Wrap.
func Brokers(seeds ...string) Opt {
	return opt(func(c *cfg) { c.brokers = append(c.brokers, seeds...) })
}

// KgoOpts adds options to the client [New] builds (TLS, SASL, a logger,
// linger, acks...). Rejected by Wrap.
func KgoOpts(opts ...kgo.Opt) Opt { return opt(func(c *cfg) { c.kopts = append(c.kopts, opts...) }) }

// ControlTopic names the control topic the consumers publish their
// pressure signals on (lagmonitor's). Required.
func ControlTopic(topic string) Opt { return opt(func(c *cfg) { c.control = topic }) }

// Topics names the destination topics whose pressure the producer obeys;
// at least one is required. Records to any other topic are admitted
// freely: no signal is read for them, nothing limits them, and they are
// counted apart ([Stats].Unfollowed).
func Topics(topics ...string) Opt {
	return opt(func(c *cfg) { c.topics = append(c.topics, topics...) })
}

// SignalVerifier checks every control-topic record's signature with v
// (lagmonitor.ReadVerifier): a forged or unsigned one (when v requires
// signatures) is rejected, counted and reported to [HookSignalRejected],
// and never throttles anything. Default: none.
func SignalVerifier(v *lagmonitor.Verifier) Opt { return opt(func(c *cfg) { c.verifier = v }) }

// ClassOrder sets the classes and their order of importance. Default
// priority.Default (critical, normal, bulk), or the order of the
// [WithPolicy] policy when only that is given.
func ClassOrder(o priority.Order) Opt {
	return opt(func(c *cfg) { c.order, c.orderSet = o, true })
}

// DefaultClass sets the class of a record that says none: no
// floodgate-priority header, and no class in its context ([WithClass]).
// Default priority.Normal; required when the order does not list it.
func DefaultClass(class priority.Class) Opt { return opt(func(c *cfg) { c.defClass = class }) }

// WithPolicy sets the admission table. Default DefaultPolicy(order).
// Its order must be the producer's ([ClassOrder]).
func WithPolicy(p Policy) Opt { return opt(func(c *cfg) { c.policy, c.policySet = p, true }) }

// MaxWait caps how long a rate-limited record may wait for a token, on
// top of its context's deadline. 0 means never wait: a record that
// cannot have a token at once is throttled at once. Default 1s.
func MaxWait(d time.Duration) Opt { return opt(func(c *cfg) { c.maxWait = d }) }

// StartupTimeout bounds [Producer.Start]'s read of the control topic up
// to its end offsets; past it the producer admits what it does not know
// to be under pressure. Default 10s (lagmonitor's).
func StartupTimeout(d time.Duration) Opt { return opt(func(c *cfg) { c.startup = d }) }

// Measure sets how often the producer lists the end offsets of the
// followed topics and samples its own and its classes' rates (interval,
// default 1s), and the time constant of those smoothed rates (tau,
// default 10s, lagmonitor's; see lagmonitor.RateMeter): a longer tau
// reacts more slowly and more steadily.
func Measure(interval, tau time.Duration) Opt {
	return opt(func(c *cfg) { c.interval, c.tau = interval, tau })
}

// MinShare is the least share of a topic's suggested rate the producer
// takes, whatever its own recent traffic: a producer that starts sending
// under a limit is never held to nothing. In (0, 1]. Default 0.05.
func MinShare(f float64) Opt { return opt(func(c *cfg) { c.minShare = f }) }

// Headroom multiplies the demand of a limited class that is not the
// least important one limited, when its rate is carved out of the topic's
// rate, so that its demand can grow a little before it is throttled. In
// [1, 100]. Default 1.2.
func Headroom(f float64) Opt { return opt(func(c *cfg) { c.headroom = f }) }

// NoRateFractions set, for each level, the fraction of a limited class's
// own demand (when its limit began) that it is held to when the signals
// suggest no rate. Each in (0, 1]. Defaults 0.8 (elevated), 0.5 (high),
// 0.25 (critical).
func NoRateFractions(elevated, high, critical float64) Opt {
	return opt(func(c *cfg) {
		c.noRate[lagmonitor.LevelElevated] = elevated
		c.noRate[lagmonitor.LevelHigh] = high
		c.noRate[lagmonitor.LevelCritical] = critical
	})
}

// Ramp sets how long a topic's limits take to lift once its level is
// back to ok: each class limited or refused under pressure rises
// linearly from its rate then (0 if refused) to its demand, over d, in
// steps of d/20. 0 lifts them at once. Default 30s. An expired or absent
// signal lifts them at once whatever the ramp (fail-open).
func Ramp(d time.Duration) Opt { return opt(func(c *cfg) { c.ramp = d }) }

// RetryAfter sets the retry hint of a refused record whose class has no
// rate to say better ([RefusedError].RetryAfter). Default 5s, the lag
// monitor's heartbeat: when the pressure may next change.
func RetryAfter(d time.Duration) Opt { return opt(func(c *cfg) { c.retryAfter = d }) }

// Shadow puts the topics and classes for which in returns true in shadow
// mode: their records are decided as usual, the decision counted
// ([Stats].Shadow), reported to [HookDecision] with Shadow set, and
// logged (sampled), but every record is produced. Operators watch a
// policy this way before enforcing it. in is called for every record of
// a followed topic: it must be fast and safe for concurrent use. A
// rate-limited record in shadow mode counts as throttled when its class
// has no token at once (shadow mode does not wait). Default: none.
func Shadow(in func(topic string, class priority.Class) bool) Opt {
	return opt(func(c *cfg) { c.shadow = in })
}

// ShadowAll puts every followed topic and class in shadow mode.
func ShadowAll() Opt {
	return Shadow(func(string, priority.Class) bool { return true })
}

// SteerUnkeyed makes a producer built by [New] partition its client's
// unkeyed records with a [Steering] partitioner around the one its
// KgoOpts set (kgo's default otherwise): while signals name hot
// partitions, unkeyed records go to the others, and are admitted by the
// level of the rest of the topic rather than its worst. Default off:
// unkeyed records go where the client's partitioner puts them, and are
// admitted by the topic's worst level while a partition is hot. For a
// client of one's own, see [Steering]; with [Wrap] this option is an
// error.
func SteerUnkeyed() Opt { return opt(func(c *cfg) { c.steer = true }) }

// WithDeferrer sets the [Deferrer] that receives the records of [Defer]
// cells. Required by a policy with one; default none.
func WithDeferrer(d Deferrer) Opt { return opt(func(c *cfg) { c.deferrer = d }) }

// WithHooks adds hooks that observe the producer; see [Hook].
func WithHooks(hooks ...Hook) Opt { return opt(func(c *cfg) { c.hooks = append(c.hooks, hooks...) }) }

// ReaderOpts adds options to the control-topic reader (a
// lagmonitor.Reader): ReadLookback, ReadMaxClockSkew,
// ReadMaxPublisherSkew, ReadMaxTTL, ReadMetadataInterval, or ReadKgoOpts
// when its connection must differ from the client's. The reader
// connects as the client does (its seed brokers, dialer, TLS, SASL,
// client id and logger); the producer sets
// ReadClock, ReadStartupTimeout, ReadVerifier and ReadOnReject itself,
// after these (use [Clock], [StartupTimeout], [SignalVerifier] and
// [HookSignalRejected]).
func ReaderOpts(opts ...lagmonitor.ReaderOpt) Opt {
	return opt(func(c *cfg) { c.readerOpts = append(c.readerOpts, opts...) })
}

// Clock sets the clock admission decides by (signal expiry, rates,
// limiters, the recovery ramp), also given to the reader. Waits are
// real: a record waits on a timer for the duration the clock's times
// say. For tests; default time.Now.
func Clock(now func() time.Time) Opt { return opt(func(c *cfg) { c.now = now }) }
