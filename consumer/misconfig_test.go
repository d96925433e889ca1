package consumer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

// runErr runs rt until it returns by itself (or fails the test after a
// minute) and returns its error.
func runErr(t *testing.T, rt *consumer.Runtime) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(context.Background()) }()
	select {
	case err := <-errc:
		return err
	case <-time.After(time.Minute):
		rt.Close()
		t.Fatal("Run did not return by itself within a minute")
		return nil
	}
}

// TestWrapDetectsReplacedAssigned: a kgo.OnPartitionsAssigned set after
// GroupOpts replaces the runtime's; records then arrive for partitions the
// runtime never saw assigned, and Run ends with ErrClientMisconfigured.
func TestWrapDetectsReplacedAssigned(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "ma")
	testkit.Produce(t, brokers, "ma", 10, 1, 1)
	opts := append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("ma"), kgo.ConsumeTopics("ma")}, consumer.GroupOpts()...)
	opts = append(opts, kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {}))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rt, err := consumer.Wrap(cl, func(context.Context, *kgo.Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := runErr(t, rt); !errors.Is(err, consumer.ErrClientMisconfigured) {
		t.Fatalf("Run = %v, want ErrClientMisconfigured", err)
	}
}

// TestWrapDetectsReplacedRevoked: a kgo.OnPartitionsRevoked set after
// GroupOpts replaces the runtime's. A partition taken away and given back
// is assigned again without its revoke having been seen, and Run ends with
// ErrClientMisconfigured.
func TestWrapDetectsReplacedRevoked(t *testing.T) {
	_, brokers := testkit.Cluster(t, 2, "mr")
	testkit.Produce(t, brokers, "mr", 20, 2, 1)
	opts := append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("mr"), kgo.ConsumeTopics("mr"),
		kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100 * time.Millisecond)}, consumer.GroupOpts()...)
	opts = append(opts, kgo.OnPartitionsRevoked(func(context.Context, *kgo.Client, map[string][]int32) {}))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var handled = make(chan struct{}, 100)
	a, err := consumer.Wrap(cl, func(context.Context, *kgo.Record) error {
		select {
		case handled <- struct{}{}:
		default:
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- a.Run(context.Background()) }()
	select {
	case <-handled:
	case <-time.After(time.Minute):
		t.Fatal("the wrapped runtime handled nothing")
	}
	// A second member takes a partition away, then leaves: the partition
	// comes back.
	b, err := consumer.New(func(context.Context, *kgo.Record) error { return nil },
		consumer.Brokers(brokers...), consumer.Group("mr"), consumer.Topics("mr"),
		consumer.KgoOpts(kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	stopB := run(t, b)
	testkit.Eventually(t, time.Minute, "the second member to own a partition", func() bool { return len(b.Stats().Partitions) > 0 })
	stopB()
	select {
	case err := <-errc:
		if !errors.Is(err, consumer.ErrClientMisconfigured) {
			t.Fatalf("Run = %v, want ErrClientMisconfigured", err)
		}
	case <-time.After(time.Minute):
		a.Close()
		t.Fatal("Run did not end within a minute of a partition coming back unrevoked")
	}
}
