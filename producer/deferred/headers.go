package deferred

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// The headers a deferred record carries on its deferred topic, next to
// the record's own. Values are UTF-8 text (decimal integers, Unix
// milliseconds, names) so that any Kafka tool shows them. The relay
// strips every header under [retrytopics.DeferredHeaderPrefix] when it
// produces the record to its destination.
const (
	HeaderTopic     = retrytopics.DeferredHeaderPrefix + "topic"     // the destination topic
	HeaderAt        = retrytopics.DeferredHeaderPrefix + "at"        // when it was deferred, Unix ms
	HeaderTimestamp = retrytopics.DeferredHeaderPrefix + "timestamp" // the record's own timestamp, Unix ms, if it had one
	HeaderClass     = retrytopics.DeferredHeaderPrefix + "class"     // its priority class
	HeaderLevel     = retrytopics.DeferredHeaderPrefix + "level"     // the topic's level that deferred it
	HeaderSignal    = retrytopics.DeferredHeaderPrefix + "signal"    // the deciding signal: group/instance/seq
	HeaderReason    = retrytopics.DeferredHeaderPrefix + "reason"    // the decision's reason, bounded (MaxReasonLen), made valid UTF-8
)

// MaxReasonLen bounds [HeaderReason], in bytes.
const MaxReasonLen = 512

// maxMillis bounds the Unix-millisecond times the headers carry, as
// retrytopics' headers do: far beyond any real date, and exact in float64.
// Decode takes 0 ≤ ms < maxMillis; encode writes no time outside.
const maxMillis = 1 << 53

// millis returns t in Unix ms, and whether a header may carry it.
func millis(t time.Time) (int64, bool) {
	ms := t.UnixMilli()
	return ms, !t.IsZero() && ms >= 0 && ms < maxMillis
}

// ErrMalformed is wrapped by [Decode]'s errors: a deferred header that
// is repeated or does not parse.
var ErrMalformed = errors.New("deferred: malformed deferred header")

// Meta is what a deferred record's headers say of its deferral.
type Meta struct {
	Topic string    // the destination
	At    time.Time // when it was deferred
	// Timestamp is the record's own timestamp when it was produced with
	// one (zero otherwise). The relay does not give it back: a relayed
	// record is stamped when the relay produces it, so that its
	// consumers' time lag measures their own queue, not the deferral.
	Timestamp       time.Time
	Class           priority.Class
	Level           lagmonitor.Level
	Group, Instance string
	Seq             uint64
	Reason          string
}

// metaOf returns the Meta of a record deferred now by d.
func metaOf(d producer.Decision, r *kgo.Record, now time.Time) Meta {
	return Meta{Topic: d.Topic, At: now, Timestamp: r.Timestamp, Class: d.Class, Level: d.Level,
		Group: d.Group, Instance: d.Instance, Seq: d.Seq, Reason: d.Reason}
}

// encode appends m's headers to hs, which must hold no deferred header.
func (m Meta) encode(hs []kgo.RecordHeader) []kgo.RecordHeader {
	add := func(k, v string) { hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderTopic, m.Topic)
	// A time Decode would reject (before 1970, or absurdly far ahead) is
	// left out rather than written undecodable.
	if ms, ok := millis(m.At); ok {
		add(HeaderAt, strconv.FormatInt(ms, 10))
	}
	if ms, ok := millis(m.Timestamp); ok {
		add(HeaderTimestamp, strconv.FormatInt(ms, 10))
	}
	if m.Class != "" {
		add(HeaderClass, string(m.Class))
	}
	add(HeaderLevel, m.Level.String())
	if m.Instance != "" {
		add(HeaderSignal, m.Group+"/"+m.Instance+"/"+strconv.FormatUint(m.Seq, 10))
	}
	if m.Reason != "" {
		add(HeaderReason, truncate(m.Reason, MaxReasonLen))
	}
	return hs
}

// truncate returns s as valid UTF-8 (each run of invalid bytes replaced
// by U+FFFD) cut to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, string(utf8.RuneError))
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Strip returns hs without the deferred headers, in a new slice (nil if
// none is left).
func Strip(hs []kgo.RecordHeader) []kgo.RecordHeader {
	return without(hs, isDeferredHeader)
}

// isDeferredHeader reports whether key is one of the deferred lane's
// headers.
func isDeferredHeader(key string) bool {
	return strings.HasPrefix(key, retrytopics.DeferredHeaderPrefix)
}

// without returns hs without the headers whose key drop reports, in a new
// slice (nil if none is left).
func without(hs []kgo.RecordHeader, drop func(key string) bool) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for _, h := range hs {
		if !drop(h.Key) {
			out = append(out, h)
		}
	}
	return out
}

// Decode reads the deferred headers of r. ok is false when r has none (a
// record written to a deferred topic by hand). A header that is
// repeated, or whose value does not parse, yields an error wrapping
// [ErrMalformed]; headers under the prefix that this version does not
// know are ignored. Decode never panics, whatever the input.
func Decode(r *kgo.Record) (m Meta, ok bool, err error) {
	seen := make(map[string]bool, 8)
	for _, h := range r.Headers {
		if !strings.HasPrefix(h.Key, retrytopics.DeferredHeaderPrefix) {
			continue
		}
		ok = true
		if seen[h.Key] {
			return m, true, fmt.Errorf("%w: %s repeated", ErrMalformed, h.Key)
		}
		seen[h.Key] = true
		v := string(h.Value)
		if !utf8.ValidString(v) {
			return m, true, fmt.Errorf("%w: %s is not UTF-8", ErrMalformed, h.Key)
		}
		switch h.Key {
		case HeaderTopic:
			m.Topic = v
		case HeaderAt, HeaderTimestamp:
			ms, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil || ms < 0 || ms >= maxMillis {
				return m, true, fmt.Errorf("%w: %s %q is not Unix milliseconds", ErrMalformed, h.Key, truncate(v, 64))
			}
			if h.Key == HeaderAt {
				m.At = time.UnixMilli(ms)
			} else {
				m.Timestamp = time.UnixMilli(ms)
			}
		case HeaderClass:
			m.Class = priority.Class(v)
		case HeaderLevel:
			l, perr := lagmonitor.ParseLevel(v)
			if perr != nil {
				return m, true, fmt.Errorf("%w: %s: %w", ErrMalformed, h.Key, perr)
			}
			m.Level = l
		case HeaderSignal:
			parts := strings.Split(v, "/")
			if len(parts) < 3 {
				return m, true, fmt.Errorf("%w: %s %q is not group/instance/seq", ErrMalformed, h.Key, truncate(v, 64))
			}
			seq, perr := strconv.ParseUint(parts[len(parts)-1], 10, 64)
			if perr != nil {
				return m, true, fmt.Errorf("%w: %s %q: bad sequence number", ErrMalformed, h.Key, truncate(v, 64))
			}
			// A group may hold a slash; an instance (lagmonitor's) does not.
			m.Group = strings.Join(parts[:len(parts)-2], "/")
			m.Instance, m.Seq = parts[len(parts)-2], seq
		case HeaderReason:
			m.Reason = v
		}
	}
	return m, ok, nil
}
