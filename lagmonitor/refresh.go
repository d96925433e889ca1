package lagmonitor

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startPolicy is where the runtime's client starts a partition its group
// has no commit for (kgo.ConsumeStartOffset, which ConsumeResetOffset
// also sets unless it rewinds), as far as the monitor can tell.
type startPolicy int8

const (
	startUnknown startPolicy = iota // an exact offset, a time, a lookback: wait for a fetch
	startAtLogStart
	startAtEnd
)

// resetOf reads cl's reset offset. kgo shows it only through its JSON
// form: {"At":-2,...} is the start, {"At":-1,...} the end; an offset
// relative to either, a time or a lookback is not told apart from an
// exact offset there, so it is unknown.
func startPolicyOf(cl *kgo.Client) startPolicy {
	o, ok := cl.OptValue(kgo.ConsumeStartOffset).(kgo.Offset)
	if !ok {
		return startUnknown
	}
	b, err := o.MarshalJSON()
	if err != nil {
		return startUnknown
	}
	var v struct {
		At       int64
		Relative int64
		Lookback string
	}
	if json.Unmarshal(b, &v) != nil || v.Relative != 0 || v.Lookback != "" {
		return startUnknown
	}
	switch v.At {
	case -2:
		return startAtLogStart
	case -1:
		return startAtEnd
	}
	return startUnknown
}

// refresh lists the end offsets of the assigned topics (and their last
// stable offsets for a read_committed consumer), the group's committed
// offsets, and the log start offsets of the partitions without a commit
// that the runtime has not fetched yet.
func (m *Monitor) refresh(ctx context.Context) {
	assigned := m.rt.Assigned()
	if len(assigned) == 0 {
		return
	}
	topics := make([]string, 0, len(assigned))
	for t := range assigned {
		topics = append(topics, t)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RefreshInterval)
	defer cancel()
	hwms, err := m.adm.ListEndOffsets(ctx, topics...)
	now := m.cfg.Now()
	if err != nil {
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: listing end offsets", "err", err)
	}
	var lsos kadm.ListedOffsets
	if m.readCommitted {
		if lsos, err = m.adm.ListCommittedOffsets(ctx, topics...); err != nil { // the last stable offsets
			m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: listing last stable offsets", "err", err)
		}
	}
	committed, cerr := m.adm.FetchOffsets(ctx, m.cfg.Group)
	if cerr != nil && !errors.Is(cerr, context.Canceled) {
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: fetching committed offsets", "err", cerr)
	}
	starts := m.listStarts(ctx, assigned, committed, cerr == nil)

	m.mu.Lock()
	defer m.mu.Unlock()
	l := listing{ends: map[partKey]listedOffset{}, hwms: map[partKey]listedOffset{}, starts: starts,
		commit: map[partKey]int64{}, counts: map[string]int{}, committedAt: m.listed.committedAt}
	ends := hwms
	if m.readCommitted {
		ends = lsos
		keep(hwms, l.hwms, now)
	}
	keep(ends, l.ends, now)
	hwms.Each(func(o kadm.ListedOffset) { l.counts[o.Topic]++ })
	if cerr == nil {
		l.committedAt = now
		committed.Each(func(o kadm.OffsetResponse) {
			if o.Err == nil && o.At >= 0 {
				l.commit[partKey{o.Topic, o.Partition}] = o.At
			}
		})
	} else {
		l.commit = m.listed.commit // keep what was known
	}
	for k, v := range m.listed.ends {
		if _, ok := l.ends[k]; !ok {
			l.ends[k] = v // a partition whose listing failed keeps its last end
		}
	}
	m.listed = l
}

// keep stores the offsets listed without an error, stamped at.
func keep(ls kadm.ListedOffsets, into map[partKey]listedOffset, at time.Time) {
	ls.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset >= 0 {
			into[partKey{o.Topic, o.Partition}] = listedOffset{o.Offset, at}
		}
	})
}

// listStarts lists the log start offsets of the assigned partitions that
// the group has no commit for and the runtime has not fetched yet, when
// the reset offset is the start: where they begin. Nothing otherwise.
func (m *Monitor) listStarts(ctx context.Context, assigned map[string][]int32, committed kadm.OffsetResponses, fetched bool) map[partKey]int64 {
	if m.start != startAtLogStart || !fetched {
		return nil
	}
	inStats := map[partKey]bool{}
	for _, ps := range m.rt.Stats().Partitions {
		inStats[partKey{ps.Topic, ps.Partition}] = ps.Next >= 0
	}
	var need []string
	for t, ps := range assigned {
		for _, p := range ps {
			if o, ok := committed.Lookup(t, p); (!ok || o.Err != nil || o.At < 0) && !inStats[partKey{t, p}] {
				need = append(need, t)
				break
			}
		}
	}
	if len(need) == 0 {
		return nil
	}
	ls, err := m.adm.ListStartOffsets(ctx, need...)
	if err != nil {
		m.logf(kgo.LogLevelWarn, "floodgate: lag monitor: listing log start offsets", "err", err)
	}
	out := map[partKey]int64{}
	ls.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset >= 0 {
			out[partKey{o.Topic, o.Partition}] = o.Offset
		}
	})
	return out
}
