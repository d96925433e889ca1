package lagmonitor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kname"
	"github.com/floodgate-kafka/floodgate/internal/kretry"
)

// Partitioner returns a kgo.Partitioner for the clients that publish
// signals: a record produced to controlTopic goes to
// [PartitionFor](topic, n), where topic is its key up to the first '/' (the
// destination topic of a key made by [Key]) and n the partitions the
// client's metadata knows, so that a signal lands where readers look even
// after the topic gains partitions; records for every other topic go where
// fallback sends them (nil: kgo's default,
// UniformBytesPartitioner(64KiB, true, true, nil)). Build the client that a
// [Publisher] uses with kgo.RecordPartitioner(Partitioner(controlTopic,
// nil)): a client's partitioner cannot be set per record, and kgo's default
// would hash the whole key, scattering a topic's signals.
func Partitioner(controlTopic string, fallback kgo.Partitioner) kgo.Partitioner {
	if fallback == nil {
		fallback = kgo.UniformBytesPartitioner(64<<10, true, true, nil)
	}
	return &controlPartitioner{control: controlTopic, fallback: fallback}
}

type controlPartitioner struct {
	control  string
	fallback kgo.Partitioner
}

func (p *controlPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == p.control {
		return signalPartitioner{}
	}
	return p.fallback.ForTopic(topic)
}

// signalPartitioner partitions one control topic's records.
type signalPartitioner struct{}

// RequiresConsistency is true: a signal goes to its topic's partition or
// fails, never elsewhere (readers would not see it).
func (signalPartitioner) RequiresConsistency(*kgo.Record) bool { return true }

func (signalPartitioner) Partition(r *kgo.Record, n int) int {
	topic, _, _ := bytes.Cut(r.Key, []byte(keySep))
	return int(PartitionFor(string(topic), n))
}

// PublisherOpt configures a [Publisher].
type PublisherOpt interface{ applyPublisher(*publisherCfg) }

type publisherCfg struct {
	signer  *Signer
	timeout time.Duration
	now     func() time.Time
}

type publisherOpt func(*publisherCfg)

func (o publisherOpt) applyPublisher(c *publisherCfg) { o(c) }

// PublishSigner signs every record the publisher writes (signals and
// tombstones). Default: none, records are unsigned.
func PublishSigner(s *Signer) PublisherOpt {
	return publisherOpt(func(c *publisherCfg) { c.signer = s })
}

// PublishTimeout bounds each [Publisher.Publish] and
// [Publisher.Tombstone], on top of the context they are given, even when
// the broker does not answer a request already sent (the record may then
// still be written later). Default 10s; it must be positive.
func PublishTimeout(d time.Duration) PublisherOpt {
	return publisherOpt(func(c *publisherCfg) { c.timeout = d })
}

// PublishClock sets the clock that stamps a signal published without an
// IssuedAt, and every tombstone. Default time.Now.
func PublishClock(now func() time.Time) PublisherOpt {
	return publisherOpt(func(c *publisherCfg) { c.now = now })
}

// DefaultPublishTimeout is [PublishTimeout]'s default.
const DefaultPublishTimeout = 10 * time.Second

// Publisher writes one instance's signals to the control topic through a
// client it is given, each synchronously acknowledged. It stamps every
// signal, and every tombstone of its own instance, with the instance id
// and a sequence number that strictly increases over all the records it
// writes (with gaps where a publish failed), so that readers reject
// replays; a new incarnation of the
// instance needs a new instance id ([NewInstanceID]), since its sequence
// starts again at 1. Use one Publisher per instance id. It starts no
// goroutine and needs no Close. It is safe for concurrent use; concurrent
// publishes are written in the order of their sequence numbers.
type Publisher struct {
	cl       *kgo.Client
	control  string
	instance string
	cfg      publisherCfg

	mu  sync.Mutex // orders seq with the produce calls
	seq uint64
}

// NewPublisher returns a publisher writing the signals of instance to
// controlTopic through cl, which it does not close. cl must partition
// with [Partitioner](controlTopic, ...) (checked: an error wrapping
// [ErrInvalidConfig] otherwise); it may be the consumer runtime's own
// client or any other. instance is an id as [NewInstanceID] makes: 1 to
// 255 bytes without '/' or control characters.
func NewPublisher(cl *kgo.Client, controlTopic, instance string, opts ...PublisherOpt) (*Publisher, error) {
	if cl == nil {
		return nil, fmt.Errorf("%w: client is nil", ErrInvalidConfig)
	}
	if !kname.Topic(controlTopic) {
		return nil, fmt.Errorf("%w: control topic %q is not a legal topic name", ErrInvalidConfig, controlTopic)
	}
	if err := checkInstance(instance); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidConfig, err)
	}
	if p, _ := cl.OptValue(kgo.RecordPartitioner).(*controlPartitioner); p == nil || p.control != controlTopic {
		return nil, fmt.Errorf("%w: the client does not partition the control topic by destination topic: build it with kgo.RecordPartitioner(lagmonitor.Partitioner(%q, nil))", ErrInvalidConfig, controlTopic)
	}
	cfg := publisherCfg{timeout: DefaultPublishTimeout, now: time.Now}
	for _, o := range opts {
		o.applyPublisher(&cfg)
	}
	if cfg.timeout <= 0 {
		return nil, fmt.Errorf("%w: PublishTimeout %v is not positive", ErrInvalidConfig, cfg.timeout)
	}
	if cfg.now == nil {
		return nil, fmt.Errorf("%w: PublishClock is nil", ErrInvalidConfig)
	}
	return &Publisher{cl: cl, control: controlTopic, instance: instance, cfg: cfg}, nil
}

