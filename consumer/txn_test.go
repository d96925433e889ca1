package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

// interleavedTxns mixes plain records, committed and aborted transactions
// of two producers, open at the same time, and ends with an aborted one.
var interleavedTxns = []testkit.TxnStep{
	{Producer: 0, Records: 3},
	{Producer: 1, Records: 4, End: testkit.TxnCommit},
	{Producer: 2, Records: 3, End: testkit.TxnAbort},
	{Producer: 1, Records: 2},
	{Producer: 2, Records: 2},
	{Producer: 0, Records: 2},
	{Producer: 1, End: testkit.TxnAbort},
	{Producer: 2, End: testkit.TxnCommit},
	{Producer: 1, Records: 3, End: testkit.TxnAbort},
}

// txnLogs are partitions whose log ends in control records of transactions
// or in aborted records: a consumer that handled everything must stand at
// the end of the log.
var txnLogs = []struct {
	name          string
	readCommitted bool
	steps         []testkit.TxnStep
}{
	// 10 plain records, then an aborted transaction of 6 and its abort
	// marker: read_committed reads 0..9 and must pass 10..16.
	{"read_committed/aborted_at_end", true, []testkit.TxnStep{
		{Producer: 0, Records: 10}, {Producer: 1, Records: 6, End: testkit.TxnAbort}}},
	// Two producers' transactions on one partition, committed one after
	// the other: the log ends in two commit markers.
	{"read_uncommitted/two_trailing_commit_markers", false, []testkit.TxnStep{
		{Producer: 1, Records: 3}, {Producer: 2, Records: 3},
		{Producer: 1, End: testkit.TxnCommit}, {Producer: 2, End: testkit.TxnCommit}}},
	{"read_committed/interleaved", true, interleavedTxns},
	{"read_uncommitted/interleaved", false, interleavedTxns},
}

// TestTransactionMarkersAreNoLag: in every ordering mode, a consumer that
// handled every record it reads stands at the end of the log (Next, the
// committed offset, the lag monitor's offset and time lag), whatever
// control records and aborted records end it; handlers see exactly the
// records of the isolation level, never a control record.
func TestTransactionMarkersAreNoLag(t *testing.T) {
	for _, lg := range txnLogs {
		for _, mode := range []consumer.Ordering{consumer.OrderPartition, consumer.OrderKey, consumer.OrderNone} {
			t.Run(lg.name+"/"+mode.String(), func(t *testing.T) {
				checkTxnLog(t, lg.readCommitted, lg.steps, txnVariant{opts: []consumer.Opt{consumer.WithOrdering(mode)}})
			})
		}
	}
}

// TestTransactionMarkersAreNoLagWith: the same with priority classes, a
// retry router diverting failed records, a window small enough that the
// partition pauses and records are refused and fetched again, and commits
// only when the partition is revoked (Run stopping).
func TestTransactionMarkersAreNoLagWith(t *testing.T) {
	classes, err := priority.NewTopics(priority.Default, priority.Normal, map[string]priority.Class{"tx": priority.Bulk})
	if err != nil {
		t.Fatal(err)
	}
	variants := []struct {
		name string
		v    txnVariant
	}{
		{"priority_classes", txnVariant{opts: []consumer.Opt{consumer.WithPriorities(priority.Default, classes)}}},
		{"retry_router", txnVariant{fail: true, opts: []consumer.Opt{consumer.WithRouter(testRouter{divertTo: "tx.diverted"})}}},
		{"pauses_and_refetches", txnVariant{refetch: true, opts: []consumer.Opt{consumer.PartitionMaxRecords(2), consumer.PartitionMaxSpan(3), consumer.WithOrdering(consumer.OrderNone)}}},
		{"commit_on_revoke", txnVariant{commitOnStop: true}},
	}
	for _, rc := range []bool{true, false} {
		for _, v := range variants {
			t.Run(fmt.Sprintf("read_committed=%v/%s", rc, v.name), func(t *testing.T) {
				checkTxnLog(t, rc, interleavedTxns, v.v)
			})
		}
	}
}

// txnVariant changes how checkTxnLog runs the runtime.
type txnVariant struct {
	opts []consumer.Opt
	// fail makes the first handling of every third record fail (a router
	// diverts it).
	fail bool
	// commitOnStop leaves no periodic commit: the commit is the one Run
	// makes when it stops and revokes the partition.
	commitOnStop bool
	// refetch: the window is small enough that records must have been
	// refused (the partition paused) and fetched again.
	refetch bool
}

