package main

import (
	"bytes"
	"context"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"go.uber.org/goleak"

	"github.com/floodgate-kafka/floodgate/consumer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func smallDemo() demoConfig {
	cfg := defaultDemoConfig()
	cfg.records = 3000
	cfg.partitions = 3
	cfg.handlerDelay = 200 * time.Microsecond
	cfg.partMaxRecords = 50
	cfg.duration = time.Minute
	cfg.interval = 100 * time.Millisecond
	return cfg
}

// demoRun runs the demo in-process and returns its exit status, the live
// view lines and the fields of the final line.
func demoRun(t *testing.T, cfg demoConfig) (code int, live []string, final map[string]string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runDemo(context.Background(), cfg, &out, &errb)
	if errb.Len() > 0 {
		t.Logf("stderr:\n%s", errb.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	t.Logf("%s", last)
	if !strings.HasPrefix(last, "floodgate demo: produced=") {
		t.Fatalf("last line is not the final accounting line:\n%s", out.String())
	}
	for _, l := range lines[:len(lines)-1] {
		if strings.HasPrefix(l, "t=") {
			live = append(live, l)
		}
		if strings.HasPrefix(l, "floodgate demo:") {
			t.Errorf("more than one line starts with \"floodgate demo:\":\n%s", out.String())
		}
	}
	final = make(map[string]string)
	for _, f := range strings.Fields(strings.TrimPrefix(last, "floodgate demo:")) {
		if k, v, ok := strings.Cut(f, "="); ok {
			final[k] = v
		}
	}
	return code, live, final
}

func field(t *testing.T, final map[string]string, key string) int {
	t.Helper()
	n, err := strconv.Atoi(final[key])
	if err != nil {
		t.Fatalf("final line field %s=%q: %v", key, final[key], err)
	}
	return n
}

// checkDrained asserts a run that handled every record it produced.
func checkDrained(t *testing.T, cfg demoConfig, code int, live []string, final map[string]string) {
	t.Helper()
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if final["lost"] != "0" {
		t.Errorf("lost=%s, want 0", final["lost"])
	}
	produced, handled := field(t, final, "produced"), field(t, final, "handled")
	if produced != cfg.records || handled != produced {
		t.Errorf("produced=%d handled=%d, want both %d", produced, handled, cfg.records)
	}
	for _, k := range []string{"unhandled", "unexpected", "produce-errors"} {
		if v, ok := final[k]; ok {
			t.Errorf("%s=%s in a drained run", k, v)
		}
	}
	if field(t, final, "pauses") == 0 {
		t.Errorf("no partition was ever paused: the burst did not outrun the handler")
	}
	elapsed, err := time.ParseDuration(final["elapsed"])
	if err != nil {
		t.Fatalf("elapsed=%q: %v", final["elapsed"], err)
	}
	// A tick that fired before the run drained was printed: the loop
	// prints ticks until the drain is seen.
	if elapsed > 2*cfg.interval && len(live) == 0 {
		t.Errorf("a %v run printed no live-view line every %v", elapsed, cfg.interval)
	}
}

func TestDemoLosesNothing(t *testing.T) {
	for _, o := range []consumer.Ordering{consumer.OrderPartition, consumer.OrderKey, consumer.OrderNone} {
		t.Run(o.String(), func(t *testing.T) {
			cfg := smallDemo()
			cfg.ordering = o
			code, live, final := demoRun(t, cfg)
			checkDrained(t, cfg, code, live, final)
			if len(live) > 0 && !strings.Contains(live[0], "/3 [") {
				t.Errorf("live line does not show paused partitions out of 3: %s", live[0])
			}
		})
	}
}

// TestDemoExistingCluster runs the demo twice against an existing cluster:
// the first run creates the topic, the second finds it holding the first
// run's records, which it must neither consume nor count.
func TestDemoExistingCluster(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for run := range 2 {
		cfg := smallDemo()
		cfg.brokers = c.ListenAddrs()
		cfg.topic = "existing"
		if run == 1 {
			cfg.partitions = 5 // ignored: the topic exists with 3
		}
		code, live, final := demoRun(t, cfg)
		checkDrained(t, cfg, code, live, final)
		if len(live) > 0 && !strings.Contains(live[0], "/3 [") {
			t.Errorf("run %d: live line does not show the existing topic's 3 partitions: %s", run, live[0])
		}
	}
}

// TestDemoDurationReached cuts a run that cannot drain in time: records
// never handled are reported as unhandled, not lost, since the group's
// committed offsets are below them.
func TestDemoDurationReached(t *testing.T) {
	cfg := smallDemo()
	cfg.partitions = 1
	cfg.handlerDelay = 5 * time.Millisecond // 3000 records need 15s
	cfg.duration = 500 * time.Millisecond
	code, _, final := demoRun(t, cfg)
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if final["lost"] != "0" {
		t.Errorf("lost=%s, want 0", final["lost"])
	}
	produced, handled, unhandled := field(t, final, "produced"), field(t, final, "handled"), field(t, final, "unhandled")
	if unhandled == 0 || handled+unhandled != produced {
		t.Errorf("produced=%d handled=%d unhandled=%d: want some unhandled, and handled+unhandled=produced", produced, handled, unhandled)
	}
}

func TestCommandLine(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		out, err string // substrings of stdout and stderr
	}{
		{args: nil, code: 2, err: "usage: floodgate <command>"},
		{args: []string{"nope"}, code: 2, err: "unknown command \"nope\""},
		{args: []string{"help"}, code: 0, out: "  demo "},
		{args: []string{"help", "demo"}, code: 0, out: "-handler-delay"},
		{args: []string{"demo", "-h"}, code: 0, err: "-partition-max-records"},
		{args: []string{"demo", "--ordering", "sideways"}, code: 2, err: "--ordering"},
		{args: []string{"demo", "--records", "0"}, code: 2, err: "--records must be > 0"},
		{args: []string{"demo", "extra"}, code: 2, err: "unexpected arguments: extra"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String(), c.out) || !strings.Contains(errb.String(), c.err) {
			t.Errorf("floodgate %s: status %d, stdout:\n%s\nstderr:\n%s\nwant status %d, stdout with %q, stderr with %q",
				strings.Join(c.args, " "), code, out.String(), errb.String(), c.code, c.out, c.err)
		}
	}
	var errb bytes.Buffer
	run(context.Background(), []string{"nope"}, new(bytes.Buffer), &errb)
	for _, c := range commands {
		if !strings.Contains(errb.String(), c.name) {
			t.Errorf("usage after an unknown command does not list %s:\n%s", c.name, errb.String())
		}
	}
}

func TestLedger(t *testing.T) {
	l := newLedger()
	l.handled(0, 0) // handled before its acknowledgement arrived
	for o := range int64(4) {
		l.acked(0, o)
	}
	l.acked(0, 4)
	l.acked(0, 4) // a repeated acknowledgement counts once
	l.handled(0, 1)
	l.handled(0, 1)
	l.handled(0, 3)
	l.handled(1, 7) // never acknowledged
	l.produceFailed()
	if acked, handled := l.progress(); acked != 5 || handled != 3 {
		t.Fatalf("progress = %d, %d, want 5, 3", acked, handled)
	}
	l.producerDone()
	select {
	case <-l.drained:
		t.Fatal("drained with offsets 2 and 4 never handled")
	default:
	}
	// Committed up to 3: offset 2 was committed past, 4 was not.
	got := l.result(map[int32]int64{0: 3})
	want := demoResult{produced: 5, handled: 3, duplicates: 1, lost: 1, unhandled: 1, unexpected: 1, produceErrs: 1}
	if got != want {
		t.Fatalf("result = %+v, want %+v", got, want)
	}
	l.handled(0, 2)
	l.handled(0, 4)
	select {
	case <-l.drained:
	default:
		t.Fatal("not drained once every acknowledged record was handled")
	}
}

// TestCommittedOffsets checks the offsets the demo judges records by
// against ones committed directly (an admin commit, as for a group with no
// members).
func TestCommittedOffsets(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// The committing client stays below OffsetCommit v10, which names
	// topics by ID only; committedOffsets uses the latest versions.
	old, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MaxVersions(kversion.V3_0_0()))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ctx := context.Background()
	if got, err := committedOffsets(ctx, cl, "g", "t"); err != nil || len(got) != 0 {
		t.Fatalf("before any commit: %v, %v; want none", got, err)
	}
	want := map[int32]int64{0: 10, 2: 7}
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = "g", -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "t"
	for p, o := range want {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = p, o
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Topics[0].Partitions {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			t.Fatalf("committing partition %d: %v", p.Partition, err)
		}
	}
	got, err := committedOffsets(ctx, cl, "g", "t")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("committed offsets = %v, want %v", got, want)
	}
}
