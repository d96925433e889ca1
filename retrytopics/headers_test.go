package retrytopics

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	m := Meta{
		OriginalTopic: "orders", OriginalPartition: 3, OriginalOffset: 42,
		OriginalTimestamp: time.UnixMilli(1_700_000_000_123), Attempt: 2,
		FirstFailure: time.UnixMilli(1_700_000_001_000), Error: "boom",
		Due: time.UnixMilli(1_700_000_011_000), ReplayCount: 1,
	}
	own := []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}}
	h := m.Encode(append(own, kgo.RecordHeader{Key: HeaderAttempt, Value: []byte("1")}))
	if h[0].Key != "trace" {
		t.Fatalf("own header not kept first: %v", h)
	}
	again := m.Encode(h)
	if len(again) != len(h) {
		t.Fatalf("headers grew from %d to %d on re-encode", len(h), len(again))
	}
	got, ok, err := Decode(&kgo.Record{Headers: h})
	if err != nil || !ok {
		t.Fatalf("Decode: ok=%v err=%v", ok, err)
	}
	if got != m {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
	}
	if _, ok, err := Decode(&kgo.Record{Headers: own}); ok || err != nil {
		t.Fatalf("record without floodgate headers: ok=%v err=%v", ok, err)
	}
}

// TestTrimmedRoundTrip: the metadata of a trimmed quarantine record (what
// was dropped, the size before) survives Encode and Decode, and is written
// only on a trimmed record.
func TestTrimmedRoundTrip(t *testing.T) {
	m := Meta{
		OriginalTopic: "orders", OriginalPartition: 3, OriginalOffset: 42, Attempt: 2,
		Error: "boom", Reason: ReasonHandlerError, Trimmed: "value,key,headers", OriginalSize: 5 << 20,
	}
	got, ok, err := Decode(&kgo.Record{Headers: m.Encode(nil)})
	if err != nil || !ok || got != m {
		t.Fatalf("round trip: ok=%v err=%v\n got %+v\nwant %+v", ok, err, got, m)
	}
	// An empty record trimmed still says how big it was: zero.
	m.Trimmed, m.OriginalSize = "value", 0
	got, _, err = Decode(&kgo.Record{Headers: m.Encode(nil)})
	if err != nil || got != m {
		t.Fatalf("zero original size: err=%v\n got %+v\nwant %+v", err, got, m)
	}
	for _, h := range (Meta{OriginalTopic: "orders", Attempt: 1, OriginalSize: 9}).Encode(nil) {
		if h.Key == HeaderOriginalSize || h.Key == HeaderTrimmed {
			t.Fatalf("untrimmed record carries %s", h.Key)
		}
	}
}

func TestEncodeBoundsError(t *testing.T) {
	long := strings.Repeat("é", MaxErrorLen) // 2 bytes a rune
	h := Meta{OriginalTopic: "t", Attempt: 1, Error: long}.Encode(nil)
	for _, x := range h {
		if x.Key == HeaderError && (len(x.Value) > MaxErrorLen || !strings.HasPrefix(long, string(x.Value))) {
			t.Fatalf("error header %d bytes, not a prefix cut on a rune boundary", len(x.Value))
		}
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	valid := Meta{OriginalTopic: "t", OriginalPartition: 1, OriginalOffset: 2, Attempt: 1}.Encode(nil)
	if _, _, err := Decode(&kgo.Record{Headers: valid}); err != nil {
		t.Fatalf("the base case does not decode: %v", err)
	}
	// Each case gets its own copy: appending to valid itself would make
	// every case share (and overwrite) one backing array.
	with := func(hs ...kgo.RecordHeader) []kgo.RecordHeader {
		return append(valid[:len(valid):len(valid)], hs...)
	}
	cases := map[string][]kgo.RecordHeader{
		"not a number":  append(valid[:3:3], kgo.RecordHeader{Key: HeaderAttempt, Value: []byte("abc")}),
		"negative":      with(kgo.RecordHeader{Key: HeaderDue, Value: []byte("-5")}),
		"repeated":      with(kgo.RecordHeader{Key: HeaderOriginalTopic, Value: []byte("x")}),
		"unknown":       with(kgo.RecordHeader{Key: "floodgate-evil", Value: []byte("1")}),
		"bad utf-8":     with(kgo.RecordHeader{Key: HeaderError, Value: []byte{0xff, 0xfe}}),
		"bad reason":    with(kgo.RecordHeader{Key: HeaderReason, Value: []byte("because")}),
		"missing topic": valid[1:],
		"huge":          with(kgo.RecordHeader{Key: HeaderDue, Value: []byte("99999999999999999999999")}),
		"trimmed what":  with(trimmed("value,body", "10")...),
		"trimmed twice": with(trimmed("value,value", "10")...),
		"trimmed empty": with(trimmed("", "10")...),
		"trimmed comma": with(trimmed("value,", "10")...),
		"size negative": with(trimmed("value", "-1")...),
		"size no digit": with(trimmed("value", "big")...),
		"trimmed alone": with(trimmed("value", "10")[0]),
		"size alone":    with(trimmed("value", "10")[1]),
	}
	for name, h := range cases {
		_, ok, err := Decode(&kgo.Record{Headers: h})
		if !ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ok=%v err=%v, want ErrMalformed", name, ok, err)
		}
	}
	// A replayed record carries only its replay count: that is valid.
	m, ok, err := Decode(&kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderReplayCount, Value: []byte("2")}}})
	if !ok || err != nil || m.ReplayCount != 2 || m.OriginalTopic != "" {
		t.Fatalf("replay-count only: %+v ok=%v err=%v", m, ok, err)
	}
}

