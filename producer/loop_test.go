package producer_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/looptest"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// loopEnv is a kfake cluster with a topic of 3 partitions and a control
// topic, for the scenarios of internal/looptest (which run on a real
// broker in integration/).
func loopEnv(t *testing.T) *looptest.Env {
	const topic, control = "orders", "floodgate.pressure"
	_, brokers := testkit.Cluster(t, 3, topic)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := lagmonitor.EnsureControlTopic(ctx, cl, control, 3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return &looptest.Env{Brokers: brokers, Topic: topic, Control: control, Group: "billing", Partitions: 3}
}

// TestLoop closes the pressure loop on kfake: a consumer held back on
// purpose raises its level through elevated, high and critical;
// pressure-aware producers throttle normal, shed bulk and keep critical
// flowing; once the consumer catches up, admission recovers. See
// looptest.Loop for every check.
func TestLoop(t *testing.T) { looptest.Loop(t, loopEnv(t)) }

// TestLoopLatency measures, on kfake, the time from a monitor's level
// change to a producer's admission changing, over 24 transitions; it
// logs the figures (integration's TestLoopLatency measures them on a real
// broker) and asserts only that every transition reached the producer.
func TestLoopLatency(t *testing.T) {
	trs := looptest.Latency(t, loopEnv(t), 24)
	sum, _ := looptest.Summary(trs)
	t.Logf("kfake: %s", sum)
}
