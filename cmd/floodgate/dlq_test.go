package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

func TestDLQCommandLine(t *testing.T) {
	b := []string{"--brokers", "127.0.0.1:1", "--topic", "dlq"}
	with := func(sub string, extra ...string) []string {
		return append(append([]string{"dlq", sub}, b...), extra...)
	}
	cases := []struct {
		args     []string
		code     int
		out, err string // substrings of stdout and stderr
	}{
		{args: []string{"dlq"}, code: 2, err: "usage: floodgate dlq <subcommand>"},
		{args: []string{"dlq", "nope"}, code: 2, err: "unknown subcommand \"nope\""},
		{args: []string{"dlq", "-h"}, code: 0, err: "inspect"},
		{args: []string{"help", "dlq"}, code: 0, out: "replay"},
		{args: []string{"help"}, code: 0, out: "  dlq "},
		{args: []string{"dlq", "inspect", "-h"}, code: 0, err: "-original-topic"},
		{args: []string{"dlq", "replay", "-h"}, code: 0, err: "-resume-id"},
		{args: []string{"dlq", "inspect"}, code: 2, err: "--brokers is required"},
		{args: []string{"dlq", "replay", "--brokers", " , "}, code: 2, err: "--brokers is required"},
		{args: []string{"dlq", "inspect", "--brokers", "x:1"}, code: 2, err: "--topic is required"},
		{args: with("inspect", "--reason", "permanent,sunspots"), code: 2, err: "unknown reason \"sunspots\""},
		{args: with("inspect", "--from", "yesterday"), code: 2, err: "--from: \"yesterday\" is not an RFC3339 time"},
		{args: with("inspect", "--to", "2030-01-02"), code: 2, err: "--to:"},
		{args: with("inspect", "--from", "2030-01-02T00:00:00Z", "--to", "2030-01-01T00:00:00Z"), code: 2, err: "is not before --to"},
		{args: with("inspect", "--limit", "-1"), code: 2, err: "--limit must be >= 0"},
		{args: with("inspect", "extra"), code: 2, err: "unexpected arguments: extra"},
		{args: with("inspect", "--json=maybe"), code: 2, err: "invalid boolean value"},
		{args: with("replay", "--rate", "0"), code: 2, err: "--rate must be > 0"},
		{args: with("replay", "--rate", "NaN"), code: 2, err: "--rate must be > 0"},
		{args: with("replay", "--max-replays", "0"), code: 2, err: "--max-replays must be >= 1"},
		{args: with("replay", "--undecodable"), code: 2, err: "--undecodable needs --to-topic"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String(), c.out) || !strings.Contains(errb.String(), c.err) {
			t.Errorf("floodgate %s: status %d, stdout:\n%s\nstderr:\n%s\nwant status %d, stdout with %q, stderr with %q",
				strings.Join(c.args, " "), code, out.String(), errb.String(), c.code, c.out, c.err)
		}
	}
}

var dlqT0 = time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)

