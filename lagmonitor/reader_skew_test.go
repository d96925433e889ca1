package lagmonitor_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// A publisher or reader whose clock is a minute off: on a control topic
// the broker stamps (LogAppendTime), each signal holds a full TTL from
// its write (so from one heartbeat to the next, without a gap) and not
// longer than a TTL after it was read; on one stamped by the publishers
// (CreateTime), a publisher's skew decides as it did before.
func TestReaderClockSkew(t *testing.T) {
	const ttl = 30 * time.Second
	for _, c := range []struct {
		name              string
		publisher, reader time.Duration // each clock minus the broker's
		createTime        bool
		want              string // for CreateTime: the stat counting the signal
	}{
		{name: "publisher 60s behind", publisher: -time.Minute},
		{name: "publisher 60s ahead", publisher: time.Minute},
		{name: "reader 60s ahead", reader: time.Minute},
		{name: "reader 60s behind, publisher 60s ahead", publisher: time.Minute, reader: -time.Minute},
		{name: "CreateTime, publisher 60s behind", publisher: -time.Minute, createTime: true, want: "expired"},
		{name: "CreateTime, publisher 60s ahead", publisher: time.Minute, createTime: true, want: "future"},
	} {
		t.Run(c.name, func(t *testing.T) {
			readerNow := func() time.Time { return time.Now().Add(c.reader) }
			kc, brokers := controlTopic(t, 1)
			opts := []lagmonitor.ReaderOpt{lagmonitor.ReadClock(readerNow)}
			if !c.createTime {
				opts = append(opts, lagmonitor.ReadKgoOpts(testkit.LogAppendTime(t, kc, ctl)))
			}
			r := newReader(t, brokers, []string{"orders"}, opts...)
			if err := r.Start(ctx(t)); err != nil {
				t.Fatal(err)
			}
			p := newPublisher(t, publishClient(t, brokers), "i-1", lagmonitor.PublishClock(func() time.Time { return time.Now().Add(c.publisher) }))
			for seq := uint64(1); seq <= 3; seq++ {
				s := sig("orders", "g", lagmonitor.LevelHigh)
				s.TTL = ttl
				wrote := readerNow().Truncate(time.Millisecond) // the broker's stamp is in whole ms
				if _, err := p.Publish(ctx(t), s); err != nil {
					t.Fatal(err)
				}
				if c.createTime {
					testkit.Eventually(t, 15*time.Second, "the signal read", func() bool { return r.Stats().Read == seq })
					st := r.Stats()
					if got := map[string]uint64{"expired": st.Expired, "future": st.Future}[c.want]; got != seq || st.Live != 0 {
						t.Fatalf("signal %d: %s %d, live %d; want %d and 0 (the publisher's skew decides)", seq, c.want, got, st.Live, seq)
					}
					continue
				}
				want := fmt.Sprintf("g/i-1:%d", seq)
				waitSignals(t, r, "orders", readerNow, want)
				seen := readerNow()
				if got := seqs(r.Signals("orders", wrote.Add(ttl-time.Millisecond))); !slices.Equal(got, []string{want}) {
					t.Errorf("signal %d not held a TTL after its write (reader's clock %v): %v", seq, wrote, got)
				}
				if got := r.Signals("orders", seen.Add(ttl)); got != nil {
					t.Errorf("signal %d held beyond a TTL after it was read (reader's clock %v): %v", seq, seen, seqs(got))
				}
				if exp := r.Pressure("orders", seen).ExpiresAt; exp.Before(wrote.Add(ttl)) || exp.After(seen.Add(ttl)) {
					t.Errorf("signal %d expires at %v, want a TTL after its write, between %v and %v", seq, exp, wrote.Add(ttl), seen.Add(ttl))
				}
			}
			st := r.Stats()
			if c.createTime {
				return
			}
			if st.Accepted != 3 || st.Future+st.Skewed+st.Expired != 0 {
				t.Errorf("stats %+v: want 3 accepted, none rejected or expired", st)
			}
			if !st.BrokerClockLive || st.BrokerClockOffset < c.reader || st.BrokerClockOffset >= c.reader+ttl {
				t.Errorf("broker clock offset %v (live %v), want at least the reader's skew %v", st.BrokerClockOffset, st.BrokerClockLive, c.reader)
			}
		})
	}
}

