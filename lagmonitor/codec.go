package lagmonitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
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
// The optional fields added within version 1 are omitted when zero, so
// that a signal without them is written byte for byte as before.
type wireSignal struct {
	Version         int            `json:"version"`
	Group           string         `json:"group"`
	Topic           string         `json:"topic"`
	Instance        string         `json:"instance"`
	Seq             uint64         `json:"seq"`
	Level           string         `json:"level"`
	OffsetLag       int64          `json:"offset_lag"`
	TimeLagMs       int64          `json:"time_lag_ms"`
	DrainRate       float64        `json:"drain_rate"`
	SuggestedRate   float64        `json:"suggested_rate"`
	Capacity        float64        `json:"capacity,omitempty"`
	Partitions      int64          `json:"partitions,omitempty"`
	TopicPartitions int64          `json:"topic_partitions,omitempty"`
	Paused          map[string]int `json:"paused,omitempty"`
	Hot             []wireHot      `json:"hot,omitempty"`
	RestLevel       string         `json:"rest_level,omitempty"`
	UnstableOffsets int64          `json:"unstable_offsets,omitempty"`
	LSOStallMs      int64          `json:"lso_stall_ms,omitempty"`
	Reason          string         `json:"reason,omitempty"`
	IssuedAtMs      int64          `json:"issued_at_ms"`
	TTLMs           int64          `json:"ttl_ms"`
}

// wireHot is a hot partition as JSON.
type wireHot struct {
	Partition     int64   `json:"partition"`
	Level         string  `json:"level"`
	OffsetLag     int64   `json:"offset_lag"`
	TimeLagMs     int64   `json:"time_lag_ms"`
	DrainRate     float64 `json:"drain_rate"`
	SuggestedRate float64 `json:"suggested_rate"`
	Capacity      float64 `json:"capacity,omitempty"`
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
	w := toWire(s)
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
	return decode(key, value, len(wireFields))
}

// decode decodes with the first known fields of wireFields (all of them
// but for tests, which read as a reader of an older release would).
func decode(key, value []byte, known int) (s Signal, tombstone bool, err error) {
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
	w, err := parseValue(value, wireFields[:known])
	if err != nil {
		return Signal{}, false, fmt.Errorf("%w: %s", ErrMalformed, err)
	}
	if w.Topic != topic || w.Instance != instance || w.Group != group {
		return Signal{}, false, fmt.Errorf("%w: value names %q, key %q", ErrMalformed,
			truncate(string(Key(w.Topic, w.Instance, w.Group)), 128), truncate(string(key), 128))
	}
	return fromWire(&w), false, nil
}

// toWire converts s as Encode writes it.
func toWire(s *Signal) wireSignal {
	w := wireSignal{
		Version:         SignalVersion,
		Group:           s.Group,
		Topic:           s.Topic,
		Instance:        s.Instance,
		Seq:             s.Seq,
		Level:           s.Level.String(),
		OffsetLag:       s.OffsetLag,
		TimeLagMs:       s.TimeLag.Milliseconds(),
		DrainRate:       s.DrainRate,
		SuggestedRate:   s.SuggestedRate,
		Capacity:        s.Capacity,
		Partitions:      int64(s.Partitions),
		TopicPartitions: int64(s.TopicPartitions),
		Paused:          s.Paused,
		UnstableOffsets: s.UnstableOffsets,
		LSOStallMs:      s.LSOStall.Milliseconds(),
		Reason:          cutUTF8(strings.ToValidUTF8(s.Reason, "\uFFFD"), maxReasonLen),
		IssuedAtMs:      s.IssuedAt.UnixMilli(),
		TTLMs:           s.TTL.Milliseconds(),
	}
	if len(w.Paused) == 0 {
		w.Paused = nil
	}
	if len(s.Hot) > 0 {
		w.RestLevel = s.RestLevel.String()
		w.Hot = make([]wireHot, len(s.Hot))
		for i, h := range s.Hot {
			w.Hot[i] = wireHot{Partition: int64(h.Partition), Level: h.Level.String(), OffsetLag: h.OffsetLag,
				TimeLagMs: h.TimeLag.Milliseconds(), DrainRate: h.DrainRate, SuggestedRate: h.SuggestedRate, Capacity: h.Capacity}
		}
	}
	return w
}

