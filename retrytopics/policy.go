package retrytopics

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/kretry"
)

// Config configures a [Policy]. Group and Topics are required.
type Config struct {
	// Group is the consumer group; it names the retry and quarantine
	// topics, so that two groups consuming one topic retry apart.
	Group string
	// Topics are the source topics.
	Topics []string
	// Tiers are the retry delays, in order (for example 1s, 10s, 1m). A
	// record that fails on tier i goes to tier i+1, after the last tier to
	// quarantine. Empty: failures are quarantined after in-place retries.
	Tiers []time.Duration
	// TierTopic names tier i (0-based) of source; default
	// "<source>.<group>.retry.<i+1>".
	TierTopic func(source, group string, tier int) string
	// QuarantineTopic names the quarantine lane (dead-letter topic) of
	// source; default "<source>.<group>.dlq".
	QuarantineTopic func(source, group string) string
	// InPlaceRetries is how many times a failed source record is retried in
	// place (its lane waits) before the first tier. Default 0.
	InPlaceRetries int
	// InPlaceBackoff is the first in-place wait, doubled per retry up to 5s,
	// with jitter. Default 100ms.
	InPlaceBackoff time.Duration
	// BudgetRatio is the fraction of first attempts that may be retried
	// (in place or through a tier) over BudgetWindow. Default 0.1.
	BudgetRatio float64
	// BudgetFloor is the retries per second always allowed. Default 10.
	BudgetFloor float64
	// BudgetWindow is the sliding window of the budget. Default 10s.
	BudgetWindow time.Duration
	// ClockSkew is how far the clocks of the processes that write and read
	// a tier may disagree. A tier record's due time is trusted up to its
	// timestamp plus its tier's delay plus ClockSkew, and a record stamped
	// more than ClockSkew in the future is due at once (see
	// [Policy.Due]). Default 30s.
	ClockSkew time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// ErrInvalidConfig is wrapped by [New] errors, which name the field.
var ErrInvalidConfig = errors.New("retrytopics: invalid config")

// Policy routes failed records through retry tiers to the quarantine lane.
// It implements [consumer.Router]; give the runtime [Policy.Handler] as its
// handler, [Policy.ConsumeTopics] as its topics and the policy with
// [consumer.WithRouter], or use [Policy.Opts]. Safe for concurrent use.
type Policy struct {
	cfg     Config
	budget  *budget
	tiers   map[string]tierOf // tier topic -> source and index
	sources map[string]bool

	inPlace       atomic.Uint64
	tiered        atomic.Uint64
	quarantined   [5]atomic.Uint64 // by reasonIndex
	fellThrough   atomic.Uint64    // refused tier moves quarantined instead
	trimmed       atomic.Uint64    // refused quarantine moves trimmed
	undeliverable atomic.Uint64    // refused moves left with nothing to try
}

type tierOf struct {
	source string
	index  int
}

// New validates cfg and returns its policy.
func New(cfg Config) (*Policy, error) {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.Group == "":
		return nil, bad("Group", "must be set")
	case len(cfg.Topics) == 0:
		return nil, bad("Topics", "must name at least one source topic")
	case cfg.InPlaceRetries < 0:
		return nil, bad("InPlaceRetries", "must be >= 0, got %d", cfg.InPlaceRetries)
	case cfg.InPlaceBackoff < 0:
		return nil, bad("InPlaceBackoff", "must be >= 0, got %v", cfg.InPlaceBackoff)
	case cfg.BudgetRatio < 0:
		return nil, bad("BudgetRatio", "must be >= 0, got %v", cfg.BudgetRatio)
	case cfg.BudgetFloor < 0:
		return nil, bad("BudgetFloor", "must be >= 0, got %v", cfg.BudgetFloor)
	case cfg.BudgetWindow < 0:
		return nil, bad("BudgetWindow", "must be >= 0, got %v", cfg.BudgetWindow)
	case cfg.ClockSkew < 0:
		return nil, bad("ClockSkew", "must be >= 0, got %v", cfg.ClockSkew)
	}
	for i, d := range cfg.Tiers {
		if d <= 0 {
			return nil, bad("Tiers", "delay %d must be > 0, got %v", i, d)
		}
	}
	if cfg.TierTopic == nil {
		cfg.TierTopic = func(source, group string, tier int) string {
			return fmt.Sprintf("%s.%s.retry.%d", source, group, tier+1)
		}
	}
	if cfg.QuarantineTopic == nil {
		cfg.QuarantineTopic = func(source, group string) string { return source + "." + group + ".dlq" }
	}
	if cfg.InPlaceBackoff == 0 {
		cfg.InPlaceBackoff = 100 * time.Millisecond
	}
	if cfg.BudgetRatio == 0 && cfg.BudgetFloor == 0 {
		cfg.BudgetRatio, cfg.BudgetFloor = 0.1, 10
	}
	if cfg.BudgetWindow == 0 {
		cfg.BudgetWindow = 10 * time.Second
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Policy{
		cfg:     cfg,
		budget:  newBudget(cfg.BudgetRatio, cfg.BudgetFloor, cfg.BudgetWindow),
		tiers:   make(map[string]tierOf),
		sources: make(map[string]bool),
	}
	for _, src := range cfg.Topics {
		if src == "" {
			return nil, bad("Topics", "contains an empty name")
		}
		p.sources[src] = true
	}
	for _, src := range cfg.Topics {
		for i := range cfg.Tiers {
			name := cfg.TierTopic(src, cfg.Group, i)
			if _, dup := p.tiers[name]; dup || p.sources[name] {
				return nil, bad("TierTopic", "names %q twice", name)
			}
			p.tiers[name] = tierOf{src, i}
		}
	}
	return p, nil
}

// ConsumeTopics returns the topics the runtime must consume: the sources
// and their tiers.
func (p *Policy) ConsumeTopics() []string {
	out := append([]string(nil), p.cfg.Topics...)
	for _, src := range p.cfg.Topics {
		for i := range p.cfg.Tiers {
			out = append(out, p.cfg.TierTopic(src, p.cfg.Group, i))
		}
	}
	return out
}

// TierTopics returns the tier topics of source, in order.
func (p *Policy) TierTopics(source string) []string {
	out := make([]string, len(p.cfg.Tiers))
	for i := range out {
		out[i] = p.cfg.TierTopic(source, p.cfg.Group, i)
	}
	return out
}

// TierDelay reports whether topic is one of the policy's retry tiers, and
// its delay: a tier's records wait that long by design, so a lag monitor
// measures a tier's time lag against the due time, not the record's age.
func (p *Policy) TierDelay(topic string) (time.Duration, bool) {
	t, ok := p.tiers[topic]
	if !ok {
		return 0, false
	}
	return p.cfg.Tiers[t.index], true
}

// QuarantineTopic returns the quarantine lane of source.
func (p *Policy) QuarantineTopic(source string) string {
	return p.cfg.QuarantineTopic(source, p.cfg.Group)
}

// Opts returns the runtime options that wire the policy in: the topics,
// the router. Pass the handler through [Policy.Handler] yourself.
func (p *Policy) Opts() []consumer.Opt {
	return []consumer.Opt{consumer.Topics(p.ConsumeTopics()...), consumer.WithRouter(p)}
}

// Handler wraps h: a record whose floodgate headers do not decode fails
// with [ErrUndecodable] without reaching h, and is quarantined.
func (p *Policy) Handler(h consumer.Handler) consumer.Handler {
	return func(ctx context.Context, r *kgo.Record) error {
		if HasMeta(r) {
			if _, _, err := Decode(r); err != nil {
				return fmt.Errorf("%w: %w", ErrUndecodable, err)
			}
		}
		return h(ctx, r)
	}
}

// Due implements consumer.Router: a tier record is due at its
// floodgate-due time, but no later than its timestamp plus its tier's delay
// plus [Config.ClockSkew]: a due time far ahead (written by a hostile or
// broken producer, or under a tier delay since shortened) cannot hold the
// tier partition, and every retry behind it, for longer than that. A
// record stamped more than ClockSkew in the future, which would defeat the
// bound, is due at once. Otherwise the answer depends on the record alone,
// so it does not move when the record is asked about again.
//
// A first delivery of a source record counts as a first attempt for the
// retry budget. Records whose headers do not decode are due at once (and
// quarantined by the handler wrapper).
func (p *Policy) Due(r *kgo.Record) time.Time {
	t, ok := p.tiers[r.Topic]
	if !ok {
		if p.sources[r.Topic] {
			p.budget.deposit(p.cfg.Now())
		}
		return time.Time{}
	}
	m, _, err := Decode(r)
	if err != nil || m.Due.IsZero() {
		return time.Time{}
	}
	if r.Timestamp.After(p.cfg.Now().Add(p.cfg.ClockSkew)) {
		return time.Time{}
	}
	if limit := r.Timestamp.Add(p.cfg.Tiers[t.index] + p.cfg.ClockSkew); m.Due.After(limit) {
		return limit
	}
	return m.Due
}

// Failed implements consumer.Router.
func (p *Policy) Failed(r *kgo.Record, attempt int, err error) consumer.Decision {
	now := p.cfg.Now()
	source, tier := r.Topic, -1
	if t, ok := p.tiers[r.Topic]; ok {
		source, tier = t.source, t.index
	}
	m, _, derr := Decode(r)
	if derr != nil || errors.Is(err, ErrUndecodable) {
		if derr == nil {
			derr = err
		}
		msg := derr.Error()
		if tier >= 0 {
			// The origin the headers claim cannot be trusted, but the tier
			// says which source the record came from: replay sends it
			// there. The error text keeps the tier record's location.
			msg = fmt.Sprintf("undecodable on retry tier %s[%d]@%d: %s", r.Topic, r.Partition, r.Offset, msg)
		}
		return p.quarantine(r, source, Meta{
			OriginalTopic: source, OriginalPartition: r.Partition, OriginalOffset: r.Offset,
			OriginalTimestamp: r.Timestamp, Attempt: attempt, FirstFailure: now, Error: msg,
		}, ReasonUndecodable)
	}
	prior := m.Attempt
	if m.OriginalTopic == "" { // a first failure (or a replayed record)
		m = Meta{OriginalTopic: r.Topic, OriginalPartition: r.Partition, OriginalOffset: r.Offset,
			OriginalTimestamp: r.Timestamp, FirstFailure: now, ReplayCount: m.ReplayCount}
		prior = 0
	}
	m.Attempt = addAttempts(prior, attempt)
	m.Error = err.Error()
	m.Due = time.Time{}
	switch {
	case IsPermanent(err):
		return p.quarantine(r, source, m, ReasonPermanent)
	case tier < 0 && attempt <= p.cfg.InPlaceRetries:
		if !p.budget.withdraw(now) {
			return p.quarantine(r, source, m, ReasonBudgetExhausted)
		}
		p.inPlace.Add(1)
		return consumer.Decision{RetryAfter: p.inPlaceWait(attempt)}
	case tier+1 < len(p.cfg.Tiers):
		if !p.budget.withdraw(now) {
			return p.quarantine(r, source, m, ReasonBudgetExhausted)
		}
		m.Due = now.Add(p.cfg.Tiers[tier+1])
		p.tiered.Add(1)
		return consumer.Decision{Divert: &kgo.Record{
			Topic:   p.cfg.TierTopic(source, p.cfg.Group, tier+1),
			Key:     r.Key,
			Value:   r.Value,
			Headers: m.Encode(r.Headers),
		}}
	case len(p.cfg.Tiers) == 0:
		return p.quarantine(r, source, m, ReasonAttemptsExhausted)
	default:
		return p.quarantine(r, source, m, ReasonHandlerError)
	}
}

// MaxTrimmedKeyLen is the largest key a trimmed quarantine record keeps,
// in bytes; a larger key is dropped with the value (see
// [Policy.Undeliverable]).
const MaxTrimmedKeyLen = 1024

// maxRefusalLen bounds the produce error quoted in the error text of a
// record moved elsewhere because its destination refused it, so that the
// handler's error keeps most of MaxErrorLen.
const maxRefusalLen = 256

// Undeliverable implements consumer.Router. It is asked when a move the
// policy made failed with an error no retry can fix (see
// consumer.IsUnretryableProduceError), and answers:
//
//   - for a refused tier move, the quarantine move the record would have
//     made after its last tier: the same metadata, reason handler-error,
//     and an error text naming the tier and its refusal before the
//     handler's error;
//   - for a refused quarantine move, a trimmed copy for the same lane: an
//     empty (not null) value, the key if at most [MaxTrimmedKeyLen] bytes,
//     none of the record's own headers, the floodgate metadata (whose
//     original topic, partition and offset say where the whole record
//     lives) with [Meta.Trimmed] naming what was dropped and
//     [Meta.OriginalSize] the refused record's size as consumer.RecordSize
//     counts it, and the lane and its refusal prepended to the error;
//   - nil for a refused trimmed copy, or a record it did not make: the
//     runtime pauses the partition and reports the failure.
//
// [Stats] counts each answer.
func (p *Policy) Undeliverable(r, failed *kgo.Record, err error) *kgo.Record {
	m, _, derr := Decode(failed)
	switch {
	case derr != nil || m.OriginalTopic == "":
		// Not a move this policy made.
	case m.Reason == "":
		t, ok := p.tiers[failed.Topic]
		if !ok {
			break
		}
		p.fellThrough.Add(1)
		m.Due = time.Time{}
		m.Error = refused("retry tier "+failed.Topic, err, "handler error: "+m.Error)
		return p.quarantine(failed, t.source, m, ReasonHandlerError).Divert
	case m.Trimmed == "":
		p.trimmed.Add(1)
		return trim(failed, m, err)
	}
	p.undeliverable.Add(1)
	return nil
}

// refused returns the error text of a record its destination refused:
// who refused it and why (cut to maxRefusalLen), then the error before.
func refused(by string, err error, before string) string {
	why := truncate(fmt.Sprintf("%s refused the record (%v)", by, err), maxRefusalLen)
	return truncate(why+"; "+before, MaxErrorLen)
}

// trim returns the trimmed copy of the quarantine record q whose metadata
// is m.
func trim(q *kgo.Record, m Meta, err error) *kgo.Record {
	dropped := []string{trimmedValue}
	key := q.Key
	if len(key) > MaxTrimmedKeyLen {
		key = nil
		dropped = append(dropped, trimmedKey)
	}
	for _, h := range q.Headers {
		if !IsMetaHeader(h.Key) {
			dropped = append(dropped, trimmedHeaders)
			break
		}
	}
	m.Trimmed = strings.Join(dropped, ",")
	m.OriginalSize = consumer.RecordSize(q)
	m.Error = refused("quarantine lane "+q.Topic, err, m.Error)
	// An empty value, not a null one: on a compacted lane a null value
	// would be a tombstone for the key.
	return &kgo.Record{Topic: q.Topic, Key: key, Value: []byte{}, Headers: m.Encode(nil)}
}

// addAttempts returns prior+attempt, saturated at MaxAttempt.
func addAttempts(prior, attempt int) int {
	if attempt >= MaxAttempt-prior {
		return MaxAttempt
	}
	return prior + attempt
}

func (p *Policy) inPlaceWait(attempt int) time.Duration {
	d := p.cfg.InPlaceBackoff
	for i := 1; i < attempt && d < 5*time.Second; i++ {
		d *= 2
	}
	d = min(d, 5*time.Second)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// quarantine builds the quarantine record of r. For an undecodable record
// the malformed floodgate headers are kept, renamed to
// "x-floodgate-malformed.<key>", so that the lane's own headers decode.
func (p *Policy) quarantine(r *kgo.Record, source string, m Meta, reason Reason) consumer.Decision {
	m.Reason = reason
	p.quarantined[reasonIndex(reason)].Add(1)
	headers := r.Headers
	if reason == ReasonUndecodable {
		headers = make([]kgo.RecordHeader, 0, len(r.Headers))
		for _, h := range r.Headers {
			if IsMetaHeader(h.Key) {
				h.Key = "x-floodgate-malformed." + h.Key
			}
			headers = append(headers, h)
		}
	}
	return consumer.Decision{Divert: &kgo.Record{
		Topic:   p.cfg.QuarantineTopic(source, p.cfg.Group),
		Key:     r.Key,
		Value:   r.Value,
		Headers: m.Encode(headers),
	}}
}

func reasonIndex(r Reason) int {
	switch r {
	case ReasonHandlerError:
		return 0
	case ReasonPermanent:
		return 1
	case ReasonAttemptsExhausted:
		return 2
	case ReasonBudgetExhausted:
		return 3
	}
	return 4
}

// Stats counts what the policy decided.
type Stats struct {
	FirstAttempts, Retries, BudgetRefusals uint64 // as the budget saw them
	InPlace, Tiered                        uint64 // Tiered counts tier moves made, refused ones too
	Quarantined                            map[Reason]uint64

	// What [Policy.Undeliverable] answered for moves their destination
	// refused: tier moves quarantined instead (also counted in
	// Quarantined), quarantine moves trimmed (not counted again), and
	// moves left with nothing to try, whose partition then pauses.
	TierFallThroughs, Trimmed, Undeliverable uint64
}

// Stats returns the policy's counters.
func (p *Policy) Stats() Stats {
	p.budget.mu.Lock()
	s := Stats{FirstAttempts: p.budget.attempts, Retries: p.budget.retries, BudgetRefusals: p.budget.spent}
	p.budget.mu.Unlock()
	s.InPlace, s.Tiered = p.inPlace.Load(), p.tiered.Load()
	s.TierFallThroughs, s.Trimmed, s.Undeliverable = p.fellThrough.Load(), p.trimmed.Load(), p.undeliverable.Load()
	s.Quarantined = make(map[Reason]uint64)
	for _, r := range []Reason{ReasonHandlerError, ReasonPermanent, ReasonAttemptsExhausted, ReasonBudgetExhausted, ReasonUndecodable} {
		if n := p.quarantined[reasonIndex(r)].Load(); n > 0 {
			s.Quarantined[r] = n
		}
	}
	return s
}

// EnsureTopics creates the tier and quarantine topics that do not exist
// yet, each with its source's partition count and replication factor,
// and returns once every broker serves each of them (every partition
// with a leader), so that the first divert does not wait on a topic just
// created.
func (p *Policy) EnsureTopics(ctx context.Context, cl *kgo.Client) error {
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(ctx, p.cfg.Topics...)
	if err != nil {
		return fmt.Errorf("retrytopics: describing source topics: %w", err)
	}
	for _, src := range p.cfg.Topics {
		d, ok := details[src]
		if !ok || d.Err != nil {
			return fmt.Errorf("retrytopics: source topic %s: %v", src, d.Err)
		}
		parts := int32(len(d.Partitions))
		rf := int16(d.Partitions.NumReplicas())
		names := append(p.TierTopics(src), p.QuarantineTopic(src))
		resp, err := adm.CreateTopics(ctx, parts, rf, nil, names...)
		if err != nil {
			return fmt.Errorf("retrytopics: creating %v: %w", names, err)
		}
		for _, r := range resp.Sorted() {
			if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("retrytopics: creating %s: %w", r.Topic, r.Err)
			}
			// A broker may not serve a topic just created for a
			// moment; the first divert to it would wait on it.
			if _, err := kretry.AwaitTopic(ctx, cl, r.Topic); err != nil {
				return fmt.Errorf("retrytopics: waiting for %s to be served: %w", r.Topic, err)
			}
		}
	}
	return nil
}

var _ consumer.Router = (*Policy)(nil)
