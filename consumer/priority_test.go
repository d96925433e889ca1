package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/partition"
	"github.com/floodgate-kafka/floodgate/priority"
)

// TestPriorityClassesShareTheByteBudget: as the bytes in flight near
// MaxBufferedBytes, bulk partitions pause first, then normal ones, and
// critical ones never pause for it; every record is handled.
func TestPriorityClassesShareTheByteBudget(t *testing.T) {
	const n, maxBuffered = 3000, 64 << 10
	_, brokers := testkit.Cluster(t, 2, "pay", "orders", "logs")
	p := testkit.NewProducer(t, brokers)
	var all []*kgo.Record
	for _, topic := range []string{"pay", "orders", "logs"} {
		rs, err := p.Produce(topic, n, 50, 200)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, rs...)
	}
	ledger := testkit.NewLedger(all)
	classes, err := priority.NewTopics(priority.Default, priority.Normal, map[string]priority.Class{"pay": priority.Critical, "logs": priority.Bulk})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset%4 == 0 {
			time.Sleep(time.Millisecond)
		}
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("g"), consumer.Topics("pay", "orders", "logs"),
		consumer.MaxConcurrency(4), consumer.PartitionMaxBytes(16<<10), consumer.MaxBufferedBytes(maxBuffered),
		consumer.WithPriorities(priority.Default, classes))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := rt.ClassOf("logs"); !ok || c != priority.Bulk {
		t.Fatalf("ClassOf(logs) = %s %v", c, ok)
	}
	stop := run(t, rt)
	sawBulk, sawNormal := false, false
	done := make(chan struct{})
	go func() { ledger.WaitAll(t, 2*time.Minute); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		default:
		}
		s := rt.Stats()
		if s.BufferedBytes > maxBuffered {
			t.Fatalf("buffered %d bytes > MaxBufferedBytes %d", s.BufferedBytes, maxBuffered)
		}
		// paused: a partition of the topic is paused for the budget;
		// fetching: an assigned partition of the topic is not. (The first
		// assignment may lack a topic whose metadata the client has not
		// loaded yet: a class with no partitions assigned pauses nothing.)
		paused, fetching := map[string]bool{}, map[string]bool{}
		for _, ps := range s.Partitions {
			if ps.Paused.Has(partition.Priority) {
				paused[ps.Topic] = true
			} else {
				fetching[ps.Topic] = true
			}
		}
		if paused["pay"] {
			t.Fatal("a critical partition paused for the byte budget")
		}
		if paused["orders"] && fetching["logs"] {
			t.Fatalf("normal partitions paused while bulk ones fetched on: %+v", s.Partitions)
		}
		sawBulk, sawNormal = sawBulk || paused["logs"], sawNormal || paused["orders"]
		time.Sleep(time.Millisecond) // the sampling period, not a synchronisation
	}
	stop()
	t.Logf("bulk paused for the budget: %v, normal: %v", sawBulk, sawNormal)
	if !sawBulk {
		t.Fatal("the bytes in flight never made the bulk class pause: the test exercised nothing")
	}
}
