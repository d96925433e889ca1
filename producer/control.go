package producer

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

// ctlConfig is what the admission state of a topic takes from the
// producer's configuration.
type ctlConfig struct {
	policy   Policy
	classes  []priority.Class // by rank
	minShare float64
	headroom float64
	noRate   [len(levels)]float64 // by level; [ok] unused
	ramp     time.Duration
	tau      time.Duration
}

const (
	// rampSteps is how many steps a recovery ramp rises in, at most:
	// its limits are computed again when a record arrives or the rates
	// are measured, and at least Ramp/rampSteps after the last time.
	rampSteps = 20
	// burstWindow is the time a limiter's burst covers at its rate (at
	// least one record): records sent together within it are not spaced.
	burstWindow = 100 * time.Millisecond
	// significantChange is the relative change of a class's rate that
	// wakes the records waiting for it.
	significantChange = 0.1
	// corrTaus is the time constant of the share correction, in rate
	// time constants (tau): slower than the rates it reads, so that it
	// corrects what persists, not what the meters lag behind.
	corrTaus = 3
	// minCorr bounds the share correction from below: producers that
	// others (plain ones, say) hold above the rate alone keep a tenth of
	// their share rather than nothing.
	minCorr = 0.1
	// capRelease is the fraction of the room under which the demand must
	// fall for a recovery held at the room to end: a little below it,
	// so that a demand hovering at the room does not flip the limit.
	capRelease = 0.9
)

// mode is a topic's admission regime.
type mode int8

const (
	modeFree       mode = iota // no live signal above ok, no recovery: every record admitted
	modePressured              // a live signal above ok: the policy's row for its level
	modeRecovering             // back to ok from pressure: limits ramping up to the demand, or to the room
)

// Easing. When the level drops (to ok, or to any lower level), a class
// the new level's row admits but the old one did not is not admitted at
// once: it eases, held to a rate that rises over Ramp from its rate under
// the old level (0 if it was refused) to its part of the rate the new
// level's signal suggests (under pressure, the suggested rate; at ok,
// the room), or to its demand when the signal suggests none; past the
// ramp it holds there while the demand exceeds that rate, and is admitted
// once the demand falls under capRelease of it. Admitting the demand at
// once would put the consumers back where they were: a demand they
// cannot take climbs back to overload them, cycle after cycle. A rise in
// level ends the easing of the classes its row does not admit.

// topicCtl is the admission state of one followed topic: the pressure it
// obeys, the rates measured, each class's action and rate, and the
// limiters. It does no I/O and reads no clock (every time is an
// argument), so it is tested with an injected clock; it is not safe for
// concurrent use (the producer guards it).
type topicCtl struct {
	cfg *ctlConfig

	p    lagmonitor.Pressure
	live bool // p counts at least one live signal

	mode       mode
	lastLevel  lagmonitor.Level // the level the actions were last computed at
	rampAt     time.Time        // when the easing began
	computedAt time.Time        // when the actions and rates were last computed
	rampFrom   []float64        // per rank: the easing class's rate when it began; -1: not easing
	progress   float64          // the easing's progress at computedAt, in [0, 1]
	capped     bool             // the easing is over and holds at the rate: the demand exceeds it

	actions []Action        // per rank: the action in force
	allow   []float64       // per rank: the rate of a Limit class, records/s; 0: none
	lim     []*rate.Limiter // per rank: the limiter of a Limit class with a rate
	base    []float64       // per rank: the demand a no-rate limit is a fraction of, frozen when taken
	noRate  bool            // the Limit rates come from base (no suggested rate)
	share   float64         // this producer's share of the topic's incoming rate, in [minShare, 1]
	// corr scales the share, in [minCorr, 1]: it follows the rate the
	// limits share over the topic's incoming rate, so that many
	// producers each held at the MinShare floor do not together exceed
	// the rate (see correct).
	corr   float64
	corrAt time.Time // when corr was last moved

	own      lagmonitor.RateMeter   // records this producer had acknowledged on the topic
	incoming lagmonitor.RateMeter   // records appended to the topic (its end offsets, summed)
	demand   []lagmonitor.RateMeter // per rank: records offered to admission, admitted or not
}

