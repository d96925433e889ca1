// Package testkit holds helpers shared by floodgate's tests: an embedded
// kfake cluster, a fast producer, and a ledger that accounts for every
// record a test produced.
package testkit

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Cluster starts an embedded kfake cluster seeded with topic (partitions
// partitions) and closes it when the test ends. It returns the seed brokers.
func Cluster(tb testing.TB, partitions int32, topics ...string) (*kfake.Cluster, []string) {
	tb.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, topics...),
		kfake.GroupMinSessionTimeout(500*time.Millisecond),
	)
	if err != nil {
		tb.Fatalf("starting kfake: %v", err)
	}
	tb.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// Producer produces test records through one client.
type Producer struct {
	cl *kgo.Client
}

// NewProducer returns a producer closed when the test ends. Records are
// spread round-robin over partitions.
func NewProducer(tb testing.TB, brokers []string) *Producer {
	tb.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
		// Test values are zeros: compressed, a batch of them would hold
		// far more records than real data does, which skews every
		// figure that depends on fetch sizes.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		tb.Fatalf("producer client: %v", err)
	}
	tb.Cleanup(cl.Close)
	return &Producer{cl: cl}
}

// Client returns the producer's client.
func (p *Producer) Client() *kgo.Client { return p.cl }

// Produce writes n records to topic with keys "k0".."k(keys-1)" and values
// of valueSize bytes, and waits for every acknowledgement. It returns the
// records as acknowledged (with partition and offset set). It is safe to
// call from any goroutine.
func (p *Producer) Produce(topic string, n, keys, valueSize int) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := make([]*kgo.Record, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	value := make([]byte, valueSize)
	for i := range n {
		r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%keys), Value: value}
		out[i] = r
		wg.Add(1)
		p.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("producing %d records: %w", n, firstErr)
	}
	return out, nil
}

// Produce is a one-shot [Producer.Produce] that fails the test on error.
func Produce(tb testing.TB, brokers []string, topic string, n, keys, valueSize int) []*kgo.Record {
	tb.Helper()
	rs, err := NewProducer(tb, brokers).Produce(topic, n, keys, valueSize)
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

// TP names a partition.
type TP struct {
	Topic     string
	Partition int32
}

// Ledger accounts for records: which were produced and how often each was
// handled. A record may be handled before the test learns it was produced
// (the acknowledgement can arrive after a consumer handled it); the ledger
// accepts both orders. It is safe for concurrent use.
type Ledger struct {
	mu       sync.Mutex
	expected map[TP]map[int64]struct{}
	handled  map[TP]map[int64]int
	prefix   map[TP]int64 // offsets [0, prefix) all handled
	done     int          // expected records handled at least once
	changed  chan struct{}
}

// NewLedger expects the given produced records.
func NewLedger(produced []*kgo.Record) *Ledger {
	l := &Ledger{
		expected: make(map[TP]map[int64]struct{}),
		handled:  make(map[TP]map[int64]int),
		prefix:   make(map[TP]int64),
		changed:  make(chan struct{}, 1),
	}
	for _, r := range produced {
		l.Expect(r.Topic, r.Partition, r.Offset)
	}
	return l
}

// Expect adds one expected record.
func (l *Ledger) Expect(topic string, partition int32, offset int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := TP{topic, partition}
	if l.expected[k] == nil {
		l.expected[k] = make(map[int64]struct{})
	}
	if _, ok := l.expected[k][offset]; ok {
		return
	}
	l.expected[k][offset] = struct{}{}
	if l.handled[k][offset] > 0 {
		l.done++
	}
}

// Handled records one handling of a record.
func (l *Ledger) Handled(topic string, partition int32, offset int64) {
	l.mu.Lock()
	k := TP{topic, partition}
	m := l.handled[k]
	if m == nil {
		m = make(map[int64]int)
		l.handled[k] = m
	}
	m[offset]++
	if _, ok := l.expected[k][offset]; ok && m[offset] == 1 {
		l.done++
	}
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// HandledPrefix returns p such that offsets 0 to p-1 of the partition were
// all handled at least once. On a topic whose offsets are contiguous from 0
// (no transactions, no compaction), committing an offset above it would
// commit past a record never handled.
func (l *Ledger) HandledPrefix(topic string, partition int32) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := TP{topic, partition}
	p := l.prefix[k]
	for l.handled[k][p] > 0 {
		p++
	}
	l.prefix[k] = p
	return p
}

// Progress returns how many records are expected and how many of those
// were handled at least once. It is cheap.
func (l *Ledger) Progress() (expected, handled int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.expected {
		expected += len(m)
	}
	return expected, l.done
}

// Counts returns the number of records expected, handled at least once,
// handled more than once (duplicate handlings beyond the first) and handled
// without having been expected.
func (l *Ledger) Counts() (expected, handled, duplicates, unexpected int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, m := range l.handled {
		for o, n := range m {
			if _, ok := l.expected[k][o]; !ok {
				unexpected += n
				continue
			}
			duplicates += n - 1
		}
	}
	for _, m := range l.expected {
		expected += len(m)
	}
	return expected, l.done, duplicates, unexpected
}

// Missing describes up to max records never handled, or "" if none.
func (l *Ledger) Missing(max int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var miss []string
	total := 0
	keys := make([]TP, 0, len(l.expected))
	for k := range l.expected {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].Topic < keys[j].Topic || keys[i].Topic == keys[j].Topic && keys[i].Partition < keys[j].Partition
	})
	for _, k := range keys {
		offs := make([]int64, 0)
		for o := range l.expected[k] {
			if l.handled[k][o] == 0 {
				offs = append(offs, o)
			}
		}
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
		total += len(offs)
		for _, o := range offs {
			if len(miss) < max {
				miss = append(miss, fmt.Sprintf("%s[%d]@%d", k.Topic, k.Partition, o))
			}
		}
	}
	if total == 0 {
		return ""
	}
	return fmt.Sprintf("%d records never handled, first: %s", total, strings.Join(miss, " "))
}

