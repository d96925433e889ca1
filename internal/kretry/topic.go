package kretry

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Partitions looks topic up with one metadata request sent to a broker,
// bypassing the client's metadata cache (kadm's cache remembers a
// missing topic for a while), and returns its partition count, whether
// or not each has a leader. A topic the broker does not know is
// UNKNOWN_TOPIC_OR_PARTITION; the error is otherwise the topic's
// (TOPIC_AUTHORIZATION_FAILED) or the request's. The request never
// creates the topic.
func Partitions(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	n, _, err := lookup(ctx, cl, topic, false)
	return n, err
}

// lookup is [Partitions] sent through via (a client, or one of its
// brokers), also returning the brokers the answer names; with led, a
// partition without a leader (a topic just created) is
// LEADER_NOT_AVAILABLE.
func lookup(ctx context.Context, via kmsg.Requestor, topic string, led bool) (int32, []int32, error) {
	req := kmsg.NewPtrMetadataRequest() // AllowAutoTopicCreation false
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, via)
	if err != nil {
		return 0, nil, err
	}
	brokers := make([]int32, 0, len(resp.Brokers))
	for _, b := range resp.Brokers {
		brokers = append(brokers, b.NodeID)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return 0, nil, err
		}
		if len(t.Partitions) == 0 {
			return 0, nil, kerr.UnknownTopicOrPartition
		}
		for _, p := range t.Partitions {
			if !led {
				break
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return 0, nil, err
			}
			if p.Leader < 0 {
				return 0, nil, kerr.LeaderNotAvailable
			}
		}
		return int32(len(t.Partitions)), brokers, nil
	}
	return 0, nil, kerr.UnknownTopicOrPartition
}

// NotServed reports whether err says a topic is not served yet:
// UNKNOWN_TOPIC_OR_PARTITION or LEADER_NOT_AVAILABLE, what brokers answer
// for a moment about a topic that was just created.
func NotServed(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.LeaderNotAvailable)
}

// AwaitTopic waits until every broker of the cluster serves topic, with
// a leader for each of its partitions, and returns its partition count:
// after CreateTopics succeeds, each broker applies the new topic to its
// own metadata a moment later, and a client that uses it at once (a
// reader looking it up, a producer) would be refused by a broker that
// has not yet. It asks each broker the metadata answer names (skipping
// one that cannot be reached: it serves no client either), retrying like
// [Do] with [NotServed], so it gives up after [MaxWait] or when ctx ends.
func AwaitTopic(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	return Do(ctx, NotServed, func(ctx context.Context) (int32, error) {
		n, brokers, err := lookup(ctx, cl, topic, true)
		if err != nil {
			return 0, err
		}
		for _, id := range brokers {
			_, _, err := lookup(ctx, cl.Broker(int(id)), topic, true)
			var ke *kerr.Error
			if err != nil && (errors.As(err, &ke) || ctx.Err() != nil) {
				return 0, err
			}
			// nil, or a broker that does not answer (killed, and not
			// yet out of the metadata): it serves no client either.
		}
		return n, nil
	})
}
