package dlq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// ErrNoMeta is the [Entry.Err] of a record that carries no floodgate header
// at all: whatever it is, it was not quarantined by floodgate, and it cannot
// be replayed to an original topic.
var ErrNoMeta = errors.New("dlq: record has no floodgate headers")

// Entry is one record of the quarantine lane.
type Entry struct {
	// Record is the record as read from the dead-letter topic: its
	// Timestamp is the quarantine time, its Key, Value and non-floodgate
	// Headers are the original record's.
	Record *kgo.Record
	// Meta is the decoded floodgate metadata. When Err is not nil it holds
	// only what decoded before the error and must not be trusted.
	Meta retrytopics.Meta
	// Err is nil if the floodgate headers decoded. Otherwise it wraps
	// [retrytopics.ErrMalformed], or is [ErrNoMeta] for a record without
	// floodgate headers. Such an entry is undecodable: it is listed, and
	// never replayed unless a [ReplayConfig.Target] asks for it.
	Err error
}

// NewEntry decodes the floodgate headers of r, a record read from a
// dead-letter topic. It never panics, whatever the headers hold.
func NewEntry(r *kgo.Record) Entry {
	m, ok, err := retrytopics.Decode(r)
	if err == nil && !ok {
		err = ErrNoMeta
	}
	return Entry{Record: r, Meta: m, Err: err}
}

// Trimmed reports whether the entry was trimmed when it was quarantined:
// the original record was too large for the dead-letter topic, so its value
// (or more) was dropped, as its [retrytopics.HeaderTrimmed] header says.
// dropped is that header's value (what was dropped: "value", or for example
// "value,key,headers"); originalSize is the original's key, value and
// headers in bytes ([retrytopics.HeaderOriginalSize]), -1 if that header is
// missing or does not parse. It reads the headers directly, so it answers
// for an undecodable entry too. [Replay] never replays a trimmed entry: what
// is left of it is not the original record.
func (e Entry) Trimmed() (dropped string, originalSize int64, ok bool) {
	if e.Record == nil {
		return "", -1, false
	}
	originalSize = -1
	seenSize := false
	for _, h := range e.Record.Headers {
		switch {
		case h.Key == retrytopics.HeaderTrimmed && !ok:
			dropped, ok = string(h.Value), true
		case h.Key == retrytopics.HeaderOriginalSize && !seenSize:
			seenSize = true
			if n, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil && n >= 0 {
				originalSize = n
			}
		}
	}
	if !ok {
		return "", -1, false
	}
	return dropped, originalSize, true
}

// Filter selects entries. Its zero value selects every entry; each field
// set narrows the selection, and an entry must pass all of them.
type Filter struct {
	// Reasons, if not empty, keeps entries quarantined for one of these
	// reasons. An undecodable entry (Err != nil) counts as
	// [retrytopics.ReasonUndecodable].
	Reasons []retrytopics.Reason
	// From and To bound the quarantine time (the record's timestamp):
	// From <= t < To. A zero time leaves that side open.
	From, To time.Time
	// Key, if not nil, keeps entries whose key is exactly Key (an empty
	// Key matches empty and null keys).
	Key []byte
	// OriginalTopic, if not empty, keeps entries first consumed from this
	// topic. It excludes every undecodable entry, whose origin is unknown.
	OriginalTopic string
}

// Match reports whether f selects e.
func (f Filter) Match(e Entry) bool {
	if e.Record == nil {
		return false
	}
	reason := e.Meta.Reason
	if e.Err != nil {
		if f.OriginalTopic != "" {
			return false
		}
		reason = retrytopics.ReasonUndecodable
	} else if f.OriginalTopic != "" && e.Meta.OriginalTopic != f.OriginalTopic {
		return false
	}
	if len(f.Reasons) > 0 && !slices.Contains(f.Reasons, reason) {
		return false
	}
	ts := e.Record.Timestamp
	if !f.From.IsZero() && ts.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && !ts.Before(f.To) {
		return false
	}
	if f.Key != nil && !bytes.Equal(f.Key, e.Record.Key) {
		return false
	}
	return true
}

// reasons lists the quarantine reasons a Filter accepts.
var reasons = []retrytopics.Reason{
	retrytopics.ReasonHandlerError,
	retrytopics.ReasonPermanent,
	retrytopics.ReasonAttemptsExhausted,
	retrytopics.ReasonBudgetExhausted,
	retrytopics.ReasonUndecodable,
}

