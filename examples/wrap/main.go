// Command wrap shows a floodgate runtime around a *kgo.Client the
// application built itself: add consumer.GroupOpts() last, and the client
// keeps the application's own options (here a client ID and fetch sizes).
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
)

func main() {
	const topic, records = "events", 1000
	var seeds []string
	if env := os.Getenv("FLOODGATE_KAFKA_BROKERS"); env != "" {
		seeds = strings.Split(env, ",")
	} else {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		seeds = c.ListenAddrs()
	}

	// The application's client: its own options, then floodgate's.
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ClientID("wrap-example"),
		kgo.ConsumerGroup("wrap-example"),
		kgo.ConsumeTopics(topic),
		kgo.FetchMaxPartitionBytes(256 << 10),
		kgo.AllowAutoTopicCreation(),
	}
	cl, err := kgo.NewClient(append(opts, consumer.GroupOpts()...)...)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close() // the application owns the client; Run does not close it

	// The same client produces here, to keep the example short.
	for i := 0; i < records; i++ {
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "event %d", i)}, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		log.Fatal(err)
	}

	var handled atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt, err := consumer.Wrap(cl, func(ctx context.Context, r *kgo.Record) error {
		if handled.Add(1) == records {
			cancel()
		}
		return nil
	}, consumer.PartitionMaxRecords(100))
	if err != nil {
		log.Fatal(err) // e.g. consumer.ErrClientMisconfigured naming a missing option
	}
	if err := rt.Run(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("handled %d records through the wrapped client\n", handled.Load())
}
