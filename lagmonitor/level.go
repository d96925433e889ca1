package lagmonitor

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by every configuration error of this
// package ([Thresholds.Validate], [RateConfig.Validate],
// [TrendConfig.Validate], and the constructors that call them); the
// message names the offending field.
var ErrInvalidConfig = errors.New("lagmonitor: invalid config")

func configErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// Mark is the entry mark of one pressure level: the level is entered as
// soon as the time lag reaches TimeLag or the offset lag reaches
// OffsetLag, whichever comes first. A zero field is off; a Mark with both
// fields zero turns its level off (it is never entered, and a level above
// it is entered directly).
type Mark struct {
	// TimeLag is the time-lag entry mark (the age of the oldest record
	// not yet handled), the primary measure: it means the same for a
	// topic of ten records a second and one of a million. Zero is off.
	TimeLag time.Duration
	// OffsetLag is the offset-lag entry mark (records not yet handled).
	// Zero is off.
	OffsetLag int64
}

func (m Mark) on() bool { return m.TimeLag > 0 || m.OffsetLag > 0 }

// Thresholds configures the pressure levels of one group on one topic:
// an entry [Mark] for each level above [LevelOK], the exit marks as a
// fraction of the entry marks, and the minimum dwell before a level is
// left. Start from [DefaultThresholds] and change what you need; check
// the result with [Thresholds.Validate] ([NewLevelMachine] does).
//
// A level is entered when the observations reach one of its entry marks
// (lag >= mark) and left only once they have stayed at or below all of its
// exit marks (lag <= ExitFraction × mark, for each mark that is on) for
// at least Dwell. See [LevelMachine] for the exact rules.
type Thresholds struct {
	// Elevated, High and Critical are the entry marks of the levels
	// above ok. The marks that are on must grow with the level: a time
	// mark must be greater than every time mark of the levels below
	// it, and an offset mark likewise. At least one level must be on.
	//
	// Defaults: elevated at 5s of time lag, high at 30s, critical at
	// 2m; offset-lag marks off (what a record count means depends on the
	// topic's record rate, which the time lag already accounts for).
	Elevated, High, Critical Mark
	// ExitFraction places each exit mark below its entry mark: a level
	// is left only at or below ExitFraction × each of its entry marks
	// that is on (offset marks rounded down). Must be in (0, 1).
	// Default 0.5: with the default marks, elevated is left at or below
	// 2.5s, high at or below 15s, critical at or below 1m.
	ExitFraction float64
	// Dwell is how long the observations must stay at or below a level's
	// exit marks before the level is left. Must be >= 0; zero leaves a
	// level at the first observation at or below its exit marks.
	// Default 30s: several publishing intervals, so that a lag that dips
	// between bursts does not lift the pressure producers obey.
	Dwell time.Duration
}

// The defaults of [Thresholds]; see its fields.
const (
	DefaultElevatedTimeLag = 5 * time.Second
	DefaultHighTimeLag     = 30 * time.Second
	DefaultCriticalTimeLag = 2 * time.Minute
	DefaultExitFraction    = 0.5
	DefaultDwell           = 30 * time.Second
)

// DefaultThresholds returns the default thresholds: elevated at 5s of time
// lag, high at 30s, critical at 2m, offset-lag marks off, exit marks at
// half the entry marks, and a dwell of 30s.
func DefaultThresholds() Thresholds {
	return Thresholds{
		Elevated:     Mark{TimeLag: DefaultElevatedTimeLag},
		High:         Mark{TimeLag: DefaultHighTimeLag},
		Critical:     Mark{TimeLag: DefaultCriticalTimeLag},
		ExitFraction: DefaultExitFraction,
		Dwell:        DefaultDwell,
	}
}

// mark returns the entry mark of level l (l above ok).
func (t *Thresholds) mark(l Level) Mark {
	switch l {
	case LevelElevated:
		return t.Elevated
	case LevelHigh:
		return t.High
	case LevelCritical:
		return t.Critical
	}
	return Mark{}
}

