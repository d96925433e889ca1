package dlq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

func replayCfg(group string) ReplayConfig {
	return ReplayConfig{Topic: "dlq", ResumeGroup: group, Rate: math.Inf(1), MaxReplays: 3}
}

func runReplay(t *testing.T, brokers []string, cfg ReplayConfig) ReplayStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := Replay(ctx, brokers, cfg)
	if err != nil {
		t.Fatalf("Replay: %v (stats %+v)", err, st)
	}
	return st
}

// checkReplayed checks that r is the replay of the entry q: same key,
// value and original headers, on q's original partition, carrying only a
// replay count of want as floodgate header.
func checkReplayed(t *testing.T, r, q *kgo.Record, wantCount int) {
	t.Helper()
	e := NewEntry(q)
	if string(r.Key) != string(q.Key) || string(r.Value) != string(q.Value) {
		t.Errorf("%s: key/value %q/%q, want %q/%q", where(r), r.Key, r.Value, q.Key, q.Value)
	}
	if e.Err == nil && r.Topic == e.Meta.OriginalTopic && r.Partition != e.Meta.OriginalPartition {
		t.Errorf("%s: replayed to partition %d, want the original %d", where(r), r.Partition, e.Meta.OriginalPartition)
	}
	var gotOrig, wantOrig []kgo.RecordHeader
	for _, h := range r.Headers {
		switch {
		case h.Key == retrytopics.HeaderReplayCount:
			if string(h.Value) != strconv.Itoa(wantCount) {
				t.Errorf("%s: replay count %q, want %d", where(r), h.Value, wantCount)
			}
		case strings.HasPrefix(h.Key, retrytopics.HeaderPrefix):
			t.Errorf("%s: floodgate header %s=%q on a replayed record", where(r), h.Key, h.Value)
		default:
			gotOrig = append(gotOrig, h)
		}
	}
	for _, h := range q.Headers {
		if !strings.HasPrefix(h.Key, retrytopics.HeaderPrefix) {
			wantOrig = append(wantOrig, h)
		}
	}
	if fmt.Sprint(gotOrig) != fmt.Sprint(wantOrig) {
		t.Errorf("%s: original headers %v, want %v", where(r), gotOrig, wantOrig)
	}
	if m, ok, err := retrytopics.Decode(r); err != nil || !ok || m.ReplayCount != wantCount || m.OriginalTopic != "" || m.Attempt != 0 {
		t.Errorf("%s: Decode = %+v, %v, %v; want only a replay count", where(r), m, ok, err)
	}
}

func TestReplayRoundTrip(t *testing.T) {
	_, brokers := testkit.Cluster(t, 3, "dlq", "orders", "payments")
	reasons := []retrytopics.Reason{handlerError, permanent, attemptsExhausted, budgetExhausted}
	var entries []*kgo.Record
	for i := range 60 {
		orig := []string{"orders", "payments"}[i%2]
		m := meta{OriginalTopic: orig, OriginalPartition: int32(i % 3), OriginalOffset: int64(100 + i), Reason: reasons[i%4], ReplayCount: i % 3}
		entries = append(entries, quarantined("dlq", m, fmt.Sprintf("k%02d", i), fmt.Sprintf("v%02d", i), t0.Add(time.Duration(i)*time.Second),
			kgo.RecordHeader{Key: "trace", Value: fmt.Appendf(nil, "t%02d", i)},
			kgo.RecordHeader{Key: "dup", Value: []byte("1")},
			kgo.RecordHeader{Key: "dup", Value: []byte("2")},
		))
	}
	produce(t, brokers, entries...)

	st := runReplay(t, brokers, replayCfg("g"))
	if want := (ReplayStats{Scanned: 60, Matched: 60, Replayed: 60}); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	byKey := make(map[string]*kgo.Record)
	for _, q := range entries {
		byKey[string(q.Key)] = q
	}
	for _, topic := range []string{"orders", "payments"} {
		got := readAll(t, brokers, topic)
		if len(got) != 30 {
			t.Errorf("%s holds %d records, want 30", topic, len(got))
		}
		seen := make(map[string]bool)
		for _, r := range got {
			q := byKey[string(r.Key)]
			if q == nil || seen[string(r.Key)] {
				t.Errorf("%s: unexpected or duplicate key %q", where(r), r.Key)
				continue
			}
			seen[string(r.Key)] = true
			if e := NewEntry(q); e.Meta.OriginalTopic != topic {
				t.Errorf("%s: entry from %s replayed to %s", where(r), e.Meta.OriginalTopic, topic)
			}
			checkReplayed(t, r, q, NewEntry(q).Meta.ReplayCount+1)
		}
	}
	if got, want := committed(t, brokers, "g", "dlq"), endOffsets(t, brokers, "dlq"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("committed %v, want the end offsets %v", got, want)
	}

	// The same resume group again: nothing left to do.
	if st := runReplay(t, brokers, replayCfg("g")); st != (ReplayStats{}) {
		t.Errorf("second run: stats %+v, want none", st)
	}
	if n := len(readAll(t, brokers, "orders")); n != 30 {
		t.Errorf("after a second run orders holds %d records, want 30", n)
	}
}

