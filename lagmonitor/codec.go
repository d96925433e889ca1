package lagmonitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/floodgate-kafka/floodgate/internal/kname"
)

// ErrInvalidSignal is wrapped by the errors of [Encode] (and so of
// [Publisher.Publish]) for a signal that [Decode] would reject: the
// encoder never writes what its decoder refuses.
var ErrInvalidSignal = errors.New("lagmonitor: invalid signal")

// Bounds of a signal on the wire. [Encode] refuses, and [Decode] rejects,
// anything outside them (a reason too long is cut, not refused).
const (
	// MaxValueBytes bounds a signal's JSON value. A signal is a few
	// hundred bytes; the bound keeps a hostile record cheap to reject.
	MaxValueBytes = 16 << 10
	// MaxTTL bounds a signal's time-to-live: a publisher that dies
	// without a tombstone holds its pressure at most this long.
	MaxTTL = time.Hour
	// MaxSafeInteger bounds every integer field (2⁵³−1), so that a
	// reader in a language whose numbers are doubles (JavaScript) reads
	// each one exactly.
	MaxSafeInteger = 1<<53 - 1

	maxInstanceLen = 255
	maxGroupLen    = 1024
	maxReasonLen   = 1024
	maxPaused      = 32 // pause reasons in one signal
	maxPausedName  = 64

	// issued_at_ms must have 13 digits: from 2001-09-09 to 2286-11-20.
	// A time written in seconds or microseconds by mistake is rejected.
	minIssuedAtMs = 1_000_000_000_000
	maxIssuedAtMs = 10_000_000_000_000 - 1
)

// wireSignal is a signal as JSON, in the order kcat shows its fields.
type wireSignal struct {
	Version       int            `json:"version"`
	Group         string         `json:"group"`
	Topic         string         `json:"topic"`
	Instance      string         `json:"instance"`
	Seq           uint64         `json:"seq"`
	Level         string         `json:"level"`
	OffsetLag     int64          `json:"offset_lag"`
	TimeLagMs     int64          `json:"time_lag_ms"`
	DrainRate     float64        `json:"drain_rate"`
	SuggestedRate float64        `json:"suggested_rate"`
	Paused        map[string]int `json:"paused,omitempty"`
	Reason        string         `json:"reason,omitempty"`
	IssuedAtMs    int64          `json:"issued_at_ms"`
	TTLMs         int64          `json:"ttl_ms"`
}

// Encode returns the control-topic key and value of s: the key is
// [Key](s.Topic, s.Instance, s.Group), the value compact JSON as the
// package doc's "Control topic" section lays out. Times are cut to whole
// milliseconds; a Reason longer than 1024 bytes is cut (at a character
// boundary; bytes that are not UTF-8 become U+FFFD). s.Version must be 0 or [SignalVersion]; SignalVersion is
// written. A signal that [Decode] would reject is refused with an error
// wrapping [ErrInvalidSignal].
func Encode(s *Signal) (key, value []byte, err error) {
	if s.Version != 0 && s.Version != SignalVersion {
		return nil, nil, fmt.Errorf("%w: version %d, this package writes %d", ErrInvalidSignal, s.Version, SignalVersion)
	}
	w := wireSignal{
		Version:       SignalVersion,
		Group:         s.Group,
		Topic:         s.Topic,
		Instance:      s.Instance,
		Seq:           s.Seq,
		Level:         s.Level.String(),
		OffsetLag:     s.OffsetLag,
		TimeLagMs:     s.TimeLag.Milliseconds(),
		DrainRate:     s.DrainRate,
		SuggestedRate: s.SuggestedRate,
		Paused:        s.Paused,
		Reason:        cutUTF8(strings.ToValidUTF8(s.Reason, "\uFFFD"), maxReasonLen),
		IssuedAtMs:    s.IssuedAt.UnixMilli(),
		TTLMs:         s.TTL.Milliseconds(),
	}
	if len(w.Paused) == 0 {
		w.Paused = nil
	}
	if _, err := ParseLevel(w.Level); err != nil {
		return nil, nil, fmt.Errorf("%w: level: %v", ErrInvalidSignal, s.Level)
	}
	if err := w.check(); err != nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrInvalidSignal, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<" stays "<" in kcat's output
	if err := enc.Encode(&w); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidSignal, err)
	}
	value = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(value) > MaxValueBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes of JSON, at most %d", ErrInvalidSignal, len(value), MaxValueBytes)
	}
	return Key(s.Topic, s.Instance, s.Group), value, nil
}