// checkTxnLog writes steps to tx[0] and consumes it with a runtime and a
// lag monitor; see TestTransactionMarkersAreNoLag.
func checkTxnLog(t *testing.T, readCommitted bool, steps []testkit.TxnStep, v txnVariant) {
	_, brokers := testkit.Cluster(t, 1, "tx", "tx.control", "tx.diverted")
	lg := testkit.WriteTxnLog(t, brokers, "tx", steps)
	deliverable := lg.Deliverable(readCommitted)
	ledger := testkit.NewLedger(deliverable)
	end := listEnd(t, brokers, readCommitted)
	if want := int64(len(lg.Records) + lg.Markers); end != want {
		t.Fatalf("tx[0] ends at %d, want %d (%d records and %d markers written)", end, want, len(lg.Records), lg.Markers)
	}

	var control, failed atomic.Int64
	kopts := lagmonitor.ClientOpts("tx.control")
	if readCommitted {
		kopts = append(kopts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	interval := 50 * time.Millisecond
	if v.commitOnStop {
		interval = time.Hour
	}
	opts := append([]consumer.Opt{consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("tx"),
		consumer.CommitInterval(interval), consumer.KgoOpts(kopts...)}, v.opts...)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Attrs.IsControl() {
			control.Add(1)
		}
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		if v.fail && r.Offset%3 == 0 {
			failed.Add(1)
			return errors.New("fails: diverted")
		}
		return nil
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mon, err := lagmonitor.New(rt, lagmonitor.Config{Group: "g", ControlTopic: "tx.control",
		EvalInterval: 20 * time.Millisecond, RefreshInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	ctx, cancel := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); _ = mon.Run(ctx) }()
	defer func() { cancel(); <-monDone }()

	ledger.WaitAll(t, time.Minute)
	var ps consumer.PartitionStats
	await(t, 30*time.Second, func() error {
		ps, _ = partStats(rt, "tx", 0)
		if ps.Next != end || ps.ControlRecords != uint64(lg.Markers) {
			return fmt.Errorf("tx[0]: Next %d, %d control records passed; want the end %d and %d", ps.Next, ps.ControlRecords, end, lg.Markers)
		}
		return nil
	})
	if ps.Completed != uint64(len(deliverable)) || ps.Span != 0 || ps.InFlightRecords != 0 {
		t.Errorf("tx[0]: Completed %d Span %d InFlight %d, want %d 0 0", ps.Completed, ps.Span, ps.InFlightRecords, len(deliverable))
	}
	await(t, 30*time.Second, func() error {
		for _, tl := range mon.Lag() {
			if tl.Topic == "tx" && len(tl.Partitions) == 1 {
				l := tl.Partitions[0]
				if l.End != end || l.OffsetLag != 0 || l.TimeLag != 0 || tl.OffsetLag != 0 {
					return fmt.Errorf("the monitor's lag of tx[0]: %+v; want End %d and no lag", l, end)
				}
				return nil
			}
		}
		return fmt.Errorf("the monitor has no lag of tx[0]: %+v", mon.Lag())
	})
	if !v.commitOnStop {
		awaitCommitted(t, brokers, end)
	}
	cancel()
	<-monDone
	stop()
	if v.commitOnStop {
		awaitCommitted(t, brokers, end)
	}

	st := rt.Stats()
	_, _, dups, unexpected := ledger.Counts()
	if control.Load() != 0 || unexpected != 0 || dups != 0 {
		t.Errorf("handlers saw %d control records, %d records not deliverable at this isolation level, %d twice; want none", control.Load(), unexpected, dups)
	}
	if want := uint64(len(deliverable)) - uint64(failed.Load()); st.Handled != want || st.Failures != uint64(failed.Load()) || st.Diverted != uint64(failed.Load()) {
		t.Errorf("Stats: Handled %d Failures %d Diverted %d, want %d %d %d", st.Handled, st.Failures, st.Diverted, want, failed.Load(), failed.Load())
	}
	if v.refetch && st.Refetched == 0 {
		t.Errorf("no record refused and fetched again: the variant did not pause the partition")
	}
	if st.ControlRecords != uint64(lg.Markers) {
		t.Errorf("Stats.ControlRecords %d, want %d", st.ControlRecords, lg.Markers)
	}
}

// listEnd lists tx[0]'s end offset: its last stable offset for a
// read_committed consumer, else its high watermark.
func listEnd(t *testing.T, brokers []string, readCommitted bool) int64 {
	t.Helper()
	adm := admin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list := adm.ListEndOffsets
	if readCommitted {
		list = adm.ListCommittedOffsets
	}
	offs, err := list(ctx, "tx")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup("tx", 0)
	if !ok || o.Err != nil {
		t.Fatalf("listing tx[0]'s end: %v %v", ok, o.Err)
	}
	return o.Offset
}

// awaitCommitted waits until group g's committed offset of tx[0] is end.
func awaitCommitted(t *testing.T, brokers []string, end int64) {
	t.Helper()
	adm := admin(t, brokers)
	await(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		offs, err := adm.FetchOffsets(ctx, "g")
		if err != nil {
			return fmt.Errorf("fetching group g's offsets: %w", err)
		}
		o, ok := offs.Lookup("tx", 0)
		if !ok || o.Err != nil || o.At != end {
			return fmt.Errorf("group g's commit of tx[0]: %+v (found %v); want the end %d", o, ok, end)
		}
		return nil
	})
}

// await polls check until it returns nil, failing the test with its last
// error after timeout.
func await(t *testing.T, timeout time.Duration, check func() error) {
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
		time.Sleep(10 * time.Millisecond)
	}
}

func admin(t *testing.T, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}
