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

// unknown and leaderless are the answers of a broker that does not
// serve a topic yet: it does not know it, or it knows it without a
// leader for each partition.
func unknown(rt *kmsg.MetadataResponseTopic) { rt.ErrorCode = kerr.UnknownTopicOrPartition.Code }

func leaderless(rt *kmsg.MetadataResponseTopic) {
	for i := range int32(2) {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition, p.Leader = i, -1
		if i == 1 {
			p.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		rt.Partitions = append(rt.Partitions, p)
	}
}

// lagging starts a kfake cluster of n brokers with topic (2 partitions)
// where broker node (any broker if node < 0) gives the answers, in turn,
// to its first lookups of topic, and serves it after. It returns a client
// and the count of node's lookups.
func lagging(t *testing.T, n int, topic string, node int32, answers ...func(*kmsg.MetadataResponseTopic)) (*kgo.Client, *atomic.Int32) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(n), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var lookups atomic.Int32
	c.ControlKey(int16(kmsg.Metadata), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.MetadataRequest)
		if len(req.Topics) != 1 || req.Topics[0].Topic == nil || *req.Topics[0].Topic != topic || (node >= 0 && c.CurrentNode() != node) {
			return nil, nil, false
		}
		nth := int(lookups.Add(1))
		if nth > len(answers) {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = kmsg.StringPtr(topic)
		answers[nth-1](&rt)
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

// TestAwaitTopicWaitsForEveryBroker: one broker of three has not applied
// the new topic yet (unknown, then without leaders) while the others
// serve it; AwaitTopic returns once that broker serves it too.
func TestAwaitTopicWaitsForEveryBroker(t *testing.T) {
	cl, lookups := lagging(t, 3, "fresh", 2, unknown, unknown, leaderless)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := AwaitTopic(ctx, cl, "fresh")
	if err != nil || n != 2 {
		t.Fatalf("AwaitTopic = %d, %v, want 2 partitions", n, err)
	}
	if got := lookups.Load(); got < 4 {
		t.Errorf("broker 2 was asked %d times, want 4: unknown twice, without a leader, served", got)
	}
}

func TestPartitionsIgnoresLeaders(t *testing.T) {
	cl, _ := lagging(t, 1, "fresh", -1, unknown, leaderless)
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
	cl, _ := lagging(t, 1, "fresh", -1, unknown, leaderless)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := AwaitTopic(ctx, cl, "missing"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("AwaitTopic of a topic that never comes: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
}

// TestAwaitTopicSkipsABrokerThatDoesNotAnswer: a broker that is named in
// the metadata but does not answer (killed, not yet fenced) serves no
// client, so AwaitTopic does not wait for it or fail on it.
func TestAwaitTopicSkipsABrokerThatDoesNotAnswer(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(2, "fresh"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var dropped atomic.Int32
	c.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if c.CurrentNode() != 2 {
			return nil, nil, false
		}
		dropped.Add(1)
		return nil, errors.New("broker 2 is down"), true // kfake closes the connection
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := AwaitTopic(ctx, cl, "fresh")
	if err != nil || n != 2 {
		t.Fatalf("AwaitTopic = %d, %v, want 2 partitions despite broker 2", n, err)
	}
	if dropped.Load() == 0 {
		t.Error("broker 2 was never asked: the test proves nothing")
	}
}