func newTopicCtl(cfg *ctlConfig) *topicCtl {
	n := len(cfg.classes)
	t := &topicCtl{
		cfg:      cfg,
		rampFrom: slices.Repeat([]float64{-1}, n),
		actions:  make([]Action, n),
		allow:    make([]float64, n),
		lim:      make([]*rate.Limiter, n),
		base:     make([]float64, n),
		share:    1,
		corr:     1,
		own:      lagmonitor.NewRateMeter(cfg.tau),
		incoming: lagmonitor.NewRateMeter(cfg.tau),
		demand:   make([]lagmonitor.RateMeter, n),
	}
	for i := range t.demand {
		t.demand[i] = lagmonitor.NewRateMeter(cfg.tau)
	}
	return t
}

// observe feeds the meters at now with cumulative counts: the topic's
// end offsets summed over its partitions (endOK false when they could
// not all be listed: neither the topic's rate nor this producer's is
// sampled then, so that the two stay comparable), the records this
// producer had acknowledged on the topic, and the records offered per
// class. It computes the limits again and reports whether they changed
// enough to wake waiting records.
func (t *topicCtl) observe(now time.Time, end int64, endOK bool, acked uint64, offered []uint64) bool {
	for i := range t.demand {
		t.demand[i].Observe(now, offered[i])
	}
	if endOK {
		t.incoming.Observe(now, uint64(max(end, 0)))
		t.own.Observe(now, acked)
		t.correct(now)
	}
	return t.recompute(now)
}

// correct moves the share correction at now. Each producer takes its
// share of the rate the limits share (a suggested rate under pressure,
// the room while a recovery holds at it), but at least MinShare of it:
// more than 1/MinShare producers at that floor would together take more
// than the rate. None of them knows the others, but each sees the topic's
// incoming rate: while it exceeds the rate, every producer at the floor
// scales its limits by corr, which moves toward rate/incoming with time
// constant corrTaus × tau, and back toward 1 while the topic receives
// less. At equilibrium the topic receives the rate, however many
// producers share it. A producer above the floor takes its share as it
// is: its traffic is what its share measures.
func (t *topicCtl) correct(now time.Time) {
	dt := now.Sub(t.corrAt)
	t.corrAt = now
	r, in := t.limitRate(), t.incoming.Rate()
	if !(r > 0) || !(in > 0) || dt <= 0 || !t.incoming.Known() {
		return
	}
	x := math.Pow(r/in, dt.Seconds()/(corrTaus*t.cfg.tau.Seconds()))
	t.corr = min(max(t.corr*x, minCorr), 1)
}

// limitRate returns the rate the topic's limits share now: the suggested
// rate under pressure, the room while a recovery ramps or holds at it; 0
// when no rate limits the topic.
func (t *topicCtl) limitRate() float64 {
	switch {
	case !t.live:
		return 0
	case t.mode == modePressured && !t.noRate:
		return t.p.Rate
	case t.mode == modeRecovering:
		return t.p.Rate // at ok, the room; 0 if unknown
	}
	return 0
}

// setPressure makes p, read at now, the pressure the topic obeys, and
// reports whether it differs from the one before (waiting records must
// then decide again).
func (t *topicCtl) setPressure(p lagmonitor.Pressure, now time.Time) bool {
	live := p.Instance != ""
	same := live == t.live && p.Level == t.p.Level && p.Rate == t.p.Rate && p.Group == t.p.Group &&
		p.Instance == t.p.Instance && p.Seq == t.p.Seq && p.ExpiresAt.Equal(t.p.ExpiresAt)
	t.p, t.live = p, live
	if same {
		return false
	}
	t.recompute(now)
	return true
}