// One forged record (no verifier: anyone may write) of a new instance at
// critical with ttl_ms 600000 holds for ReadMaxTTL (1m), not ten minutes.
func TestReaderCapsForgedTTL(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	produce := rawProducer(t, brokers)
	t0 := time.Now().Truncate(time.Millisecond)
	clock := newFakeClock(t0)
	r := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadClock(clock.now))
	long := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadClock(clock.now), lagmonitor.ReadMaxTTL(time.Hour))
	for _, r := range []*lagmonitor.Reader{r, long} {
		if err := r.Start(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	forged := lagmonitor.Signal{Topic: "orders", Group: "g", Instance: "intruder-1", Seq: 1, Level: lagmonitor.LevelCritical,
		Reason: "forged", IssuedAt: t0, TTL: 10 * time.Minute}
	k, v, err := lagmonitor.Encode(&forged)
	if err != nil {
		t.Fatal(err)
	}
	produce(&kgo.Record{Key: k, Value: v})
	waitSignals(t, r, "orders", clock.now, "g/intruder-1:1")
	waitSignals(t, long, "orders", clock.now, "g/intruder-1:1")
	if p := r.Pressure("orders", t0); p.Level != lagmonitor.LevelCritical || !p.ExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("forged signal: level %v, expires at %v; want critical until %v", p.Level, p.ExpiresAt, t0.Add(time.Minute))
	}
	if got := r.Signals("orders", t0.Add(time.Minute)); got != nil {
		t.Errorf("forged signal held past ReadMaxTTL: %v", seqs(got))
	}
	if p := long.Pressure("orders", t0); !p.ExpiresAt.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("with ReadMaxTTL(1h), expires at %v; want its own TTL, %v", p.ExpiresAt, t0.Add(10*time.Minute))
	}
	clock.add(time.Minute)
	if st := r.Stats(); st.Expired != 1 || st.Live != 0 {
		t.Errorf("a minute later: expired %d, live %d; want 1 and 0", st.Expired, st.Live)
	}
}