// fromWire converts a value parseValue checked.
func fromWire(w *wireSignal) Signal {
	s := Signal{
		Version:         w.Version,
		Group:           w.Group,
		Topic:           w.Topic,
		Instance:        w.Instance,
		Seq:             w.Seq,
		Level:           mustLevel(w.Level),
		OffsetLag:       w.OffsetLag,
		TimeLag:         time.Duration(w.TimeLagMs) * time.Millisecond,
		DrainRate:       w.DrainRate,
		SuggestedRate:   w.SuggestedRate,
		Capacity:        w.Capacity,
		Partitions:      int(w.Partitions),
		TopicPartitions: int(w.TopicPartitions),
		Paused:          w.Paused,
		UnstableOffsets: w.UnstableOffsets,
		LSOStall:        time.Duration(w.LSOStallMs) * time.Millisecond,
		Reason:          w.Reason,
		IssuedAt:        time.UnixMilli(w.IssuedAtMs).UTC(),
		TTL:             time.Duration(w.TTLMs) * time.Millisecond,
	}
	if len(w.Hot) > 0 {
		s.RestLevel = mustLevel(w.RestLevel)
		s.Hot = make([]HotPartition, len(w.Hot))
		for i, h := range w.Hot {
			s.Hot[i] = HotPartition{Partition: int32(h.Partition), Level: mustLevel(h.Level), OffsetLag: h.OffsetLag,
				TimeLag: time.Duration(h.TimeLagMs) * time.Millisecond, DrainRate: h.DrainRate, SuggestedRate: h.SuggestedRate, Capacity: h.Capacity}
		}
	}
	return s
}

// mustLevel parses a level the checks already accepted.
func mustLevel(name string) Level {
	l, _ := ParseLevel(name)
	return l
}

// wireField is one field of a value: its name, whether it is required,
// and how its raw JSON is stored into a wireSignal.
type wireField struct {
	name     string
	required bool
	set      func(json.RawMessage, *wireSignal) error
}

// wireFields are the fields of a value, in wire order. The version is
// read before the others. The first legacyFields are those of the first
// release; the optional ones after them were added within version 1.
var wireFields = [...]wireField{
	{"version", true, func(r json.RawMessage, w *wireSignal) error { return setInt(r, &w.Version) }},
	{"group", true, func(r json.RawMessage, w *wireSignal) error { return rawString(r, &w.Group) }},
	{"topic", true, func(r json.RawMessage, w *wireSignal) error { return rawString(r, &w.Topic) }},
	{"instance", true, func(r json.RawMessage, w *wireSignal) error { return rawString(r, &w.Instance) }},
	{"seq", true, setSeq},
	{"level", true, func(r json.RawMessage, w *wireSignal) error { return rawLevel(r, &w.Level) }},
	{"offset_lag", true, func(r json.RawMessage, w *wireSignal) error { return setInt(r, &w.OffsetLag) }},
	{"time_lag_ms", true, func(r json.RawMessage, w *wireSignal) error { return setInt(r, &w.TimeLagMs) }},
	{"drain_rate", true, func(r json.RawMessage, w *wireSignal) error { return setFloat(r, &w.DrainRate) }},
	{"suggested_rate", true, func(r json.RawMessage, w *wireSignal) error { return setFloat(r, &w.SuggestedRate) }},
	{"paused", false, func(r json.RawMessage, w *wireSignal) (err error) { w.Paused, err = rawPaused(r); return err }},
	{"reason", false, func(r json.RawMessage, w *wireSignal) error { return rawString(r, &w.Reason) }},
	{"issued_at_ms", true, func(r json.RawMessage, w *wireSignal) error { return setInt(r, &w.IssuedAtMs) }},
	{"ttl_ms", true, func(r json.RawMessage, w *wireSignal) error { return setInt(r, &w.TTLMs) }},
	// Added within version 1: optional, ignored by older readers.
	{"capacity", false, func(r json.RawMessage, w *wireSignal) error { return setFloat(r, &w.Capacity) }},
	{"partitions", false, func(r json.RawMessage, w *wireSignal) error { return setInt(r, &w.Partitions) }},
	{"topic_partitions", false, func(r json.RawMessage, w *wireSignal) error { return setInt(r, &w.TopicPartitions) }},
	{"hot", false, func(r json.RawMessage, w *wireSignal) (err error) { w.Hot, err = rawHot(r); return err }},
	{"rest_level", false, func(r json.RawMessage, w *wireSignal) error { return rawLevel(r, &w.RestLevel) }},
	{"unstable_offsets", false, func(r json.RawMessage, w *wireSignal) error { return setInt(r, &w.UnstableOffsets) }},
	{"lso_stall_ms", false, func(r json.RawMessage, w *wireSignal) error { return setInt(r, &w.LSOStallMs) }},
}

// legacyFields is the number of fields of the first release's readers.
const legacyFields = 14

