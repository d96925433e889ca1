package lagmonitor

import (
	"fmt"
	"time"
)

// Trend says where one partition's lag is heading, judged over a window of
// recent samples ([TrendConfig.Classify]).
type Trend int8

// The trends. Their numeric order is not a severity scale.
const (
	// TrendUnknown: too few samples, or none recent enough to judge.
	TrendUnknown Trend = iota
	// TrendOK: caught up, the newest lag is zero.
	TrendOK
	// TrendSteady: behind, but the lag neither grew nor shrank beyond
	// the tolerance across the window.
	TrendSteady
	// TrendFalling: the lag shrank across the window: catching up.
	TrendFalling
	// TrendRising: the lag grew across the window: falling behind
	// although the consumer moves (or was idle only while caught up).
	TrendRising
	// TrendStalled: the committed offset did not move across the whole
	// window while the lag stayed above zero: stuck.
	TrendStalled
	// TrendRewound: the committed offset went back within the window (a
	// reset, a truncation, or a new owner resuming from an older
	// commit); the window mixes two histories and should be reset.
	TrendRewound
)

var trendNames = [...]string{"unknown", "ok", "steady", "falling", "rising", "stalled", "rewound"}

// String returns the trend's name: "unknown", "ok", "steady",
// "falling", "rising", "stalled" or "rewound".
func (t Trend) String() string {
	if t >= 0 && int(t) < len(trendNames) {
		return trendNames[t]
	}
	return fmt.Sprintf("trend(%d)", int8(t))
}

// TrendSample is one observation of a partition: when it was taken, the
// committed offset (or the commit watermark) then, and the offset lag then
// (the partition's end offset minus the committed offset).
type TrendSample struct {
	At        time.Time
	Committed int64
	Lag       int64 // negative counts as zero (end offsets and commits are read at different times)
}

// TrendConfig configures the trend of a partition. Start from
// [DefaultTrendConfig]; check with [TrendConfig.Validate].
type TrendConfig struct {
	// Samples is the size of a [TrendWindow]: the samples a trend is
	// judged on. Must be >= 2. Default 10 (with a sample a second, the
	// last ten seconds).
	Samples int
	// Tolerance is the change in lag across the window that still
	// counts as steady, as a fraction of the larger of the oldest and the
	// newest lag. Must be in [0, 1). Default 0.1.
	Tolerance float64
}

// The defaults of [TrendConfig]; see its fields.
const (
	DefaultTrendSamples   = 10
	DefaultTrendTolerance = 0.1
)

// DefaultTrendConfig returns the default trend configuration: windows of
// 10 samples, a tolerance of 10%.
func DefaultTrendConfig() TrendConfig {
	return TrendConfig{Samples: DefaultTrendSamples, Tolerance: DefaultTrendTolerance}
}

// Validate reports the first invalid field of c, naming it, wrapped around
// [ErrInvalidConfig].
func (c TrendConfig) Validate() error {
	switch {
	case c.Samples < 2:
		return configErr("TrendConfig.Samples", "must be >= 2, got %d", c.Samples)
	case !(c.Tolerance >= 0 && c.Tolerance < 1):
		return configErr("TrendConfig.Tolerance", "must be in [0, 1), got %v", c.Tolerance)
	}
	return nil
}

