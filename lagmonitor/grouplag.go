package lagmonitor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kretry"
)

// GroupLag is a consumer group's lag seen from outside the group: its
// committed offsets against the partitions' end offsets, as Kafka's own
// kafka-consumer-groups --describe reports them, with each lagging
// partition's time lag read from the record at its committed offset.
type GroupLag struct {
	Group string
	// State is the group's state as the broker says it ("Stable",
	// "Empty", ...).
	State      string
	Partitions []GroupPartitionLag // sorted by topic, partition
	// OffsetLag sums the partitions' offset lags; TimeLag is the largest
	// partition time lag.
	OffsetLag int64
	TimeLag   time.Duration
	// UnstableOffsets sums the partitions' records above their last
	// stable offsets (in open transactions), and LSOStall is the age of
	// the oldest of them: how long a transaction has held a
	// read_committed group back, at least.
	UnstableOffsets int64
	LSOStall        time.Duration
}

// GroupPartitionLag is one partition of a [GroupLag]. Its PartitionLag's
// Next is the committed offset (-1 when the group committed none, whose
// lag is then not known: kafka-consumer-groups shows "-") and End the log
// end offset (the high watermark).
type GroupPartitionLag struct {
	PartitionLag
	// Start is the log start offset.
	Start int64
	// Member, ClientID and Host name the member the partition is assigned
	// to; empty when none is (an Empty group).
	Member, ClientID, Host string
	// Err is the error reading the partition's commit or offsets, if any.
	Err error
	// lso is the last stable offset when records sit above it (Unstable
	// > 0): the first record of the oldest open transaction.
	lso int64
}

// timestampTimeout bounds reading the records at the committed offsets,
// for the time lags.
const timestampTimeout = 5 * time.Second