// Instance returns the publisher's instance id.
func (p *Publisher) Instance() string { return p.instance }

// Publish writes s and waits for the broker's acknowledgement. It sets
// s.Version to [SignalVersion], s.Instance to the publisher's (an s.Instance
// that names another is an error), s.Seq to the next sequence number (any
// value given is replaced), and s.IssuedAt to now if it is zero; it
// returns s as written. A signal [Encode] refuses is an error wrapping
// [ErrInvalidSignal]; a produce error is returned wrapped, naming the ACL
// needed when it is an authorization failure. It waits no longer than ctx
// and the [PublishTimeout]: a signal not acknowledged by then is an error
// wrapping context.DeadlineExceeded (or ctx's cause), and may still be
// written later; readers take it only if no later signal of the instance
// came first.
func (p *Publisher) Publish(ctx context.Context, s Signal) (Signal, error) {
	if s.Instance != "" && s.Instance != p.instance {
		return s, fmt.Errorf("%w: instance %q, the publisher's is %q", ErrInvalidSignal, truncate(s.Instance, 64), p.instance)
	}
	s.Instance, s.Version = p.instance, SignalVersion
	if s.IssuedAt.IsZero() {
		s.IssuedAt = p.cfg.now()
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.timeout)
	defer cancel()

	p.mu.Lock()
	p.seq++
	s.Seq = p.seq
	key, value, err := Encode(&s)
	if err != nil {
		p.mu.Unlock()
		return s, err
	}
	done := p.produce(ctx, &kgo.Record{Topic: p.control, Key: key, Value: value})
	p.mu.Unlock()
	if err := p.wait(ctx, done); err != nil {
		return s, p.produceErr("publishing a signal", err)
	}
	return s, nil
}

// Tombstone writes a tombstone (a null value under [Key](topic, instance,
// group)) and waits for its acknowledgement: readers drop that instance's
// signal for topic and group at once, and compaction drops its records.
// An instance writes one for each topic and group it published for when it
// stops; instance may also name another (dead) instance.
//
// The tombstone carries its issue time ([IssuedAtHeader], from the
// publisher's clock) and, for the publisher's own instance, the next
// sequence number ([SeqHeader]) from the counter of its signals, so that
// readers reject its replays as they reject a signal's; one for another
// instance carries no seq (the publisher does not know that instance's).
// Both are covered by the v2 signature.
func (p *Publisher) Tombstone(ctx context.Context, topic, instance, group string) error {
	if err := checkNames(topic, instance, group); err != nil {
		return fmt.Errorf("%w: tombstone: %s", ErrInvalidSignal, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.timeout)
	defer cancel()
	p.mu.Lock()
	var seq uint64
	if instance == p.instance {
		seq = p.seq + 1
	}
	hs, err := TombstoneHeaders(seq, p.cfg.now())
	if err != nil {
		p.mu.Unlock()
		return err
	}
	if seq > 0 {
		p.seq = seq
	}
	done := p.produce(ctx, &kgo.Record{Topic: p.control, Key: Key(topic, instance, group), Headers: hs})
	p.mu.Unlock()
	if err := p.wait(ctx, done); err != nil {
		return p.produceErr("writing a tombstone", err)
	}
	return nil
}

// wait returns the produce's result, or ctx's error once ctx ends first.
// The record's context fails it while it waits in the client, but an
// idempotent client cannot fail a record it has sent (the broker may
// have written it): a broker that died with the request in flight would
// hold the caller until it is back, and a monitor's evaluation with it.
// The record may then still be written, in order, after the error.
func (p *Publisher) wait(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		select {
		case err := <-done: // both ready: the result wins
			return err
		default:
		}
		return fmt.Errorf("not acknowledged in time (it may still be written): %w", context.Cause(ctx))
	}
}

