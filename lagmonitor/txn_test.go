package lagmonitor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

// openTransaction writes n records in a transaction it leaves open (a
// producer that died inside one, until the broker aborts it), then m
// records outside any transaction after them, to partition 0 of topic.
func openTransaction(t *testing.T, brokers []string, topic string, n, m int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	txn, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(fmt.Sprintf("hang-%d", time.Now().UnixNano())),
		kgo.TransactionTimeout(5*time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(txn.Close)
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := txn.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "open %d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	plain, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for i := range m {
		if err := plain.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "after %d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMonitorHangingTransaction: a transaction left open freezes a
// read_committed consumer's end offset (the last stable offset) at its
// first record; the records piling up above it are reported as unstable,
// and once the last stable offset has not moved for StalledLSO they count
// as lag, with a time lag of at least the stall: no false all-clear.
func TestMonitorHangingTransaction(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, "orders")
	if err := c.CreateTopic("ctl", 1, nil); err != nil {
		t.Fatal(err)
	}
	openTransaction(t, brokers, "orders", 5, 10)
	rt, err := consumer.New(func(context.Context, *kgo.Record) error { return nil },
		consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("orders"),
		consumer.KgoOpts(append(ClientOpts("ctl"), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, rt)
	cfg := monitorConfig("g")
	cfg.StalledLSO = 2 * time.Second
	cfg.Thresholds.High = Mark{TimeLag: time.Minute}
	m, err := New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runMonitor(t, m)
	testkit.Eventually(t, time.Minute, "the records above the stalled LSO to be reported, not yet lag", func() bool {
		l := m.Lag()
		return len(l) == 1 && l[0].UnstableOffsets == 15 && l[0].LSOStall > 0
	})
	testkit.Eventually(t, time.Minute, "the records above the LSO stalled past StalledLSO to count as lag", func() bool {
		l := m.Lag()
		return len(l) == 1 && l[0].OffsetLag == 15 && l[0].TimeLag >= 2*time.Second && l[0].Level == LevelElevated
	})
}

// TestGroupLagOpenTransaction: seen from outside, a group's partitions
// say how many records sit above their last stable offset and how old the
// oldest is.
func TestGroupLagOpenTransaction(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "orders")
	openTransaction(t, brokers, "orders", 5, 10)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var off kadm.Offsets
	off.AddOffset("orders", 0, 0, -1)
	if _, err := kadm.NewClient(cl).CommitOffsets(ctx, "g", off); err != nil {
		t.Fatal(err)
	}
	gl, err := DescribeGroupLag(ctx, brokers, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	if gl.UnstableOffsets != 15 || gl.LSOStall <= 0 || len(gl.Partitions) != 1 || gl.Partitions[0].Unstable != 15 {
		t.Fatalf("group lag %+v; want 15 records above the last stable offset, with an age", gl)
	}
}
