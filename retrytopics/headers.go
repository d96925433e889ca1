package retrytopics

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/priority"
)

// Header keys floodgate writes on retried and quarantined records. Values
// are UTF-8 text (decimal integers, Unix milliseconds) so that any Kafka
// tool can read them.
const (
	HeaderPrefix            = "floodgate-"
	HeaderOriginalTopic     = "floodgate-original-topic"
	HeaderOriginalPartition = "floodgate-original-partition"
	HeaderOriginalOffset    = "floodgate-original-offset"
	HeaderOriginalTimestamp = "floodgate-original-timestamp" // Unix ms
	HeaderAttempt           = "floodgate-attempt"            // failed attempts so far, >= 1
	HeaderFirstFailure      = "floodgate-first-failure"      // Unix ms
	HeaderError             = "floodgate-error"              // latest error text, bounded
	HeaderDue               = "floodgate-due"                // Unix ms, on retry tiers
	HeaderReason            = "floodgate-reason"             // on quarantine
	HeaderReplayCount       = "floodgate-replay-count"       // times replayed from quarantine
	HeaderTrimmed           = "floodgate-trimmed"            // on quarantine: what was dropped to fit ("value", "value,key,headers")
	HeaderOriginalSize      = "floodgate-original-size"      // on a trimmed record: key+value+headers bytes of the original
)

// otherHeaders are the project's own floodgate- headers that are not retry
// metadata: they belong to the record, travel with it through retries and
// quarantine, and never make it undecodable.
var otherHeaders = map[string]bool{
	priority.Header: true, // the record's priority class
}

// DeferredHeaderPrefix begins the headers of the producer's deferred
// lane (package producer/deferred): a record deferred under pressure
// carries them on its deferred topic, and the relay strips them when it
// produces the record to its destination. They are not retry metadata:
// a deferred topic's consumer that retries or quarantines its records
// keeps them as the record's own.
const DeferredHeaderPrefix = "floodgate-deferred-"

// IsMetaHeader reports whether key is one of the headers [Meta] is
// encoded in: a floodgate- header other than the project's headers that
// belong to the record itself (its priority class, [priority.Header], and
// the deferred lane's, [DeferredHeaderPrefix]).
func IsMetaHeader(key string) bool {
	return strings.HasPrefix(key, HeaderPrefix) && !otherHeaders[key] && !strings.HasPrefix(key, DeferredHeaderPrefix)
}

// MaxErrorLen bounds the error text kept in [HeaderError], in bytes.
const MaxErrorLen = 1024

// MaxAttempt is the largest attempt count [Decode] accepts in
// [HeaderAttempt]; the counter saturates there instead of growing past
// what its decoder reads.
const MaxAttempt = 1<<31 - 1

// Reason says why a record was quarantined.
type Reason string

// The quarantine reasons.
const (
	ReasonHandlerError      Reason = "handler-error"      // failed after the last tier, or a tier refused it
	ReasonPermanent         Reason = "permanent"          // the handler marked the error permanent
	ReasonAttemptsExhausted Reason = "attempts-exhausted" // in-place retries spent and no tiers configured
	ReasonBudgetExhausted   Reason = "budget-exhausted"   // the retry budget was spent
	ReasonUndecodable       Reason = "undecodable"        // malformed floodgate headers
)

func (r Reason) valid() bool {
	switch r {
	case ReasonHandlerError, ReasonPermanent, ReasonAttemptsExhausted, ReasonBudgetExhausted, ReasonUndecodable:
		return true
	}
	return false
}

// Meta is the floodgate metadata of a retried or quarantined record.
type Meta struct {
	OriginalTopic     string
	OriginalPartition int32
	OriginalOffset    int64
	OriginalTimestamp time.Time
	Attempt           int       // failed attempts so far, at most MaxAttempt
	FirstFailure      time.Time // when the first attempt failed
	Error             string    // the latest error, at most MaxErrorLen bytes
	Due               time.Time // zero unless on a retry tier
	Reason            Reason    // empty unless quarantined
	ReplayCount       int       // times replayed from quarantine
	Trimmed           string    // on a trimmed quarantine record: what was dropped, "value[,key][,headers]"
	OriginalSize      int64     // with Trimmed: key+value+headers bytes of the record before trimming
}

// ErrMalformed is wrapped by [Decode] for floodgate headers that cannot be
// decoded.
var ErrMalformed = errors.New("retrytopics: malformed floodgate header")

// HasMeta reports whether r carries any floodgate header.
func HasMeta(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if IsMetaHeader(h.Key) {
			return true
		}
	}
	return false
}