// Decode decodes a control-topic record's key and value. A nil value is a
// tombstone: the instance stopped publishing for that topic and group;
// Decode then returns a Signal holding only Topic, Instance and Group (from
// the key) and tombstone true. An empty but non-nil value is not a
// tombstone and is rejected.
//
// Decode is strict about what it knows and lenient about what it does not:
// the value must be one JSON object of valid UTF-8, at most
// [MaxValueBytes], with version equal to [SignalVersion], every required
// field present once with the right JSON type, integers written as plain
// integers up to [MaxSafeInteger], no negative lag, rate or count, a
// time-to-live from 1 ms to [MaxTTL], issued_at_ms of 13 digits (Unix
// milliseconds), a legal Kafka topic name, an instance id without '/', and
// topic, instance and group equal to the key's. A field name it does not
// know is ignored, whatever its value, so that a later writer may add
// optional fields without a new version (fields that older readers must
// not ignore come with a new version, which those readers reject:
// fail-open). A field named twice is rejected, since readers in other
// languages would disagree on which one counts. Errors wrap
// [ErrMalformed]. Decode never panics, whatever its input.
func Decode(key, value []byte) (s Signal, tombstone bool, err error) {
	if !utf8.Valid(key) {
		return Signal{}, false, fmt.Errorf("%w: key is not valid UTF-8", ErrMalformed)
	}
	topic, instance, group, err := ParseKey(key)
	if err != nil {
		return Signal{}, false, err
	}
	if err := checkNames(topic, instance, group); err != nil {
		return Signal{}, false, fmt.Errorf("%w: key: %s", ErrMalformed, err)
	}
	if value == nil {
		return Signal{Topic: topic, Instance: instance, Group: group}, true, nil
	}
	w, err := parseValue(value)
	if err != nil {
		return Signal{}, false, fmt.Errorf("%w: %s", ErrMalformed, err)
	}
	if w.Topic != topic || w.Instance != instance || w.Group != group {
		return Signal{}, false, fmt.Errorf("%w: value names %q, key %q", ErrMalformed,
			truncate(string(Key(w.Topic, w.Instance, w.Group)), 128), truncate(string(key), 128))
	}
	lvl, _ := ParseLevel(w.Level) // checked by parseValue
	return Signal{
		Version:       w.Version,
		Group:         w.Group,
		Topic:         w.Topic,
		Instance:      w.Instance,
		Seq:           w.Seq,
		Level:         lvl,
		OffsetLag:     w.OffsetLag,
		TimeLag:       time.Duration(w.TimeLagMs) * time.Millisecond,
		DrainRate:     w.DrainRate,
		SuggestedRate: w.SuggestedRate,
		Paused:        w.Paused,
		Reason:        w.Reason,
		IssuedAt:      time.UnixMilli(w.IssuedAtMs).UTC(),
		TTL:           time.Duration(w.TTLMs) * time.Millisecond,
	}, false, nil
}

// The fields of a value, in wire order; presence is tracked by index.
var wireFields = [...]string{"version", "group", "topic", "instance", "seq", "level",
	"offset_lag", "time_lag_ms", "drain_rate", "suggested_rate", "paused", "reason", "issued_at_ms", "ttl_ms"}

const (
	fVersion = iota
	fGroup
	fTopic
	fInstance
	fSeq
	fLevel
	fOffsetLag
	fTimeLag
	fDrainRate
	fSuggestedRate
	fPaused
	fReason
	fIssuedAt
	fTTL
)

// optional fields; every other one is required.
func optionalField(i int) bool { return i == fPaused || i == fReason }