// guardData is a quarantine lane with an entry for each outcome, keyed by
// name.
func guardData() []*kgo.Record {
	ts := t0
	return []*kgo.Record{
		quarantined("dlq", meta{OriginalTopic: "orders", OriginalPartition: 1, Reason: permanent}, "p1", "v", ts),
		quarantined("dlq", meta{OriginalTopic: "payments", OriginalPartition: 2, Reason: permanent, ReplayCount: 2}, "p2", "v", ts),
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent, ReplayCount: 3}, "p3", "v", ts),
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: handlerError}, "h1", "v", ts),
		withHeader(withHeader(quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, "u1", "v", ts,
			kgo.RecordHeader{Key: "trace", Value: []byte("x")}),
			retrytopics.HeaderAttempt, "abc"), retrytopics.HeaderReplayCount, "1"),
		{Topic: "dlq", Key: []byte("u2"), Value: []byte("v"), Timestamp: ts},
		{Topic: "dlq", Key: []byte("n1"), Value: []byte("v"), Timestamp: ts, Headers: []kgo.RecordHeader{
			{Key: retrytopics.HeaderReplayCount, Value: []byte("1")},
		}},
	}
}

func TestReplayOutcomes(t *testing.T) {
	_, brokers := testkit.Cluster(t, 3, "dlq", "orders", "payments", "rescue")
	data := produce(t, brokers, guardData()...)
	byKey := make(map[string]*kgo.Record)
	for _, q := range data {
		byKey[string(q.Key)] = q
	}

	t.Run("filter and loop guard", func(t *testing.T) {
		cfg := replayCfg("a")
		cfg.Filter.Reasons = []retrytopics.Reason{permanent, undecodable}
		st := runReplay(t, brokers, cfg)
		want := ReplayStats{Scanned: 7, NotSelected: 2, Matched: 5, Replayed: 2, LoopGuarded: 1, Undecodable: 2}
		if st != want {
			t.Errorf("stats %+v, want %+v", st, want)
		}
		for _, topic := range []string{"orders", "payments"} {
			for _, r := range readAll(t, brokers, topic) {
				if k := string(r.Key); k != "p1" && k != "p2" {
					t.Errorf("%s: %s replayed", where(r), k)
				}
				checkReplayed(t, r, byKey[string(r.Key)], NewEntry(byKey[string(r.Key)]).Meta.ReplayCount+1)
			}
		}
		// Passed-over entries are committed past too.
		if got, want := committed(t, brokers, "a", "dlq"), endOffsets(t, brokers, "dlq"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("committed %v, want the end offsets %v", got, want)
		}
	})

	t.Run("default target", func(t *testing.T) {
		cfg := replayCfg("b")
		cfg.DryRun = true
		st := runReplay(t, brokers, cfg)
		want := ReplayStats{Scanned: 7, Matched: 7, Replayed: 3, LoopGuarded: 1, Undecodable: 2, NoTarget: 1}
		if st != want {
			t.Errorf("stats %+v, want %+v", st, want)
		}
		if got := committed(t, brokers, "b", "dlq"); len(got) != 0 {
			t.Errorf("a dry run committed %v", got)
		}
	})

	t.Run("target takes undecodable", func(t *testing.T) {
		cfg := replayCfg("c")
		cfg.Target = func(Entry) (string, bool) { return "rescue", true }
		st := runReplay(t, brokers, cfg)
		want := ReplayStats{Scanned: 7, Matched: 7, Replayed: 6, LoopGuarded: 1}
		if st != want {
			t.Errorf("stats %+v, want %+v", st, want)
		}
		got := readAll(t, brokers, "rescue")
		counts := map[string]int{"p1": 1, "p2": 3, "h1": 1, "u1": 2, "u2": 1, "n1": 2}
		if len(got) != len(counts) {
			t.Errorf("rescue holds %d records, want %d", len(got), len(counts))
		}
		for _, r := range got {
			k := string(r.Key)
			if _, ok := counts[k]; !ok {
				t.Errorf("%s: %s replayed", where(r), k)
				continue
			}
			checkReplayed(t, r, byKey[k], counts[k])
		}
	})

	t.Run("empty target topic", func(t *testing.T) {
		cfg := replayCfg("d")
		cfg.Target = func(Entry) (string, bool) { return "", true }
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if _, err := Replay(ctx, brokers, cfg); err == nil || !strings.Contains(err.Error(), "empty topic") {
			t.Errorf("Replay: %v, want an empty-topic error", err)
		}
	})
}

