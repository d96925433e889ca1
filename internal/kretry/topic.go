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
	return lookup(ctx, cl, topic, false)
}

// lookup is [Partitions]; with led, a partition without a leader (a
// topic just created) is LEADER_NOT_AVAILABLE.
func lookup(ctx context.Context, cl *kgo.Client, topic string, led bool) (int32, error) {
	req := kmsg.NewPtrMetadataRequest() // AllowAutoTopicCreation false
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return 0, err
		}
		if len(t.Partitions) == 0 {
			return 0, kerr.UnknownTopicOrPartition
		}
		for _, p := range t.Partitions {
			if !led {
				break
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return 0, err
			}
			if p.Leader < 0 {
				return 0, kerr.LeaderNotAvailable
			}
		}
		return int32(len(t.Partitions)), nil
	}
	return 0, kerr.UnknownTopicOrPartition
}

// NotServed reports whether err says a topic is not served yet:
// UNKNOWN_TOPIC_OR_PARTITION or LEADER_NOT_AVAILABLE, what brokers answer
// for a moment about a topic that was just created.
func NotServed(err error) bool {
	return UnknownTopic(err) || errors.Is(err, kerr.LeaderNotAvailable)
}

// AwaitTopic waits until a broker serves topic, a leader for each of
// its partitions, and returns its partition count: after CreateTopics
// succeeds, the broker asked next may not have the topic in its metadata
// for a moment, and a client that uses it at once (a reader looking it
// up, a producer) would be refused. It retries the lookup like [Do]
// with [NotServed], so it gives up after [MaxWait] or when ctx ends.
func AwaitTopic(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	return Do(ctx, NotServed, func(ctx context.Context) (int32, error) {
		return lookup(ctx, cl, topic, true)
	})
}