// parseValue reads the value's top-level object once, keeping the raw
// JSON of each field it knows (fields), then converts them: the version
// first, so that a value of another version is reported as such whatever
// its fields look like.
func parseValue(value []byte, fields []wireField) (wireSignal, error) {
	var w wireSignal
	if len(value) > MaxValueBytes {
		return w, fmt.Errorf("value of %d bytes, at most %d", len(value), MaxValueBytes)
	}
	if !utf8.Valid(value) {
		return w, errors.New("value is not valid UTF-8")
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	raw, err := readObject(value, names)
	if err != nil {
		return w, fmt.Errorf("value %s", err)
	}
	if raw[0] == nil {
		return w, errors.New("field version missing")
	}
	if err := setInt(raw[0], &w.Version); err != nil {
		return w, fmt.Errorf("field version: %s", err)
	}
	if w.Version != SignalVersion {
		return w, fmt.Errorf("version %d, this reader reads %d", w.Version, SignalVersion)
	}
	for i, f := range fields {
		switch {
		case raw[i] == nil && f.required:
			return w, fmt.Errorf("field %s missing", f.name)
		case raw[i] == nil || i == 0:
			continue
		}
		if err := f.set(raw[i], &w); err != nil {
			return w, fmt.Errorf("field %s: %s", f.name, err)
		}
	}
	return w, w.check()
}

// readObject reads one JSON object holding nothing after it, and returns
// the raw value of each of names found in it (nil if absent). A name it
// does not know is ignored, whatever its value; a known name twice is an
// error.
func readObject(data []byte, names []string) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("is not a JSON object")
	}
	raw := make([]json.RawMessage, len(names))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("is not JSON: %v", err)
		}
		name, _ := t.(string) // an object's keys are strings
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("is not JSON: %v", err)
		}
		i := slices.Index(names, name)
		if i < 0 {
			continue // unknown: ignored, see Decode
		}
		if raw[i] != nil {
			return nil, fmt.Errorf("names field %s twice", name)
		}
		raw[i] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("is not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("has data after the JSON object")
	}
	return raw, nil
}

// setInt stores a JSON integer ([rawInt]) into an integer field.
func setInt[T int | int64](r json.RawMessage, dst *T) error {
	n, err := rawInt(r)
	if err != nil {
		return err
	}
	*dst = T(n)
	return nil
}

func setFloat(r json.RawMessage, dst *float64) (err error) {
	*dst, err = rawFloat(r)
	return err
}

func setSeq(r json.RawMessage, w *wireSignal) error {
	n, err := rawInt(r)
	switch {
	case err != nil:
		return err
	case n < 0:
		return fmt.Errorf("negative (%d)", n)
	}
	w.Seq = uint64(n)
	return nil
}

// rawLevel reads a level's name, checking it.
func rawLevel(r json.RawMessage, dst *string) error {
	if err := rawString(r, dst); err != nil {
		return err
	}
	if _, err := ParseLevel(*dst); err != nil {
		return fmt.Errorf("%q is not ok, elevated, high or critical", truncate(*dst, 32))
	}
	return nil
}

// hotFields are the fields of a hot partition's object; the first four
// are required.
var hotFields = []string{"partition", "level", "offset_lag", "time_lag_ms", "drain_rate", "suggested_rate", "capacity"}