// parseValue walks the value's top-level object once, keeping the raw
// JSON of each known field, then converts them: the version first, so
// that a value of another version is reported as such whatever its
// fields look like.
func parseValue(value []byte) (wireSignal, error) {
	var w wireSignal
	if len(value) > MaxValueBytes {
		return w, fmt.Errorf("value of %d bytes, at most %d", len(value), MaxValueBytes)
	}
	if !utf8.Valid(value) {
		return w, errors.New("value is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return w, errors.New("value is not a JSON object")
	}
	var raw [len(wireFields)]json.RawMessage
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return w, fmt.Errorf("value is not JSON: %v", err)
		}
		name, _ := t.(string) // an object's keys are strings
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return w, fmt.Errorf("value is not JSON: %v", err)
		}
		i := fieldIndex(name)
		if i < 0 {
			continue // unknown: ignored, see Decode
		}
		if raw[i] != nil {
			return w, fmt.Errorf("field %s appears twice", name)
		}
		raw[i] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return w, fmt.Errorf("value is not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return w, errors.New("data after the JSON object")
	}
	if raw[fVersion] == nil {
		return w, errors.New("field version missing")
	}
	v, err := rawInt(raw[fVersion])
	if err != nil {
		return w, fmt.Errorf("field version: %s", err)
	}
	if v != SignalVersion {
		return w, fmt.Errorf("version %d, this reader reads %d", v, SignalVersion)
	}
	w.Version = int(v)
	for i, r := range raw {
		if r == nil && !optionalField(i) {
			return w, fmt.Errorf("field %s missing", wireFields[i])
		}
	}
	strs := []struct {
		i   int
		dst *string
	}{{fGroup, &w.Group}, {fTopic, &w.Topic}, {fInstance, &w.Instance}, {fLevel, &w.Level}, {fReason, &w.Reason}}
	for _, f := range strs {
		if raw[f.i] == nil {
			continue
		}
		if err := rawString(raw[f.i], f.dst); err != nil {
			return w, fmt.Errorf("field %s: %s", wireFields[f.i], err)
		}
	}
	ints := []struct {
		i   int
		dst *int64
	}{{fOffsetLag, &w.OffsetLag}, {fTimeLag, &w.TimeLagMs}, {fIssuedAt, &w.IssuedAtMs}, {fTTL, &w.TTLMs}}
	for _, f := range ints {
		n, err := rawInt(raw[f.i])
		if err != nil {
			return w, fmt.Errorf("field %s: %s", wireFields[f.i], err)
		}
		*f.dst = n
	}
	seq, err := rawInt(raw[fSeq])
	if err != nil {
		return w, fmt.Errorf("field seq: %s", err)
	}
	if seq < 0 {
		return w, fmt.Errorf("field seq: negative (%d)", seq)
	}
	w.Seq = uint64(seq)
	floats := []struct {
		i   int
		dst *float64
	}{{fDrainRate, &w.DrainRate}, {fSuggestedRate, &w.SuggestedRate}}
	for _, f := range floats {
		x, err := rawFloat(raw[f.i])
		if err != nil {
			return w, fmt.Errorf("field %s: %s", wireFields[f.i], err)
		}
		*f.dst = x
	}
	if raw[fPaused] != nil {
		m, err := rawPaused(raw[fPaused])
		if err != nil {
			return w, fmt.Errorf("field paused: %s", err)
		}
		w.Paused = m
	}
	if len(w.Reason) > maxReasonLen {
		return w, fmt.Errorf("field reason: %d bytes, at most %d", len(w.Reason), maxReasonLen)
	}
	if _, err := ParseLevel(w.Level); err != nil {
		return w, fmt.Errorf("field level: %q is not ok, elevated, high or critical", truncate(w.Level, 32))
	}
	return w, w.check()
}

func fieldIndex(name string) int {
	for i, f := range wireFields {
		if f == name {
			return i
		}
	}
	return -1
}

func rawString(r json.RawMessage, dst *string) error {
	if len(r) == 0 || r[0] != '"' {
		return errors.New("not a string")
	}
	return json.Unmarshal(r, dst)
}

// rawInt parses a JSON integer: digits with an optional minus sign, no
// fraction or exponent, within ±MaxSafeInteger.
func rawInt(r json.RawMessage) (int64, error) {
	s := string(r)
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, fmt.Errorf("%s is not an integer", truncate(s, 32))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > MaxSafeInteger || n < -MaxSafeInteger {
		return 0, fmt.Errorf("%s is beyond ±2^53-1", truncate(s, 32))
	}
	return n, nil
}