// stale reports whether a signal counted in the pressure has expired at
// now: the pressure must be read again (it may lift at once: fail-open).
func (t *topicCtl) stale(now time.Time) bool {
	return t.live && !now.Before(t.p.ExpiresAt)
}

// tick moves an easing ramp on at now, if a step is due, and reports
// whether the limits changed enough to wake waiting records.
func (t *topicCtl) tick(now time.Time) bool {
	if t.easing() && now.Sub(t.computedAt) >= t.cfg.ramp/rampSteps {
		return t.recompute(now)
	}
	return false
}

// easing reports whether a class eases (see "Easing").
func (t *topicCtl) easing() bool {
	return slices.ContainsFunc(t.rampFrom, func(f float64) bool { return f >= 0 })
}

// decide returns the action in force at now for the class of rank, and
// for [Limit] its limiter, nil when the class has no rate. Call tick first.
func (t *topicCtl) decide(rank int) (Action, *rate.Limiter) {
	if t.mode == modeFree {
		return Admit, nil
	}
	a := t.actions[rank]
	if a == Limit {
		return Limit, t.lim[rank]
	}
	return a, nil
}

// level returns the level in force: ok without a live signal.
func (t *topicCtl) level() lagmonitor.Level {
	if !t.live {
		return lagmonitor.LevelOK
	}
	return t.p.Level
}

// recompute sets the mode, each class's action and rate, and the
// limiters, from the pressure and the rates measured, at now. It reports
// whether anything changed enough to wake waiting records: the mode, an
// action, a rate appearing or vanishing, or one moving by more than
// significantChange.
func (t *topicCtl) recompute(now time.Time) bool {
	oldMode, oldActions, oldAllow := t.mode, slices.Clone(t.actions), slices.Clone(t.allow)
	t.computedAt = now
	t.share = t.shareNow()
	if !t.live {
		t.free() // fail-open: no live signal lifts every limit at once, easing or not
	} else {
		level := t.p.Level
		t.track(now, level)
		t.applyRow(level)
		t.ease(now, level)
		switch {
		case level > lagmonitor.LevelOK:
			t.mode = modePressured
		case t.easing():
			t.mode = modeRecovering
		default:
			t.mode = modeFree
		}
	}
	t.setLimiters(now)

	if t.mode != oldMode || !slices.Equal(t.actions, oldActions) {
		return true
	}
	for i, a := range t.allow {
		was := oldAllow[i]
		if (a > 0) != (was > 0) || math.Abs(a-was) > significantChange*was {
			return true
		}
	}
	return false
}

// shareNow returns this producer's share of the topic: its own rate over
// the topic's incoming rate, within [minShare, 1]; 1 until both are
// measured, or while nothing is measured arriving.
func (t *topicCtl) shareNow() float64 {
	if !t.own.Known() || !t.incoming.Known() {
		return 1
	}
	in := t.incoming.Rate()
	if !(in > 0) {
		return 1
	}
	return min(max(t.own.Rate()/in, t.cfg.minShare), 1)
}

// effShare returns the share the limits take: the share, or, for a
// producer held at the MinShare floor, the floor times the correction
// (see correct): only the floor makes producers together take more than
// the rate, so only the producers at it correct for it.
func (t *topicCtl) effShare() float64 {
	if t.share <= t.cfg.minShare {
		return t.share * t.corr
	}
	return t.share
}

func (t *topicCtl) free() {
	t.mode, t.noRate, t.progress, t.capped, t.corr = modeFree, false, 0, false, 1
	t.lastLevel = lagmonitor.LevelOK
	for i := range t.actions {
		t.actions[i], t.allow[i], t.base[i], t.rampFrom[i] = Admit, 0, 0, -1
	}
}

