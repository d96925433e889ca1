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

// FetchError is what [Runtime.Run] returns when a poll reported an error
// that retrying cannot fix (an authorization failure, a batch too large to
// decompress): the runtime drains and commits what completed, then
// returns it. errors.Is and errors.As see the underlying error.
type FetchError struct {
	Topic     string // "" for an error of the client or the group
	Partition int32  // -1 for an error of a topic or of the client
	Err       error
}

func (e *FetchError) Error() string {
	if e.Topic == "" {
		return fmt.Sprintf("consumer: fetch: %v", e.Err)
	}
	return fmt.Sprintf("consumer: fetch %s[%d]: %v", e.Topic, e.Partition, e.Err)
}

func (e *FetchError) Unwrap() error { return e.Err }

// DataLossError reports records that were lost before the runtime could
// read them, detected by the runtime itself (franz-go reports the cases it
// detects as *kgo.ErrDataLoss): the log start moved past the next offset
// while the partition was paused (retention deleted records, and the
// client reset to the log start with only a warning), or the broker served
// offsets already read (the log was truncated and its offsets reused). It
// reaches [HookFetchError] and [Stats]; Run goes on.
type DataLossError struct {
	Topic     string
	Partition int32
	// Expected is the offset the runtime expected next; Got the first
	// offset the broker returned instead.
	Expected, Got int64
	// Truncated is true when Got is at or below offsets already read: the
	// runtime forgot what it tracked for the partition and started over at
	// Got (records it holds from before are still handled, but no longer
	// decide what is committed). Otherwise the offsets from Expected up to
	// Got were deleted unread.
	Truncated bool
}

func (e *DataLossError) Error() string {
	if e.Truncated {
		return fmt.Sprintf("consumer: %s[%d]: data loss: the broker returned offset %d at or below offsets already read (expected %d): the log was truncated and offsets reused",
			e.Topic, e.Partition, e.Got, e.Expected)
	}
	return fmt.Sprintf("consumer: %s[%d]: data loss: offsets %d to %d were deleted (log start moved past them) before they were read",
		e.Topic, e.Partition, e.Expected, e.Got-1)
}
