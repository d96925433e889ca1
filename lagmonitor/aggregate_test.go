package lagmonitor

import (
	"math"
	"slices"
	"testing"
	"time"
)

// sig builds a live signal of topic "orders" issued at t0 with a TTL of 10s.
func sig(group, instance string, seq uint64, level Level, suggested, drain float64) Signal {
	return Signal{
		Version: SignalVersion, Topic: "orders", Group: group, Instance: instance, Seq: seq,
		Level: level, SuggestedRate: suggested, DrainRate: drain,
		Reason:   group + "/" + instance + " is " + level.String(),
		IssuedAt: t0, TTL: 10 * time.Second,
	}
}

func TestAggregateNoSignalIsNoPressure(t *testing.T) {
	p := Aggregate("orders", nil, t0)
	if p.Level != LevelOK || p.Rate != 0 || p.Topic != "orders" || p.Seq != 0 || p.Reason != "no live signal" || !p.ExpiresAt.IsZero() || p.Groups != nil {
		t.Fatalf("%+v", p)
	}
	// Signals of other topics, expired signals and signals of unknown
	// levels count for nothing.
	other := sig("g", "a", 1, LevelCritical, 100, 10)
	other.Topic = "payments"
	expired := sig("g", "b", 1, LevelCritical, 100, 10)
	expired.IssuedAt = t0.Add(-10 * time.Second)
	bogus := sig("g", "c", 1, Level(9), 100, 10)
	if p := Aggregate("orders", []Signal{other, expired, bogus}, t0); p.Level != LevelOK || p.Rate != 0 || len(p.Groups) != 0 {
		t.Fatalf("%+v", p)
	}
}

func TestAggregateInstancesAndGroups(t *testing.T) {
	billingA := sig("billing", "a", 3, LevelHigh, 400, 380)
	billingA.TimeLag, billingA.OffsetLag = 40*time.Second, 9000
	billingA.TTL = 7 * time.Second // the earliest expiry of all
	billingB := sig("billing", "b", 8, LevelElevated, 250, 240)
	billingB.TimeLag, billingB.OffsetLag = 6*time.Second, 1000
	billingC := sig("billing", "c", 1, LevelOK, 0, 120) // keeps up: counts with its drain
	billingC.TimeLag, billingC.OffsetLag = 100*time.Millisecond, 3
	// Two instances, same critical level: the larger time lag decides.
	audit1 := sig("audit", "1", 5, LevelCritical, 2000, 1900)
	audit1.TimeLag = 3 * time.Minute
	audit2 := sig("audit", "2", 5, LevelCritical, 1500, 1450)
	audit2.TimeLag = 4 * time.Minute
	// A group whose instances suggest no rate has no group rate, however
	// slowly it drains.
	search := sig("search", "x", 2, LevelOK, 0, 5)
	in := []Signal{billingC, audit1, search, billingA, audit2, billingB}

	p := Aggregate("orders", in, t0.Add(time.Second))
	if p.Level != LevelCritical || p.Group != "audit" || p.Instance != "2" || p.Seq != 5 || p.Reason != "audit/2 is critical" {
		t.Fatalf("deciding signal: %+v", p)
	}
	// billing: 400 + 250 + 120 (c's drain) = 770; audit: 3500; search: none.
	if p.Rate != 770 || p.RateGroup != "billing" {
		t.Fatalf("rate %v from %q, want 770 from billing", p.Rate, p.RateGroup)
	}
	if want := t0.Add(7 * time.Second); !p.ExpiresAt.Equal(want) {
		t.Fatalf("expires %v, want %v", p.ExpiresAt, want)
	}
	names := make([]string, len(p.Groups))
	for i, g := range p.Groups {
		names[i] = g.Group
	}
	if !slices.Equal(names, []string{"audit", "billing", "search"}) {
		t.Fatalf("groups %v", names)
	}
	audit, billing, search2 := p.Groups[0], p.Groups[1], p.Groups[2]
	if audit.Level != LevelCritical || audit.Rate != 3500 || audit.Instances != 2 || audit.Instance != "2" || audit.TimeLag != 4*time.Minute {
		t.Fatalf("audit: %+v", audit)
	}
	if billing.Level != LevelHigh || billing.Rate != 770 || billing.Instances != 3 || billing.Instance != "a" || billing.Seq != 3 ||
		billing.OffsetLag != 10003 || billing.TimeLag != 40*time.Second || billing.DrainRate != 740 ||
		billing.Reason != "billing/a is high" || !billing.ExpiresAt.Equal(t0.Add(7*time.Second)) {
		t.Fatalf("billing: %+v", billing)
	}
	if search2.Level != LevelOK || search2.Rate != 0 || search2.DrainRate != 5 || !search2.ExpiresAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("search: %+v", search2)
	}

	// The input's order does not matter.
	rev := slices.Clone(in)
	slices.Reverse(rev)
	if q := Aggregate("orders", rev, t0.Add(time.Second)); q.Rate != p.Rate || q.Instance != p.Instance || !slices.Equal(q.Groups, p.Groups) {
		t.Fatalf("order-dependent: %+v vs %+v", q, p)
	}

	// billing/a expires at 7s: the topic rate is now billing's 250 + 120,
	// its level still critical.
	p = Aggregate("orders", in, t0.Add(7*time.Second))
	if p.Rate != 370 || p.Level != LevelCritical || p.Groups[1].Level != LevelElevated || p.Groups[1].Instances != 2 {
		t.Fatalf("after billing/a expired: %+v", p)
	}
}

func TestAggregateRateEdges(t *testing.T) {
	// Bad rates are no rates; duplicates of one instance count once, by
	// the highest Seq.
	a := sig("g", "a", 1, LevelHigh, math.NaN(), math.Inf(1))
	b := sig("g", "b", 1, LevelHigh, -5, 50)
	p := Aggregate("orders", []Signal{a, b}, t0)
	if p.Rate != 0 || p.Groups[0].Rate != 0 || p.Groups[0].DrainRate != 50 {
		t.Fatalf("bad rates: %+v", p)
	}
	old := sig("g", "a", 1, LevelCritical, 100, 90)
	newer := sig("g", "a", 2, LevelElevated, 300, 290)
	p = Aggregate("orders", []Signal{newer, old}, t0)
	if p.Level != LevelElevated || p.Rate != 300 || p.Groups[0].Instances != 1 {
		t.Fatalf("duplicates: %+v", p)
	}
}

func TestTableTTLExpiryFlipsTopicToOK(t *testing.T) {
	var tb Table
	s := sig("g", "a", 1, LevelCritical, 100, 90)
	if r := tb.Put(s, t0); r != PutAccepted {
		t.Fatalf("Put = %v", r)
	}
	if p := tb.Pressure("orders", t0.Add(10*time.Second-1)); p.Level != LevelCritical || p.Rate != 100 {
		t.Fatalf("before expiry: %+v", p)
	}
	// At IssuedAt+TTL, without Expire being called, the topic is ok.
	if p := tb.Pressure("orders", t0.Add(10*time.Second)); p.Level != LevelOK || p.Rate != 0 || p.Reason != "no live signal" {
		t.Fatalf("at expiry: %+v", p)
	}
	if got := tb.Topics(t0.Add(10 * time.Second)); len(got) != 0 {
		t.Fatalf("topics after expiry: %v", got)
	}
	if tb.Len() != 1 || tb.Expire(t0.Add(10*time.Second)) != 1 || tb.Len() != 0 {
		t.Fatal("Expire did not drop the expired signal")
	}
	// Every signal seen has expired: the instance is forgotten, and a
	// replay of its signal is rejected for being expired.
	if r := tb.Put(s, t0.Add(11*time.Second)); r != PutExpired || tb.Len() != 0 {
		t.Fatalf("replay of an expired signal: %v", r)
	}
}

func TestTableRejectsReplays(t *testing.T) {
	var tb Table
	s5 := sig("g", "a", 5, LevelHigh, 100, 90)
	tb.Put(s5, t0)
	for _, seq := range []uint64{5, 4, 0} {
		replay := sig("g", "a", seq, LevelOK, 0, 90)
		if r := tb.Put(replay, t0.Add(time.Second)); r != PutReplay {
			t.Fatalf("Seq %d after 5: %v, want replay", seq, r)
		}
	}
	if p := tb.Pressure("orders", t0.Add(time.Second)); p.Level != LevelHigh {
		t.Fatalf("a replay changed the pressure: %+v", p)
	}
	// Seq is per instance: another instance, or the same instance id in
	// another group or topic, starts its own.
	for _, s := range []Signal{sig("g", "b", 1, LevelOK, 0, 1), sig("h", "a", 1, LevelOK, 0, 1)} {
		if r := tb.Put(s, t0); r != PutAccepted {
			t.Fatalf("%s/%s seq 1: %v", s.Group, s.Instance, r)
		}
	}
	s6 := sig("g", "a", 6, LevelElevated, 200, 190)
	if r := tb.Put(s6, t0.Add(time.Second)); r != PutAccepted {
		t.Fatalf("Seq 6: %v", r)
	}
	if got := tb.Signals("orders", t0.Add(time.Second)); len(got) != 3 || got[0].Seq != 6 || got[0].Level != LevelElevated {
		t.Fatalf("signals %+v", got)
	}
}

func TestTableTombstoneRemovesInstance(t *testing.T) {
	var tb Table
	a := sig("g", "a", 3, LevelCritical, 100, 90)
	b := sig("g", "b", 7, LevelElevated, 300, 290)
	tb.Put(a, t0)
	tb.Put(b, t0)
	if p := tb.Pressure("orders", t0); p.Level != LevelCritical || p.Rate != 400 {
		t.Fatalf("before: %+v", p)
	}
	if !tb.Delete("orders", "g", "a") {
		t.Fatal("Delete found nothing")
	}
	if tb.Delete("orders", "g", "a") || tb.Delete("orders", "g", "zzz") || tb.Delete("nope", "g", "a") {
		t.Fatal("Delete reported removing what was not held")
	}
	if p := tb.Pressure("orders", t0); p.Level != LevelElevated || p.Rate != 300 || p.Groups[0].Instances != 1 {
		t.Fatalf("after the tombstone: %+v", p)
	}
	// A replay of the deleted signal is rejected, not resurrected.
	if r := tb.Put(a, t0.Add(time.Second)); r != PutReplay {
		t.Fatalf("replay after tombstone: %v", r)
	}
	if p := tb.Pressure("orders", t0.Add(time.Second)); p.Level != LevelElevated {
		t.Fatalf("a replay resurrected the instance: %+v", p)
	}
	// A newer signal of the instance is accepted: it consumes again.
	a4 := sig("g", "a", 4, LevelHigh, 50, 40)
	if r := tb.Put(a4, t0.Add(time.Second)); r != PutAccepted {
		t.Fatalf("newer signal after tombstone: %v", r)
	}
	if p := tb.Pressure("orders", t0.Add(time.Second)); p.Level != LevelHigh || p.Rate != 350 {
		t.Fatalf("after the instance came back: %+v", p)
	}
}

// A newer signal that arrives expired supersedes the instance's older one:
// the instance's latest word means no pressure.
func TestTableExpiredNewerSignalSupersedes(t *testing.T) {
	var tb Table
	long := sig("g", "a", 1, LevelCritical, 100, 90)
	long.TTL = time.Hour
	tb.Put(long, t0)
	short := sig("g", "a", 2, LevelCritical, 100, 90)
	short.TTL = time.Second
	if r := tb.Put(short, t0.Add(2*time.Second)); r != PutExpired {
		t.Fatalf("Put = %v, want expired", r)
	}
	if p := tb.Pressure("orders", t0.Add(2*time.Second)); p.Level != LevelOK {
		t.Fatalf("superseded signal still counts: %+v", p)
	}
	// Seq 1 is remembered for as long as the hour-long signal could be
	// replayed live.
	if r := tb.Put(long, t0.Add(30*time.Minute)); r != PutReplay {
		t.Fatalf("replay of the superseded signal: %v", r)
	}
	if tb.Expire(t0.Add(time.Hour)) != 0 || len(tb.topics) != 0 {
		t.Fatalf("entry not forgotten after every signal expired: %+v", tb.topics)
	}
}

func TestTableTopicsAndExpire(t *testing.T) {
	var tb Table
	o := sig("g", "a", 1, LevelHigh, 100, 90)
	p := sig("g", "a", 1, LevelHigh, 100, 90)
	p.Topic, p.TTL = "payments", time.Minute
	tb.Put(o, t0)
	tb.Put(p, t0)
	if got := tb.Topics(t0); !slices.Equal(got, []string{"orders", "payments"}) {
		t.Fatalf("topics %v", got)
	}
	if tb.Expire(t0.Add(30*time.Second)) != 1 || !slices.Equal(tb.Topics(t0.Add(30*time.Second)), []string{"payments"}) {
		t.Fatal("Expire did not drop orders only")
	}
	if tb.Pressure("payments", t0.Add(30*time.Second)).Level != LevelHigh {
		t.Fatal("payments lost its pressure")
	}
}

func TestPutResultString(t *testing.T) {
	for r, want := range map[PutResult]string{PutAccepted: "accepted", PutReplay: "replay", PutExpired: "expired", PutResult(9): "putresult(9)"} {
		if got := r.String(); got != want {
			t.Errorf("%d: %q, want %q", int8(r), got, want)
		}
	}
}

// TestAggregateInstanceShares: an instance behind on half the partitions
// that asks for 100/s holds the topic to 200/s, so that its half receives
// what it asked for, whatever the other half could take; an instance of an
// older release, which does not say its share, makes the group fall back
// to the sum (what older readers compute).
func TestAggregateInstanceShares(t *testing.T) {
	a := sig("billing", "a", 1, LevelCritical, 100, 90)
	a.Partitions, a.TopicPartitions = 6, 12
	b := sig("billing", "b", 1, LevelOK, 450, 480) // at ok: its room
	b.Partitions, b.TopicPartitions = 6, 12
	p := Aggregate("orders", []Signal{a, b}, t0)
	if p.Rate != 200 || p.Level != LevelCritical {
		t.Fatalf("rate %v at %v, want 200 (100/s for half the partitions) at critical", p.Rate, p.Level)
	}
	// Uneven shares: a owns 3 of 12 at 100/s -> 400/s; b 9 of 12 at 450/s -> 600/s.
	a.Partitions, b.Partitions = 3, 9
	if p := Aggregate("orders", []Signal{a, b}, t0); p.Rate != 400 {
		t.Fatalf("rate %v, want 400", p.Rate)
	}
	// b suggests nothing (its capacity unknown): it constrains nothing.
	b.SuggestedRate = 0
	if p := Aggregate("orders", []Signal{a, b}, t0); p.Rate != 400 {
		t.Fatalf("rate %v with b suggesting none, want 400", p.Rate)
	}
	// An older b, without a share: the group's rate is the old sum.
	old := sig("billing", "b", 1, LevelOK, 450, 480)
	if p := Aggregate("orders", []Signal{a, old}, t0); p.Rate != 550 {
		t.Fatalf("rate %v with an older instance, want the sum 100 + 450", p.Rate)
	}
	// The same signals read by a first-release reader (which ignores the
	// share fields) give that sum too.
	for _, s := range []Signal{a, b} {
		key, value, err := Encode(&s)
		if err != nil {
			t.Fatal(err)
		}
		legacy, _, err := DecodeLegacy(key, value)
		if err != nil || legacy.Partitions != 0 {
			t.Fatalf("legacy decode: %v %+v", err, legacy)
		}
	}
}

// TestAggregateHotPartitions: records bound for a partition an instance
// names hot get its level and rate; the others get the worst rest level.
func TestAggregateHotPartitions(t *testing.T) {
	a := sig("billing", "a", 1, LevelCritical, 50, 200)
	a.Hot = []HotPartition{{Partition: 2, Level: LevelCritical, TimeLag: 3 * time.Minute, SuggestedRate: 20},
		{Partition: 5, Level: LevelHigh, TimeLag: 40 * time.Second}}
	a.RestLevel = LevelOK
	b := sig("billing", "b", 1, LevelElevated, 300, 280) // names none: its level is its partitions'
	audit := sig("audit", "x", 1, LevelHigh, 0, 100)
	audit.Hot = []HotPartition{{Partition: 2, Level: LevelHigh, TimeLag: time.Minute, SuggestedRate: 10}}
	audit.RestLevel = LevelOK
	p := Aggregate("orders", []Signal{a, b, audit}, t0)
	if p.Level != LevelCritical || p.RestLevel != LevelElevated {
		t.Fatalf("level %v, rest %v; want critical, elevated (b's)", p.Level, p.RestLevel)
	}
	p2, p5 := p.Partitions[2], p.Partitions[5]
	if p2.Level != LevelCritical || p2.Rate != 10 || p2.Instance != "a" || p2.TimeLag != 3*time.Minute {
		t.Fatalf("partition 2: %+v; want critical (a's), the smaller rate 10 (audit's)", p2)
	}
	if p5.Level != LevelHigh || p5.Rate != 0 {
		t.Fatalf("partition 5: %+v", p5)
	}
	if p.LevelOf(2) != LevelCritical || p.LevelOf(0) != LevelElevated || len(p.Partitions) != 2 {
		t.Fatalf("LevelOf 2, 0: %v %v; partitions %v", p.LevelOf(2), p.LevelOf(0), p.Partitions)
	}
	// A hot partition no hotter than the rest is nothing apart.
	b.Level = LevelCritical
	if p := Aggregate("orders", []Signal{a, b}, t0); p.Partitions != nil || p.RestLevel != LevelCritical {
		t.Fatalf("with the rest at critical: %+v", p)
	}
}