// TestReplayFilterChange replays with a filter, then without one, with
// the same resume group: the position is the group's whatever the filter,
// so nothing is replayed twice, and a new group with a filter that selects
// only what the first run passed over replays just that.
func TestReplayFilterChange(t *testing.T) {
	_, brokers := testkit.Cluster(t, 2, "dlq", "orders")
	produce(t, brokers,
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, "p1", "v", t0),
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: handlerError}, "h1", "v", t0),
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, "p2", "v", t0),
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: handlerError}, "h2", "v", t0),
	)
	cfg := replayCfg("g")
	cfg.Filter.Reasons = []retrytopics.Reason{permanent}
	if st := runReplay(t, brokers, cfg); st != (ReplayStats{Scanned: 4, NotSelected: 2, Matched: 2, Replayed: 2}) {
		t.Errorf("permanent: stats %+v", st)
	}
	if st := runReplay(t, brokers, replayCfg("g")); st != (ReplayStats{}) {
		t.Errorf("no filter, same group: stats %+v, want nothing done", st)
	}
	cfg = replayCfg("h")
	cfg.Filter.Reasons = []retrytopics.Reason{handlerError}
	if st := runReplay(t, brokers, cfg); st != (ReplayStats{Scanned: 4, NotSelected: 2, Matched: 2, Replayed: 2}) {
		t.Errorf("handler-error, new group: stats %+v", st)
	}
	if got := recordKeys(readAll(t, brokers, "orders")); !slices.Equal(got, []string{"h1", "h2", "p1", "p2"}) {
		t.Errorf("orders holds %q, want each entry once", got)
	}
}

// TestReplayMissingTarget replays a lane with an entry whose original topic
// does not exist, between two good ones, three times: the first run
// replays the good entries, skips the other with a notice naming it and
// goes on; no later run re-sends anything.
func TestReplayMissingTarget(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "dlq", "orders")
	produce(t, brokers,
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, "o1", "v", t0),
		quarantined("dlq", meta{OriginalTopic: "ghost", Reason: permanent}, "g", "v", t0),
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, "o2", "v", t0),
	)
	var skipped []string
	dry := replayCfg("g")
	dry.DryRun = true
	dry.OnUnreplayable = func(e Entry, err error) { skipped = append(skipped, where(e.Record)) }
	if st := runReplay(t, brokers, dry); st != (ReplayStats{Scanned: 3, Matched: 3, Replayed: 2, Unreplayable: 1}) || !slices.Equal(skipped, []string{"dlq[0]@1"}) {
		t.Errorf("dry run: stats %+v, skipped %q; want 1 unreplayable, dlq[0]@1", st, skipped)
	}
	for run := 1; run <= 3; run++ {
		skipped = nil
		cfg := replayCfg("g")
		cfg.OnUnreplayable = func(e Entry, err error) {
			if !errors.Is(err, ErrTargetMissing) || !strings.Contains(err.Error(), `"ghost"`) {
				t.Errorf("run %d: %s skipped with %v, want ErrTargetMissing naming ghost", run, where(e.Record), err)
			}
			skipped = append(skipped, where(e.Record))
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		// UnknownTopicRetries(1): should a produce to ghost be tried, it
		// fails fast.
		st, err := Replay(ctx, brokers, cfg, kgo.UnknownTopicRetries(1))
		cancel()
		if err != nil {
			t.Fatalf("run %d: %v (stats %+v)", run, err, st)
		}
		want, wantSkipped := ReplayStats{}, []string(nil)
		if run == 1 {
			want = ReplayStats{Scanned: 3, Matched: 3, Replayed: 2, Unreplayable: 1}
			wantSkipped = []string{"dlq[0]@1"}
		}
		if st != want || !slices.Equal(skipped, wantSkipped) {
			t.Errorf("run %d: stats %+v, skipped %q; want %+v, %q", run, st, skipped, want, wantSkipped)
		}
	}
	got := readAll(t, brokers, "orders")
	if keys := recordKeys(got); !slices.Equal(keys, []string{"o1", "o2"}) {
		t.Errorf("orders holds %q after three runs, want each good entry once", keys)
	}
	if got, want := committed(t, brokers, "g", "dlq"), endOffsets(t, brokers, "dlq"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("committed %v, want the end offsets %v", got, want)
	}
}

