package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/topicconf"
)

// defaultBatchMax is kgo's default ProducerBatchMaxBytes, used for topics
// whose max.message.bytes could not be read.
const defaultBatchMax = topicconf.DefaultBatchMax

// topicLimits sizes the batches a runtime built by New produces: its get is
// the client's kgo.ProducerBatchMaxBytesFn, and ensure reads a divert
// topic's max.message.bytes before the first produce to it.
type topicLimits struct {
	rt  *Runtime
	lim topicconf.Limits
	mu  sync.Mutex
	try map[string]*topicTry
}

// topicTry serialises and spaces the reads of one topic's config.
type topicTry struct {
	mu    sync.Mutex
	tried time.Time
}

// get implements the ProducerBatchMaxBytesFn of clients built by New.
func (l *topicLimits) get(topic string) int32 { return l.lim.Get(topic) }

// describeTimeout bounds reading a topic's max.message.bytes; retryDescribe
// spaces attempts that failed (the topic may not exist yet).
const (
	describeTimeout = 5 * time.Second
	retryDescribe   = 30 * time.Second
)

// ensure reads topic's max.message.bytes, for a client the runtime built
// (a wrapped client keeps its own ProducerBatchMaxBytes), once it succeeds,
// and at most every 30s until then. Until it is read (no DescribeConfigs
// right, a topic not created yet), the topic gets kgo's default, which is
// logged.
func (l *topicLimits) ensure(topic string) {
	if !l.rt.own || l.lim.Known(topic) {
		return
	}
	l.mu.Lock()
	if l.try == nil {
		l.try = make(map[string]*topicTry)
	}
	t := l.try[topic]
	if t == nil {
		t = &topicTry{}
		l.try[topic] = t
	}
	l.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if l.lim.Known(topic) || time.Since(t.tried) < retryDescribe {
		return
	}
	t.tried = time.Now()
	ctx, cancel := context.WithTimeout(l.rt.baseCtx, describeTimeout)
	defer cancel()
	max, err := topicconf.MaxMessageBytes(ctx, l.rt.cl, topic)
	if err != nil {
		l.rt.logf(kgo.LogLevelWarn, "floodgate: cannot read the topic's max.message.bytes; producing to it with batches of at most 1000012 bytes for now",
			"topic", topic, "err", err)
		return
	}
	l.lim.Set(topic, max)
}
