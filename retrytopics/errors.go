package retrytopics

import (
	"errors"
	"fmt"
)

// ErrPermanent marks errors that no retry can fix (a record that does not
// parse, a business rule that rejects it): such records skip the retry
// tiers and go straight to the quarantine lane. Mark one with [Permanent],
// or wrap ErrPermanent yourself.
var ErrPermanent = errors.New("permanent failure")

// ErrUndecodable is the error a record with malformed floodgate headers
// fails with, without reaching the handler; it is quarantined with reason
// "undecodable".
var ErrUndecodable = errors.New("undecodable floodgate headers")

// Permanent marks err as permanent: errors.Is(Permanent(err), ErrPermanent)
// holds and the original error stays reachable with errors.Is/As.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return fmt.Sprintf("permanent: %v", e.err) }
func (e *permanentError) Unwrap() []error { return []error{ErrPermanent, e.err} }

// IsPermanent reports whether err is marked permanent.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }
