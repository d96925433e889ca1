package lagmonitor

import (
	"context"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

// stepMonitor returns a monitor that is never run: the tests drive its
// evaluations with [Monitor.step] and synthetic runtime stats, at times
// of their own.
func stepMonitor(t *testing.T, cfg Config) *Monitor {
	t.Helper()
	_, brokers := testkit.Cluster(t, 4, "orders")
	rt, err := consumer.New(func(context.Context, *kgo.Record) error { return nil }, consumer.Brokers(brokers...),
		consumer.Group("g"), consumer.Topics("orders"), consumer.KgoOpts(ClientOpts("ctl")...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	cfg.Group, cfg.ControlTopic = "g", "ctl"
	m, err := New(rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stepAt runs one evaluation at now of the given partitions (all
// assigned) and returns what it handed to the publisher, by topic.
func stepAt(m *Monitor, now time.Time, parts ...consumer.PartitionStats) map[string]outItem {
	assigned := map[string][]int32{}
	for _, p := range parts {
		assigned[p.Topic] = append(assigned[p.Topic], p.Partition)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.step(now, consumer.Stats{Partitions: parts}, assigned)
	out := m.out.items
	m.out.items = map[string]outItem{}
	return out
}

// held returns a partition whose oldest record, at next, was stamped age
// before now, with end records in its log, fetched at now; its handler
// busy.
func held(p int32, next, end int64, age time.Duration, now time.Time) consumer.PartitionStats {
	return consumer.PartitionStats{Topic: "orders", Partition: p, Next: next, OldestTimestamp: now.Add(-age),
		HighWatermark: end, LastStable: end, FetchedAt: now, Committed: -1, Running: 1, Lanes: 1}
}

// caughtUp returns a partition with nothing left to handle, its handler
// busy at the moment sampled (a consumer working near its capacity: see
// TestMonitorRoomFromUtilisation for one that is not).
func caughtUp(p int32, end int64, now time.Time, completed uint64) consumer.PartitionStats {
	return consumer.PartitionStats{Topic: "orders", Partition: p, Next: end, HighWatermark: end, LastStable: end,
		FetchedAt: now, Committed: end, Completed: completed, Running: 1, Lanes: 1}
}

func topicLag(t *testing.T, m *Monitor) TopicLag {
	t.Helper()
	ls := m.Lag()
	if len(ls) != 1 {
		t.Fatalf("Lag() holds %d topics, want 1", len(ls))
	}
	return ls[0]
}

// TestMonitorSeedsAndKeepsLevelAcrossRebalance: a topic first measured
// inside a level's hysteresis band starts at that level, not the one
// below; a topic lost for a moment (a rebalance) and given back keeps its
// level (and its dwell); one lost for good is forgotten after a grace of
// one Heartbeat, with no tombstone while its signal was above ok.
func TestMonitorSeedsAndKeepsLevelAcrossRebalance(t *testing.T) {
	m := stepMonitor(t, Config{Heartbeat: 5 * time.Second})
	t0 := lagT0
	// 20s behind: above high's exit (15s), below its entry (30s).
	out := stepAt(m, t0, held(0, 100, 200, 20*time.Second, t0))
	if l := topicLag(t, m); l.Level != LevelHigh {
		t.Fatalf("a first measure of 20s of time lag: level %v (%s), want high (inside high's band)", l.Level, l.Reason)
	}
	if it, ok := out["orders"]; !ok || it.sig.Level != LevelHigh {
		t.Fatalf("the first measure handed %+v to the publisher, want a high signal", out)
	}
	// Catching up to 10s: high holds for its dwell.
	stepAt(m, t0.Add(time.Second), held(0, 150, 200, 10*time.Second, t0.Add(time.Second)))
	// Revoked for one evaluation, then assigned again, still 10s behind.
	if out := stepAt(m, t0.Add(1100*time.Millisecond)); len(out) != 0 {
		t.Fatalf("a topic lost for one evaluation handed %+v to the publisher, want nothing (no tombstone)", out)
	}
	stepAt(m, t0.Add(1200*time.Millisecond), held(0, 150, 200, 10*time.Second, t0.Add(1200*time.Millisecond)))
	if l := topicLag(t, m); l.Level != LevelHigh {
		t.Fatalf("after a rebalance that gave the topic back: level %v (%s), want high kept (a new machine would seed elevated at 10s)", l.Level, l.Reason)
	}
	// Lost for good: forgotten after the grace, its high signal left to
	// expire rather than lifted.
	stepAt(m, t0.Add(2*time.Second))
	if out := stepAt(m, t0.Add(8*time.Second)); len(out) != 0 {
		t.Fatalf("a topic lost above ok handed %+v to the publisher, want nothing: its signal stands until its TTL", out)
	}
	if ls := m.Lag(); len(ls) != 0 {
		t.Fatalf("a topic lost past the grace is still measured: %+v", ls)
	}
	// A topic at ok lost for good gets a tombstone.
	t1 := t0.Add(time.Hour)
	stepAt(m, t1, caughtUp(0, 200, t1, 0))
	stepAt(m, t1.Add(time.Second))
	if out := stepAt(m, t1.Add(7*time.Second)); !out["orders"].tomb {
		t.Fatalf("a topic lost at ok: handed %+v, want a tombstone", out)
	}
}

// TestMonitorPublishesOnlyWhatItMeasured: a partition assigned but not
// measured yet (no fetch answered, its end not listed) holds the topic's
// first signal back; once the end and the committed offset are listed it
// is measured from them; a partition that stays unmeasured is left out
// after MeasureTimeout and named in the signal's reason.
func TestMonitorPublishesOnlyWhatItMeasured(t *testing.T) {
	m := stepMonitor(t, Config{MeasureTimeout: 10 * time.Second})
	t0 := lagT0
	k0, k1 := partKey{"orders", 0}, partKey{"orders", 1}
	assigned := map[string][]int32{"orders": {0, 1}}
	step := func(now time.Time) map[string]outItem {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.step(now, consumer.Stats{}, assigned)
		out := m.out.items
		m.out.items = map[string]outItem{}
		return out
	}
	if out := step(t0); len(out) != 0 {
		t.Fatalf("nothing measured: handed %+v to the publisher, want nothing", out)
	}
	if l := topicLag(t, m); len(l.Unmeasured) != 2 || !strings.Contains(l.Reason, "not measured") {
		t.Fatalf("nothing measured: Lag says %+v", l)
	}
	// Partition 0's end and commit are listed: 1 of 2 measured.
	m.mu.Lock()
	m.listed = listing{ends: map[partKey]listedOffset{k0: {500, t0}}, commit: map[partKey]int64{k0: 400},
		committedAt: t0, counts: map[string]int{"orders": 4}}
	m.mu.Unlock()
	if out := step(t0.Add(time.Second)); len(out) != 0 {
		t.Fatalf("one partition of two measured: handed %+v, want nothing yet", out)
	}
	// Partition 1 has no commit: with the reset at the start (kgo's
	// default), it begins at its log start.
	m.mu.Lock()
	m.listed.ends[k1] = listedOffset{300, t0.Add(time.Second)}
	m.listed.starts = map[partKey]int64{k1: 100}
	m.mu.Unlock()
	out := step(t0.Add(2 * time.Second))
	s := out["orders"].sig
	if s.OffsetLag != 100+200 || s.Partitions != 2 || s.TopicPartitions != 4 {
		t.Fatalf("both measured: signal %+v, want offset lag 300 (100 committed behind + 200 from the log start), 2 of 4 partitions", s)
	}

	// A second monitor whose partition 1 never gets measured.
	m = stepMonitor(t, Config{MeasureTimeout: 10 * time.Second})
	m.mu.Lock()
	m.listed = listing{ends: map[partKey]listedOffset{k0: {500, t0}}, commit: map[partKey]int64{k0: 400}, committedAt: t0}
	m.mu.Unlock()
	step(t0)
	if out := step(t0.Add(9 * time.Second)); len(out) != 0 {
		t.Fatalf("within MeasureTimeout: handed %+v, want nothing", out)
	}
	s = step(t0.Add(10 * time.Second))["orders"].sig
	if s.OffsetLag != 100 || !strings.Contains(s.Reason, "partitions [1] not measured yet") {
		t.Fatalf("past MeasureTimeout: signal %+v, want the measured partition's lag and the other named", s)
	}
}

// TestMonitorHotPartitions: one partition far behind while the others
// keep up is named in the signal, with its own level and rate, above a
// rest level of ok; a topic whose partitions all lag names none.
func TestMonitorHotPartitions(t *testing.T) {
	m := stepMonitor(t, Config{})
	t0 := lagT0
	var s Signal
	for i := range 20 {
		now := t0.Add(time.Duration(i) * time.Second)
		out := stepAt(m, now,
			held(0, 1000+int64(10*i), 5000, 45*time.Second, now),
			caughtUp(1, 3000, now, uint64(100*i)), caughtUp(2, 3000, now, uint64(100*i)), caughtUp(3, 3000, now, uint64(100*i)))
		if it, ok := out["orders"]; ok {
			s = it.sig
		}
	}
	l := topicLag(t, m)
	if l.Level != LevelHigh || len(l.Hot) != 1 || l.Hot[0].Partition != 0 || l.Hot[0].Level != LevelHigh || l.RestLevel != LevelOK {
		t.Fatalf("one partition 45s behind: level %v, hot %+v, rest %v; want high, partition 0 hot at high, rest ok", l.Level, l.Hot, l.RestLevel)
	}
	if s.Level != LevelHigh || len(s.Hot) != 1 || !strings.Contains(s.Reason, "hot partitions: 0 high 45s") {
		t.Fatalf("signal %+v", s)
	}
	s.Instance, s.Seq = "i", 1 // as the publisher sets them
	if _, _, err := Encode(&s); err != nil {
		t.Fatalf("the signal does not encode: %v", err)
	}

	m = stepMonitor(t, Config{})
	for i := range 3 {
		now := t0.Add(time.Duration(i) * time.Second)
		stepAt(m, now, held(0, 100, 500, 45*time.Second, now), held(1, 100, 500, 40*time.Second, now),
			held(2, 100, 500, 50*time.Second, now), caughtUp(3, 500, now, 0))
	}
	if l := topicLag(t, m); len(l.Hot) != 0 {
		t.Fatalf("three partitions of four behind: hot %+v, want none (the topic's level says it)", l.Hot)
	}
}

// TestMonitorSaturationWithOffsetMarks: with offset marks only, a small
// offset lag is not saturation, so the drain rate of a consumer that
// keeps up is not taken for its capacity.
func TestMonitorSaturationWithOffsetMarks(t *testing.T) {
	th := Thresholds{Elevated: Mark{OffsetLag: 1000}, High: Mark{OffsetLag: 5000}, Critical: Mark{OffsetLag: 20000}, ExitFraction: 0.5, Dwell: time.Second}
	if th.Saturated(time.Minute, 10) || !th.Saturated(0, 500) {
		t.Fatalf("offset-only thresholds: Saturated(1m, 10) %v, (0, 500) %v; want false, true", th.Saturated(time.Minute, 10), th.Saturated(0, 500))
	}
	m := stepMonitor(t, Config{Thresholds: th})
	for i := range 30 {
		now := lagT0.Add(time.Duration(i) * time.Second)
		p := held(0, int64(1000*i), int64(1000*i+10), 2*time.Second, now)
		p.Completed = uint64(1000 * i)
		stepAt(m, now, p)
	}
	if l := topicLag(t, m); l.Capacity != 0 || l.DrainRate < 900 {
		t.Fatalf("a consumer 10 records behind draining %.0f/s: capacity %.0f, want unknown (0)", l.DrainRate, l.Capacity)
	}
}

// TestMonitorRoomAtOK: once the capacity was measured under a backlog,
// the signals at ok carry it and suggest a rate of RoomFraction × capacity (the
// room a recovery may fill), where they suggested none before.
func TestMonitorRoomAtOK(t *testing.T) {
	m := stepMonitor(t, Config{Thresholds: Thresholds{Elevated: Mark{TimeLag: 5 * time.Second}, High: Mark{TimeLag: 30 * time.Second},
		Critical: Mark{TimeLag: 2 * time.Minute}, ExitFraction: 0.5, Dwell: 5 * time.Second}})
	var s Signal
	for i := range 120 {
		now := lagT0.Add(time.Duration(i) * time.Second)
		var p consumer.PartitionStats
		if i < 60 { // 200/s against a backlog, 10s behind
			p = held(0, int64(200*i), int64(200*i+2000), 10*time.Second, now)
		} else { // caught up, 100/s arriving
			p = caughtUp(0, int64(200*60+100*(i-60)), now, 0)
		}
		p.Completed = uint64(p.Next)
		if it, ok := stepAt(m, now, p)["orders"]; ok {
			s = it.sig
		}
	}
	if s.Level != LevelOK || s.Capacity < 180 || s.Capacity > 220 {
		t.Fatalf("at ok after a backlog drained at 200/s: level %v, capacity %.0f; want ok, about 200", s.Level, s.Capacity)
	}
	if want := DefaultRoomFraction * s.Capacity; !near(s.SuggestedRate, want) {
		t.Fatalf("at ok: suggested %.1f, want the room 0.95 × %.1f", s.SuggestedRate, s.Capacity)
	}
}

// TestMonitorStalledLSO: under read_committed, records above a last
// stable offset that does not move are reported, and count as lag once
// it has not moved for StalledLSO (a hanging transaction), with a time
// lag of at least the stall.
func TestMonitorStalledLSO(t *testing.T) {
	m := stepMonitor(t, Config{StalledLSO: 30 * time.Second})
	m.readCommitted = true
	t0 := lagT0
	stalled := func(now time.Time, hwm int64) consumer.PartitionStats {
		return consumer.PartitionStats{Topic: "orders", Partition: 0, Next: 200, HighWatermark: hwm, LastStable: 200,
			FetchedAt: now, Committed: 200}
	}
	stepAt(m, t0, stalled(t0, 250))
	stepAt(m, t0.Add(10*time.Second), stalled(t0.Add(10*time.Second), 300))
	l := topicLag(t, m)
	if l.OffsetLag != 0 || l.UnstableOffsets != 100 || l.LSOStall != 10*time.Second || l.Level != LevelOK {
		t.Fatalf("an LSO stalled for 10s under 100 records: %+v; want no lag yet, 100 unstable, stalled 10s", l)
	}
	now := t0.Add(31 * time.Second)
	stepAt(m, now, stalled(now, 400))
	l = topicLag(t, m)
	if l.OffsetLag != 200 || l.TimeLag < 31*time.Second || l.Level != LevelHigh {
		t.Fatalf("an LSO stalled for 31s under 200 records: offset lag %d, time lag %v, level %v; want 200, >= 31s, high", l.OffsetLag, l.TimeLag, l.Level)
	}
	// The transaction ends: the LSO moves to the end.
	now = t0.Add(32 * time.Second)
	stepAt(m, now, stalled(now, 400))
	p := stalled(now.Add(time.Second), 400)
	p.LastStable = 400
	stepAt(m, now.Add(time.Second), p)
	if l := topicLag(t, m); l.UnstableOffsets != 0 || l.LSOStall != 0 {
		t.Fatalf("the LSO reached the end: %+v, want nothing unstable", l)
	}
}

// TestStartPolicy: where a partition without a commit starts, read off
// the client's options.
func TestStartPolicy(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []kgo.Opt
		want startPolicy
	}{
		{"kgo's default: the log start", nil, startAtLogStart},
		{"a reset offset at the end sets the start too", []kgo.Opt{kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd())}, startAtEnd},
		{"a start offset at the end", []kgo.Opt{kgo.ConsumeStartOffset(kgo.NewOffset().AtEnd())}, startAtEnd},
		{"a time: not told apart from an offset", []kgo.Opt{kgo.ConsumeStartOffset(kgo.NewOffset().AfterMilli(1000))}, startUnknown},
		{"relative to the start", []kgo.Opt{kgo.ConsumeStartOffset(kgo.NewOffset().AtStart().Relative(5))}, startUnknown},
	} {
		cl, err := kgo.NewClient(append(c.opts, kgo.SeedBrokers("127.0.0.1:1"))...)
		if err != nil {
			t.Fatal(err)
		}
		if got := startPolicyOf(cl); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
		cl.Close()
	}
}

// TestPartMonitorSize: the monitor's memory per partition stays under
// 4 KiB (its fixed part; a trend window's samples are on top, counted).
func TestPartMonitorSize(t *testing.T) {
	w, _ := NewTrendWindow(DefaultTrendConfig())
	size := unsafe.Sizeof(partMonitor{}) + unsafe.Sizeof(*w) + uintptr(w.c.Samples+1)*unsafe.Sizeof(TrendSample{}) + unsafe.Sizeof(LevelMachine{})
	t.Logf("a partition costs the monitor %d bytes", size)
	if size > 4<<10 {
		t.Errorf("a partition costs the monitor %d bytes, want at most 4 KiB", size)
	}
}

// TestMonitorProbesRoom: a consumer that keeps up and whose capacity is
// unknown (never saturated) suggests at ok a little more than it drains,
// so that producers and relays held at the room may find out more; one
// whose capacity was measured within ProbeAfter suggests the room alone.
func TestMonitorProbesRoom(t *testing.T) {
	m := stepMonitor(t, Config{})
	var s Signal
	for i := range 30 {
		now := lagT0.Add(time.Duration(i) * time.Second)
		p := caughtUp(0, int64(30*i), now, uint64(30*i))
		if it, ok := stepAt(m, now, p)["orders"]; ok {
			s = it.sig
		}
	}
	if s.Level != LevelOK || s.Capacity != 0 || !near(s.SuggestedRate, ProbeFactor*30) {
		t.Fatalf("caught up at 30/s, capacity unknown: level %v, capacity %.1f, suggested %.1f; want ok, 0, %.1f", s.Level, s.Capacity, s.SuggestedRate, ProbeFactor*30)
	}
	// A backlog of 500 arrives; the consumer works it off at its
	// capacity of 50/s (saturated: 4s behind) while 30/s keep arriving,
	// then keeps up again.
	base := lagT0.Add(30 * time.Second)
	next, end := int64(870), int64(1370)
	for i := range 60 {
		now := base.Add(time.Duration(i) * time.Second)
		end += 30
		next = min(end, next+50)
		p := caughtUp(0, end, now, uint64(next))
		if next < end {
			p = held(0, next, end, time.Duration(end-next)*time.Second/30, now)
			p.Completed = uint64(next)
		}
		if it, ok := stepAt(m, now, p)["orders"]; ok {
			s = it.sig
		}
	}
	if s.Level != LevelOK || s.Capacity < 45 || s.Capacity > 55 || !near(s.SuggestedRate, DefaultRoomFraction*s.Capacity) {
		t.Fatalf("caught up after a saturated stretch at 50/s: capacity %.1f, suggested %.1f; want about 50, and 0.95 of it", s.Capacity, s.SuggestedRate)
	}
}

// TestMonitorRoomFromUtilisation: a consumer whose capacity was measured
// low (it was slow: a downstream outage) and that now keeps up with its
// handlers mostly idle has more room than that capacity says: an ok
// signal suggests drain / utilisation, so that producers held at the old
// room are not held there. One whose handlers stay busy gets the measured
// room alone.
func TestMonitorRoomFromUtilisation(t *testing.T) {
	for _, busy := range []bool{false, true} {
		m := stepMonitor(t, Config{Thresholds: Thresholds{Elevated: Mark{TimeLag: 5 * time.Second}, High: Mark{TimeLag: 30 * time.Second},
			Critical: Mark{TimeLag: 2 * time.Minute}, ExitFraction: 0.5, Dwell: 5 * time.Second}})
		var s Signal
		next, end := int64(0), int64(0)
		for i := range 80 {
			now := lagT0.Add(time.Duration(i) * time.Second)
			end += 80 // 80/s arrive
			var p consumer.PartitionStats
			if i < 30 { // slow: 50/s against a backlog
				next += 50
				p = held(0, next, end, time.Duration(end-next)*time.Second/80, now)
			} else { // fast again: caught up, 80/s
				next = end
				p = caughtUp(0, end, now, 0)
				if !busy {
					p.Running = 0 // its handlers idle at nearly every sample
				}
			}
			p.Completed = uint64(next)
			if it, ok := stepAt(m, now, p)["orders"]; ok {
				s = it.sig
			}
		}
		if s.Level != LevelOK {
			t.Fatalf("busy %v: level %v at the end, want ok", busy, s.Level)
		}
		if busy && !near(s.SuggestedRate, DefaultRoomFraction*s.Capacity) {
			t.Errorf("handlers busy: suggested %.1f, want the measured room %.1f", s.SuggestedRate, DefaultRoomFraction*s.Capacity)
		}
		if !busy && s.SuggestedRate < 10*s.DrainRate {
			t.Errorf("handlers idle: suggested %.1f with a drain of %.1f/s (capacity measured %.1f), want far above it", s.SuggestedRate, s.DrainRate, s.Capacity)
		}
		t.Logf("busy %v: capacity %.1f, drain %.1f, suggested %.1f", busy, s.Capacity, s.DrainRate, s.SuggestedRate)
	}
}