// Validate reports the first invalid field of t, naming it, wrapped around
// [ErrInvalidConfig].
func (t Thresholds) Validate() error {
	var anyOn bool
	var lastTime time.Duration
	var lastOffset int64
	var lastTimeName, lastOffsetName string
	for l := LevelElevated; l <= LevelCritical; l++ {
		m := t.mark(l)
		name := levelField(l)
		switch {
		case m.TimeLag < 0:
			return configErr("Thresholds."+name+".TimeLag", "must be >= 0 (0 is off), got %v", m.TimeLag)
		case m.OffsetLag < 0:
			return configErr("Thresholds."+name+".OffsetLag", "must be >= 0 (0 is off), got %d", m.OffsetLag)
		}
		if m.TimeLag > 0 {
			if m.TimeLag <= lastTime {
				return configErr("Thresholds."+name+".TimeLag", "must be greater than %s.TimeLag (%v), got %v", lastTimeName, lastTime, m.TimeLag)
			}
			lastTime, lastTimeName = m.TimeLag, name
		}
		if m.OffsetLag > 0 {
			if m.OffsetLag <= lastOffset {
				return configErr("Thresholds."+name+".OffsetLag", "must be greater than %s.OffsetLag (%d), got %d", lastOffsetName, lastOffset, m.OffsetLag)
			}
			lastOffset, lastOffsetName = m.OffsetLag, name
		}
		anyOn = anyOn || m.on()
	}
	switch {
	case !anyOn:
		return configErr("Thresholds", "has no entry mark on: set Elevated, High or Critical")
	case !(t.ExitFraction > 0 && t.ExitFraction < 1): // also rejects NaN
		return configErr("Thresholds.ExitFraction", "must be in (0, 1), got %v", t.ExitFraction)
	case t.Dwell < 0:
		return configErr("Thresholds.Dwell", "must be >= 0, got %v", t.Dwell)
	}
	return nil
}

func levelField(l Level) string {
	switch l {
	case LevelElevated:
		return "Elevated"
	case LevelHigh:
		return "High"
	case LevelCritical:
		return "Critical"
	}
	return l.String()
}

// EntryLevel returns the highest level whose entry marks the lags reach
// (any one mark that is on suffices), or [LevelOK]: the level the
// observation alone justifies, without hysteresis. Negative lags count as
// zero.
func (t Thresholds) EntryLevel(timeLag time.Duration, offsetLag int64) Level {
	timeLag, offsetLag = max(timeLag, 0), max(offsetLag, 0)
	for l := LevelCritical; l > LevelOK; l-- {
		if t.reaches(l, timeLag, offsetLag) {
			return l
		}
	}
	return LevelOK
}

// HeldLevel returns the highest level whose exit marks the lags exceed
// (any one mark that is on suffices), or [LevelOK]: the highest level a
// [LevelMachine] could hold at these lags, depending on where they came
// from. It is at least [Thresholds.EntryLevel]. Negative lags count as
// zero.
func (t Thresholds) HeldLevel(timeLag time.Duration, offsetLag int64) Level {
	timeLag, offsetLag = max(timeLag, 0), max(offsetLag, 0)
	for l := LevelCritical; l > LevelOK; l-- {
		if t.mark(l).on() && !t.atOrBelowExit(l, timeLag, offsetLag) {
			return l
		}
	}
	return LevelOK
}

// Saturated reports whether the lags show a consumer that works at its
// capacity: at or above half an entry mark of the lowest level that is
// on (records wait long enough, or are many enough, that the consumer is
// never idle). Negative lags count as zero.
func (t Thresholds) Saturated(timeLag time.Duration, offsetLag int64) bool {
	low := LevelElevated
	for low < LevelCritical && !t.mark(low).on() {
		low++
	}
	m := t.mark(low)
	return (m.TimeLag > 0 && timeLag >= m.TimeLag/2) || (m.OffsetLag > 0 && offsetLag >= (m.OffsetLag+1)/2)
}

// CaughtUp reports whether the lags are at or below a tenth of every
// entry mark of the lowest level that is on: nothing waits to speak of.
// Negative lags count as zero.
func (t Thresholds) CaughtUp(timeLag time.Duration, offsetLag int64) bool {
	low := LevelElevated
	for low < LevelCritical && !t.mark(low).on() {
		low++
	}
	m := t.mark(low)
	return (m.TimeLag == 0 || timeLag <= m.TimeLag/10) && (m.OffsetLag == 0 || offsetLag <= m.OffsetLag/10)
}

func (t *Thresholds) reaches(l Level, timeLag time.Duration, offsetLag int64) bool {
	m := t.mark(l)
	return (m.TimeLag > 0 && timeLag >= m.TimeLag) || (m.OffsetLag > 0 && offsetLag >= m.OffsetLag)
}

