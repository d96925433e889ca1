package consumer

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidConfig is wrapped by every configuration error returned from
	// [New] and [Wrap]; the message names the offending field.
	ErrInvalidConfig = errors.New("consumer: invalid config")

	// ErrClientMisconfigured is wrapped when [Wrap] is given a *kgo.Client
	// that lacks an option the runtime needs; the message names the option.
	// Build the client with [GroupOpts] to get all of them.
	ErrClientMisconfigured = errors.New("consumer: kgo client misconfigured")

	// ErrAlreadyRunning is returned by [Runtime.Run] when called twice.
	ErrAlreadyRunning = errors.New("consumer: runtime already running")

	// ErrClosed is returned by [Runtime.Run] after [Runtime.Close].
	ErrClosed = errors.New("consumer: runtime closed")

	// ErrShutdownTimeout is wrapped by [Runtime.Run] when handlers did not
	// return within the shutdown bound even after their context was
	// cancelled. Their records were not committed.
	ErrShutdownTimeout = errors.New("consumer: handlers did not stop in time")
)

// PanicError is the error a handler panic is turned into. The record is
// treated as failed, exactly as if the handler had returned an error.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the stack of the panicking goroutine
}

func (e *PanicError) Error() string { return fmt.Sprintf("consumer: handler panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

func configErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}