// dlqCluster starts kfake with a dead-letter topic holding a permanent
// entry from orders, a handler-error entry from payments with a binary key,
// and an entry with malformed floodgate headers.
func dlqCluster(t *testing.T) []string {
	t.Helper()
	_, brokers := testkit.Cluster(t, 2, "dlq", "orders", "payments", "rescue")
	q := func(m retrytopics.Meta, key []byte, ts time.Time) *kgo.Record {
		m.Attempt, m.Error, m.FirstFailure = 3, "boom: \"quoted\"", ts.Add(-time.Minute)
		return &kgo.Record{Topic: "dlq", Key: key, Value: []byte("value"), Timestamp: ts,
			Headers: m.Encode([]kgo.RecordHeader{{Key: "trace", Value: []byte("t-1")}})}
	}
	bad := q(retrytopics.Meta{OriginalTopic: "orders", Reason: retrytopics.ReasonPermanent}, []byte("bad"), dlqT0.Add(2*time.Minute))
	for i, h := range bad.Headers {
		if h.Key == retrytopics.HeaderAttempt {
			bad.Headers[i].Value = []byte("abc")
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = cl.ProduceSync(ctx,
		q(retrytopics.Meta{OriginalTopic: "orders", OriginalPartition: 1, OriginalOffset: 7, Reason: retrytopics.ReasonPermanent}, []byte("k1"), dlqT0),
		q(retrytopics.Meta{OriginalTopic: "payments", Reason: retrytopics.ReasonHandlerError, ReplayCount: 1}, []byte{0xff, 0x00}, dlqT0.Add(time.Minute)),
		bad,
	).FirstErr()
	if err != nil {
		t.Fatal(err)
	}
	return brokers
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestDLQInspect(t *testing.T) {
	brokers := strings.Join(dlqCluster(t), ",")
	base := []string{"dlq", "inspect", "--brokers", brokers, "--topic", "dlq"}

	code, out, errs := runCLI(t, base...)
	if code != 0 || len(lines(out)) != 3 || !strings.Contains(errs, "inspect: 3 entries\n") {
		t.Fatalf("inspect: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, want := range []string{
		`permanent orders[1]@7 attempt=3 replays=0 key="k1" value=5B error="boom: \"quoted\""`,
		`handler-error payments[0]@0 attempt=3 replays=1 key=base64:/wA=`,
		`UNDECODABLE key="bad" value=5B decode-error="retrytopics: malformed floodgate header: floodgate-attempt=\"abc\"`,
		`2030-01-02T03:01:00.000Z`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %s:\n%s", want, out)
		}
	}

	code, out, errs = runCLI(t, append(base, "--reason", "undecodable", "--reason", "permanent", "--from", "2030-01-02T03:00:30Z")...)
	if code != 0 || len(lines(out)) != 1 || !strings.Contains(out, "UNDECODABLE") {
		t.Errorf("filtered inspect: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, append(base, "--limit", "1")...)
	if code != 0 || len(lines(out)) != 1 || !strings.Contains(errs, "inspect: 1 entry (--limit reached)") {
		t.Errorf("inspect --limit 1: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, _ = runCLI(t, append(base, "--key", "k1", "--original-topic", "orders")...)
	if code != 0 || len(lines(out)) != 1 || !strings.Contains(out, `key="k1"`) {
		t.Errorf("inspect --key k1: status %d, stdout:\n%s", code, out)
	}

	code, out, errs = runCLI(t, append(base, "--json")...)
	if code != 0 || len(lines(out)) != 3 {
		t.Fatalf("inspect --json: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	byKey := make(map[string]jsonEntry)
	for _, l := range lines(out) {
		var j jsonEntry
		if err := json.Unmarshal([]byte(l), &j); err != nil {
			t.Fatalf("line %s: %v", l, err)
		}
		if j.Key == nil {
			t.Fatalf("line %s: null key", l)
		}
		byKey[*j.Key] = j
	}
	k1 := byKey["k1"]
	if k1.Meta == nil || k1.Meta.Reason != "permanent" || k1.Meta.OriginalTopic != "orders" || k1.Meta.OriginalPartition != 1 ||
		k1.Meta.OriginalOffset != 7 || k1.Meta.Attempt != 3 || k1.Meta.FirstFailure == nil || !k1.Timestamp.Equal(dlqT0) ||
		k1.Value == nil || *k1.Value != "value" || len(k1.Headers) != 1 || k1.Headers[0] != (jsonHeader{Key: "trace", Value: "t-1"}) {
		t.Errorf("k1: %+v meta %+v", k1, k1.Meta)
	}
	if bin := byKey["/wA="]; bin.KeyEncoding != "base64" || bin.Meta == nil || bin.Meta.ReplayCount != 1 {
		t.Errorf("binary key: %+v", bin)
	}
	if bad := byKey["bad"]; bad.Meta != nil || !strings.Contains(bad.DecodeError, "floodgate-attempt") || len(bad.Headers) < 5 {
		t.Errorf("undecodable: %+v; want no meta, the error and every header", bad)
	}

	code, _, errs = runCLI(t, "dlq", "inspect", "--brokers", brokers, "--topic", "nope")
	if code != 1 || !strings.Contains(errs, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("inspect of a missing topic: status %d, stderr:\n%s", code, errs)
	}
}

func TestDLQReplay(t *testing.T) {
	brokers := dlqCluster(t)
	base := []string{"dlq", "replay", "--brokers", strings.Join(brokers, ","), "--topic", "dlq", "--rate", "1000"}

	code, out, errs := runCLI(t, append(base, "--dry-run")...)
	if code != 0 || !strings.Contains(out, "scanned=3 not-selected=0 matched=3 replayed=2 loop-guarded=0 undecodable=1 no-target=0") ||
		!strings.Contains(out, "dry run") || !strings.Contains(out, "resume id floodgate-dlq-replay.dlq (the topic's default)\n") {
		t.Fatalf("dry run: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, base...)
	if code != 0 || !strings.Contains(out, "scanned=3 not-selected=0 matched=3 replayed=2 ") {
		t.Fatalf("replay: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	// The same resume id: nothing is left.
	code, out, errs = runCLI(t, base...)
	if code != 0 || !strings.Contains(out, "scanned=0 not-selected=0 matched=0 replayed=0 ") {
		t.Errorf("second replay: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	// Another resume id: everything again, undecodable too.
	code, out, errs = runCLI(t, append(base, "--resume-id", "again", "--to-topic", "rescue", "--undecodable", "--max-replays", "1")...)
	if code != 0 || !strings.Contains(out, "scanned=3 not-selected=0 matched=3 replayed=2 loop-guarded=1 ") {
		t.Errorf("replay to rescue: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, _ = runCLI(t, "dlq", "inspect", "--brokers", strings.Join(brokers, ","), "--topic", "rescue")
	if code != 0 || len(lines(out)) != 2 || strings.Count(out, "replays=1") != 2 {
		t.Errorf("rescue: status %d, stdout:\n%s", code, out)
	}

	code, out, errs = runCLI(t, append(base, "--resume-id", "mine", "--original-topic", "orders")...)
	if code != 0 || !strings.Contains(out, "resume id mine\n") || !strings.Contains(out, "not-selected=2 matched=1 replayed=1 ") {
		t.Errorf("replay --resume-id mine: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var o, e bytes.Buffer
	if code := run(ctx, append(base, "--resume-id", "other"), &o, &e); code != 1 || !strings.Contains(e.String(), "floodgate dlq replay:") {
		t.Errorf("cancelled replay: status %d, stdout:\n%s\nstderr:\n%s", code, o.String(), e.String())
	}
}

func TestResumeGroupFor(t *testing.T) {
	if a, b := resumeGroupFor("dlq"), resumeGroupFor("dlq2"); a != "floodgate-dlq-replay.dlq" || a == b {
		t.Errorf("resume ids %q and %q, want floodgate-dlq-replay.<topic>", a, b)
	}
}

// laneCluster starts kfake with topics of one partition and writes rs to
// them.
func laneCluster(t *testing.T, topics []string, rs ...*kgo.Record) []string {
	t.Helper()
	_, brokers := testkit.Cluster(t, 1, topics...)
	produceTo(t, brokers, rs...)
	return brokers
}

func produceTo(t *testing.T, brokers []string, rs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// entry returns a record of the dead-letter topic "dlq" quarantined from
// topic at offset.
func entry(topic string, offset int64, key string) *kgo.Record {
	m := retrytopics.Meta{OriginalTopic: topic, OriginalOffset: offset, Attempt: 3, Reason: retrytopics.ReasonPermanent, Error: "boom"}
	return &kgo.Record{Topic: "dlq", Key: []byte(key), Value: []byte("value"), Timestamp: dlqT0, Headers: m.Encode(nil)}
}

// trimmedEntry returns entry with its value dropped, as the quarantine
// writer trims a record too large for the dead-letter topic.
func trimmedEntry(topic string, offset int64, key string) *kgo.Record {
	r := entry(topic, offset, key)
	r.Value = nil
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: retrytopics.HeaderTrimmed, Value: []byte("value")},
		kgo.RecordHeader{Key: retrytopics.HeaderOriginalSize, Value: []byte("2097152")})
	return r
}

// TestDLQReplaySkips replays a lane holding an entry for a topic that does
// not exist and a trimmed one between good ones, three times: the first
// run replays the good ones, warns about each other one and exits with 3;
// the next ones find nothing to do.
func TestDLQReplaySkips(t *testing.T) {
	brokers := laneCluster(t, []string{"dlq", "orders"},
		entry("orders", 10, "o1"), entry("ghost", 11, "g"), trimmedEntry("orders", 12, "big"), entry("orders", 13, "o2"))
	base := []string{"dlq", "replay", "--brokers", strings.Join(brokers, ","), "--topic", "dlq", "--rate", "1000"}

	code, out, errs := runCLI(t, append(base, "--dry-run")...)
	if code != 3 || !strings.Contains(out, "replayed=2 ") || !strings.Contains(out, "unreplayable=2") ||
		!strings.Contains(errs, "would skip dlq[0]@1 (ghost[0]@11)") || !strings.Contains(errs, "a run would skip 2 entries") {
		t.Errorf("dry run: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for run := 1; run <= 3; run++ {
		code, out, errs := runCLI(t, base...)
		if run == 1 {
			for _, want := range []string{
				`floodgate dlq replay: skipped dlq[0]@1 (ghost[0]@11): dlq: target topic does not exist: "ghost"`,
				`floodgate dlq replay: skipped dlq[0]@2 (orders[0]@12): dlq: entry was trimmed when quarantined (dropped: value; the original had 2097152 bytes)`,
				`floodgate dlq replay: skipped 2 entries that cannot be replayed`,
			} {
				if !strings.Contains(errs, want) {
					t.Errorf("run 1: stderr lacks %s:\n%s", want, errs)
				}
			}
			if code != 3 || !strings.Contains(out, "scanned=4 not-selected=0 matched=4 replayed=2 loop-guarded=0 undecodable=0 no-target=0 unreplayable=2 ") {
				t.Errorf("run 1: status %d, want 3; stdout:\n%s\nstderr:\n%s", code, out, errs)
			}
			continue
		}
		if code != 0 || !strings.Contains(out, "scanned=0 ") || strings.Contains(errs, "skipped") {
			t.Errorf("run %d: status %d, stdout:\n%s\nstderr:\n%s", run, code, out, errs)
		}
	}
	code, out, _ = runCLI(t, "dlq", "inspect", "--brokers", strings.Join(brokers, ","), "--topic", "orders")
	if code != 0 || len(lines(out)) != 2 || !strings.Contains(out, `key="o1"`) || !strings.Contains(out, `key="o2"`) {
		t.Errorf("orders after three runs: status %d, want o1 and o2 once each:\n%s", code, out)
	}
}

// TestDLQReplayMissingToTopic names a --to-topic that does not exist: the
// command fails before it reads anything, rather than skip every entry.
func TestDLQReplayMissingToTopic(t *testing.T) {
	brokers := strings.Join(dlqCluster(t), ",")
	base := []string{"dlq", "replay", "--brokers", brokers, "--topic", "dlq", "--rate", "1000"}
	code, out, errs := runCLI(t, append(base, "--to-topic", "rescu")...)
	if code != 1 || !strings.Contains(errs, `--to-topic "rescu" does not exist`) || strings.Contains(out, "scanned=") {
		t.Errorf("replay --to-topic rescu: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, errs = runCLI(t, base...)
	if code != 0 || !strings.Contains(out, "scanned=3 ") {
		t.Errorf("the run after: status %d, want every entry still there; stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// TestDLQReplayFilterChange replays with other filter flags each time,
// without --resume-id: no run re-sends what an earlier one replayed.
func TestDLQReplayFilterChange(t *testing.T) {
	brokers := dlqCluster(t)
	bs := strings.Join(brokers, ",")
	base := []string{"dlq", "replay", "--brokers", bs, "--topic", "dlq", "--rate", "1000"}
	count := func(topic string) int {
		t.Helper()
		code, out, errs := runCLI(t, "dlq", "inspect", "--brokers", bs, "--topic", topic)
		if code != 0 {
			t.Fatalf("inspect %s: status %d, stderr:\n%s", topic, code, errs)
		}
		return len(lines(out))
	}

	code, out, errs := runCLI(t, append(base, "--reason", "handler-error")...)
	if code != 0 || !strings.Contains(out, "not-selected=2 matched=1 replayed=1 ") ||
		!strings.Contains(out, "2 entries not selected by the filter flags were passed over") {
		t.Fatalf("replay --reason handler-error: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	// No filter: the handler-error entry is not re-sent (nor are the
	// others, which the first run passed over).
	code, out, errs = runCLI(t, base...)
	if code != 0 || !strings.Contains(out, "scanned=0 ") {
		t.Errorf("replay without a filter: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if n := count("payments"); n != 1 {
		t.Errorf("payments holds %d records, want the handler-error entry once", n)
	}
	// A new entry, and other filter flags again: only it is replayed.
	produceTo(t, brokers, entry("orders", 99, "k2"))
	code, out, errs = runCLI(t, append(base, "--original-topic", "orders", "--max-replays", "5", "--to-topic", "rescue")...)
	if code != 0 || !strings.Contains(out, "scanned=1 not-selected=0 matched=1 replayed=1 ") {
		t.Errorf("replay --original-topic orders: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if n, m := count("payments"), count("rescue"); n != 1 || m != 1 {
		t.Errorf("payments holds %d records and rescue %d, want 1 each", n, m)
	}
}

// TestDLQReplayErrors: a run that fails before it read anything prints the
// error, and no stats line of zeros before it.
func TestDLQReplayErrors(t *testing.T) {
	brokers := strings.Join(dlqCluster(t), ",")
	code, out, errs := runCLI(t, "dlq", "replay", "--brokers", brokers, "--topic", "nope")
	if code != 1 || strings.Contains(out, "scanned=") || !strings.Contains(errs, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("replay of a missing topic: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var o, e bytes.Buffer
	code = run(ctx, []string{"dlq", "replay", "--brokers", brokers, "--topic", "dlq"}, &o, &e)
	if code != 1 || strings.Contains(o.String(), "scanned=") || !strings.Contains(e.String(), "interrupted") {
		t.Errorf("cancelled replay: status %d, stdout:\n%s\nstderr:\n%s", code, o.String(), e.String())
	}
}

// TestDLQInspectTrimmed lists a trimmed entry with what was dropped and
// the original size, in text and JSON, whether or not its headers decode.
func TestDLQInspectTrimmed(t *testing.T) {
	brokers := laneCluster(t, []string{"dlq"}, trimmedEntry("orders", 12, "big"), entry("orders", 13, "ok"))
	base := []string{"dlq", "inspect", "--brokers", strings.Join(brokers, ","), "--topic", "dlq"}

	code, out, errs := runCLI(t, base...)
	ls := lines(out)
	if code != 0 || len(ls) != 2 || !strings.Contains(errs, "2 entries") {
		t.Fatalf("inspect: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if !strings.Contains(ls[0], `key="big" value=0B TRIMMED=value original-size=2097152B`) {
		t.Errorf("trimmed entry: %s", ls[0])
	}
	if strings.Contains(ls[1], "TRIMMED") {
		t.Errorf("whole entry shown as trimmed: %s", ls[1])
	}

	code, out, errs = runCLI(t, append(base, "--json")...)
	ls = lines(out)
	if code != 0 || len(ls) != 2 {
		t.Fatalf("inspect --json: status %d, stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	var big, ok jsonEntry
	if err := json.Unmarshal([]byte(ls[0]), &big); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(ls[1]), &ok); err != nil {
		t.Fatal(err)
	}
	if big.Trimmed == nil || *big.Trimmed != "value" || big.OriginalSize == nil || *big.OriginalSize != 2097152 {
		t.Errorf("trimmed entry: %s", ls[0])
	}
	if ok.Trimmed != nil || ok.OriginalSize != nil || strings.Contains(ls[1], "trimmed") {
		t.Errorf("whole entry: %s", ls[1])
	}
}
