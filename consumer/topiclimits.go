package consumer

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// defaultBatchMax is kgo's default ProducerBatchMaxBytes, used for topics
// whose max.message.bytes could not be read.
const defaultBatchMax = 1_000_012

// topicLimits caches the max.message.bytes of the topics a runtime built by
// New diverts to, for its client's kgo.ProducerBatchMaxBytesFn. kgo asks the
// function once, when it first meets a topic's partitions, so ensure reads
// a topic's limit before the first produce to it.
type topicLimits struct {
	rt *Runtime
	mu sync.Mutex
	m  map[string]*topicLimit
}

type topicLimit struct {
	mu    sync.Mutex // serialises reads of one topic's config
	max   int32      // guarded by topicLimits.mu; 0 until read
	tried time.Time  // last attempt, guarded by mu
}

// retryDescribe spaces attempts to read a topic's config that failed (the
// topic may not exist yet).
const retryDescribe = 30 * time.Second

// get implements the ProducerBatchMaxBytesFn of clients built by New.
func (l *topicLimits) get(topic string) int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := l.m[topic]; t != nil && t.max > 0 {
		return t.max
	}
	return defaultBatchMax
}

// describeTimeout bounds reading a topic's max.message.bytes.
const describeTimeout = 5 * time.Second

// ensure reads topic's max.message.bytes, for a client the runtime built
// (a wrapped client keeps its own ProducerBatchMaxBytes), once it succeeds,
// and at most every 30s until then. Until it is read (no DescribeConfigs
// right, a topic not created yet), the topic gets kgo's default, which is
// logged.
func (l *topicLimits) ensure(topic string) {
	if !l.rt.own {
		return
	}
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*topicLimit)
	}
	t := l.m[topic]
	if t == nil {
		t = &topicLimit{}
		l.m[topic] = t
	}
	known := t.max > 0
	l.mu.Unlock()
	if known {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l.mu.Lock()
	known = t.max > 0
	l.mu.Unlock()
	if known || time.Since(t.tried) < retryDescribe {
		return
	}
	t.tried = time.Now()
	ctx, cancel := context.WithTimeout(l.rt.baseCtx, describeTimeout)
	defer cancel()
	max, err := maxMessageBytes(ctx, l.rt.cl, topic)
	if err != nil {
		l.rt.logf(kgo.LogLevelWarn, "floodgate: cannot read the topic's max.message.bytes; producing to it with batches of at most 1000012 bytes for now",
			"topic", topic, "err", err)
		return
	}
	l.mu.Lock()
	t.max = max
	l.mu.Unlock()
}

// maxMessageBytes reads topic's max.message.bytes.
func maxMessageBytes(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
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
			n, err := strconv.ParseInt(*c.Value, 10, 32)
			if err != nil || n < 512 {
				break
			}
			return int32(n), nil
		}
	}
	return defaultBatchMax, nil
}
