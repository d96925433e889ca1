package producer

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrInvalidConfig is wrapped by every configuration error of [New]
	// and [Wrap] (and of [Policy.Validate]); the message names the
	// option or the cell at fault.
	ErrInvalidConfig = errors.New("producer: invalid config")

	// ErrRefused is matched (errors.Is) by every error of a record that
	// admission refused: [ErrThrottled], [ErrShed] and [ErrOverloaded].
	// The error is a [*RefusedError], which says why and when to retry.
	ErrRefused = errors.New("producer: record refused")

	// ErrThrottled: the record's class is rate-limited and no token
	// freed within the wait allowed (the cap, [MaxWait], or the
	// context's deadline), or the context ended while it waited.
	// Answer it with HTTP 429.
	ErrThrottled = errors.New("producer: throttled")

	// ErrShed: the record's class is shed at the topic's level (a
	// [Shed] cell), or its [Deferrer] failed it. Answer it with HTTP
	// 503.
	ErrShed = errors.New("producer: shed")

	// ErrOverloaded: the record's class fails fast at the topic's level
	// (a [FailFast] cell). Answer it with HTTP 503.
	ErrOverloaded = errors.New("producer: overloaded, failing fast")

	// ErrNotStarted is the error of a record produced before
	// [Producer.Start] was called.
	ErrNotStarted = errors.New("producer: not started (call Start first)")

	// ErrAlreadyStarted is returned by a second [Producer.Start].
	ErrAlreadyStarted = errors.New("producer: already started")

	// ErrClosed is the error of a record produced after (or waiting
	// during) [Producer.Close], and of Start after Close.
	ErrClosed = errors.New("producer: closed")
)

func configErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// RefusedError is the error of a record that admission refused. It
// matches [ErrRefused] and its kind ([ErrThrottled], [ErrShed] or
// [ErrOverloaded]) with errors.Is, and the cause (the context's error, or
// the Deferrer's) when there is one:
//
//	var re *producer.RefusedError
//	if errors.As(err, &re) {
//		w.Header().Set("Retry-After", strconv.Itoa(re.RetryAfterSeconds()))
//		http.Error(w, re.Error(), re.StatusCode())
//	}
type RefusedError struct {
	// Kind is ErrThrottled, ErrShed or ErrOverloaded.
	Kind error
	// Decision is the decision that refused the record: topic, class,
	// level, reason, and the signal it acted on.
	Decision Decision
	// RetryAfter is when trying again may succeed: for a throttled
	// record, when its class's next token frees, if it has a rate; else
	// the producer's [RetryAfter] hint (default 5s, a heartbeat of the
	// lag monitor: when the pressure may next change).
	RetryAfter time.Duration
	// Err is the cause, if any: the context's error when it ended the
	// wait, or the error the Deferrer failed the record with.
	Err error
}

func (e *RefusedError) Error() string {
	d := &e.Decision
	s := fmt.Sprintf("%v: topic %q, class %s, level %s: %s; retry after %v", e.Kind, d.Topic, d.Class, d.Level, d.Reason, e.RetryAfter)
	if d.Instance != "" {
		s += fmt.Sprintf(" (signal %s/%s seq %d)", d.Group, d.Instance, d.Seq)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the kind, [ErrRefused] and the cause, for errors.Is and
// errors.As.
func (e *RefusedError) Unwrap() []error {
	errs := []error{e.Kind, ErrRefused}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// RefusalRetryAfter returns RetryAfter. With [RefusedError.RefusalLevel]
// it makes a refusal a consumer.Refusal: a handler of a floodgate consumer
// that produces through a Producer returns the refusal as it is, and the
// runtime treats it as its downstream's pressure, not as a failure: the
// record is retried in place after RetryAfter, never diverted nor
// quarantined, and the consumer's lag passes the pressure upstream (see
// the package documentation, "Pipelines").
func (e *RefusedError) RefusalRetryAfter() time.Duration { return e.RetryAfter }

// RefusalLevel returns the level the record was refused at.
func (e *RefusedError) RefusalLevel() int { return int(e.Decision.Level) }

// RetryAfterSeconds returns RetryAfter in whole seconds, rounded up and at
// least 1: the value of an HTTP Retry-After header.
func (e *RefusedError) RetryAfterSeconds() int {
	s := int((e.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// StatusCode returns the HTTP status that answers the refusal: 429 (Too
// Many Requests) for a throttled record, 503 (Service Unavailable) for a
// shed one or one that failed fast.
func (e *RefusedError) StatusCode() int {
	if errors.Is(e.Kind, ErrThrottled) {
		return 429 // net/http's StatusTooManyRequests, without importing it
	}
	return 503 // StatusServiceUnavailable
}
