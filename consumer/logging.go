package consumer

import (
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// logf logs through the client's logger (kgo.WithLogger), if it has one and
// its level lets level through. keyvals alternate keys and values, as for
// kgo.Logger.
func (rt *Runtime) logf(level kgo.LogLevel, msg string, keyvals ...any) {
	if rt.log == nil || rt.log.Level() < level {
		return
	}
	rt.log.Log(level, msg, keyvals...)
}

// logLimiter lets one message per key through per interval, so that an
// error repeated by every poll is logged, not flooded.
type logLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const logEvery = 30 * time.Second

func (l *logLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < logEvery {
		return false
	}
	if l.last == nil {
		l.last = make(map[string]time.Time)
	}
	if len(l.last) > 4096 { // many distinct errors: forget, rather than grow
		clear(l.last)
	}
	l.last[key] = now
	return true
}