// TestReplayTargetDeleted deletes the target topic during the run, after
// Replay saw it: the produces to it fail, and their entries are skipped
// as those of a missing topic.
func TestReplayTargetDeleted(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "dlq", "doomed")
	produce(t, brokers,
		quarantined("dlq", meta{OriginalTopic: "doomed", Reason: permanent}, "d1", "v", t0),
		quarantined("dlq", meta{OriginalTopic: "doomed", Reason: permanent}, "d2", "v", t0),
		quarantined("dlq", meta{OriginalTopic: "doomed", Reason: permanent}, "d3", "v", t0),
	)
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var skipped []string
	cfg := replayCfg("g")
	cfg.Target = func(e Entry) (string, bool) {
		if string(e.Record.Key) == "d2" {
			resp, err := kadm.NewClient(adm).DeleteTopic(ctx, "doomed")
			if err == nil {
				err = resp.Err
			}
			if err != nil {
				t.Errorf("deleting doomed: %v", err)
			}
		}
		return "doomed", true
	}
	cfg.OnUnreplayable = func(e Entry, err error) {
		if !errors.Is(err, ErrTargetMissing) || !strings.Contains(err.Error(), `"doomed"`) {
			t.Errorf("%s skipped with %v, want ErrTargetMissing naming doomed", where(e.Record), err)
		}
		skipped = append(skipped, where(e.Record))
	}
	st, err := Replay(ctx, brokers, cfg, kgo.UnknownTopicRetries(1))
	if err != nil {
		t.Fatalf("Replay: %v (stats %+v)", err, st)
	}
	// d1 may have been acknowledged before the topic went, or not.
	if st.Replayed+st.Unreplayable != 3 || st.Unreplayable < 2 || len(skipped) != st.Unreplayable {
		t.Errorf("stats %+v, skipped %q; want d2 and d3 (and perhaps d1) skipped, the rest replayed", st, skipped)
	}
	if got, want := committed(t, brokers, "g", "dlq"), endOffsets(t, brokers, "dlq"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("committed %v, want the end offsets %v", got, want)
	}
}

// TestReplayUnretryableProduce replays to a topic that takes batches of
// at most 2 KiB: the entry too large for it is skipped with the broker's
// error, and the small ones, whatever batch they shared with it, are
// replayed once each.
func TestReplayUnretryableProduce(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "dlq")
	limit := "2048"
	createTopic(t, brokers, "small", map[string]*string{"max.message.bytes": &limit})
	var entries []*kgo.Record
	var want []string
	for i := range 20 {
		k, v := fmt.Sprintf("k%02d", i), "v"
		if i == 7 {
			v = string(incompressible(8192))
		} else {
			want = append(want, k)
		}
		entries = append(entries, quarantined("dlq", meta{OriginalTopic: "small", Reason: permanent}, k, v, t0))
	}
	produce(t, brokers, entries...)
	for run := 1; run <= 2; run++ {
		var skipped []string
		cfg := replayCfg("g")
		cfg.OnUnreplayable = func(e Entry, err error) {
			if !errors.Is(err, kerr.MessageTooLarge) || !strings.Contains(err.Error(), `"small"`) {
				t.Errorf("run %d: %s skipped with %v, want MessageTooLarge naming small", run, where(e.Record), err)
			}
			skipped = append(skipped, where(e.Record))
		}
		st := runReplay(t, brokers, cfg)
		wantSt, wantSkipped := ReplayStats{}, []string(nil)
		if run == 1 {
			wantSt = ReplayStats{Scanned: 20, Matched: 20, Replayed: 19, Unreplayable: 1}
			wantSkipped = []string{"dlq[0]@7"}
		}
		if st != wantSt || !slices.Equal(skipped, wantSkipped) {
			t.Errorf("run %d: stats %+v, skipped %q; want %+v, %q", run, st, skipped, wantSt, wantSkipped)
		}
	}
	if got := recordKeys(readAll(t, brokers, "small")); !slices.Equal(got, want) {
		t.Errorf("small holds %q, want %q", got, want)
	}
	if got, want := committed(t, brokers, "g", "dlq"), endOffsets(t, brokers, "dlq"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("committed %v, want the end offsets %v", got, want)
	}
}

