package dlq

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/floodgate-kafka/floodgate/retrytopics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait of these tests.
const waitFor = 30 * time.Second

// t0 is the quarantine time of the first test entry.
var t0 = time.Date(2030, 1, 2, 3, 0, 0, 0, time.UTC)

// quarantined returns a record as the quarantine writer would write it to
// dlqTopic: m encoded over the original headers, quarantined at ts.
func quarantined(dlqTopic string, m retrytopics.Meta, key, value string, ts time.Time, orig ...kgo.RecordHeader) *kgo.Record {
	if m.Attempt == 0 {
		m.Attempt = 3
	}
	if m.FirstFailure.IsZero() {
		m.FirstFailure = ts.Add(-time.Minute)
	}
	if m.OriginalTimestamp.IsZero() {
		m.OriginalTimestamp = ts.Add(-2 * time.Minute)
	}
	if m.Error == "" {
		m.Error = "boom"
	}
	return &kgo.Record{
		Topic:     dlqTopic,
		Key:       []byte(key),
		Value:     []byte(value),
		Timestamp: ts,
		Headers:   m.Encode(orig),
	}
}

// produce writes rs, spread round-robin over the partitions of their
// topics, and fails the test on error. It returns them as acknowledged.
func produce(t testing.TB, brokers []string, rs ...*kgo.Record) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("producing %d records: %v", len(rs), err)
	}
	return rs
}

// inspectAll returns every entry of topic.
func inspectAll(t testing.TB, brokers []string, topic string, f Filter) []Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var out []Entry
	if err := Inspect(ctx, brokers, topic, f, func(e Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("Inspect %s: %v", topic, err)
	}
	return out
}

// readAll returns every record of topic, read directly (not through
// Inspect).
func readAll(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	ends.Each(func(o kadm.ListedOffset) { want += int(o.Offset) })
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), want, topic)
		}
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// committed returns the offsets group committed on topic.
func committed(t testing.TB, brokers []string, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	os, err := committedOffsets(ctx, kadm.NewClient(cl), group, topic)
	if err != nil {
		t.Fatal(err)
	}
	return os
}

// endOffsets returns the end offsets of topic.
func endOffsets(t testing.TB, brokers []string, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	bs, err := listBounds(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int32]int64)
	for p, b := range bs {
		out[p] = b.end
	}
	return out
}

func keysOf(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = string(e.Record.Key)
	}
	return out
}

func where(r *kgo.Record) string { return fmt.Sprintf("%s[%d]@%d", r.Topic, r.Partition, r.Offset) }

// createTopic creates topic with one partition and configs.
func createTopic(t testing.TB, brokers []string, topic string, configs map[string]*string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
}