// On a control topic the broker stamps, a captured record replayed later
// is stamped afresh: one whose issue time is further from its broker
// timestamp than ReadMaxPublisherSkew (2m) is rejected; one within it is
// accepted by a reader that does not remember its instance (the residual
// risk the package doc states), and holds at most ReadMaxTTL.
func TestReaderRejectsSkewedReplay(t *testing.T) {
	kc, brokers := controlTopic(t, 1)
	lat := lagmonitor.ReadKgoOpts(testkit.LogAppendTime(t, kc, ctl))
	produce := rawProducer(t, brokers)
	signer := mustSigner(t, "k1", keyA)
	ring := map[string][]byte{"k1": keyA}
	r := newReader(t, brokers, []string{"orders"}, lat, lagmonitor.ReadVerifier(mustVerifier(t, true, ring)))
	tight := newReader(t, brokers, []string{"orders"}, lat, lagmonitor.ReadVerifier(mustVerifier(t, true, ring)), lagmonitor.ReadMaxPublisherSkew(time.Minute))
	for _, r := range []*lagmonitor.Reader{r, tight} {
		if err := r.Start(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	captured := func(instance string, age time.Duration) *kgo.Record {
		s := sig("orders", "g", lagmonitor.LevelCritical)
		s.Instance, s.Seq, s.IssuedAt, s.TTL = instance, 1, now.Add(-age), 15*time.Second
		k, v, err := lagmonitor.Encode(&s)
		if err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Topic: ctl, Key: k, Value: v}
		signer.Sign(rec)
		return rec
	}
	produce(captured("i-old", 3*time.Minute))
	produce(captured("i-recent", 90*time.Second))
	hs, err := lagmonitor.TombstoneHeaders(2, now.Add(-3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	tomb := &kgo.Record{Topic: ctl, Key: lagmonitor.Key("orders", "i-recent", "g"), Headers: hs}
	signer.Sign(tomb)
	produce(tomb)

	testkit.Eventually(t, 15*time.Second, "three records read", func() bool { return r.Stats().Read == 3 && tight.Stats().Read == 3 })
	if st := r.Stats(); st.Skewed != 2 || st.Accepted != 1 || st.Tombstones != 0 {
		t.Errorf("default reader: %+v; want the 3m-old signal and tombstone skewed, the 90s-old signal accepted", st)
	}
	got := r.Signals("orders", time.Now())
	if !slices.Equal(seqs(got), []string{"g/i-recent:1"}) || got[0].TTL != 15*time.Second || got[0].IssuedAt.Before(now) {
		t.Errorf("held %v; want the 90s-old replay, counted from its broker timestamp (after %v)", got, now)
	}
	if st := tight.Stats(); st.Skewed != 3 || st.Accepted != 0 {
		t.Errorf("ReadMaxPublisherSkew(1m): %+v; want all three skewed", st)
	}
}

// A tombstone's replay is rejected by its seq, whatever the scheme; one
// stripped of its v2 signature and headers passes for an earlier
// release's unless the verifier requires v2; a seq header a v2
// signature does not cover is not believed (without a verifier, it is:
// an unsigned control topic must be protected by ACLs).
func TestReaderRejectsReplayedTombstone(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	produce := rawProducer(t, brokers)
	ring := map[string][]byte{"k1": keyA}
	lenient := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadVerifier(mustVerifier(t, true, ring)))
	strict := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadVerifier(mustVerifier(t, true, ring, lagmonitor.VerifyRequireV2())))
	unsigned := newReader(t, brokers, []string{"orders"})
	readers := []*lagmonitor.Reader{lenient, strict, unsigned}
	for _, r := range readers {
		if err := r.Start(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	p := newPublisher(t, publishClient(t, brokers), "i-1", lagmonitor.PublishSigner(mustSigner(t, "k1", keyA)))
	publish := func() {
		t.Helper()
		if _, err := p.Publish(ctx(t), sig("orders", "g", lagmonitor.LevelCritical)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(n uint64) {
		t.Helper()
		testkit.Eventually(t, 15*time.Second, fmt.Sprintf("%d records read by each reader", n), func() bool {
			for _, r := range readers {
				if r.Stats().Read != n {
					return false
				}
			}
			return true
		})
	}
	held := func(when string, want ...[]string) {
		t.Helper()
		for i, r := range readers {
			if got := seqs(r.Signals("orders", time.Now())); !slices.Equal(got, want[i]) {
				t.Errorf("%s: reader %d holds %v, want %v", when, i, got, want[i])
			}
		}
	}
	publish()                                                         // seq 1
	if err := p.Tombstone(ctx(t), "orders", "i-1", "g"); err != nil { // seq 2
		t.Fatal(err)
	}
	captured := testkit.ReadTopic(t, brokers, ctl, 2, 30*time.Second)[1]
	publish() // seq 3: the instance consumes again
	read(3)
	replay := func(keep func(kgo.RecordHeader) bool) {
		rec := &kgo.Record{Key: captured.Key}
		for _, h := range captured.Headers {
			if keep(h) {
				rec.Headers = append(rec.Headers, h)
			}
		}
		produce(rec)
	}
	replay(func(kgo.RecordHeader) bool { return true })
	read(4)
	three := []string{"g/i-1:3"}
	held("after the tombstone's replay", three, three, three)
	for i, r := range readers {
		if st := r.Stats(); st.Replayed != 1 || st.Tombstones != 1 {
			t.Errorf("reader %d: replayed %d, tombstones %d; want 1 and 1", i, st.Replayed, st.Tombstones)
		}
	}

	// Stripped of v2 and its headers: an earlier release's tombstone.
	replay(func(h kgo.RecordHeader) bool { return h.Key == lagmonitor.SignatureHeader })
	read(5)
	held("after the stripped replay", nil, three, nil)
	if st := strict.Stats(); st.Unauthenticated != 1 {
		t.Errorf("VerifyRequireV2: unauthenticated %d, want 1", st.Unauthenticated)
	}

	// Stripped of v2, with a seq of the attacker's: under v1 alone it is
	// not believed; without a verifier it is, and the instance's next
	// signals are taken for replays.
	rec := &kgo.Record{Key: captured.Key, Headers: []kgo.RecordHeader{{Key: lagmonitor.SeqHeader, Value: []byte("9007199254740991")}}}
	signV1("k1", keyA, rec)
	produce(rec)
	publish() // seq 4
	read(7)
	four := []string{"g/i-1:4"}
	held("after a forged seq and the next signal", four, four, nil)
	if st := unsigned.Stats(); st.Replayed != 2 {
		t.Errorf("without a verifier: replayed %d, want 2 (the forged seq believed)", st.Replayed)
	}
}

// Records as an earlier release writes them (a v1 signature alone, a
// tombstone without headers) are read as before, unless the verifier
// requires v2.
func TestReaderReadsEarlierRecords(t *testing.T) {
	_, brokers := controlTopic(t, 1)
	produce := rawProducer(t, brokers)
	ring := map[string][]byte{"k1": keyA}
	r := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadVerifier(mustVerifier(t, true, ring)))
	strict := newReader(t, brokers, []string{"orders"}, lagmonitor.ReadVerifier(mustVerifier(t, true, ring, lagmonitor.VerifyRequireV2())))
	for _, r := range []*lagmonitor.Reader{r, strict} {
		if err := r.Start(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	s := sig("orders", "g", lagmonitor.LevelHigh)
	s.Instance, s.Seq, s.IssuedAt = "i-1", 1, time.Now()
	k, v, err := lagmonitor.Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	signal := &kgo.Record{Key: k, Value: v}
	signV1("k1", keyA, signal)
	produce(signal)
	waitSignals(t, r, "orders", time.Now, "g/i-1:1")
	tomb := &kgo.Record{Key: k}
	signV1("k1", keyA, tomb)
	produce(tomb)
	waitSignals(t, r, "orders", time.Now)
	if st := r.Stats(); st.Accepted != 1 || st.Tombstones != 1 || st.Unauthenticated != 0 {
		t.Errorf("stats %+v: want the signal and the tombstone accepted", st)
	}
	testkit.Eventually(t, 15*time.Second, "VerifyRequireV2 rejects both", func() bool { return strict.Stats().Unauthenticated == 2 })
}