// TestReplayLargeRecord: an entry above kgo's default batch cap
// (1,000,012 bytes) but within its target's max.message.bytes is replayed,
// not passed over as too large.
func TestReplayLargeRecord(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "dlq")
	limit := "4000000"
	createTopic(t, brokers, "big", map[string]*string{"max.message.bytes": &limit})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	e := quarantined("dlq", meta{OriginalTopic: "big", Reason: permanent}, "k", string(incompressible(1_010_000)), t0)
	if err := cl.ProduceSync(ctx, e).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := replayCfg("g")
	cfg.OnUnreplayable = func(e Entry, err error) { t.Errorf("%s passed over: %v", where(e.Record), err) }
	if st := runReplay(t, brokers, cfg); st.Replayed != 1 {
		t.Fatalf("stats %+v, want the large entry replayed", st)
	}
	if got := readAll(t, brokers, "big"); len(got) != 1 || len(got[0].Value) != 1_010_000 {
		t.Fatalf("big holds %d records", len(got))
	}
}

// incompressible returns n bytes that no codec shrinks much.
func incompressible(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// trimmed returns a quarantined record as the quarantine writer writes
// one too large for the dead-letter topic: value dropped, and the headers
// saying so.
func trimmed(dlqTopic string, m retrytopics.Meta, key string, size string) *kgo.Record {
	r := quarantined(dlqTopic, m, key, "", t0)
	r.Value = nil
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: retrytopics.HeaderTrimmed, Value: []byte("value")},
		kgo.RecordHeader{Key: retrytopics.HeaderOriginalSize, Value: []byte(size)},
	)
	return r
}

// TestReplayTrimmed passes over, with a notice, an entry whose value was
// dropped when it was quarantined, whatever its target and whether or not
// its headers decode.
func TestReplayTrimmed(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "dlq", "orders", "rescue")
	produce(t, brokers,
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, "ok1", "v", t0),
		trimmed("dlq", meta{OriginalTopic: "orders", Reason: permanent}, "big", "2097152"),
		quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, "ok2", "v", t0),
	)
	for _, c := range []struct {
		name   string
		mod    func(*ReplayConfig)
		target string // "" for none: a dry run
	}{
		{"dry run", func(c *ReplayConfig) { c.DryRun = true }, ""},
		{"original topic", func(*ReplayConfig) {}, "orders"},
		{"target takes everything", func(c *ReplayConfig) { c.Target = func(Entry) (string, bool) { return "rescue", true } }, "rescue"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var skipped []string
			cfg := replayCfg(c.name)
			c.mod(&cfg)
			cfg.OnUnreplayable = func(e Entry, err error) {
				if !errors.Is(err, ErrTrimmed) || !strings.Contains(err.Error(), "value") || !strings.Contains(err.Error(), "2097152") {
					t.Errorf("%s skipped with %v, want ErrTrimmed saying what was dropped and the original size", where(e.Record), err)
				}
				skipped = append(skipped, where(e.Record))
			}
			st := runReplay(t, brokers, cfg)
			if want := (ReplayStats{Scanned: 3, Matched: 3, Replayed: 2, Unreplayable: 1}); st != want || !slices.Equal(skipped, []string{"dlq[0]@1"}) {
				t.Errorf("stats %+v, skipped %q; want %+v, dlq[0]@1", st, skipped, want)
			}
			if c.target == "" {
				return
			}
			if got := recordKeys(readAll(t, brokers, c.target)); !slices.Equal(got, []string{"ok1", "ok2"}) {
				t.Errorf("%s holds %q, want ok1 and ok2", c.target, got)
			}
		})
	}
}