// rawHot reads the hot partitions: an array of at most MaxHot objects.
func rawHot(r json.RawMessage) ([]wireHot, error) {
	var items []json.RawMessage
	if len(r) == 0 || r[0] != '[' || json.Unmarshal(r, &items) != nil {
		return nil, errors.New("not an array")
	}
	if len(items) > MaxHot {
		return nil, fmt.Errorf("%d partitions, at most %d", len(items), MaxHot)
	}
	hot := make([]wireHot, len(items))
	for i, item := range items {
		raw, err := readObject(item, hotFields)
		if err != nil {
			return nil, fmt.Errorf("entry %d %s", i, err)
		}
		h := &hot[i]
		sets := []func(json.RawMessage) error{
			func(r json.RawMessage) error { return setInt(r, &h.Partition) },
			func(r json.RawMessage) error { return rawLevel(r, &h.Level) },
			func(r json.RawMessage) error { return setInt(r, &h.OffsetLag) },
			func(r json.RawMessage) error { return setInt(r, &h.TimeLagMs) },
			func(r json.RawMessage) error { return setFloat(r, &h.DrainRate) },
			func(r json.RawMessage) error { return setFloat(r, &h.SuggestedRate) },
			func(r json.RawMessage) error { return setFloat(r, &h.Capacity) },
		}
		for j, set := range sets {
			if raw[j] == nil {
				if j < 4 {
					return nil, fmt.Errorf("entry %d: field %s missing", i, hotFields[j])
				}
				continue
			}
			if err := set(raw[j]); err != nil {
				return nil, fmt.Errorf("entry %d: field %s: %s", i, hotFields[j], err)
			}
		}
	}
	return hot, nil
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
	if err := checkCounts(map[string]int64{"offset_lag": w.OffsetLag, "time_lag_ms": w.TimeLagMs,
		"unstable_offsets": w.UnstableOffsets, "lso_stall_ms": w.LSOStallMs}); err != nil {
		return err
	}
	if err := checkRates(map[string]float64{"drain_rate": w.DrainRate, "suggested_rate": w.SuggestedRate, "capacity": w.Capacity}); err != nil {
		return err
	}
	if err := w.checkPartitions(); err != nil {
		return err
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
	if len(w.Reason) > maxReasonLen {
		return fmt.Errorf("reason: %d bytes, at most %d", len(w.Reason), maxReasonLen)
	}
	if w.IssuedAtMs < minIssuedAtMs || w.IssuedAtMs > maxIssuedAtMs {
		return fmt.Errorf("issued_at_ms %d is not Unix milliseconds between 2001 and 2286", w.IssuedAtMs)
	}
	if w.TTLMs < 1 || w.TTLMs > MaxTTL.Milliseconds() {
		return fmt.Errorf("ttl_ms %d out of range [1, %d]", w.TTLMs, MaxTTL.Milliseconds())
	}
	return w.checkLevels()
}

// checkCounts checks integer fields: within [0, 2^53-1].
func checkCounts(fields map[string]int64) error {
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if v := fields[name]; v < 0 || v > MaxSafeInteger {
			return fmt.Errorf("%s %d out of range [0, 2^53-1]", name, v)
		}
	}
	return nil
}

// checkRates checks number fields: finite and >= 0.
func checkRates(fields map[string]float64) error {
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if v := fields[name]; math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("%s %v is not a finite number >= 0", name, v)
		}
	}
	return nil
}

// maxPartitions bounds partition numbers and counts: Kafka's are int32.
const maxPartitions = math.MaxInt32

// checkPartitions checks the partition counts and the hot partitions.
func (w *wireSignal) checkPartitions() error {
	switch {
	case w.Partitions < 0 || w.Partitions > maxPartitions:
		return fmt.Errorf("partitions %d out of range [0, 2^31-1]", w.Partitions)
	case w.TopicPartitions < 0 || w.TopicPartitions > maxPartitions:
		return fmt.Errorf("topic_partitions %d out of range [0, 2^31-1]", w.TopicPartitions)
	case w.TopicPartitions > 0 && w.Partitions > w.TopicPartitions:
		return fmt.Errorf("partitions %d above topic_partitions %d", w.Partitions, w.TopicPartitions)
	case len(w.Hot) > MaxHot:
		return fmt.Errorf("hot: %d partitions, at most %d", len(w.Hot), MaxHot)
	}
	for i, h := range w.Hot {
		switch {
		case h.Partition < 0 || h.Partition > maxPartitions || w.TopicPartitions > 0 && h.Partition >= w.TopicPartitions:
			return fmt.Errorf("hot: partition %d out of range", h.Partition)
		case slices.ContainsFunc(w.Hot[:i], func(o wireHot) bool { return o.Partition == h.Partition }):
			return fmt.Errorf("hot: partition %d twice", h.Partition)
		}
		if err := checkCounts(map[string]int64{"hot offset_lag": h.OffsetLag, "hot time_lag_ms": h.TimeLagMs}); err != nil {
			return err
		}
		if err := checkRates(map[string]float64{"hot drain_rate": h.DrainRate, "hot suggested_rate": h.SuggestedRate, "hot capacity": h.Capacity}); err != nil {
			return err
		}
	}
	return nil
}

// checkLevels checks the level names and their order: no hot partition
// above the signal's level, each above the rest's level, and a rest
// level exactly when there are hot partitions.
func (w *wireSignal) checkLevels() error {
	level, err := ParseLevel(w.Level)
	if err != nil {
		return fmt.Errorf("level %q is not ok, elevated, high or critical", truncate(w.Level, 32))
	}
	switch {
	case len(w.Hot) == 0 && w.RestLevel != "":
		return errors.New("rest_level without hot partitions")
	case len(w.Hot) == 0:
		return nil
	}
	rest, err := ParseLevel(w.RestLevel)
	if err != nil {
		return errors.New("hot partitions without a rest_level")
	}
	for _, h := range w.Hot {
		hl, err := ParseLevel(h.Level)
		if err != nil || hl > level || hl <= rest {
			return fmt.Errorf("hot: partition %d at level %s, not above rest_level %s and at most level %s", h.Partition, truncate(h.Level, 32), rest, level)
		}
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