func trimmed(what, size string) []kgo.RecordHeader {
	return []kgo.RecordHeader{{Key: HeaderTrimmed, Value: []byte(what)}, {Key: HeaderOriginalSize, Value: []byte(size)}}
}

func FuzzDecode(f *testing.F) {
	f.Add(HeaderAttempt, "3", HeaderOriginalTopic, "t")
	f.Add(HeaderDue, "-1", "floodgate-x", "\xff")
	f.Add(HeaderReplayCount, "1", "other", "v")
	f.Add(HeaderTrimmed, "value,key", HeaderOriginalSize, "123")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		r := &kgo.Record{Headers: []kgo.RecordHeader{
			{Key: k1, Value: []byte(v1)}, {Key: k2, Value: []byte(v2)},
			{Key: HeaderOriginalPartition, Value: []byte("0")}, {Key: HeaderOriginalOffset, Value: []byte("7")},
		}}
		m, ok, err := Decode(r) // must not panic
		if !ok || err != nil {
			return
		}
		// What decodes re-encodes to the same metadata.
		back, ok2, err2 := Decode(&kgo.Record{Headers: m.Encode(r.Headers)})
		if !ok2 || err2 != nil {
			t.Fatalf("re-encoded %+v does not decode: %v", m, err2)
		}
		if back != m {
			t.Fatalf("re-encode changed metadata:\n got %+v\nwant %+v", back, m)
		}
	})
}

// TestEncodeOmitsUndecodableTimestamp: a source record stamped before 1970
// (or absurdly far ahead) must not get an original timestamp its own
// decoder rejects, which would quarantine it as undecodable on its tier.
func TestEncodeOmitsUndecodableTimestamp(t *testing.T) {
	for _, ts := range []time.Time{time.UnixMilli(-1), time.UnixMilli(1<<53 + 1)} {
		m := Meta{OriginalTopic: "t", OriginalPartition: 1, OriginalOffset: 2, OriginalTimestamp: ts, Attempt: 1}
		got, ok, err := Decode(&kgo.Record{Headers: m.Encode(nil)})
		if err != nil || !ok {
			t.Fatalf("timestamp %d ms: Decode(Encode) = %v, %v", ts.UnixMilli(), ok, err)
		}
		if !got.OriginalTimestamp.IsZero() {
			t.Fatalf("timestamp %d ms encoded as %v", ts.UnixMilli(), got.OriginalTimestamp)
		}
	}
}

// TestPriorityHeaderIsTheRecords: a record's priority class (the project's
// floodgate-priority header) is not retry metadata: a first attempt with it
// has no Meta, it does not make a record undecodable, and Encode keeps it.
func TestPriorityHeaderIsTheRecords(t *testing.T) {
	prio := kgo.RecordHeader{Key: "floodgate-priority", Value: []byte("bulk")}
	r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: "app", Value: []byte("x")}, prio}}
	if HasMeta(r) {
		t.Fatal("HasMeta: a record with only its priority class has retry metadata")
	}
	if _, ok, err := Decode(r); ok || err != nil {
		t.Fatalf("Decode = %v %v, want no metadata and no error", ok, err)
	}
	m := Meta{OriginalTopic: "t", Attempt: 1}
	hs := m.Encode(r.Headers)
	var kept bool
	for _, h := range hs {
		kept = kept || h.Key == prio.Key && string(h.Value) == "bulk"
	}
	if !kept {
		t.Fatalf("Encode dropped the priority header: %v", hs)
	}
	if _, ok, err := Decode(&kgo.Record{Headers: hs}); !ok || err != nil {
		t.Fatalf("Decode(Encode) = %v %v", ok, err)
	}
}

// TestDeferredHeadersAreTheRecords: the deferred lane's headers
// (floodgate-deferred-*) belong to the record too: a deferred topic's
// record is a first attempt, decodes without error, and keeps them.
func TestDeferredHeadersAreTheRecords(t *testing.T) {
	def := kgo.RecordHeader{Key: DeferredHeaderPrefix + "topic", Value: []byte("orders")}
	r := &kgo.Record{Headers: []kgo.RecordHeader{def, {Key: DeferredHeaderPrefix + "anything-new", Value: []byte("\xff")}}}
	if HasMeta(r) {
		t.Fatal("HasMeta: a deferred record has retry metadata")
	}
	if _, ok, err := Decode(r); ok || err != nil {
		t.Fatalf("Decode = %v %v, want no metadata and no error", ok, err)
	}
	if !IsMetaHeader("floodgate-deferral") {
		t.Fatal("a floodgate- header outside the deferred prefix is no longer retry metadata")
	}
	hs := Meta{OriginalTopic: "t", Attempt: 1}.Encode(r.Headers)
	if !slices.ContainsFunc(hs, func(h kgo.RecordHeader) bool { return h.Key == def.Key && string(h.Value) == "orders" }) {
		t.Fatalf("Encode dropped the deferred header: %v", hs)
	}
}