// Classify judges samples (oldest first, times not decreasing) as of now.
// The rules are those of the evaluator of LinkedIn's Burrow (zero lag,
// rewind, stop, stall, lag increasing), adapted to samples that the
// consumer takes of itself every second or so, where Burrow judges
// commits read every minute or so from __consumer_offsets. They apply in
// this order, the first that matches deciding:
//
//  1. Fewer than 2 samples: [TrendUnknown]. (Burrow judges any window,
//     reporting how complete it is; [TrendWindow.Trend] waits for a full
//     window instead.)
//  2. Stale, Burrow's "stop" rule: when the newest sample is older than
//     the window's span (now − newest > newest − oldest), Burrow reports
//     that the consumer stopped committing. Here the samples come from
//     the monitor, not from the consumer's commits, so a stale window
//     says only that sampling stopped: [TrendUnknown]. A consumer that
//     stops committing shows as stalled instead. (Burrow checks this
//     after zero lag and rewind; here it comes first, since a stale
//     window says nothing of now.)
//  3. Caught up: the newest lag is zero: [TrendOK]. Burrow deems a window
//     OK when any lag in it is zero, which hides a lag that has just
//     started to grow; a window of seconds must show it, so only the
//     newest lag counts.
//  4. Rewind, as Burrow: a committed offset below the one before it:
//     [TrendRewound].
//  5. Stall, as Burrow: the committed offset is the same in every sample
//     and every lag is above zero: [TrendStalled].
//  6. Lag increasing: Burrow warns when the lag never decreases from one
//     sample to the next. The consumer's own lag, sampled between fetches
//     and commits, zigzags too much for that, so the window's ends are
//     compared instead: the lag grew by more than Tolerance × max(oldest
//     lag, newest lag): [TrendRising]; shrank by more than that:
//     [TrendFalling]; otherwise [TrendSteady].
//
// Classify is pure; it does not keep or change samples. c must be valid.
func (c TrendConfig) Classify(samples []TrendSample, now time.Time) Trend {
	n := len(samples)
	if n < 2 {
		return TrendUnknown
	}
	first, last := samples[0], samples[n-1]
	if now.Sub(last.At) > last.At.Sub(first.At) {
		return TrendUnknown
	}
	if last.Lag <= 0 {
		return TrendOK
	}
	moved, lagged := false, true
	for i, s := range samples {
		if i > 0 {
			if s.Committed < samples[i-1].Committed {
				return TrendRewound
			}
			moved = moved || s.Committed != samples[i-1].Committed
		}
		lagged = lagged && s.Lag > 0
	}
	if !moved && lagged {
		return TrendStalled
	}
	from, to := max(first.Lag, 0), last.Lag
	tol := c.Tolerance * float64(max(from, to))
	switch d := float64(to - from); {
	case d > tol:
		return TrendRising
	case -d > tol:
		return TrendFalling
	}
	return TrendSteady
}

// TrendWindow keeps the latest samples of one partition, at most
// [TrendConfig.Samples], and judges their trend. It is pure and not safe
// for concurrent use. Reset it when the partition is assigned anew.
type TrendWindow struct {
	c   TrendConfig
	buf []TrendSample // oldest first
}

// NewTrendWindow returns an empty window, or an error wrapping
// [ErrInvalidConfig] if c is invalid.
func NewTrendWindow(c TrendConfig) (*TrendWindow, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &TrendWindow{c: c, buf: make([]TrendSample, 0, c.Samples)}, nil
}

// Add appends s, dropping the oldest sample when the window is full. A
// sample taken at the same time as the newest one replaces it; one taken
// before it is ignored, and Add reports false.
func (w *TrendWindow) Add(s TrendSample) bool {
	if n := len(w.buf); n > 0 {
		switch last := w.buf[n-1].At; {
		case s.At.Before(last):
			return false
		case s.At.Equal(last):
			w.buf[n-1] = s
			return true
		}
	}
	if len(w.buf) == w.c.Samples {
		copy(w.buf, w.buf[1:])
		w.buf = w.buf[:len(w.buf)-1]
	}
	w.buf = append(w.buf, s)
	return true
}

// Len returns the number of samples held.
func (w *TrendWindow) Len() int { return len(w.buf) }

// Samples returns a copy of the samples held, oldest first.
func (w *TrendWindow) Samples() []TrendSample { return append([]TrendSample(nil), w.buf...) }

// Reset drops every sample.
func (w *TrendWindow) Reset() { w.buf = w.buf[:0] }

// Trend judges the window as of now ([TrendConfig.Classify]); it is
// [TrendUnknown] until the window is full.
func (w *TrendWindow) Trend(now time.Time) Trend {
	if len(w.buf) < w.c.Samples {
		return TrendUnknown
	}
	return w.c.Classify(w.buf, now)
}