func (f Filter) validate() error {
	for _, r := range f.Reasons {
		if !slices.Contains(reasons, r) {
			return fmt.Errorf("Filter.Reasons: unknown reason %q", r)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return fmt.Errorf("Filter.From (%v) must be before Filter.To (%v)", f.From, f.To)
	}
	return nil
}

// Inspect reads the dead-letter topic from its first offsets to the end
// offsets it captured when it started, and calls fn for each entry f
// selects, in offset order within each partition (partitions interleave).
// Records quarantined after Inspect started are not read.
//
// Inspect builds its own client from brokers and opts and closes it before
// it returns. It joins no consumer group and commits nothing. opts are
// meant for connecting (TLS, SASL, dialer, client ID, logger); Inspect adds
// its own consuming options after them, and fails if opts consume anything
// themselves (ConsumerGroup, ConsumeTopics, ...) or set a TransactionalID.
//
// It returns nil once every partition was read to its captured end (at
// once for an empty topic), the error fn returned, as is, if fn fails, or
// an error wrapping ctx's if ctx ends first. A missing topic yields an
// error wrapping kerr.UnknownTopicOrPartition.
func Inspect(ctx context.Context, brokers []string, topic string, f Filter, fn func(Entry) error, opts ...kgo.Opt) error {
	if topic == "" {
		return errors.New("dlq: Inspect: empty topic")
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("dlq: Inspect: %w", err)
	}
	cl, err := newClient(brokers, opts)
	if err != nil {
		return fmt.Errorf("dlq: Inspect: %w", err)
	}
	defer cl.Close()
	bounds, err := listBounds(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return err
	}
	from := make(map[int32]int64, len(bounds))
	for p, b := range bounds {
		from[p] = b.start
	}
	return scan(ctx, cl, topic, from, bounds, func(r *kgo.Record) error {
		if r.Attrs.IsControl() {
			return nil
		}
		if e := NewEntry(r); f.Match(e) {
			return fn(e)
		}
		return nil
	})
}

// newClient builds a client that can consume partitions directly, with
// KeepControlRecords so that a scan sees every offset of a transactional
// topic, up to the end.
func newClient(brokers []string, opts []kgo.Opt, extra ...kgo.Opt) (*kgo.Client, error) {
	if len(brokers) == 0 {
		return nil, errors.New("no seed brokers")
	}
	all := make([]kgo.Opt, 0, len(opts)+len(extra)+2)
	all = append(all, kgo.SeedBrokers(brokers...))
	all = append(all, opts...)
	all = append(all, kgo.KeepControlRecords())
	all = append(all, extra...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if err := ownConsuming(cl); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// ownConsuming fails if the caller's options made cl consume something
// itself or produce transactionally: dlq picks the partitions it reads, and
// a group, a regex or other topics would make it wait for records that
// never come.
func ownConsuming(cl *kgo.Client) error {
	var bad []string
	if g, _ := cl.OptValue(kgo.ConsumerGroup).(string); g != "" {
		bad = append(bad, "ConsumerGroup")
	}
	if g, _ := cl.OptValue(kgo.ShareGroup).(string); g != "" {
		bad = append(bad, "ShareGroup")
	}
	if r, _ := cl.OptValue(kgo.ConsumeRegex).(bool); r {
		bad = append(bad, "ConsumeRegex")
	}
	if ts, _ := cl.OptValue(kgo.ConsumeTopics).(map[string]*regexp.Regexp); len(ts) > 0 {
		bad = append(bad, "ConsumeTopics")
	}
	if ps, _ := cl.OptValue(kgo.ConsumePartitions).(map[string]map[int32]kgo.Offset); len(ps) > 0 {
		bad = append(bad, "ConsumePartitions")
	}
	if v := cl.OptValues(kgo.TransactionalID); len(v) == 2 && v[1] == true {
		bad = append(bad, "TransactionalID")
	}
	if len(bad) > 0 {
		return fmt.Errorf("client options: dlq consumes and produces on its own terms; remove %s", strings.Join(bad, ", "))
	}
	return nil
}

// bound is a partition's range of offsets as captured at the start.
type bound struct{ start, end int64 }

// listBounds captures the start and end offsets of topic's partitions.
func listBounds(ctx context.Context, adm *kadm.Client, topic string) (map[int32]bound, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: start offsets of %q: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: end offsets of %q: %w", topic, err)
	}
	out := make(map[int32]bound, len(ends[topic]))
	for p, e := range ends[topic] {
		s, ok := starts.Lookup(topic, p)
		if !ok {
			return nil, fmt.Errorf("dlq: start offsets of %q: partition %d missing", topic, p)
		}
		out[p] = bound{start: s.Offset, end: e.Offset}
	}
	return out, nil
}

// scan consumes the partitions of topic directly from from[p] up to
// bounds[p].end (excluded), calling each for every record, control records
// included, in offset order per partition. It returns when every partition
// reached its end, each fails (its error as is), a fetch fails, or ctx ends.
// A partition whose from is at or past its end is not read.
func scan(ctx context.Context, cl *kgo.Client, topic string, from map[int32]int64, bounds map[int32]bound, each func(*kgo.Record) error) error {
	start := make(map[int32]kgo.Offset)
	for p, o := range from {
		if o < bounds[p].end {
			// A from below the log start (deleted by retention since)
			// resets to the start: kgo's default reset offset.
			start[p] = kgo.NewOffset().At(o)
		}
	}
	remaining := len(start)
	if remaining == 0 {
		return nil
	}
	done := make(map[int32]bool, remaining)
	finish := func(p int32) {
		done[p] = true
		remaining--
		cl.PauseFetchPartitions(map[string][]int32{topic: {p}})
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: start})
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("dlq: reading %q: %w", topic, err)
		}
		for _, fe := range fs.Errors() {
			if _, ok := errors.AsType[*kgo.ErrDataLoss](fe.Err); ok {
				continue // informational: kgo reset the offset and goes on
			}
			return fmt.Errorf("dlq: reading %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		for _, f := range fs {
			for _, t := range f.Topics {
				if t.Topic != topic {
					continue
				}
				for _, fp := range t.Partitions {
					p := fp.Partition
					if _, ok := start[p]; !ok {
						continue
					}
					end := bounds[p].end
					for _, r := range fp.Records {
						if done[p] {
							break
						}
						if r.Offset >= end {
							finish(p)
							break
						}
						if err := each(r); err != nil {
							return err
						}
						if r.Offset+1 >= end {
							finish(p)
						}
					}
				}
			}
		}
	}
	return nil
}
