package producer

import (
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// logEvery is how often one kind of line is logged at most: the first
// decision of each topic, class, outcome and mode is logged, then one
// per logEvery with the number of those not logged since.
const logEvery = 30 * time.Second

// logSampler lets one line per key through per logEvery, counting the
// lines it held back.
type logSampler struct {
	mu      sync.Mutex
	entries map[string]*logEntry
}

type logEntry struct {
	last       time.Time
	suppressed uint64
}

// allow reports whether a line of key may be logged at now, and how many
// were held back since the last one.
func (s *logSampler) allow(key string, now time.Time) (bool, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil {
		if s.entries == nil || len(s.entries) > 4096 { // many distinct keys: forget, rather than grow
			s.entries = make(map[string]*logEntry)
		}
		s.entries[key] = &logEntry{last: now}
		return true, 0
	}
	if now.Sub(e.last) < logEvery {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

// logf logs through the client's logger, if it has one and its level
// lets level through. keyvals alternate keys and values, as for
// kgo.Logger.
func (p *Producer) logf(level kgo.LogLevel, msg string, keyvals ...any) {
	if p.logsAt(level) {
		p.log.Log(level, msg, keyvals...)
	}
}

// logsAt reports whether a line at level would be logged: callers on the
// record path check it before they build the line's key and values.
func (p *Producer) logsAt(level kgo.LogLevel) bool {
	return p.log != nil && p.log.Level() >= level
}

// logSampled logs at most one line of key per logEvery, adding the
// number held back since ("suppressed").
func (p *Producer) logSampled(level kgo.LogLevel, key, msg string, keyvals ...any) {
	if !p.logsAt(level) {
		return
	}
	ok, n := p.logs.allow(key, time.Now())
	if !ok {
		return
	}
	p.log.Log(level, msg, append(keyvals, "suppressed", n)...)
}

// emit reports a decision to the hooks and, sampled, to the log.
func (p *Producer) emit(d Decision) {
	for _, h := range p.hooks.decision {
		h.OnDecision(d)
	}
	if !p.logsAt(kgo.LogLevelInfo) {
		return
	}
	what := "floodgate producer: record " + d.Outcome.String()
	if d.Shadow {
		what = "floodgate producer: shadow mode: record would be " + d.Outcome.String()
	}
	p.logSampled(kgo.LogLevelInfo, fmt.Sprintf("decision|%s|%s|%s|%v", d.Topic, d.Class, d.Outcome, d.Shadow), what,
		"topic", d.Topic, "class", d.Class, "level", d.Level, "action", d.Action, "reason", d.Reason,
		"group", d.Group, "instance", d.Instance, "seq", d.Seq, "retry_after", d.RetryAfter, "waited", d.Waited)
}

// levelChanged reports a level change, if any.
func (p *Producer) levelChanged(c *LevelChange) {
	if c == nil {
		return
	}
	for _, h := range p.hooks.level {
		h.OnLevelChange(*c)
	}
	if !p.logsAt(kgo.LogLevelInfo) {
		return
	}
	p.logSampled(kgo.LogLevelInfo, fmt.Sprintf("level|%s|%s", c.Topic, c.To), "floodgate producer: pressure level changed", "topic", c.Topic, "from", c.From, "to", c.To,
		"reason", c.Pressure.Reason, "group", c.Pressure.Group, "instance", c.Pressure.Instance, "seq", c.Pressure.Seq,
		"suggested_rate", c.Pressure.Rate)
}

// onReject is the reader's ReadOnReject: a control-topic record rejected.
func (p *Producer) onReject(r lagmonitor.Rejection) {
	p.cnt.rejected.Add(1)
	for _, h := range p.hooks.rejected {
		h.OnSignalRejected(r)
	}
	p.logSampled(kgo.LogLevelWarn, "rejected|"+string(r.Reason), "floodgate producer: control-topic record rejected; it does not count",
		"control_topic", p.cfg.control, "partition", r.Partition, "offset", r.Offset, "reason", r.Reason, "err", r.Err)
}

// controlError reports that the pressure cannot be known or measured as
// it should; the producer goes on (fail-open).
func (p *Producer) controlError(err error) {
	p.cnt.controlErrors.Add(1)
	p.mu.Lock()
	p.lastControlErr, p.lastControlErrAt = err, time.Now()
	p.mu.Unlock()
	for _, h := range p.hooks.ctlErr {
		h.OnControlError(err)
	}
	p.logSampled(kgo.LogLevelWarn, "control|"+errKind(err), "floodgate producer: "+err.Error())
}

// errKind returns a short key for err, so that one kind of error is
// sampled apart from another.
func errKind(err error) string {
	s := err.Error()
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}
