// Command bounded shows a floodgate runtime that builds its own client: a
// burst of records meets a slow handler, and the per-partition windows keep
// what is in flight bounded while partitions pause and resume.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
)

func main() {
	const topic, records = "orders", 20000
	brokers, stop := brokers(topic)
	defer stop()
	produce(brokers, topic, records)

	var handled atomic.Int64
	done := make(chan struct{})
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		time.Sleep(2 * time.Millisecond) // a slow downstream call
		if handled.Add(1) == records {
			close(done)
		}
		return nil
	},
		consumer.Brokers(brokers...),
		consumer.Group("bounded-example"),
		consumer.Topics(topic),
		consumer.WithOrdering(consumer.OrderKey), // one key at a time, keys concurrently
		consumer.MaxConcurrency(32),
		consumer.PartitionMaxRecords(200), // at most 200 records of a partition in flight
		consumer.PartitionMaxBytes(1<<20),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(ctx) }()

	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-tick.C:
			s := rt.Stats()
			paused := 0
			for _, p := range s.Partitions {
				if p.Paused.Paused() {
					paused++
				}
			}
			fmt.Printf("handled=%d in-flight=%d running=%d paused=%d/%d\n",
				handled.Load(), s.InFlightRecords, s.Running, paused, len(s.Partitions))
		}
	}
	cancel() // Run drains, commits and returns
	if err := <-errc; err != nil {
		log.Fatal(err)
	}
	fmt.Printf("done: handled %d of %d records\n", handled.Load(), records)
}

// brokers returns FLOODGATE_KAFKA_BROKERS, or starts an embedded cluster.
func brokers(topic string) ([]string, func()) {
	if env := os.Getenv("FLOODGATE_KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ","), func() {}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		log.Fatal(err)
	}
	return c.ListenAddrs(), c.Close
}

func produce(brokers []string, topic string, n int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.AllowAutoTopicCreation())
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < n; i++ {
		cl.Produce(context.Background(), &kgo.Record{
			Topic: topic,
			Key:   fmt.Appendf(nil, "customer-%d", i%50),
			Value: fmt.Appendf(nil, "order %d", i),
		}, func(_ *kgo.Record, err error) {
			if err != nil {
				log.Fatal(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		log.Fatal(err)
	}
}