// Decode reads the floodgate headers of r ([IsMetaHeader]; the project's
// headers that belong to the record, such as its priority class, are not
// read and travel with it). ok is false when r has none (a first attempt).
// A header that is repeated, unknown under the floodgate- prefix, or whose
// value does not parse, or [HeaderTrimmed] without [HeaderOriginalSize] or
// the other way round, yields an error wrapping [ErrMalformed]; Decode
// never panics, whatever the input.
func Decode(r *kgo.Record) (m Meta, ok bool, err error) {
	seen := make(map[string]bool, 10)
	for _, h := range r.Headers {
		if !IsMetaHeader(h.Key) {
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
		var perr error
		switch h.Key {
		case HeaderOriginalTopic:
			if v == "" {
				perr = errors.New("empty")
			}
			m.OriginalTopic = v
		case HeaderOriginalPartition:
			var p int64
			p, perr = parseInt(v, 0, 1<<31-1)
			m.OriginalPartition = int32(p)
		case HeaderOriginalOffset:
			m.OriginalOffset, perr = parseInt(v, 0, 1<<63-1)
		case HeaderOriginalTimestamp:
			m.OriginalTimestamp, perr = parseMillis(v)
		case HeaderAttempt:
			var a int64
			a, perr = parseInt(v, 1, MaxAttempt)
			m.Attempt = int(a)
		case HeaderFirstFailure:
			m.FirstFailure, perr = parseMillis(v)
		case HeaderError:
			m.Error = truncate(v, MaxErrorLen)
		case HeaderDue:
			m.Due, perr = parseMillis(v)
		case HeaderReason:
			m.Reason = Reason(v)
			if !m.Reason.valid() {
				perr = errors.New("unknown reason")
			}
		case HeaderReplayCount:
			var c int64
			c, perr = parseInt(v, 0, 1<<31-1)
			m.ReplayCount = int(c)
		case HeaderTrimmed:
			perr = checkTrimmed(v)
			m.Trimmed = v
		case HeaderOriginalSize:
			m.OriginalSize, perr = parseInt(v, 0, 1<<63-1)
		default:
			perr = errors.New("unknown floodgate header")
		}
		if perr != nil {
			return m, true, fmt.Errorf("%w: %s=%q: %v", ErrMalformed, h.Key, truncate(v, 64), perr)
		}
	}
	if seen[HeaderTrimmed] != seen[HeaderOriginalSize] {
		return m, true, fmt.Errorf("%w: %s and %s go together", ErrMalformed, HeaderTrimmed, HeaderOriginalSize)
	}
	if ok && !(len(seen) == 1 && seen[HeaderReplayCount]) {
		// A replayed record carries only its replay count; anything else
		// must name its origin.
		for _, k := range []string{HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderAttempt} {
			if !seen[k] {
				return m, true, fmt.Errorf("%w: %s missing", ErrMalformed, k)
			}
		}
	}
	return m, ok, nil
}

// The parts of a record a trimmed copy may drop, as [HeaderTrimmed] names
// them.
const (
	trimmedValue   = "value"
	trimmedKey     = "key"
	trimmedHeaders = "headers"
)

// checkTrimmed accepts a non-empty comma-separated list of distinct parts.
func checkTrimmed(v string) error {
	parts := []string{trimmedValue, trimmedKey, trimmedHeaders}
	var seen [3]bool
	for part := range strings.SplitSeq(v, ",") {
		i := slices.Index(parts, part)
		if i < 0 {
			return fmt.Errorf("names %q, not value, key or headers", truncate(part, 16))
		}
		if seen[i] {
			return fmt.Errorf("names %s twice", part)
		}
		seen[i] = true
	}
	return nil
}

func parseInt(v string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errors.New("not a decimal integer")
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("out of range [%d, %d]", lo, hi)
	}
	return n, nil
}

// maxMillis is the largest Unix-millisecond time the headers carry: far
// beyond any real date, and exact in float64.
const maxMillis = 1 << 53

func parseMillis(v string) (time.Time, error) {
	n, err := parseInt(v, 0, maxMillis)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(n), nil
}

// Encode returns headers with every floodgate header replaced by m's: the
// record's own headers are kept in order, floodgate headers never
// accumulate across attempts. Zero times, an empty error or reason and a
// zero replay count are left out; the original size is written with
// Trimmed, and only then.
func (m Meta) Encode(headers []kgo.RecordHeader) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(headers)+10)
	for _, h := range headers {
		if !IsMetaHeader(h.Key) {
			out = append(out, h)
		}
	}
	add := func(k, v string) { out = append(out, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderOriginalTopic, m.OriginalTopic)
	add(HeaderOriginalPartition, strconv.FormatInt(int64(m.OriginalPartition), 10))
	add(HeaderOriginalOffset, strconv.FormatInt(m.OriginalOffset, 10))
	if ms := m.OriginalTimestamp.UnixMilli(); !m.OriginalTimestamp.IsZero() && ms >= 0 && ms <= maxMillis {
		// A timestamp Decode would reject (before 1970, or absurdly far
		// ahead) is left out rather than written undecodable.
		add(HeaderOriginalTimestamp, strconv.FormatInt(ms, 10))
	}
	add(HeaderAttempt, strconv.Itoa(min(max(m.Attempt, 1), MaxAttempt)))
	if !m.FirstFailure.IsZero() {
		add(HeaderFirstFailure, strconv.FormatInt(m.FirstFailure.UnixMilli(), 10))
	}
	if m.Error != "" {
		add(HeaderError, truncate(m.Error, MaxErrorLen))
	}
	if !m.Due.IsZero() {
		add(HeaderDue, strconv.FormatInt(m.Due.UnixMilli(), 10))
	}
	if m.Reason != "" {
		add(HeaderReason, string(m.Reason))
	}
	if m.ReplayCount > 0 {
		add(HeaderReplayCount, strconv.Itoa(m.ReplayCount))
	}
	if m.Trimmed != "" {
		add(HeaderTrimmed, m.Trimmed)
		add(HeaderOriginalSize, strconv.FormatInt(max(m.OriginalSize, 0), 10))
	}
	return out
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence,
// and makes it valid UTF-8.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