// DescribeGroupLag measures group's lag from outside, through a client of
// its own built from brokers and opts (TLS, SASL...): kadm's group lag
// (the describe, offset-fetch and list-offsets requests
// kafka-consumer-groups sends) and, for each partition that lags, the
// timestamp of the record at its committed offset (its time lag is its
// age). Only topics are reported if any are given.
func DescribeGroupLag(ctx context.Context, brokers []string, group string, topics []string, opts ...kgo.Opt) (GroupLag, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return GroupLag{}, fmt.Errorf("lagmonitor: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	want := make(map[string]bool, len(topics))
	for _, t := range topics {
		want[t] = true
	}
	// A KIP-848 group is described by ConsumerGroupDescribe; the classic
	// describe kadm's Lag uses does not know it (GROUP_ID_NOT_FOUND), as
	// the new describe does not know a classic group.
	// A coordinator not ready yet (a cluster's first group, a broker
	// restarted) is waited for.
	out, err := kretry.Do(ctx, kretry.NotReady, func(ctx context.Context) (GroupLag, error) {
		out, err := consumerGroupLag(ctx, adm, group, want)
		if errors.Is(err, kerr.GroupIDNotFound) || errors.Is(err, kerr.UnsupportedVersion) {
			out, err = classicGroupLag(ctx, adm, group, want)
		}
		return out, err
	})
	if err != nil {
		return GroupLag{}, err
	}
	sort.Slice(out.Partitions, func(i, j int) bool {
		a, b := out.Partitions[i], out.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	if err := unstable(ctx, adm, out.Partitions); err != nil {
		return out, err
	}
	if err := readTimeLags(ctx, brokers, opts, out.Partitions, time.Now()); err != nil {
		return out, err
	}
	for _, l := range out.Partitions {
		out.TimeLag = max(out.TimeLag, l.TimeLag)
		out.UnstableOffsets += l.Unstable
		out.LSOStall = max(out.LSOStall, l.LSOStall)
	}
	return out, nil
}

// unstable sets each partition's Unstable: its records above the last
// stable offset (in transactions still open), which a read_committed
// group cannot read yet; a group that reads committed records only is
// stuck behind them while such a transaction hangs.
func unstable(ctx context.Context, adm *kadm.Client, ls []GroupPartitionLag) error {
	var topics []string
	for _, l := range ls {
		if !slices.Contains(topics, l.Topic) {
			topics = append(topics, l.Topic)
		}
	}
	if len(topics) == 0 {
		return nil
	}
	lsos, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("lagmonitor: last stable offsets: %w", err)
	}
	for i := range ls {
		l := &ls[i]
		if o, ok := lsos.Lookup(l.Topic, l.Partition); ok && o.Err == nil && o.Offset >= 0 && l.End > o.Offset {
			l.lso, l.Unstable = o.Offset, l.End-o.Offset
		}
	}
	return nil
}

// classicGroupLag is kadm's group lag, for a classic group.
func classicGroupLag(ctx context.Context, adm *kadm.Client, group string, want map[string]bool) (GroupLag, error) {
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return GroupLag{}, fmt.Errorf("lagmonitor: lag of group %q: %w", group, err)
	}
	dl, ok := lags[group]
	if !ok {
		return GroupLag{}, fmt.Errorf("lagmonitor: lag of group %q: not in the broker's answer", group)
	}
	if err := dl.Error(); err != nil {
		return GroupLag{}, fmt.Errorf("lagmonitor: lag of group %q: %w", group, err)
	}
	out := GroupLag{Group: group, State: dl.State}
	for t, ps := range dl.Lag {
		if len(want) > 0 && !want[t] {
			continue
		}
		for p, ml := range ps {
			l := GroupPartitionLag{PartitionLag: PartitionLag{Topic: t, Partition: p, Next: ml.Commit.At, End: ml.End.Offset},
				Start: ml.Start.Offset, Err: ml.Err}
			if ml.Member != nil {
				l.Member, l.ClientID, l.Host = ml.Member.MemberID, ml.Member.ClientID, ml.Member.ClientHost
			}
			out.add(l)
		}
	}
	return out, nil
}

// consumerGroupLag computes a KIP-848 group's lag: its members'
// assignments and its committed offsets against the end offsets of those
// partitions, as kafka-consumer-groups does.
func consumerGroupLag(ctx context.Context, adm *kadm.Client, group string, want map[string]bool) (GroupLag, error) {
	described, err := adm.DescribeConsumerGroups(ctx, group)
	if err == nil {
		err = described.Error()
	}
	if err != nil {
		return GroupLag{}, fmt.Errorf("lagmonitor: describing group %q: %w", group, err)
	}
	dg := described[group]
	committed, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return GroupLag{}, fmt.Errorf("lagmonitor: committed offsets of group %q: %w", group, err)
	}
	type member struct{ id, client, host string }
	owner := make(map[string]map[int32]member)
	parts := make(map[string]map[int32]bool)
	add := func(t string, p int32) {
		if len(want) > 0 && !want[t] {
			return
		}
		if parts[t] == nil {
			parts[t] = make(map[int32]bool)
		}
		parts[t][p] = true
	}
	for _, m := range dg.Members {
		for t, ps := range m.Assignment {
			for p := range ps {
				add(t, p)
				if owner[t] == nil {
					owner[t] = make(map[int32]member)
				}
				owner[t][p] = member{m.MemberID, m.ClientID, m.ClientHost}
			}
		}
	}
	committed.Each(func(o kadm.OffsetResponse) { add(o.Topic, o.Partition) })
	var topics []string
	for t := range parts {
		topics = append(topics, t)
	}
	out := GroupLag{Group: group, State: dg.State}
	if len(topics) == 0 {
		return out, nil
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return GroupLag{}, fmt.Errorf("lagmonitor: end offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return GroupLag{}, fmt.Errorf("lagmonitor: start offsets: %w", err)
	}
	for t, ps := range parts {
		for p := range ps {
			l := GroupPartitionLag{PartitionLag: PartitionLag{Topic: t, Partition: p, Next: -1, End: -1}, Start: -1}
			if o, ok := committed.Lookup(t, p); ok {
				l.Next, l.Err = o.At, o.Err
			}
			if e, ok := ends.Lookup(t, p); ok {
				l.End = e.Offset
				if l.Err == nil {
					l.Err = e.Err
				}
			}
			if s, ok := starts.Lookup(t, p); ok {
				l.Start = s.Offset
			}
			if m, ok := owner[t][p]; ok {
				l.Member, l.ClientID, l.Host = m.id, m.client, m.host
			}
			out.add(l)
		}
	}
	return out, nil
}

// add appends l with its offset lag.
func (g *GroupLag) add(l GroupPartitionLag) {
	if l.Next >= 0 && l.End >= 0 {
		l.OffsetLag = max(l.End-l.Next, 0)
	}
	g.OffsetLag += l.OffsetLag
	g.Partitions = append(g.Partitions, l)
}

// readTimeLags sets the time lag of every lagging partition from the
// timestamp of the first record at or after its committed offset, and the
// LSO stall of every partition with records above its last stable offset
// from the timestamp of the record there (the first of the oldest open
// transaction). A partition that cannot be read within timestampTimeout
// keeps none.
func readTimeLags(ctx context.Context, brokers []string, opts []kgo.Opt, ls []GroupPartitionLag, now time.Time) error {
	lagging, stalled := map[string]map[int32]int64{}, map[string]map[int32]int64{}
	for _, l := range ls {
		if l.Err != nil {
			continue
		}
		if l.OffsetLag > 0 {
			setOffset(lagging, l.Topic, l.Partition, l.Next)
		}
		if l.Unstable > 0 {
			setOffset(stalled, l.Topic, l.Partition, l.lso)
		}
	}
	for _, c := range []struct {
		at  map[string]map[int32]int64
		set func(l *GroupPartitionLag, age time.Duration)
	}{
		{lagging, func(l *GroupPartitionLag, age time.Duration) { l.TimeLag = age }},
		{stalled, func(l *GroupPartitionLag, age time.Duration) { l.LSOStall = age }},
	} {
		got, err := readTimestamps(ctx, brokers, opts, c.at)
		if err != nil {
			return err
		}
		for i := range ls {
			if ts, ok := got[ls[i].Topic][ls[i].Partition]; ok {
				c.set(&ls[i], max(now.Sub(ts), 0))
			}
		}
	}
	return nil
}

func setOffset(m map[string]map[int32]int64, topic string, p int32, o int64) {
	if m[topic] == nil {
		m[topic] = make(map[int32]int64)
	}
	m[topic][p] = o
}

// readTimestamps reads the timestamp of the first record at or after each
// offset of at (read_uncommitted: the records of open transactions
// too), within timestampTimeout; a partition not read in time, or not
// readable, is left out.
func readTimestamps(ctx context.Context, brokers []string, opts []kgo.Opt, at map[string]map[int32]int64) (map[string]map[int32]time.Time, error) {
	offsets := make(map[string]map[int32]kgo.Offset)
	pending := 0
	for t, ps := range at {
		offsets[t] = make(map[int32]kgo.Offset)
		for p, o := range ps {
			offsets[t][p] = kgo.NewOffset().At(o)
			pending++
		}
	}
	got := make(map[string]map[int32]time.Time)
	if pending == 0 {
		return got, nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, append(opts, kgo.ConsumePartitions(offsets))...)...)
	if err != nil {
		return nil, fmt.Errorf("lagmonitor: client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timestampTimeout)
	defer cancel()
	for pending > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break // the partitions not read keep none
		}
		fs.EachRecord(func(r *kgo.Record) {
			if got[r.Topic] == nil {
				got[r.Topic] = make(map[int32]time.Time)
			}
			if _, ok := got[r.Topic][r.Partition]; !ok {
				got[r.Topic][r.Partition] = r.Timestamp
				pending--
			}
		})
		if fs.Err0() != nil {
			break // no rights, a deleted partition...: those keep none
		}
	}
	return got, nil
}