func recordKeys(rs []*kgo.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.Key)
	}
	slices.Sort(out)
	return out
}

func TestReplayResume(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name, bound := "cancel", maxPending
		if crash {
			name, bound = "crash", commitEvery+maxPending
		}
		t.Run(name, func(t *testing.T) {
			const n = 300
			_, brokers := testkit.Cluster(t, 3, "dlq", "orders")
			var entries []*kgo.Record
			for i := range n {
				m := meta{OriginalTopic: "orders", OriginalPartition: int32(i % 3), OriginalOffset: int64(i), Reason: handlerError}
				entries = append(entries, quarantined("dlq", m, fmt.Sprintf("k%03d", i), "v", t0))
			}
			produce(t, brokers, entries...)

			cfg := replayCfg("resume")
			cfg.Rate = 400
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			// Stop the first run once 150 records arrived on orders.
			arrived := watch(t, ctx, brokers, "orders", 150)
			runCtx, stop := context.WithCancel(ctx)
			go func() {
				select {
				case <-arrived:
				case <-ctx.Done():
				}
				stop()
			}()
			st1, err := replay(runCtx, brokers, cfg, nil, replayHooks{noFinalCommit: crash})
			stop()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("first run: %v, want context.Canceled (stats %+v)", err, st1)
			}
			if st1.Replayed >= n {
				t.Fatalf("first run replayed everything (%+v) before it was stopped", st1)
			}
			st2, err := Replay(ctx, brokers, cfg)
			if err != nil {
				t.Fatalf("second run: %v", err)
			}
			got := readAll(t, brokers, "orders")
			seen := make(map[string]int)
			for _, r := range got {
				seen[string(r.Key)]++
			}
			for _, q := range entries {
				if seen[string(q.Key)] == 0 {
					t.Errorf("entry %s never replayed", q.Key)
				}
			}
			dups := len(got) - n
			t.Logf("first run %+v, second run %+v, duplicates %d (bound %d)", st1, st2, dups, bound)
			if dups < 0 || dups > bound {
				t.Errorf("%d duplicates, want at most %d", dups, bound)
			}
			if st1.Replayed+st2.Replayed != len(got) {
				t.Errorf("replayed %d + %d, but orders holds %d records", st1.Replayed, st2.Replayed, len(got))
			}
			if st2.Scanned >= n {
				t.Errorf("the second run read all %d entries again: it did not resume", st2.Scanned)
			}
			if !crash && dups != 0 {
				// Not a bound violation, but every record in flight should
				// have been acknowledged within the grace period on kfake.
				t.Logf("a cancelled run left %d duplicates", dups)
			}
			if got, want := committed(t, brokers, "resume", "dlq"), endOffsets(t, brokers, "dlq"); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("committed %v, want the end offsets %v", got, want)
			}
		})
	}
}

// watch consumes topic from its start in the background and closes the
// returned channel once n records arrived. It stops when ctx ends or the
// test does.
func watch(t *testing.T, ctx context.Context, brokers []string, topic string, n int) <-chan struct{} {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	reached := make(chan struct{})
	go func() {
		defer close(done)
		count := 0
		for wctx.Err() == nil {
			count += len(cl.PollFetches(wctx).Records())
			if count >= n {
				close(reached)
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cl.Close()
	})
	return reached
}

func TestReplayRate(t *testing.T) {
	_, brokers := testkit.Cluster(t, 3, "dlq", "orders")
	const n, rate = 30, 300.0
	var entries []*kgo.Record
	for i := range n {
		entries = append(entries, quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, strconv.Itoa(i), "v", t0))
	}
	produce(t, brokers, entries...)
	cfg := replayCfg("g")
	cfg.Rate = rate
	start := time.Now()
	st := runReplay(t, brokers, cfg)
	elapsed := time.Since(start)
	if st.Replayed != n {
		t.Errorf("replayed %d, want %d", st.Replayed, n)
	}
	if min := time.Duration(n-1) * time.Second / time.Duration(rate); elapsed < min {
		t.Errorf("%d records at %v/s took %v, less than %v", n, rate, elapsed, min)
	}
}