// track begins or ends easing at now on a change of level to level (see
// "Easing"): on a drop, each class the new row admits and the rates in
// force did not eases from its rate now (0 if refused); on a rise, the
// classes the new row does not admit stop easing. It is called before
// the new row is applied, while the actions and rates are the old ones.
func (t *topicCtl) track(now time.Time, level lagmonitor.Level) {
	switch {
	case level < t.lastLevel && t.cfg.ramp > 0:
		for r, a := range t.actions {
			if t.cfg.policy.cell(level, r) != Admit || a == Admit {
				continue
			}
			t.rampFrom[r] = 0
			if a == Limit {
				t.rampFrom[r] = t.allow[r]
			}
		}
		t.rampAt, t.capped = now, false
	case level > t.lastLevel:
		for r := range t.rampFrom {
			if t.cfg.policy.cell(level, r) != Admit {
				t.rampFrom[r] = -1
			}
		}
	}
	t.lastLevel = level
}

// applyRow sets the actions and rates of the policy's row for level: at
// ok every class admitted; above, with a suggested rate, this producer's
// share of it split by class; without, each limited class held to a
// fraction of its own demand when the limit began.
func (t *topicCtl) applyRow(level lagmonitor.Level) {
	t.progress, t.capped = 0, t.capped && t.easing()
	for r := range t.actions {
		t.actions[r], t.allow[r] = t.cfg.policy.cell(level, r), 0
	}
	if level == lagmonitor.LevelOK {
		t.noRate = false
		clear(t.base)
		return
	}
	if suggested := t.p.Rate; suggested > 0 {
		t.noRate = false
		clear(t.base)
		t.split(suggested*t.effShare(), t.allow)
		return
	}
	t.noRate = true
	f := t.cfg.noRate[level]
	for r, a := range t.actions {
		if a != Limit {
			continue
		}
		if !(t.base[r] > 0) {
			t.base[r] = t.demand[r].Rate() // frozen: the limit must not feed on itself
		}
		t.allow[r] = f * t.base[r]
	}
}

// split gives total (records/s) to the classes, by their actions, most
// important first, into allow: an admitted class's demand is reserved; a
// limited class gets its demand times the headroom, or what is left if
// less; the least important limited class gets all that is left.
func (t *topicCtl) split(total float64, allow []float64) {
	last := -1
	for r, a := range t.actions {
		if a == Limit {
			last = r
		}
	}
	left := total
	for r, a := range t.actions {
		switch a {
		case Admit:
			left -= t.demand[r].Rate()
		case Limit:
			give := left
			if r != last {
				give = min(left, t.demand[r].Rate()*t.cfg.headroom)
			}
			allow[r] = give
			left -= give
		}
		left = max(left, 0)
	}
}

// ease sets the rates of the easing classes at now (see "Easing"): each
// is limited to a rate rising linearly from where it began to its part of
// the rate the signal suggests at level (the room at ok), split as under
// pressure with the easing classes counted as limited, or to its demand
// when none is suggested; past the ramp the rates hold while the demand
// exceeds the suggested rate, and the easing ends otherwise (the row
// applied is then the level's own).
func (t *topicCtl) ease(now time.Time, level lagmonitor.Level) {
	if !t.easing() {
		return
	}
	progress := min(max(float64(now.Sub(t.rampAt))/float64(t.cfg.ramp), 0), 1)
	for r := range t.actions {
		if t.rampFrom[r] >= 0 {
			t.actions[r] = Limit
		}
	}
	rate := t.p.Rate * t.effShare()
	target := make([]float64, len(t.actions))
	if rate > 0 {
		t.split(rate, target)
	} else {
		for r := range target {
			target[r] = t.demand[r].Rate()
		}
	}
	if progress >= 1 && !t.holdAtRoom(rate) {
		for r := range t.rampFrom {
			t.rampFrom[r] = -1
		}
		t.capped = false
		t.applyRow(level)
		return
	}
	t.progress, t.capped = progress, progress >= 1
	for r, from := range t.rampFrom {
		switch {
		case from >= 0:
			t.allow[r] = max(from+(target[r]-from)*progress, 0)
		case t.actions[r] == Limit && rate > 0:
			t.allow[r] = target[r] // its part, the easing classes counted
		}
	}
}