// exitMarks returns the exit marks of level l; a zero entry mark gives a
// zero exit mark, which is not checked.
func (t *Thresholds) exitMarks(l Level) (time.Duration, int64) {
	m := t.mark(l)
	return time.Duration(float64(m.TimeLag) * t.ExitFraction), int64(float64(m.OffsetLag) * t.ExitFraction)
}

// atOrBelowExit reports whether the lags are at or below every exit mark
// of level l whose entry mark is on. Since each exit mark is below its
// entry mark, an observation that reaches an entry mark of l is never at
// or below l's exit marks.
func (t *Thresholds) atOrBelowExit(l Level, timeLag time.Duration, offsetLag int64) bool {
	m := t.mark(l)
	et, eo := t.exitMarks(l)
	return (m.TimeLag == 0 || timeLag <= et) && (m.OffsetLag == 0 || offsetLag <= eo)
}

// Decision is what a [LevelMachine] makes of one observation.
type Decision struct {
	// Level is the level after the observation.
	Level Level
	// Prev is the level before it.
	Prev Level
	// Changed reports whether Level differs from Prev.
	Changed bool
	// Reason says in words why the level is what it is, e.g.
	// "time lag 45s >= high 30s", "high held: time lag 20s > exit 15s",
	// "high held: at or below exit marks for 10s of 30s dwell",
	// "time lag 1.2s < elevated 5s".
	Reason string
}

// LevelMachine turns a stream of lag observations of one group on one
// topic into a pressure level with hysteresis. It is pure: it does no
// I/O and reads no clock; every observation carries its own time. It is
// not safe for concurrent use.
//
// At each observation (now, time lag, offset lag), in this order:
//
//  1. For each level above ok that is on, the machine tracks the run of
//     consecutive observations at or below the level's exit marks: the
//     run starts at the first such observation and ends at the first
//     observation above any of them (an observation that reaches an entry
//     mark of a level always ends that level's run). A level is
//     released when its run started at least Dwell ago. A level that is
//     off counts as released.
//  2. The entry level is the highest level whose entry marks the
//     observation reaches ([Thresholds.EntryLevel]).
//  3. The new level is the highest level, from the current one down,
//     that is not released; or the entry level if that is higher (or if
//     every level from the current one down to just above the entry
//     level is released).
//
// So a higher level is entered at once when any of its entry marks is
// crossed, possibly skipping levels (ok straight to critical); a level is
// left only after the observations have stayed at or below its exit marks
// for Dwell, and then the level drops to the highest level below it that
// is not itself released, which may be several levels lower (critical
// straight to ok when the lag fell to zero and stayed there for Dwell).
// Observations that do not reach an entry mark but stay above an exit
// mark hold the level indefinitely: a lag oscillating around one mark
// enters the level once and stays in it.
//
// The run of a lower level is tracked while a higher level holds, so
// dropping several levels at once requires that the observations stayed
// at or below the exit marks of each level dropped for Dwell, not only of
// the highest.
//
// Negative lags count as zero. Times should not go backwards: an
// observation earlier than a run's start delays the release, never hastens
// it.
type LevelMachine struct {
	t     Thresholds
	level Level
	// since[l] is when level l's run at or below its exit marks started;
	// in[l] reports whether such a run is under way.
	since [LevelCritical + 1]time.Time
	in    [LevelCritical + 1]bool
}

// NewLevelMachine returns a machine at [LevelOK] with the given thresholds,
// or an error wrapping [ErrInvalidConfig] if they are invalid.
func NewLevelMachine(t Thresholds) (*LevelMachine, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &LevelMachine{t: t}, nil
}

// Thresholds returns the machine's thresholds.
func (m *LevelMachine) Thresholds() Thresholds { return m.t }

// Level returns the current level.
func (m *LevelMachine) Level() Level { return m.level }

// Reset returns the machine to [LevelOK] and forgets every run, as if
// new (for a group that stopped consuming the topic and started again).
func (m *LevelMachine) Reset() { *m = LevelMachine{t: m.t} }

