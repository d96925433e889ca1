package kretry

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// notServedFirst makes the broker answer the first lookups of topic as a
// broker that does not serve it yet: unknown, then known with a partition
// that has no leader. It returns the count of lookups.
func notServedFirst(t *testing.T, topic string) (*kgo.Client, *atomic.Int32) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var lookups atomic.Int32
	c.ControlKey(int16(kmsg.Metadata), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.MetadataRequest)
		if len(req.Topics) != 1 || req.Topics[0].Topic == nil || *req.Topics[0].Topic != topic {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = kmsg.StringPtr(topic)
		switch lookups.Add(1) {
		case 1:
			rt.ErrorCode = kerr.UnknownTopicOrPartition.Code
		case 2:
			for i := range int32(2) {
				p := kmsg.NewMetadataResponseTopicPartition()
				p.Partition, p.Leader = i, -1
				if i == 1 {
					p.ErrorCode = kerr.LeaderNotAvailable.Code
				}
				rt.Partitions = append(rt.Partitions, p)
			}
		default:
			return nil, nil, false
		}
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, &lookups
}

func TestAwaitTopicWaitsUntilServed(t *testing.T) {
	cl, lookups := notServedFirst(t, "fresh")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := AwaitTopic(ctx, cl, "fresh")
	if err != nil || n != 2 {
		t.Fatalf("AwaitTopic = %d, %v, want 2 partitions", n, err)
	}
	if got := lookups.Load(); got != 3 {
		t.Errorf("%d lookups, want 3: unknown, without a leader, served", got)
	}
}

func TestPartitionsIgnoresLeaders(t *testing.T) {
	cl, _ := notServedFirst(t, "fresh")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Partitions(ctx, cl, "fresh"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("first lookup: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	if n, err := Partitions(ctx, cl, "fresh"); err != nil || n != 2 {
		t.Fatalf("second lookup (partitions without a leader) = %d, %v, want 2, nil", n, err)
	}
}

func TestAwaitTopicGivesUpWithItsContext(t *testing.T) {
	cl, _ := notServedFirst(t, "fresh")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := AwaitTopic(ctx, cl, "missing"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("AwaitTopic of a topic that never comes: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
}