// WaitAll waits until every expected record was handled at least once, or
// fails the test after timeout naming what is missing.
func (l *Ledger) WaitAll(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		exp, handled := l.Progress()
		if handled == exp {
			return
		}
		select {
		case <-l.changed:
		case <-deadline.C:
			tb.Fatalf("after %v: %s", timeout, l.Missing(10))
		}
	}
}

// Eventually polls cond every few milliseconds until it is true, failing
// the test with msg after timeout.
func Eventually(tb testing.TB, timeout time.Duration, msg string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v: %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ReadTopic reads topic from the start (all partitions, no group) until it
// has n records or timeout passes, failing the test then. It returns the
// records read.
func ReadTopic(tb testing.TB, brokers []string, topic string, n int, timeout time.Duration) []*kgo.Record {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("topic %s: %d of %d records after %v", topic, len(out), n, timeout)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// FailFetches makes every fetch that c serves fail, retriably (leader not
// available on every partition asked), while block is true.
func FailFetches(c *kfake.Cluster, block *atomic.Bool) {
	c.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !block.Load() {
			return nil, nil, false
		}
		req := kreq.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.LeaderNotAvailable.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// OnProduceTo calls fn for every produce request c serves whose only topic
// is topic (named, or by id as produce v13 names it). fn may call
// c.SleepControl to hold the request; it returns an error to refuse every
// partition of the request with, or nil to let c serve it.
func OnProduceTo(tb testing.TB, c *kfake.Cluster, topic string, fn func() *kerr.Error) {
	tb.Helper()
	id := topicID(tb, c, topic)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		if len(req.Topics) != 1 || (req.Topics[0].Topic != topic && req.Topics[0].TopicID != id) {
			return nil, nil, false
		}
		code := fn()
		if code == nil {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

// topicID returns the id of topic on c, failing tb if it has none.
func topicID(tb testing.TB, c *kfake.Cluster, topic string) [16]byte {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err == nil && (len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0) {
		err = fmt.Errorf("topic %q not found", topic)
	}
	if err != nil {
		tb.Fatalf("looking up %q's id: %v", topic, err)
	}
	return resp.Topics[0].TopicID
}

// LogAppendTime makes c stamp each record produced to topic with its own
// clock as it appends it, as a broker does for a topic of
// message.timestamp.type=LogAppendTime: kfake keeps that config but does
// not apply it; it does honour the LogAppendTime attribute of a batch,
// which this sets on every batch produced to topic (a client never does).
// kfake then stamps the batch without making its CRC anew, so the clients
// that read topic need the option returned,
// kgo.DisableFetchCRCValidation.
func LogAppendTime(tb testing.TB, c *kfake.Cluster, topic string) kgo.Opt {
	tb.Helper()
	id := topicID(tb, c, topic)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		for i := range req.Topics {
			rt := &req.Topics[i]
			if rt.Topic != topic && rt.TopicID != id {
				continue
			}
			for j := range rt.Partitions {
				rt.Partitions[j].Records = logAppendBatch(rt.Partitions[j].Records)
			}
		}
		return nil, nil, false
	})
	return kgo.DisableFetchCRCValidation()
}

// logAppendBatch returns the record batch raw with its LogAppendTime
// attribute set and its CRC made anew; raw itself if it does not parse.
func logAppendBatch(raw []byte) []byte {
	var b kmsg.RecordBatch
	if err := b.ReadFrom(raw); err != nil {
		return raw
	}
	b.Attributes |= 0x0008
	out := b.AppendTo(nil)
	// The CRC (Castagnoli) covers what follows it, from the attributes on.
	binary.BigEndian.PutUint32(out[17:21], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}
