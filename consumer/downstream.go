package consumer

import (
	"errors"
	"time"
)

// Refusal is implemented by an error that says a handler's downstream
// refused its work for pressure, rather than failed: a floodgate
// producer's refusal (*producer.RefusedError implements it), or an error
// of one's own for an HTTP 429 or 503 ([Refused]). The runtime treats a
// handler error whose chain holds a Refusal as pressure, not failure
// (see the package documentation, "Pressure across hops"): the record is
// retried in place after the refusal's hint, never diverted to a retry
// tier, never charged to a retry budget and never quarantined, and its
// partition pauses with the reason partition.DownstreamPressure, so that
// the pressure shows as this service's own lag and its lag monitor
// passes it upstream.
type Refusal interface {
	error
	// RefusalRetryAfter returns how long the downstream asked to wait
	// before trying again; 0 when it did not say.
	RefusalRetryAfter() time.Duration
	// RefusalLevel returns the downstream's pressure level when it
	// refused, as package lagmonitor numbers levels (1 elevated, 2 high,
	// 3 critical); 0 when it did not say.
	RefusalLevel() int
}

// Refused returns err marked as a downstream refusal ([Refusal]) with a
// retry hint (0: none) and no level: for an error of one's own that says
// a downstream refused for pressure (an HTTP 429 or 503, its Retry-After
// header). errors.Is and errors.As see err through it. Refused(nil, ...)
// is nil.
func Refused(err error, retryAfter time.Duration) error {
	if err == nil {
		return nil
	}
	return &refusedError{err: err, retryAfter: retryAfter}
}

type refusedError struct {
	err        error
	retryAfter time.Duration
}

func (e *refusedError) Error() string                    { return "refused by the downstream: " + e.err.Error() }
func (e *refusedError) Unwrap() error                    { return e.err }
func (e *refusedError) RefusalRetryAfter() time.Duration { return e.retryAfter }
func (e *refusedError) RefusalLevel() int                { return 0 }

// AsRefusal returns the [Refusal] in err's chain, if any.
func AsRefusal(err error) (Refusal, bool) {
	var r Refusal
	if errors.As(err, &r) {
		return r, true
	}
	return nil, false
}
