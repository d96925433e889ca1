package producer

import (
	"fmt"
	"time"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

// Outcome is what happened to a record that admission did not simply
// admit at once.
type Outcome int8

// The outcomes a [Decision] reports.
const (
	// OutcomeDelayed: admitted after waiting for its class's rate.
	OutcomeDelayed Outcome = iota + 1
	// OutcomeThrottled: refused with [ErrThrottled].
	OutcomeThrottled
	// OutcomeShed: refused with [ErrShed].
	OutcomeShed
	// OutcomeFailedFast: refused with [ErrOverloaded].
	OutcomeFailedFast
	// OutcomeDeferred: handed to the [Deferrer].
	OutcomeDeferred
)

var outcomeNames = [...]string{"", "delayed", "throttled", "shed", "failed-fast", "deferred"}

// String returns the outcome's name: "delayed", "throttled", "shed",
// "failed-fast" or "deferred".
func (o Outcome) String() string {
	if o > 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", int8(o))
}

// Decision traces one admission decision that delayed, refused or
// deferred a record, or would have in shadow mode: enough to say which
// signal made it and why.
type Decision struct {
	// Time is when it was made, by the producer's clock.
	Time  time.Time
	Topic string
	Class priority.Class
	// Level is the topic's aggregate level ([lagmonitor.Pressure]).
	Level lagmonitor.Level
	// Action is the policy's cell for Level and Class; [Limit] while the
	// class eases after a drop in level (Recovering).
	Action  Action
	Outcome Outcome
	// Shadow is true when the topic and class are in shadow mode
	// ([Shadow]): Outcome is what enforcement would have done, and the
	// record was produced.
	Shadow bool
	// Recovering is true while the class eases after the level dropped
	// (to ok, or to a lower level that admits it): its limit ramps up to
	// its part of the suggested rate, or holds there while the demand
	// exceeds it (see the package documentation, "Recovery").
	Recovering bool
	// Reason says in words why, with the figures.
	Reason string
	// Group, Instance and Seq name the signal that decided the level
	// (see [lagmonitor.Pressure]), the live signal the decision acted
	// on (while recovering, the ok signal that holds); SignalReason is
	// its reason. Without a live signal there is no decision: every
	// record is admitted (fail-open).
	Group, Instance string
	Seq             uint64
	SignalReason    string
	// SuggestedRate is the topic's aggregate suggested rate (0: none);
	// Share is this producer's share of it; Rate is the class's rate in
	// force, records per second (0: none, or the class is not limited).
	SuggestedRate, Share, Rate float64
	// Waited is how long the record waited for admission.
	Waited time.Duration
	// RetryAfter is the hint a refused record's error carries.
	RetryAfter time.Duration
}

// LevelChange reports that the aggregate level of a followed topic
// changed, as the producer saw it.
type LevelChange struct {
	Time     time.Time
	Topic    string
	From, To lagmonitor.Level
	// Pressure is the new aggregate pressure: the deciding signal
	// (Group, Instance, Seq, Reason), the suggested rate, the expiry.
	// With no live signal its Reason is "no live signal" (fail-open).
	Pressure lagmonitor.Pressure
}

// Hook observes a producer. A hook implements any of the Hook* interfaces
// below; the producer finds them by type assertion once, at construction
// (as kgo.Hook and consumer.Hook). Hooks are called synchronously from
// the goroutines that produce (and from the producer's own), never while
// the producer holds a lock: they must be fast and safe for concurrent
// use. Metrics and log adapters implement them from outside the package.
type Hook any

// HookDecision is called for every decision that delayed, refused or
// deferred a record, and for every one shadow mode would have made: not
// sampled (count them; the producer's own log lines are the sampled
// view). A record admitted at once is no decision (see [Stats]).
type HookDecision interface {
	OnDecision(d Decision)
}

// HookLevelChange is called when a followed topic's aggregate level
// changes.
type HookLevelChange interface {
	OnLevelChange(c LevelChange)
}

// HookSignalRejected is called for each control-topic record the reader
// rejected: malformed, unauthenticated (forged, with a [SignalVerifier]),
// replayed, or from the future. A rejected signal never counts.
type HookSignalRejected interface {
	OnSignalRejected(r lagmonitor.Rejection)
}

// HookControlError is called when the pressure cannot be known or
// measured as it should: the control topic not read to its end within
// the startup bound, or unreadable (missing, no rights), or the end
// offsets of the followed topics not listed. The producer goes on and
// admits what it does not know to be under pressure (fail-open).
type HookControlError interface {
	OnControlError(err error)
}

type hooks struct {
	decision []HookDecision
	level    []HookLevelChange
	rejected []HookSignalRejected
	ctlErr   []HookControlError
}

func newHooks(hs []Hook) hooks {
	var h hooks
	for _, x := range hs {
		if v, ok := x.(HookDecision); ok {
			h.decision = append(h.decision, v)
		}
		if v, ok := x.(HookLevelChange); ok {
			h.level = append(h.level, v)
		}
		if v, ok := x.(HookSignalRejected); ok {
			h.rejected = append(h.rejected, v)
		}
		if v, ok := x.(HookControlError); ok {
			h.ctlErr = append(h.ctlErr, v)
		}
	}
	return h
}
