package partition

import (
	"errors"
	"fmt"
)

// Limits bounds one partition's in-flight window.
//
// A partition is asked to pause when it holds MaxRecords records or
// MaxBytes bytes, and may resume once it holds at most ResumeRecords records
// and at most ResumeBytes bytes.
type Limits struct {
	// MaxRecords is the hard cap on records in flight. Must be > 0.
	MaxRecords int
	// MaxBytes is the hard cap on bytes in flight (key + value + headers).
	// Must be > 0. A single record larger than MaxBytes is admitted only
	// into an empty window, so that it cannot stall the partition forever.
	MaxBytes int64
	// ResumeRecords is the low mark for records: 0 <= ResumeRecords < MaxRecords.
	ResumeRecords int
	// ResumeBytes is the low mark for bytes: 0 <= ResumeBytes < MaxBytes.
	ResumeBytes int64
}

// ErrInvalidLimits is returned (wrapped) by [Limits.Validate].
var ErrInvalidLimits = errors.New("partition: invalid limits")

// Validate reports the first invalid field of l, naming it.
func (l Limits) Validate() error {
	switch {
	case l.MaxRecords <= 0:
		return fmt.Errorf("%w: MaxRecords must be > 0, got %d", ErrInvalidLimits, l.MaxRecords)
	case l.MaxBytes <= 0:
		return fmt.Errorf("%w: MaxBytes must be > 0, got %d", ErrInvalidLimits, l.MaxBytes)
	case l.ResumeRecords < 0 || l.ResumeRecords >= l.MaxRecords:
		return fmt.Errorf("%w: ResumeRecords must be in [0, MaxRecords=%d), got %d", ErrInvalidLimits, l.MaxRecords, l.ResumeRecords)
	case l.ResumeBytes < 0 || l.ResumeBytes >= l.MaxBytes:
		return fmt.Errorf("%w: ResumeBytes must be in [0, MaxBytes=%d), got %d", ErrInvalidLimits, l.MaxBytes, l.ResumeBytes)
	}
	return nil
}

// Window counts the records and bytes of one partition that are in flight,
// and decides, with hysteresis, when the partition should pause and resume.
// The zero value is not usable; build one with [NewWindow].
type Window struct {
	lim     Limits
	records int
	bytes   int64
	full    bool
}

// NewWindow returns an empty window with the given limits, which must be
// valid (see [Limits.Validate]).
func NewWindow(l Limits) Window { return Window{lim: l} }

// Limits returns the window's limits.
func (w *Window) Limits() Limits { return w.lim }

// Records returns the number of records in flight.
func (w *Window) Records() int { return w.records }

// Bytes returns the number of bytes in flight.
func (w *Window) Bytes() int64 { return w.bytes }

// Full reports whether the window asks for its partition to be paused. It
// becomes true when the window reaches a cap or refuses a record, and false
// again only once the window has drained to the resume marks.
func (w *Window) Full() bool { return w.full }

// Fits reports whether a record of the given size may be admitted without
// exceeding a cap. An empty window admits any single record.
func (w *Window) Fits(size int64) bool {
	if w.records == 0 {
		return true
	}
	return w.records+1 <= w.lim.MaxRecords && w.bytes+size <= w.lim.MaxBytes
}

// Add admits a record of the given size. The caller must have checked
// [Window.Fits]. It reports whether the window just became full.
func (w *Window) Add(size int64) (becameFull bool) {
	w.records++
	w.bytes += size
	if !w.full && (w.records >= w.lim.MaxRecords || w.bytes >= w.lim.MaxBytes) {
		w.full = true
		return true
	}
	return false
}

// Refuse records that a record did not fit: the window becomes full (if it
// was not) so the partition pauses until it drains. It reports whether the
// window just became full.
func (w *Window) Refuse() (becameFull bool) {
	if w.full {
		return false
	}
	w.full = true
	return true
}

// Room returns how many more records and bytes the window can admit before
// it reaches a cap (never negative).
func (w *Window) Room() (records int, bytes int64) {
	return max(w.lim.MaxRecords-w.records, 0), max(w.lim.MaxBytes-w.bytes, 0)
}

// ExpectFetch marks the window full when a fetch of up to records records
// and bytes bytes would not fit its room, so that its partition pauses
// before a fetch overflows it rather than after (a record that does not fit
// must be given back and fetched again). It reports whether the window just
// became full. Zero arguments never fill the window.
func (w *Window) ExpectFetch(records int, bytes int64) (becameFull bool) {
	if w.full || w.records == 0 {
		return false
	}
	roomRecs, roomBytes := w.Room()
	if records > roomRecs || bytes > roomBytes {
		w.full = true
		return true
	}
	return false
}

// Release removes a record of the given size that reached a terminal state
// (or was dropped on revoke). It reports whether the window just drained to
// its resume marks after having been full.
func (w *Window) Release(size int64) (drained bool) {
	w.records--
	w.bytes -= size
	if w.records < 0 || w.bytes < 0 {
		panic(fmt.Sprintf("partition: window released more than admitted (records=%d bytes=%d)", w.records, w.bytes))
	}
	if w.full && w.records <= w.lim.ResumeRecords && w.bytes <= w.lim.ResumeBytes {
		w.full = false
		return true
	}
	return false
}
