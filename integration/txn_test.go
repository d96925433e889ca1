package integration_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// TestTransactionMarkersAreNoLag: a partition whose log ends in an aborted
// transaction (read_committed) or in two commit markers of two
// transactional producers (read_uncommitted) shows no lag once every
// record the consumer reads is handled: the lag monitor's offset and time
// lag are 0 and stay 0 while the consumer idles, the runtime's Next and
// the group's committed offset are the end of the log.
func TestTransactionMarkersAreNoLag(t *testing.T) {
	c := integration.Shared(t)
	cases := []struct {
		name          string
		readCommitted bool
		steps         []testkit.TxnStep
	}{
		{"read_committed_aborted_at_end", true, []testkit.TxnStep{
			{Producer: 0, Records: 10}, {Producer: 1, Records: 6, End: testkit.TxnAbort}}},
		{"read_uncommitted_two_trailing_commit_markers", false, []testkit.TxnStep{
			{Producer: 1, Records: 3}, {Producer: 2, Records: 3},
			{Producer: 1, End: testkit.TxnCommit}, {Producer: 2, End: testkit.TxnCommit}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, c, 1, 1)
			lg := testkit.WriteTxnLog(t, c.Brokers, s.topic, tc.steps)
			for _, r := range lg.Deliverable(tc.readCommitted) {
				s.ledger.Expect(r.Topic, r.Partition, r.Offset)
			}
			end := int64(len(lg.Records) + lg.Markers)
			control := s.topic + ".control"
			kopts := append(lagmonitor.ClientOpts(control), kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond))
			if tc.readCommitted {
				kopts = append(kopts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			}
			rt, err := consumer.New(func(_ context.Context, r *kgo.Record) error {
				if r.Attrs.IsControl() {
					t.Errorf("the handler got control record %d", r.Offset)
				}
				s.ledger.Handled(r.Topic, r.Partition, r.Offset)
				return nil
			}, consumer.Brokers(c.Brokers...), consumer.Group(s.group), consumer.Topics(s.topic),
				consumer.CommitInterval(100*time.Millisecond), consumer.KgoOpts(kopts...))
			if err != nil {
				t.Fatal(err)
			}
			mon, err := lagmonitor.New(rt, lagmonitor.Config{Group: s.group, ControlTopic: control,
				EvalInterval: 100 * time.Millisecond, RefreshInterval: 500 * time.Millisecond, Heartbeat: time.Second, TTL: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			stop := run(t, rt)
			ctx, cancel := context.WithCancel(context.Background())
			monDone := make(chan struct{})
			go func() { defer close(monDone); _ = mon.Run(ctx) }()
			defer func() { cancel(); <-monDone; stop() }()

			s.ledger.WaitAll(t, 2*time.Minute)
			noLag := func() error { return txnNoLag(rt, mon, s.topic, end) }
			awaitNil(t, time.Minute, noLag)
			// Idle now: nothing more arrives; the lag must stay 0 (no
			// marker left to read as lag, no time lag growing on it).
			const idle = 5 * time.Second
			for deadline := time.Now().Add(idle); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if err := noLag(); err != nil {
					t.Fatalf("within %v of idling: %v", idle, err)
				}
			}
			awaitNil(t, time.Minute, func() error { return committedAt(c.Brokers, s.group, s.topic, end) })
			if _, _, dups, unexpected := s.ledger.Counts(); dups != 0 || unexpected != 0 {
				t.Fatalf("handled %d records twice and %d not deliverable at this isolation level", dups, unexpected)
			}
			if st := rt.Stats(); st.ControlRecords != uint64(lg.Markers) {
				t.Fatalf("Stats.ControlRecords %d, want %d", st.ControlRecords, lg.Markers)
			}
		})
	}
}

// txnNoLag says why topic[0] is not at end without lag, or nil.
func txnNoLag(rt *consumer.Runtime, mon *lagmonitor.Monitor, topic string, end int64) error {
	var next int64 = -1
	for _, ps := range rt.Stats().Partitions {
		if ps.Topic == topic && ps.Partition == 0 {
			next = ps.Next
		}
	}
	if next != end {
		return fmt.Errorf("the runtime's Next of %s[0] is %d, want the end %d", topic, next, end)
	}
	for _, tl := range mon.Lag() {
		if tl.Topic != topic {
			continue
		}
		if len(tl.Partitions) != 1 {
			return fmt.Errorf("the monitor measures %d partitions of %s, want 1", len(tl.Partitions), topic)
		}
		if l := tl.Partitions[0]; l.End != end || l.OffsetLag != 0 || l.TimeLag != 0 || tl.OffsetLag != 0 || tl.TimeLag != 0 {
			return fmt.Errorf("the monitor's lag of %s: %+v; want End %d, offset and time lag 0", topic, l, end)
		}
		return nil
	}
	return fmt.Errorf("the monitor has no lag of %s yet", topic)
}

// committedAt says why group's committed offset of topic[0] is not end, or
// nil.
func committedAt(brokers []string, group, topic string, end int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Errorf("fetching %s's offsets: %w", group, err)
	}
	if o, ok := offs.Lookup(topic, 0); !ok || o.Err != nil || o.At != end {
		return fmt.Errorf("%s's commit of %s[0]: %+v (found %v); want the end %d", group, topic, o, ok, end)
	}
	return nil
}

// awaitNil polls check until it returns nil, failing the test with its
// last error after timeout.
func awaitNil(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