// produce signs r and hands it to the client; the returned channel gets
// the result.
func (p *Publisher) produce(ctx context.Context, r *kgo.Record) <-chan error {
	if p.cfg.signer != nil {
		p.cfg.signer.Sign(r)
	}
	done := make(chan error, 1)
	p.cl.Produce(ctx, r, func(_ *kgo.Record, err error) { done <- err })
	return done
}

func (p *Publisher) produceErr(what string, err error) error {
	if errors.Is(err, kerr.TopicAuthorizationFailed) {
		return fmt.Errorf("lagmonitor: %s to control topic %q: the client's principal needs WRITE on topic %q: %w", what, p.control, p.control, err)
	}
	if errors.Is(err, kerr.ClusterAuthorizationFailed) {
		return fmt.Errorf("lagmonitor: %s to control topic %q: the client's principal needs IDEMPOTENT_WRITE on the cluster (Kafka before 3.0), or the client kgo.DisableIdempotentWrite: %w", what, p.control, err)
	}
	return fmt.Errorf("lagmonitor: %s to control topic %q: %w", what, p.control, err)
}

// NewInstanceID returns an instance id for one incarnation of a process:
// "<prefix>-<host>-<pid>-<12 random hex digits>", each part cut to 64
// bytes and every character outside A-Z a-z 0-9 . _ - replaced by '_' (so
// never '/', which separates a key's parts). The random part makes two
// starts of one process on one host differ, so that each incarnation's
// sequence numbers start afresh without looking like replays. An empty
// prefix becomes "floodgate".
func NewInstanceID(prefix string) string {
	if prefix == "" {
		prefix = "floodgate"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:]) // never fails (crypto/rand)
	return idPart(prefix) + "-" + idPart(host) + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(nonce[:])
}

func idPart(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// The control topic's configs, set by [EnsureControlTopic] when it creates
// the topic.
const (
	// RetentionTTLs is retention.ms in signal TTLs: a signal is useless
	// once expired, so the topic keeps a few TTLs for readers that start.
	RetentionTTLs = 4
	// SegmentMs is segment.ms: compaction and deletion never touch the
	// active segment, so it rolls every minute.
	SegmentMs = 60_000
	// TimestampType is message.timestamp.type: the broker stamps each
	// record with its own clock as it appends it, so that readers count
	// a signal's TTL from then, whatever the publisher's clock says.
	TimestampType = "LogAppendTime"
)

// ControlTopicStatus is what [EnsureControlTopic] found or did.
type ControlTopicStatus struct {
	Created    bool  // the topic was created now
	Partitions int32 // its partitions
	// Configs are the configs set on creation, or, for an existing
	// topic, its cleanup.policy, retention.ms, segment.ms and
	// message.timestamp.type as read (absent when DescribeConfigs is not
	// allowed).
	Configs map[string]string
	// Warnings say what about an existing topic differs from what
	// EnsureControlTopic would have set and matters: a cleanup policy
	// without compact (superseded signals are kept until retention, and
	// readers that start read them all) or without delete (dead
	// instances' last records are kept forever), a timestamp type other
	// than LogAppendTime (readers then count TTLs from the publishers'
	// clocks, and a publisher's clock skew shortens or lengthens its
	// signals' life), or configs that could not be read.
	Warnings []string
}

// EnsureControlTopic creates the control topic name, with partitions
// partitions and the cluster's default replication factor, unless it
// exists. It creates it with cleanup.policy=compact,delete (compaction
// keeps an instance's latest signal, deletion drops instances that left
// without a tombstone), retention.ms = [RetentionTTLs] × ttl,
// segment.ms = [SegmentMs] and message.timestamp.type = [TimestampType]
// (readers count a signal's TTL from the broker's clock); ttl is the signals' time-to-live, from 1 ms to
// [MaxTTL]. An existing topic is accepted as it is: its partitions and
// configs are not changed, and what matters in them is reported in the
// status's Warnings. EnsureControlTopic returns once every broker serves
// the topic (it shows in each broker's metadata, each partition with a
// leader), so that a reader or publisher started next finds it, whichever
// broker it asks: a topic just created, by this call or by another client
// at the same moment, is waited for within ctx, at most 15s. When the
// client's principal may not create the topic (TOPIC_AUTHORIZATION_FAILED
// or CLUSTER_AUTHORIZATION_FAILED), the error names the ACL needed and
// wraps the kerr error.
func EnsureControlTopic(ctx context.Context, cl *kgo.Client, name string, partitions int32, ttl time.Duration) (ControlTopicStatus, error) {
	var st ControlTopicStatus
	switch {
	case cl == nil:
		return st, fmt.Errorf("%w: client is nil", ErrInvalidConfig)
	case !kname.Topic(name):
		return st, fmt.Errorf("%w: control topic %q is not a legal topic name", ErrInvalidConfig, name)
	case partitions < 1:
		return st, fmt.Errorf("%w: control topic partitions %d, at least 1", ErrInvalidConfig, partitions)
	case ttl < time.Millisecond || ttl > MaxTTL:
		return st, fmt.Errorf("%w: ttl %v out of range [1ms, %v]", ErrInvalidConfig, ttl, MaxTTL)
	}
	adm := kadm.NewClient(cl)
	n, err := kretry.Partitions(ctx, cl, name)
	if err == nil {
		return existingControlTopic(ctx, adm, name, n)
	}
	if !errors.Is(err, kerr.UnknownTopicOrPartition) && !errors.Is(err, kerr.TopicAuthorizationFailed) {
		// Not found and not hidden by missing rights: creating cannot help.
		return st, fmt.Errorf("lagmonitor: looking up control topic %q: %w", name, err)
	}
	retention := strconv.FormatInt(RetentionTTLs*ttl.Milliseconds(), 10)
	segment := strconv.Itoa(SegmentMs)
	configs := map[string]*string{
		"cleanup.policy":         kadm.StringPtr("compact,delete"),
		"retention.ms":           &retention,
		"segment.ms":             &segment,
		"message.timestamp.type": kadm.StringPtr(TimestampType),
	}
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, name)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		// A broker may not serve a topic just created for a moment:
		// return once it does, so that a reader or publisher that
		// starts next finds it.
		if _, err := kretry.AwaitTopic(ctx, cl, name); err != nil {
			return st, fmt.Errorf("lagmonitor: control topic %q created, but not served yet: %w", name, err)
		}
		st.Created, st.Partitions = true, partitions
		st.Configs = map[string]string{"cleanup.policy": "compact,delete", "retention.ms": retention, "segment.ms": segment, "message.timestamp.type": TimestampType}
		return st, nil
	case errors.Is(err, kerr.TopicAlreadyExists):
		// Created meanwhile by another client (monitors that start
		// together race to create it): the broker asked may not have
		// the topic in its metadata yet, and answers UNKNOWN_TOPIC_OR_PARTITION
		// for a moment.
		n, err := kretry.AwaitTopic(ctx, cl, name)
		if err != nil {
			return st, fmt.Errorf("lagmonitor: looking up control topic %q: %w", name, err)
		}
		return existingControlTopic(ctx, adm, name, n)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return st, fmt.Errorf("lagmonitor: creating control topic %q: not authorized: the client's principal needs CREATE on topic %q (or on the cluster), and DESCRIBE on it to find it once created; or create it beforehand (cleanup.policy=compact,delete, retention.ms=%s, segment.ms=%s, message.timestamp.type=%s): %w",
			name, name, retention, segment, TimestampType, err)
	default:
		if resp.ErrMessage != "" {
			return st, fmt.Errorf("lagmonitor: creating control topic %q: %w (%s)", name, err, resp.ErrMessage)
		}
		return st, fmt.Errorf("lagmonitor: creating control topic %q: %w", name, err)
	}
}