func rawFloat(r json.RawMessage) (float64, error) {
	if len(r) == 0 || (r[0] != '-' && (r[0] < '0' || r[0] > '9')) {
		return 0, fmt.Errorf("%s is not a number", truncate(string(r), 32))
	}
	x, err := strconv.ParseFloat(string(r), 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not a finite number", truncate(string(r), 32))
	}
	return x, nil
}

func rawPaused(r json.RawMessage) (map[string]int, error) {
	if len(r) == 0 || r[0] != '{' {
		return nil, errors.New("not an object")
	}
	dec := json.NewDecoder(bytes.NewReader(r))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	m := make(map[string]int)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("reason %q appears twice", truncate(name, 32))
		}
		if len(m) == maxPaused {
			return nil, fmt.Errorf("more than %d reasons", maxPaused)
		}
		n, err := rawInt(v)
		if err != nil {
			return nil, fmt.Errorf("reason %q: %s", truncate(name, 32), err)
		}
		m[name] = int(n)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// check applies the bounds that Encode and Decode share.
func (w *wireSignal) check() error {
	if err := checkNames(w.Topic, w.Instance, w.Group); err != nil {
		return err
	}
	if w.Seq > MaxSafeInteger {
		return fmt.Errorf("seq %d beyond 2^53-1", w.Seq)
	}
	if w.Seq == 0 {
		return errors.New("seq 0: sequences start at 1")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"offset_lag", w.OffsetLag}, {"time_lag_ms", w.TimeLagMs}} {
		if f.v < 0 || f.v > MaxSafeInteger {
			return fmt.Errorf("%s %d out of range [0, 2^53-1]", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"drain_rate", w.DrainRate}, {"suggested_rate", w.SuggestedRate}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || f.v < 0 {
			return fmt.Errorf("%s %v is not a finite number >= 0", f.name, f.v)
		}
	}
	if len(w.Paused) > maxPaused {
		return fmt.Errorf("paused: %d reasons, at most %d", len(w.Paused), maxPaused)
	}
	for name, n := range w.Paused {
		if !pausedName(name) {
			return fmt.Errorf("paused: reason %q is not 1 to %d of a-z 0-9 _ . + -", truncate(name, 32), maxPausedName)
		}
		if n < 0 || n > MaxSafeInteger {
			return fmt.Errorf("paused: reason %s counts %d", name, n)
		}
	}
	if w.IssuedAtMs < minIssuedAtMs || w.IssuedAtMs > maxIssuedAtMs {
		return fmt.Errorf("issued_at_ms %d is not Unix milliseconds between 2001 and 2286", w.IssuedAtMs)
	}
	if w.TTLMs < 1 || w.TTLMs > MaxTTL.Milliseconds() {
		return fmt.Errorf("ttl_ms %d out of range [1, %d]", w.TTLMs, MaxTTL.Milliseconds())
	}
	return nil
}

// checkNames checks a key's parts: a legal Kafka topic name, an instance
// id of printable characters without '/', a group of at most 1024 bytes.
func checkNames(topic, instance, group string) error {
	if !kname.Topic(topic) {
		return fmt.Errorf("topic %q is not a legal Kafka topic name", truncate(topic, 64))
	}
	if err := checkInstance(instance); err != nil {
		return err
	}
	if group == "" || len(group) > maxGroupLen {
		return fmt.Errorf("group of %d bytes, want 1 to %d", len(group), maxGroupLen)
	}
	if !utf8.ValidString(group) {
		return errors.New("group is not valid UTF-8")
	}
	return nil
}

func checkInstance(instance string) error {
	if instance == "" || len(instance) > maxInstanceLen {
		return fmt.Errorf("instance id of %d bytes, want 1 to %d", len(instance), maxInstanceLen)
	}
	if !utf8.ValidString(instance) {
		return errors.New("instance id is not valid UTF-8")
	}
	for _, c := range instance {
		if c == '/' || c < 0x20 || c == 0x7f {
			return fmt.Errorf("instance id %q holds '/' or a control character", truncate(instance, 64))
		}
	}
	return nil
}

func pausedName(name string) bool {
	if name == "" || len(name) > maxPausedName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '+' || c == '-') {
			return false
		}
	}
	return true
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
