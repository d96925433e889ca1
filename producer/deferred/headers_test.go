package deferred

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// TestMetaRoundTrip: what Defer writes, Decode reads; Strip removes it
// and keeps the record's own headers; none is retry metadata.
func TestMetaRoundTrip(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	r := &kgo.Record{Timestamp: time.UnixMilli(1_600_000_000_000), Headers: []kgo.RecordHeader{{Key: "app", Value: []byte("x")}}}
	d := producer.Decision{Topic: "orders", Class: priority.Bulk, Level: lagmonitor.LevelCritical,
		Group: "a/b", Instance: "host-1", Seq: 42, Reason: strings.Repeat("é", 600)}
	hs := metaOf(d, r, at).encode(Strip(r.Headers))
	for _, h := range hs[1:] {
		if retrytopics.IsMetaHeader(h.Key) {
			t.Fatalf("%s reads as retry metadata", h.Key)
		}
	}
	m, ok, err := Decode(&kgo.Record{Headers: hs})
	if !ok || err != nil {
		t.Fatalf("Decode: %v %v", ok, err)
	}
	if m.Topic != "orders" || !m.At.Equal(at) || !m.Timestamp.Equal(r.Timestamp) || m.Class != priority.Bulk ||
		m.Level != lagmonitor.LevelCritical || m.Group != "a/b" || m.Instance != "host-1" || m.Seq != 42 {
		t.Fatalf("decoded %+v", m)
	}
	if len(m.Reason) > MaxReasonLen || !strings.HasPrefix(d.Reason, m.Reason) {
		t.Fatalf("reason %d bytes, want a prefix of at most %d", len(m.Reason), MaxReasonLen)
	}
	if got := Strip(hs); len(got) != 1 || got[0].Key != "app" {
		t.Fatalf("Strip = %v", got)
	}
	if _, ok, err := Decode(&kgo.Record{Headers: r.Headers}); ok || err != nil {
		t.Fatalf("a record without deferred headers: %v %v", ok, err)
	}
}

// TestDecodeMalformed: each malformed header is an error wrapping
// ErrMalformed; unknown deferred headers are ignored.
func TestDecodeMalformed(t *testing.T) {
	for _, hs := range [][]kgo.RecordHeader{
		{{Key: HeaderTopic, Value: []byte("a")}, {Key: HeaderTopic, Value: []byte("a")}},
		{{Key: HeaderAt, Value: []byte("-5")}},
		{{Key: HeaderTimestamp, Value: []byte("soon")}},
		{{Key: HeaderLevel, Value: []byte("dire")}},
		{{Key: HeaderSignal, Value: []byte("g/i")}},
		{{Key: HeaderSignal, Value: []byte("g/i/x")}},
		{{Key: HeaderClass, Value: []byte("\xff\xfe")}},
	} {
		if _, ok, err := Decode(&kgo.Record{Headers: hs}); !ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("%v: %v %v, want ErrMalformed", hs, ok, err)
		}
	}
	if _, ok, err := Decode(&kgo.Record{Headers: []kgo.RecordHeader{{Key: retrytopics.DeferredHeaderPrefix + "future", Value: []byte("?")}}}); !ok || err != nil {
		t.Errorf("an unknown deferred header: %v %v", ok, err)
	}
}

// FuzzDecode: Decode never panics, and what it accepts re-encodes.
func FuzzDecode(f *testing.F) {
	f.Add(HeaderSignal, "g/i/1", HeaderAt, "12")
	f.Add(HeaderLevel, "high", HeaderTopic, "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: k1, Value: []byte(v1)}, {Key: k2, Value: []byte(v2)}}}
		m, ok, err := Decode(r)
		if err != nil || !ok {
			return
		}
		if _, _, err := Decode(&kgo.Record{Headers: m.encode(nil)}); err != nil {
			t.Fatalf("re-encoding %+v: %v", m, err)
		}
	})
}

// TestReasonAlwaysDecodes: a decision's reason that is not valid UTF-8,
// short or long, or long and multi-byte, is written as a Reason header
// that Decode accepts: valid UTF-8 within MaxReasonLen bytes, its text
// kept.
func TestReasonAlwaysDecodes(t *testing.T) {
	for _, reason := range []string{
		"lag \xff high",
		"\xff" + strings.Repeat("é", 600),
		strings.Repeat("é", 300) + "\xe2\x82",
		"x" + strings.Repeat("€", 400),
	} {
		d := producer.Decision{Topic: "orders", Level: lagmonitor.LevelHigh, Reason: reason}
		m, ok, err := Decode(&kgo.Record{Headers: metaOf(d, &kgo.Record{}, time.UnixMilli(1)).encode(nil)})
		if !ok || err != nil {
			t.Errorf("reason %q: Decode: %v %v", reason, ok, err)
			continue
		}
		if len(m.Reason) > MaxReasonLen || len(m.Reason) < min(len(reason), MaxReasonLen)-4 {
			t.Errorf("reason %q decoded as %d bytes, want about min(%d, %d)", reason, len(m.Reason), len(reason), MaxReasonLen)
		}
	}
}

// TestTimestampBounds: a timestamp header beyond 2^53 ms is malformed, and
// encode leaves out a timestamp Decode would reject.
func TestTimestampBounds(t *testing.T) {
	for _, v := range []string{"9007199254740992", "9223372036854775807"} {
		if _, _, err := Decode(&kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderTimestamp, Value: []byte(v)}}}); !errors.Is(err, ErrMalformed) {
			t.Errorf("timestamp %s: %v, want ErrMalformed", v, err)
		}
	}
	if _, _, err := Decode(&kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderAt, Value: []byte("9007199254740991")}}}); err != nil {
		t.Errorf("2^53-1 ms: %v", err)
	}
	far := time.UnixMilli(1 << 60)
	hs := metaOf(producer.Decision{Topic: "orders"}, &kgo.Record{Timestamp: far}, far).encode(nil)
	if _, _, err := Decode(&kgo.Record{Headers: hs}); err != nil {
		t.Fatalf("encoded times far ahead: %v", err)
	}
}

// FuzzTruncate: truncate returns valid UTF-8 within its bound.
func FuzzTruncate(f *testing.F) {
	f.Add("\xffé€", 3)
	f.Add(strings.Repeat("é", 10), 5)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 1<<10 {
			return
		}
		got := truncate(s, n)
		if len(got) > n || !utf8.ValidString(got) {
			t.Fatalf("truncate(%q, %d) = %q", s, n, got)
		}
	})
}
