// Command pressure shows the pressure loop's consumer half: a slow consumer
// falls behind a burst, its lag monitor raises the topic's level and
// publishes it on a control topic, and a reader, as a producer would run
// it, sees the pressure rise and, once the consumer caught up and the
// level's dwell passed, fall back to ok.
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
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

func main() {
	const topic, control, records = "orders", "floodgate.pressure", 6000
	brokers, stop := brokers(topic)
	defer stop()
	ensureControlTopic(brokers, control)

	var handled atomic.Int64
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		time.Sleep(time.Millisecond) // a slow downstream call
		handled.Add(1)
		return nil
	},
		consumer.Brokers(brokers...),
		consumer.Group("pressure-example"),
		consumer.Topics(topic),
		// The monitor publishes with the runtime's client, which must send
		// each signal to its topic's control partition.
		consumer.KgoOpts(lagmonitor.ClientOpts(control)...),
	)
	if err != nil {
		log.Fatal(err)
	}
	th := lagmonitor.DefaultThresholds()
	th.Elevated.TimeLag, th.High.TimeLag, th.Critical.TimeLag = time.Second, 3*time.Second, time.Minute
	th.Dwell = 2 * time.Second
	mon, err := lagmonitor.New(rt, lagmonitor.Config{
		Group:        "pressure-example",
		ControlTopic: control,
		Thresholds:   th,
		Heartbeat:    time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	// What a producer runs: follow the control partition of the topics it
	// produces to.
	reader, err := lagmonitor.NewReader(brokers, control, []string{topic})
	if err != nil {
		log.Fatal(err)
	}
	defer reader.Close()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() { errc <- rt.Run(ctx) }()
	go func() { errc <- mon.Run(ctx) }()
	if err := reader.Start(ctx); err != nil {
		log.Print(err) // a reader never blocks a producer: it goes on and follows
	}

	produce(brokers, topic, records)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	rose := false
	for range tick.C {
		p := reader.Pressure(topic, time.Now())
		rate := "none"
		if p.Rate > 0 {
			rate = fmt.Sprintf("%.0f/s", p.Rate)
		}
		fmt.Printf("handled=%-5d pressure=%-9s suggested rate=%-8s %s\n", handled.Load(), p.Level, rate, p.Reason)
		rose = rose || p.Level > lagmonitor.LevelOK
		if rose && p.Level == lagmonitor.LevelOK && handled.Load() == records {
			break
		}
	}
	cancel() // the monitor writes a tombstone; the runtime drains and commits
	for range 2 {
		if err := <-errc; err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("done: the pressure rose while the consumer fell behind, and fell back once it caught up")
}

// brokers returns FLOODGATE_KAFKA_BROKERS, or starts an embedded cluster.
func brokers(topic string) ([]string, func()) {
	if env := os.Getenv("FLOODGATE_KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ","), func() {}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		log.Fatal(err)
	}
	return c.ListenAddrs(), c.Close
}

func ensureControlTopic(brokers []string, control string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := lagmonitor.EnsureControlTopic(ctx, cl, control, 3, 15*time.Second); err != nil {
		log.Fatal(err)
	}
}

func produce(brokers []string, topic string, n int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.AllowAutoTopicCreation())
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < n; i++ {
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "order %d", i)},
			func(_ *kgo.Record, err error) {
				if err != nil {
					log.Fatal(err)
				}
			})
	}
	if err := cl.Flush(context.Background()); err != nil {
		log.Fatal(err)
	}
}