func TestReplayResumeGroupActive(t *testing.T) {
	_, brokers := testkit.Cluster(t, 3, "dlq", "orders")
	produce(t, brokers, quarantined("dlq", meta{OriginalTopic: "orders", Reason: permanent}, "k", "v", t0))
	assigned := make(chan struct{})
	var once sync.Once
	member, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("app"), kgo.ConsumeTopics("dlq"), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { once.Do(func() { close(assigned) }) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	polled := make(chan struct{})
	go func() { // kgo needs a poller to run the group's callbacks promptly
		defer close(polled)
		for ctx.Err() == nil {
			if fs := member.PollFetches(ctx); fs.IsClientClosed() {
				return
			}
		}
	}()
	select {
	case <-assigned:
	case <-ctx.Done():
		t.Fatal("the member was never assigned partitions")
	}
	if _, err := Replay(ctx, brokers, replayCfg("app")); !errors.Is(err, ErrResumeGroupActive) || !strings.Contains(err.Error(), `"app" has 1 member (`) {
		t.Errorf("Replay into a group with a member: %v, want ErrResumeGroupActive saying it has 1 member", err)
	}
	member.Close()
	<-polled
	if st, err := Replay(ctx, brokers, replayCfg("app")); err != nil || st.Replayed != 1 {
		t.Errorf("Replay once the member left: %+v, %v", st, err)
	}
}

func TestReplayConfigValidation(t *testing.T) {
	good := replayCfg("g")
	cases := []struct {
		mod  func(*ReplayConfig)
		want string
	}{
		{func(c *ReplayConfig) { c.Topic = "" }, "ReplayConfig.Topic"},
		{func(c *ReplayConfig) { c.ResumeGroup = "" }, "ReplayConfig.ResumeGroup"},
		{func(c *ReplayConfig) { c.Rate = 0 }, "ReplayConfig.Rate"},
		{func(c *ReplayConfig) { c.Rate = -1 }, "ReplayConfig.Rate"},
		{func(c *ReplayConfig) { c.Rate = math.NaN() }, "ReplayConfig.Rate"},
		{func(c *ReplayConfig) { c.MaxReplays = 0 }, "ReplayConfig.MaxReplays"},
		{func(c *ReplayConfig) { c.MaxReplays = retrytopics.MaxAttempt + 1 }, "MaxReplays"},
		{func(c *ReplayConfig) { c.Filter.Reasons = []retrytopics.Reason{"x"} }, "Filter.Reasons"},
		{func(c *ReplayConfig) { c.Filter.From, c.Filter.To = t0.Add(time.Second), t0 }, "Filter.From"},
	}
	for _, c := range cases {
		cfg := good
		c.mod(&cfg)
		// No broker is contacted: validation comes first.
		_, err := Replay(context.Background(), []string{"127.0.0.1:1"}, cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v", c.want, err)
		}
	}
	if _, err := Replay(context.Background(), nil, good); err == nil {
		t.Error("no brokers: no error")
	}
}

func TestPacer(t *testing.T) {
	now := t0
	var slept []time.Duration
	p := newPacer(10)
	p.now = func() time.Time { return now }
	p.sleep = func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		now = now.Add(d)
		return nil
	}
	ctx := context.Background()
	for range 3 {
		if err := p.wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(50 * time.Millisecond) // some work between calls
	p.wait(ctx)
	now = now.Add(time.Second) // idle: no burst after it
	p.wait(ctx)
	p.wait(ctx)
	want := []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}
	if !slices.Equal(slept, want) {
		t.Errorf("slept %v, want %v", slept, want)
	}

	if p := newPacer(math.Inf(1)); p.interval != 0 {
		t.Errorf("unbounded rate: interval %v", p.interval)
	}
	if p := newPacer(1e-300); p.interval <= 0 {
		t.Errorf("tiny rate: interval %v", p.interval)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p = newPacer(1e-3)
	p.wait(cctx) // the first call is due at once
	start := time.Now()
	if err := p.wait(cctx); !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Errorf("wait on a cancelled ctx: %v after %v", err, time.Since(start))
	}
}
