package integration_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/dlq"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/producer/deferred"
)

// TestFreshClusterGroupQueries: on a cluster's first use of groups the
// group coordinator is not ready (the offsets topic is being created) and
// answers COORDINATOR_NOT_AVAILABLE, which franz-go's admin client returns
// as is. What floodgate asks of a group there waits for the coordinator:
// a group's lag from outside, a key-ordered deferred lane's Start (which
// reads the relay group's commits) and a quarantine replay (which checks
// its resume group). Each is the first group query of a cluster of its
// own.
func TestFreshClusterGroupQueries(t *testing.T) {
	t.Run("DescribeGroupLag", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		brokers, _ := ownCluster(ctx, t, "the fresh-cluster test", 1)
		// A group nobody joined is not found, once the coordinator answers.
		if _, err := lagmonitor.DescribeGroupLag(ctx, brokers, "fresh-group", nil); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			t.Fatalf("DescribeGroupLag on a fresh cluster: %v, want nil or GROUP_ID_NOT_FOUND", err)
		}
	})
	t.Run("key-ordered Lane.Start", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		brokers, _ := ownCluster(ctx, t, "the fresh-cluster test", 1)
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		lane, err := deferred.NewLane(cl, deferred.Config{Topics: []string{"fresh"}, KeyOrdered: true, Partitions: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer lane.Close()
		if err := lane.Start(ctx); err != nil {
			t.Fatalf("a key-ordered lane's Start on a fresh cluster: %v", err)
		}
	})
	t.Run("dlq.Replay", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		brokers, _ := ownCluster(ctx, t, "the fresh-cluster test", 1)
		integration.CreateTopic(t, brokers, "fresh.dlq", 1, 1, nil)
		st, err := dlq.Replay(ctx, brokers, dlq.ReplayConfig{Topic: "fresh.dlq", ResumeGroup: "fresh-replay", Rate: 100, MaxReplays: 3})
		if err != nil {
			t.Fatalf("replaying an empty quarantine topic on a fresh cluster: %v", err)
		}
		if st.Replayed != 0 {
			t.Fatalf("replayed %d records of an empty topic", st.Replayed)
		}
	})
}
