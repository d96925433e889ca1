package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/partition"
)

// TestPauseReasonsAreIndependent: an application pause survives the
// window draining, and lifting it resumes the partition in the client.
func TestPauseReasonsAreIndependent(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "pr")
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "pr", 400, 4, 10))
	release := make(chan struct{})
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		<-release
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("pr"), consumer.Topics("pr"),
		consumer.PartitionMaxRecords(50))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	reasons := func() partition.Reasons {
		for _, p := range rt.Stats().Partitions {
			return p.Paused
		}
		return 0
	}
	clientPaused := func() bool { return len(rt.Client().PauseFetchPartitions(nil)["pr"]) == 1 }
	testkit.Eventually(t, 30*time.Second, "the window to fill and pause the partition", func() bool {
		return reasons().Has(partition.WindowFull) && clientPaused()
	})
	pr := map[string][]int32{"pr": {0}}
	rt.Pause(partition.Manual, pr)
	rt.Pause(partition.WindowFull, pr) // the runtime's own reasons are not the caller's to set
	close(release)
	testkit.Eventually(t, 30*time.Second, "the window to drain", func() bool {
		r := reasons()
		return !r.Has(partition.WindowFull) && r.Has(partition.Manual)
	})
	if !clientPaused() {
		t.Fatal("the window drained and the partition resumed although paused for Manual")
	}
	rt.Resume(partition.Manual, pr)
	testkit.Eventually(t, 30*time.Second, "the partition to resume", func() bool { return !clientPaused() })
	ledger.WaitAll(t, 30*time.Second)
	stop()
}
