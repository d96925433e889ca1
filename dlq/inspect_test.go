package dlq

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

type meta = retrytopics.Meta

const (
	handlerError      = retrytopics.ReasonHandlerError
	permanent         = retrytopics.ReasonPermanent
	attemptsExhausted = retrytopics.ReasonAttemptsExhausted
	budgetExhausted   = retrytopics.ReasonBudgetExhausted
	undecodable       = retrytopics.ReasonUndecodable
)

// withHeader returns r with the value of its header key replaced.
func withHeader(r *kgo.Record, key, value string) *kgo.Record {
	for i, h := range r.Headers {
		if h.Key == key {
			r.Headers[i].Value = []byte(value)
			return r
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
	return r
}

// inspectData is a quarantine lane with an entry of every kind; the keys
// name them (a is there twice).
func inspectData(dlq string) []*kgo.Record {
	trace := kgo.RecordHeader{Key: "trace", Value: []byte("t-1")}
	min := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	return []*kgo.Record{
		quarantined(dlq, meta{OriginalTopic: "orders", OriginalPartition: 0, OriginalOffset: 10, Reason: permanent}, "a", "va", min(0), trace),
		quarantined(dlq, meta{OriginalTopic: "orders", OriginalPartition: 1, OriginalOffset: 11, Reason: handlerError}, "b", "vb", min(1)),
		quarantined(dlq, meta{OriginalTopic: "payments", OriginalPartition: 2, OriginalOffset: 12, Reason: attemptsExhausted}, "c", "vc", min(2)),
		quarantined(dlq, meta{OriginalTopic: "orders", OriginalPartition: 0, OriginalOffset: 13, Reason: budgetExhausted}, "a", "va2", min(3)),
		quarantined(dlq, meta{OriginalTopic: "payments", OriginalPartition: 1, OriginalOffset: 14, Reason: permanent, ReplayCount: 2}, "d", "vd", min(4)),
		// Quarantined as undecodable, with floodgate headers that decode.
		quarantined(dlq, meta{OriginalTopic: "orders", OriginalPartition: 2, OriginalOffset: 15, Reason: undecodable}, "e", "ve", min(5)),
		// Floodgate headers that do not decode.
		withHeader(quarantined(dlq, meta{OriginalTopic: "orders", OriginalPartition: 2, OriginalOffset: 16, Reason: handlerError}, "f", "vf", min(6), trace),
			retrytopics.HeaderAttempt, "abc"),
		// No floodgate header at all.
		{Topic: dlq, Key: []byte("g"), Value: []byte("vg"), Timestamp: min(7), Headers: []kgo.RecordHeader{trace}},
	}
}

func TestInspectFilters(t *testing.T) {
	_, brokers := testkit.Cluster(t, 3, "dlq")
	produce(t, brokers, inspectData("dlq")...)
	min := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	cases := []struct {
		name string
		f    Filter
		want []string // keys, sorted
	}{
		{"all", Filter{}, []string{"a", "a", "b", "c", "d", "e", "f", "g"}},
		{"permanent", Filter{Reasons: []retrytopics.Reason{permanent}}, []string{"a", "d"}},
		{"two reasons", Filter{Reasons: []retrytopics.Reason{handlerError, budgetExhausted}}, []string{"a", "b"}},
		{"undecodable", Filter{Reasons: []retrytopics.Reason{undecodable}}, []string{"e", "f", "g"}},
		{"from", Filter{From: min(2)}, []string{"a", "c", "d", "e", "f", "g"}},
		{"to", Filter{To: min(2)}, []string{"a", "b"}},
		{"from to", Filter{From: min(1), To: min(3)}, []string{"b", "c"}},
		{"key", Filter{Key: []byte("a")}, []string{"a", "a"}},
		{"empty key", Filter{Key: []byte{}}, nil},
		{"original topic", Filter{OriginalTopic: "payments"}, []string{"c", "d"}},
		{"original topic excludes undecodable", Filter{OriginalTopic: "orders", Reasons: []retrytopics.Reason{undecodable}}, []string{"e"}},
		{"undecodable by key", Filter{Reasons: []retrytopics.Reason{undecodable}, Key: []byte("f")}, []string{"f"}},
		{"undecodable by time", Filter{Reasons: []retrytopics.Reason{undecodable}, From: min(7)}, []string{"g"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := keysOf(inspectAll(t, brokers, "dlq", c.f))
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestInspectEntries(t *testing.T) {
	_, brokers := testkit.Cluster(t, 3, "dlq")
	produced := produce(t, brokers, inspectData("dlq")...)
	es := inspectAll(t, brokers, "dlq", Filter{})
	if len(es) != len(produced) {
		t.Fatalf("%d entries, want %d", len(es), len(produced))
	}
	byKey := make(map[string][]Entry)
	for _, e := range es {
		byKey[string(e.Record.Key)] = append(byKey[string(e.Record.Key)], e)
		if e.Record.Topic != "dlq" {
			t.Errorf("entry %s not from the dlq topic", where(e.Record))
		}
	}
	d := byKey["d"][0]
	if d.Err != nil || d.Meta.OriginalTopic != "payments" || d.Meta.OriginalPartition != 1 || d.Meta.OriginalOffset != 14 ||
		d.Meta.Reason != permanent || d.Meta.ReplayCount != 2 || d.Meta.Attempt != 3 || d.Meta.Error != "boom" ||
		!d.Record.Timestamp.Equal(t0.Add(4*time.Minute)) || string(d.Record.Value) != "vd" {
		t.Errorf("entry d: %+v, err %v, ts %v", d.Meta, d.Err, d.Record.Timestamp)
	}
	if e := byKey["e"][0]; e.Err != nil || e.Meta.Reason != undecodable {
		t.Errorf("entry e: reason %q, err %v; want undecodable, decoded", e.Meta.Reason, e.Err)
	}
	if f := byKey["f"][0]; !errors.Is(f.Err, retrytopics.ErrMalformed) || !strings.Contains(f.Err.Error(), "abc") {
		t.Errorf("entry f (attempt \"abc\"): err %v, want ErrMalformed naming the value", f.Err)
	}
	if g := byKey["g"][0]; !errors.Is(g.Err, ErrNoMeta) {
		t.Errorf("entry g (no floodgate headers): err %v, want ErrNoMeta", g.Err)
	}
}

// TestInspectMalformed lists records whose floodgate headers are broken in
// every way Decode rejects, with an error each, and without a panic.
func TestInspectMalformed(t *testing.T) {
	_, brokers := testkit.Cluster(t, 2, "dlq")
	good := func(key string) *kgo.Record {
		return quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, key, "v", t0)
	}
	rs := []*kgo.Record{
		withHeader(good("attempt"), retrytopics.HeaderAttempt, "abc"),
		withHeader(good("partition"), retrytopics.HeaderOriginalPartition, "-1"),
		withHeader(good("offset"), retrytopics.HeaderOriginalOffset, "99999999999999999999999"),
		withHeader(good("timestamp"), retrytopics.HeaderOriginalTimestamp, "1e3"),
		withHeader(good("reason"), retrytopics.HeaderReason, "sunspots"),
		withHeader(good("utf8"), retrytopics.HeaderError, "\xff\xfe"),
		withHeader(good("unknown"), "floodgate-colour", "blue"),
		withHeader(good("replays"), retrytopics.HeaderReplayCount, ""),
		withHeader(good("empty topic"), retrytopics.HeaderOriginalTopic, ""),
	}
	rep := good("repeated")
	rep.Headers = append(rep.Headers, kgo.RecordHeader{Key: retrytopics.HeaderAttempt, Value: []byte("4")})
	missing := good("missing")
	missing.Headers = slices.DeleteFunc(missing.Headers, func(h kgo.RecordHeader) bool { return h.Key == retrytopics.HeaderOriginalOffset })
	rs = append(rs, rep, missing, &kgo.Record{Topic: "dlq", Key: []byte("null value"), Headers: []kgo.RecordHeader{{Key: retrytopics.HeaderAttempt}}})
	produce(t, brokers, rs...)

	es := inspectAll(t, brokers, "dlq", Filter{Reasons: []retrytopics.Reason{undecodable}})
	if len(es) != len(rs) {
		t.Fatalf("%d entries listed, want %d: %q", len(es), len(rs), keysOf(es))
	}
	for _, e := range es {
		if !errors.Is(e.Err, retrytopics.ErrMalformed) {
			t.Errorf("entry %q: err %v, want ErrMalformed", e.Record.Key, e.Err)
		}
	}
	if es := inspectAll(t, brokers, "dlq", Filter{OriginalTopic: "orders"}); len(es) != 0 {
		t.Errorf("an original-topic filter selected undecodable entries: %q", keysOf(es))
	}
}

func TestInspectEmptyMissingAndErrors(t *testing.T) {
	_, brokers := testkit.Cluster(t, 3, "dlq", "empty")
	produce(t, brokers, inspectData("dlq")...)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	never := func(Entry) error { t.Error("fn called"); return nil }

	start := time.Now()
	if err := Inspect(ctx, brokers, "empty", Filter{}, never); err != nil {
		t.Errorf("empty topic: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("empty topic took %v", d)
	}
	if err := Inspect(ctx, brokers, "nope", Filter{}, never); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("missing topic: %v, want UnknownTopicOrPartition", err)
	}
	if err := Inspect(ctx, brokers, "dlq", Filter{Reasons: []retrytopics.Reason{"sunspots"}}, never); err == nil || !strings.Contains(err.Error(), "Filter.Reasons") {
		t.Errorf("unknown reason: %v", err)
	}
	if err := Inspect(ctx, brokers, "dlq", Filter{From: t0, To: t0}, never); err == nil || !strings.Contains(err.Error(), "Filter.From") {
		t.Errorf("empty time range: %v", err)
	}
	if err := Inspect(ctx, nil, "dlq", Filter{}, never); err == nil {
		t.Error("no brokers: no error")
	}
	if err := Inspect(ctx, brokers, "dlq", Filter{}, never, kgo.ConsumerGroup("g"), kgo.ConsumeTopics("x")); err == nil ||
		!strings.Contains(err.Error(), "ConsumerGroup, ConsumeTopics") {
		t.Errorf("consuming options: %v", err)
	}

	stop := errors.New("stop")
	calls := 0
	err := Inspect(ctx, brokers, "dlq", Filter{}, func(Entry) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("fn error: Inspect returned %v after %d calls, want the error as is after 1", err, calls)
	}

	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := Inspect(cctx, brokers, "dlq", Filter{}, never); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

// TestInspectCapturedEnd writes to the topic while Inspect reads it: Inspect
// lists what the topic held when it started, and returns.
func TestInspectCapturedEnd(t *testing.T) {
	_, brokers := testkit.Cluster(t, 3, "dlq")
	first := inspectData("dlq")
	produce(t, brokers, first...)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var once sync.Once
	n := 0
	err := Inspect(ctx, brokers, "dlq", Filter{}, func(Entry) error {
		n++
		once.Do(func() { produce(t, brokers, inspectData("dlq")...) })
		return nil
	})
	if err != nil || n != len(first) {
		t.Errorf("Inspect returned %v after %d entries, want nil after %d", err, n, len(first))
	}
	if es := inspectAll(t, brokers, "dlq", Filter{}); len(es) != 2*len(first) {
		t.Errorf("second Inspect: %d entries, want %d", len(es), 2*len(first))
	}
}

func TestFilterMatch(t *testing.T) {
	rec := func(key string, ts time.Time) *kgo.Record { return &kgo.Record{Key: []byte(key), Timestamp: ts} }
	ok := Entry{Record: rec("k", t0), Meta: meta{OriginalTopic: "orders", Reason: permanent}}
	bad := Entry{Record: rec("k", t0), Meta: meta{OriginalTopic: "orders", Reason: permanent}, Err: retrytopics.ErrMalformed}
	null := Entry{Record: &kgo.Record{Timestamp: t0}, Meta: meta{OriginalTopic: "orders"}}
	cases := []struct {
		name string
		f    Filter
		e    Entry
		want bool
	}{
		{"zero filter", Filter{}, ok, true},
		{"zero filter, undecodable", Filter{}, bad, true},
		{"nil record", Filter{}, Entry{}, false},
		{"reason", Filter{Reasons: []retrytopics.Reason{permanent}}, ok, true},
		{"other reason", Filter{Reasons: []retrytopics.Reason{handlerError}}, ok, false},
		{"undecodable is its own reason", Filter{Reasons: []retrytopics.Reason{permanent}}, bad, false},
		{"undecodable allowed", Filter{Reasons: []retrytopics.Reason{permanent, undecodable}}, bad, true},
		{"undecodable and original topic", Filter{OriginalTopic: "orders"}, bad, false},
		{"original topic", Filter{OriginalTopic: "orders"}, ok, true},
		{"other original topic", Filter{OriginalTopic: "payments"}, ok, false},
		{"from inclusive", Filter{From: t0}, ok, true},
		{"from after", Filter{From: t0.Add(time.Millisecond)}, ok, false},
		{"to exclusive", Filter{To: t0}, ok, false},
		{"to after", Filter{To: t0.Add(time.Millisecond)}, ok, true},
		{"key", Filter{Key: []byte("k")}, ok, true},
		{"other key", Filter{Key: []byte("x")}, ok, false},
		{"empty key matches null", Filter{Key: []byte{}}, null, true},
		{"key vs null", Filter{Key: []byte("k")}, null, false},
	}
	for _, c := range cases {
		if got := c.f.Match(c.e); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestEntryTrimmed(t *testing.T) {
	h := func(kv ...string) []kgo.RecordHeader {
		var out []kgo.RecordHeader
		for i := 0; i < len(kv); i += 2 {
			out = append(out, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	cases := []struct {
		name    string
		headers []kgo.RecordHeader
		dropped string
		size    int64
		ok      bool
	}{
		{"not trimmed", h("trace", "x", retrytopics.HeaderOriginalSize, "10"), "", -1, false},
		{"value", h(retrytopics.HeaderTrimmed, "value", retrytopics.HeaderOriginalSize, "2097152"), "value", 2097152, true},
		{"more, no size", h(retrytopics.HeaderTrimmed, "value,key,headers"), "value,key,headers", -1, true},
		{"bad size", h(retrytopics.HeaderTrimmed, "value", retrytopics.HeaderOriginalSize, "big"), "value", -1, true},
		{"negative size", h(retrytopics.HeaderTrimmed, "value", retrytopics.HeaderOriginalSize, "-5"), "value", -1, true},
		{"empty", h(retrytopics.HeaderTrimmed, ""), "", -1, true},
		{"repeated: the first", h(retrytopics.HeaderTrimmed, "value", retrytopics.HeaderTrimmed, "key"), "value", -1, true},
	}
	for _, c := range cases {
		dropped, size, ok := Entry{Record: &kgo.Record{Headers: c.headers}}.Trimmed()
		if dropped != c.dropped || size != c.size || ok != c.ok {
			t.Errorf("%s: Trimmed() = %q, %d, %v; want %q, %d, %v", c.name, dropped, size, ok, c.dropped, c.size, c.ok)
		}
	}
	if _, _, ok := (Entry{}).Trimmed(); ok {
		t.Error("an entry without a record is trimmed")
	}
}
