package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
	"github.com/floodgate-kafka/floodgate/producer/deferred"
)

func TestDeferredCommandLine(t *testing.T) {
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"deferred"}, 2, "usage: floodgate deferred"},
		{[]string{"deferred", "nope"}, 2, "unknown subcommand"},
		{[]string{"deferred", "relay", "-h"}, 0, "at least once"},
		{[]string{"deferred", "relay", "--topic", "orders"}, 2, "--brokers is required"},
		{[]string{"deferred", "relay", "--brokers", "x:1"}, 2, "--topic is required"},
		{[]string{"deferred", "relay", "--brokers", "x:1", "--topic", "orders", "--share", "3"}, 2, "SuggestedShare"},
		{[]string{"deferred", "status", "--brokers", "x:1"}, 2, "--topic is required"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		if code := run(context.Background(), c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.err) {
			t.Errorf("floodgate %s: status %d, stderr:\n%s\nwant %d with %q", strings.Join(c.args, " "), code, errb.String(), c.code, c.err)
		}
	}
}

// TestDeferredRelayCommand: records parked on orders.deferred show in
// status; without a live signal the relay command delivers nothing and
// says it waits for one; with --without-signal it delivers them; status
// then shows none waiting.
func TestDeferredRelayCommand(t *testing.T) {
	_, brokers := testkit.Cluster(t, 2, "orders")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	lane, err := deferred.NewLane(cl, deferred.Config{Topics: []string{"orders"}})
	if err != nil {
		t.Fatal(err)
	}
	defer lane.Close()
	if err := lane.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 20
	done := make(chan error, n)
	for i := range n {
		d := producer.Decision{Topic: "orders", Class: priority.Bulk, Level: lagmonitor.LevelHigh}
		lane.Defer(ctx, &kgo.Record{Topic: "orders", Value: fmt.Appendf(nil, "v%d", i)}, d, func(_ *kgo.Record, err error) { done <- err })
	}
	for range n {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	status := func() string {
		var out, errb bytes.Buffer
		if code := run(ctx, []string{"deferred", "status", "--brokers", strings.Join(brokers, ","), "--topic", "orders"}, &out, &errb); code != 0 {
			t.Fatalf("status: %d: %s", code, errb.String())
		}
		return out.String()
	}
	if s := status(); !strings.Contains(s, "orders.deferred  20 ") || !strings.Contains(s, " ago)") {
		t.Fatalf("status before the relay:\n%s", s)
	}

	adm := kadm.NewClient(cl)
	delivered := func() int64 {
		ends, err := adm.ListEndOffsets(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		return sum
	}
	wctx, wcancel := context.WithCancel(ctx)
	var wout, werrb syncBuffer
	wcode := make(chan int, 1)
	go func() {
		wcode <- run(wctx, []string{"deferred", "relay", "--brokers", strings.Join(brokers, ","), "--topic", "orders", "--stats", "100ms"}, &wout, &werrb)
	}()
	testkit.Eventually(t, 30*time.Second, "the relay command to say it waits for a live signal", func() bool {
		return strings.Contains(wout.String(), "orders: no live signal: waiting for one")
	})
	wcancel()
	if c := <-wcode; c != 0 {
		t.Fatalf("relay exited %d: %s", c, werrb.String())
	}
	if got := delivered(); got != 0 {
		t.Fatalf("%d records relayed without a live signal", got)
	}

	rctx, rcancel := context.WithCancel(ctx)
	var out, errb syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(rctx, []string{"deferred", "relay", "--brokers", strings.Join(brokers, ","), "--topic", "orders", "--stats", "100ms", "--without-signal"}, &out, &errb)
	}()
	testkit.Eventually(t, 30*time.Second, "the relay command to deliver the records", func() bool {
		ends, err := adm.ListEndOffsets(ctx, "orders")
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		return err == nil && sum == n
	})
	testkit.Eventually(t, 30*time.Second, "the relay to commit", func() bool { return strings.Contains(status(), "orders.deferred  0 ") })
	rcancel()
	if c := <-code; c != 0 {
		t.Fatalf("relay exited %d: %s", c, errb.String())
	}
	if !strings.Contains(out.String(), "relayed 20,") {
		t.Fatalf("relay output:\n%s", out.String())
	}
}