// holdAtRoom reports whether a recovery whose ramp is over holds its
// limits at room (records/s, 0 unknown): while the demand exceeds it,
// and, once held, until the demand falls under capRelease of it.
func (t *topicCtl) holdAtRoom(room float64) bool {
	if !(room > 0) {
		return false
	}
	demand := 0.0
	for r := range t.demand {
		demand += t.demand[r].Rate()
	}
	if t.capped {
		return demand > capRelease*room
	}
	return demand > room
}

func (t *topicCtl) setLimiters(now time.Time) {
	for r, a := range t.actions {
		if a != Limit || !(t.allow[r] > 0) {
			t.lim[r] = nil // a fresh limiter, with a full burst, when limited again
			continue
		}
		r64 := t.allow[r]
		lim, burst := rate.Limit(r64), max(1, int(r64*burstWindow.Seconds()))
		if t.lim[r] == nil {
			t.lim[r] = rate.NewLimiter(lim, burst)
			continue
		}
		t.lim[r].SetLimitAt(now, lim)
		t.lim[r].SetBurstAt(now, burst)
	}
}

// describe fills the fields of d that the topic's state gives, for the
// class of rank whose action is a.
func (t *topicCtl) describe(d *Decision, rank int, a Action) {
	d.Level, d.Action, d.Recovering = t.level(), a, t.rampFrom[rank] >= 0
	d.Group, d.Instance, d.Seq, d.SignalReason = t.p.Group, t.p.Instance, t.p.Seq, t.p.Reason
	d.SuggestedRate, d.Share = t.p.Rate, t.share
	if a == Limit {
		d.Rate = t.allow[rank]
	}
	d.Reason = t.reason(rank, d.Class, a)
}

// reason says in words why the class of rank gets action a.
func (t *topicCtl) reason(rank int, class priority.Class, a Action) string {
	lvl := t.level()
	switch a {
	case Admit:
		return fmt.Sprintf("class %s is admitted at level %s", class, lvl)
	case Shed:
		return fmt.Sprintf("class %s is shed at level %s", class, lvl)
	case FailFast:
		return fmt.Sprintf("class %s fails fast at level %s", class, lvl)
	case Defer:
		return fmt.Sprintf("class %s is deferred at level %s", class, lvl)
	}
	var how string
	switch {
	case t.rampFrom[rank] >= 0 && t.capped:
		how = fmt.Sprintf("recovered, held at its part of the %s/s the consumers suggest while the demand exceeds it", fmtRate(t.p.Rate*t.effShare()))
	case t.rampFrom[rank] >= 0 && t.p.Rate > 0:
		how = fmt.Sprintf("recovering: %.0f%% of the way from its rate at a higher level to its part of the %s/s the consumers suggest", 100*t.progress, fmtRate(t.p.Rate*t.effShare()))
	case t.rampFrom[rank] >= 0:
		how = fmt.Sprintf("recovering: %.0f%% of the way from its rate at a higher level to its demand of %s/s", 100*t.progress, fmtRate(t.demand[rank].Rate()))
	case t.noRate:
		how = fmt.Sprintf("no suggested rate: %.0f%% of its demand of %s/s when the limit began", 100*t.cfg.noRate[lvl], fmtRate(t.base[rank]))
	default:
		how = fmt.Sprintf("a share of %.3g of the suggested %s/s, more important classes served first", t.effShare(), fmtRate(t.p.Rate))
	}
	if r := t.allow[rank]; r > 0 {
		return fmt.Sprintf("class %s is limited to %s/s at level %s (%s)", class, fmtRate(r), lvl, how)
	}
	return fmt.Sprintf("class %s has no rate at level %s (%s)", class, lvl, how)
}

// fmtRate writes a rate with three significant digits.
func fmtRate(r float64) string { return strconv.FormatFloat(r, 'g', 3, 64) }
