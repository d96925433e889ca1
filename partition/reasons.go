package partition

import "strings"

// Reasons is the set of reasons a partition's fetching is paused. A partition
// is paused while any reason is set; clearing one reason never resumes a
// partition that another reason still holds.
type Reasons uint32

// The reasons a partition may be paused for.
const (
	// WindowFull: the partition's in-flight window reached a cap.
	WindowFull Reasons = 1 << iota
	// Memory: the runtime's global byte budget is spent.
	Memory
	// Lag: a more important priority class lags (set by a lag monitor),
	// or another lag controller's reason.
	Lag
	// Priority: the bytes in flight near the runtime's budget and the
	// partition's priority class is among the first to yield.
	Priority
	// RetryDue: the head record of a retry tier is not yet due.
	RetryDue
	// Manual: paused by the application.
	Manual
	// SpanFull: the span from the oldest record not yet terminal to the
	// newest admitted one reached its bound (a record is stuck: failing,
	// slow, or its divert cannot be produced), so that what a crash could
	// redeliver stays bounded.
	SpanFull
	// CommitStalled: commits keep failing and the work completed but not
	// committed passed its bound (records or age).
	CommitStalled
	// DivertFailed: a record's replacement could not be produced to a
	// retry tier or the quarantine lane, and the router had nothing else
	// to try. The produce is retried slowly until it succeeds.
	DivertFailed
	// DownstreamPressure: a handler's downstream refused a record of the
	// partition for pressure (a producer's refusal, an HTTP 429 or 503
	// said so); the record is retried in place after the refusal's hint,
	// and the partition fetches nothing more until it is handled, so
	// that the pressure shows as this partition's lag.
	DownstreamPressure
)

var reasonNames = [...]string{"window_full", "memory", "lag", "priority", "retry_due", "manual", "span_full", "commit_stalled", "divert_failed", "downstream_pressure"}

// Has reports whether all reasons in q are set in r.
func (r Reasons) Has(q Reasons) bool { return r&q == q && q != 0 }

// Paused reports whether any reason is set.
func (r Reasons) Paused() bool { return r != 0 }

// String lists the set reasons, joined by "+", or "none".
func (r Reasons) String() string {
	if r == 0 {
		return "none"
	}
	var b strings.Builder
	for i, name := range reasonNames {
		if r&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('+')
			}
			b.WriteString(name)
		}
	}
	return b.String()
}