// Seed starts the machine, whatever it held, at the first observation of
// a consumer it has no history of (an instance that just started, or a
// topic assigned to it): at the highest level the observation could be
// held at ([Thresholds.HeldLevel]), not the lowest it would enter, so
// that a lag inside a level's hysteresis band (above its exit marks,
// below its entry marks) reads as that level rather than the one below:
// a new instance never reports less pressure than the one it replaces
// could have. The level is then left by the usual rules (the dwell
// starts at the first observation at or below its exit marks).
func (m *LevelMachine) Seed(now time.Time, timeLag time.Duration, offsetLag int64) Decision {
	prev := m.level
	*m = LevelMachine{t: m.t, level: m.t.HeldLevel(timeLag, offsetLag)}
	d := m.Observe(now, timeLag, offsetLag)
	d.Prev, d.Changed = prev, d.Level != prev
	if d.Level > m.t.EntryLevel(timeLag, offsetLag) && !m.in[d.Level] {
		d.Reason += " (first measure: held at the level its band could hold)"
	}
	return d
}

// Observe feeds the machine one observation taken at now and returns its
// decision (see [LevelMachine] for the rules).
func (m *LevelMachine) Observe(now time.Time, timeLag time.Duration, offsetLag int64) Decision {
	timeLag, offsetLag = max(timeLag, 0), max(offsetLag, 0)
	for l := LevelElevated; l <= LevelCritical; l++ {
		if m.t.mark(l).on() && m.t.atOrBelowExit(l, timeLag, offsetLag) {
			if !m.in[l] {
				m.since[l], m.in[l] = now, true
			}
		} else {
			m.in[l] = false
		}
	}
	entry := m.t.EntryLevel(timeLag, offsetLag)
	next := entry
	for l := m.level; l > entry; l-- {
		if !m.released(l, now) {
			next = l
			break
		}
	}
	prev := m.level
	m.level = next
	return Decision{
		Level:   next,
		Prev:    prev,
		Changed: next != prev,
		Reason:  m.reason(next, entry, timeLag, offsetLag, now),
	}
}

func (m *LevelMachine) released(l Level, now time.Time) bool {
	if !m.t.mark(l).on() {
		return true
	}
	return m.in[l] && now.Sub(m.since[l]) >= m.t.Dwell
}

func (m *LevelMachine) reason(level, entry Level, timeLag time.Duration, offsetLag int64, now time.Time) string {
	var parts []string
	switch {
	case level == LevelOK:
		// Name the marks of the lowest level that is on.
		low := LevelElevated
		for !m.t.mark(low).on() {
			low++
		}
		mk := m.t.mark(low)
		if mk.TimeLag > 0 {
			parts = append(parts, fmt.Sprintf("time lag %v < %v %v", fmtLag(timeLag), low, fmtLag(mk.TimeLag)))
		}
		if mk.OffsetLag > 0 {
			parts = append(parts, fmt.Sprintf("offset lag %d < %v %d", offsetLag, low, mk.OffsetLag))
		}
	case level == entry:
		mk := m.t.mark(level)
		if mk.TimeLag > 0 && timeLag >= mk.TimeLag {
			parts = append(parts, fmt.Sprintf("time lag %v >= %v %v", fmtLag(timeLag), level, fmtLag(mk.TimeLag)))
		}
		if mk.OffsetLag > 0 && offsetLag >= mk.OffsetLag {
			parts = append(parts, fmt.Sprintf("offset lag %d >= %v %d", offsetLag, level, mk.OffsetLag))
		}
	case !m.in[level]:
		// Held: some observation is above an exit mark.
		mk := m.t.mark(level)
		et, eo := m.t.exitMarks(level)
		if mk.TimeLag > 0 && timeLag > et {
			parts = append(parts, fmt.Sprintf("time lag %v > exit %v", fmtLag(timeLag), fmtLag(et)))
		}
		if mk.OffsetLag > 0 && offsetLag > eo {
			parts = append(parts, fmt.Sprintf("offset lag %d > exit %d", offsetLag, eo))
		}
		return fmt.Sprintf("%v held: %s", level, strings.Join(parts, ", "))
	default:
		// Held: at or below the exit marks, the dwell not yet over.
		return fmt.Sprintf("%v held: at or below exit marks for %v of %v dwell", level, fmtLag(max(now.Sub(m.since[level]), 0)), fmtLag(m.t.Dwell))
	}
	return strings.Join(parts, ", ")
}

// fmtLag formats a duration for a reason: to the millisecond, whole
// seconds without a fraction ("45s", "2m0s", "1.234s").
func fmtLag(d time.Duration) string { return d.Round(time.Millisecond).String() }
