// Package topicconf reads the topic configs floodgate's producers size
// themselves by: the max.message.bytes of the topics they write, for
// kgo.ProducerBatchMaxBytesFn, so that a record the topic accepts is not
// refused by the client's default batch cap (1,000,012 bytes), and a batch
// never grows past what the topic accepts.
package topicconf

import (
	"context"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultBatchMax is kgo's default ProducerBatchMaxBytes, what a topic
// whose max.message.bytes is not known gets.
const DefaultBatchMax = 1_000_012

// MaxMessageBytes reads topic's max.message.bytes.
func MaxMessageBytes(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, err
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return 0, err
	}
	if rc.Err != nil {
		return 0, rc.Err
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" && c.Value != nil {
			if n, err := strconv.ParseInt(*c.Value, 10, 32); err == nil && n >= 512 {
				return int32(n), nil
			}
			break
		}
	}
	return DefaultBatchMax, nil
}

// Limits caches max.message.bytes per topic. Its Get is a
// kgo.ProducerBatchMaxBytesFn; kgo asks it once per partition, when it
// first meets the partition, so Set a topic's limit before the first
// produce to it. The zero value is ready to use; it is safe for
// concurrent use.
type Limits struct {
	mu sync.Mutex
	m  map[string]int32
}

// Get returns topic's known limit, or DefaultBatchMax.
func (l *Limits) Get(topic string) int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := l.m[topic]; ok {
		return v
	}
	return DefaultBatchMax
}

// Known reports whether topic's limit was set.
func (l *Limits) Known(topic string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.m[topic]
	return ok
}

// Set records topic's limit.
func (l *Limits) Set(topic string, max int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]int32)
	}
	l.m[topic] = max
}