// A tombstone with a seq applies only above the instance's last seq, and
// is remembered, as a signal's seq is.
func TestTableTombstoneSeq(t *testing.T) {
	var tb Table
	a5 := sig("g", "a", 5, LevelCritical, 100, 90)
	tb.Put(a5, t0)
	for _, seq := range []uint64{5, 4} {
		if res, removed := tb.Tombstone("orders", "g", "a", seq, t0.Add(time.Minute)); res != PutReplay || removed {
			t.Fatalf("tombstone seq %d after signal 5: %v, removed %v; want a replay", seq, res, removed)
		}
	}
	if p := tb.Pressure("orders", t0); p.Level != LevelCritical {
		t.Fatalf("a replayed tombstone removed the signal: %+v", p)
	}
	if res, removed := tb.Tombstone("orders", "g", "a", 6, t0.Add(time.Minute)); res != PutAccepted || !removed {
		t.Fatalf("tombstone seq 6: %v, removed %v", res, removed)
	}
	// The same tombstone again (a replay), or a replay of signal 5, is
	// rejected; signal 7 (the instance consumes again) is accepted, and
	// the tombstone's replay cannot remove it.
	if res, _ := tb.Tombstone("orders", "g", "a", 6, t0.Add(time.Minute)); res != PutReplay {
		t.Fatalf("tombstone 6 twice: %v", res)
	}
	if r := tb.Put(a5, t0); r != PutReplay {
		t.Fatalf("signal 5 after tombstone 6: %v", r)
	}
	a7 := sig("g", "a", 7, LevelHigh, 100, 90)
	if r := tb.Put(a7, t0); r != PutAccepted {
		t.Fatalf("signal 7: %v", r)
	}
	if res, removed := tb.Tombstone("orders", "g", "a", 6, t0.Add(time.Minute)); res != PutReplay || removed || tb.Pressure("orders", t0).Level != LevelHigh {
		t.Fatalf("tombstone 6 replayed after signal 7: %v, removed %v", res, removed)
	}
	// Without a seq (an earlier release's), a tombstone deletes as ever.
	if res, removed := tb.Tombstone("orders", "g", "a", 0, time.Time{}); res != PutAccepted || !removed {
		t.Fatalf("tombstone without seq: %v, removed %v", res, removed)
	}

	// A tombstone of an instance the table does not know is remembered
	// until the time given, signals or none.
	if res, removed := tb.Tombstone("orders", "g", "b", 3, t0.Add(time.Minute)); res != PutAccepted || removed {
		t.Fatalf("tombstone of an unknown instance: %v, removed %v", res, removed)
	}
	tb.Expire(t0.Add(time.Minute - time.Millisecond))
	if r := tb.Put(sig("g", "b", 2, LevelCritical, 1, 1), t0); r != PutReplay {
		t.Fatalf("a signal older than the tombstone: %v, want replay", r)
	}
	tb.Expire(t0.Add(time.Minute))
	if len(tb.topics) != 0 {
		t.Fatalf("entries kept past their time: %+v", tb.topics)
	}
}

// PutUntil remembers a seq past its signal's expiry: a replay stamped
// afresh (by the broker) is rejected until then.
func TestTablePutUntil(t *testing.T) {
	var tb Table
	s := sig("g", "a", 1, LevelCritical, 100, 90) // expires at t0+10s
	if r := tb.PutUntil(s, t0, t0.Add(5*time.Minute)); r != PutAccepted {
		t.Fatal(r)
	}
	if n := tb.Expire(t0.Add(time.Minute)); n != 1 || tb.Len() != 0 {
		t.Fatalf("Expire dropped %d", n)
	}
	replay := s
	replay.IssuedAt = t0.Add(time.Minute) // as a reader counts a replay the broker stamped anew
	if r := tb.PutUntil(replay, t0.Add(time.Minute), t0.Add(6*time.Minute)); r != PutReplay {
		t.Fatalf("replay within the time remembered: %v", r)
	}
	tb.Expire(t0.Add(5 * time.Minute))
	replay.IssuedAt = t0.Add(5 * time.Minute)
	if r := tb.Put(replay, t0.Add(5*time.Minute)); r != PutAccepted {
		t.Fatalf("after the time remembered, the table knows nothing of the instance: %v", r)
	}
}