func existingControlTopic(ctx context.Context, adm *kadm.Client, name string, partitions int32) (ControlTopicStatus, error) {
	st := ControlTopicStatus{Partitions: partitions}
	rcs, err := adm.DescribeTopicConfigs(ctx, name)
	var rc kadm.ResourceConfig
	if err == nil {
		rc, err = rcs.On(name, nil)
	}
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		st.Warnings = append(st.Warnings, fmt.Sprintf("cannot read the configs of control topic %q (DESCRIBE_CONFIGS on it is needed): %v", name, err))
		return st, nil
	}
	st.Configs = make(map[string]string)
	for _, c := range rc.Configs {
		switch c.Key {
		case "cleanup.policy", "retention.ms", "segment.ms", "message.timestamp.type":
			st.Configs[c.Key] = c.MaybeValue()
		}
	}
	policy := st.Configs["cleanup.policy"]
	if !strings.Contains(policy, "compact") {
		st.Warnings = append(st.Warnings, fmt.Sprintf("control topic %q has cleanup.policy=%s, without compact: each instance's superseded signals are kept until retention, and readers that start read them all", name, policy))
	}
	if !strings.Contains(policy, "delete") {
		st.Warnings = append(st.Warnings, fmt.Sprintf("control topic %q has cleanup.policy=%s, without delete: the last record of every instance that left without a tombstone is kept forever", name, policy))
	}
	if tt := st.Configs["message.timestamp.type"]; tt != TimestampType {
		st.Warnings = append(st.Warnings, fmt.Sprintf("control topic %q has message.timestamp.type=%s, not %s: readers count each signal's TTL from its publisher's clock, so a publisher whose clock is off holds its signals too short or too long (set it: kafka-configs --alter --entity-type topics --entity-name %s --add-config message.timestamp.type=%s)", name, tt, TimestampType, name, TimestampType))
	}
	return st, nil
}
