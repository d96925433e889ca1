package integration_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// TestSignalsCountFromBrokerTime: EnsureControlTopic creates the control
// topic with message.timestamp.type=LogAppendTime, the broker stamps each
// signal as it appends it, and readers count its TTL from that stamp. A
// publisher a minute behind or a minute ahead of the broker, read by a
// reader whose clock agrees with the broker's and by one a minute ahead:
// each signal holds a full TTL from its write (so from one heartbeat to
// the next), and no longer than a TTL after it was read. kfake keeps the
// topic config but does not apply it (the lagmonitor tests emulate it),
// so this runs on a real broker only.
func TestSignalsCountFromBrokerTime(t *testing.T) {
	c := integration.Shared(t)
	if !c.Real() {
		integration.Unavailable(t, "kfake does not apply message.timestamp.type")
	}
	control := fmt.Sprintf("%s-%d.pressure", regexp.MustCompile(`[^a-zA-Z0-9._-]+`).ReplaceAllString(t.Name(), "_"), time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner(control, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ttl = 30 * time.Second
	if _, err := lagmonitor.EnsureControlTopic(ctx, cl, control, 1, ttl); err != nil {
		t.Fatal(err)
	}
	st, err := lagmonitor.EnsureControlTopic(ctx, cl, control, 1, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if st.Created || st.Configs["message.timestamp.type"] != "LogAppendTime" || len(st.Warnings) != 0 {
		t.Fatalf("the control topic as the broker describes it: %+v", st)
	}

	type reader struct {
		r   *lagmonitor.Reader
		now func() time.Time
	}
	var readers []reader
	for _, ahead := range []time.Duration{0, time.Minute} {
		now := func() time.Time { return time.Now().Add(ahead) }
		r, err := lagmonitor.NewReader(c.Brokers, control, []string{"orders"}, lagmonitor.ReadClock(now))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		readers = append(readers, reader{r, now})
	}
	for _, skew := range []time.Duration{-time.Minute, time.Minute} {
		instance := fmt.Sprintf("pub%+.0fs", skew.Seconds())
		p, err := lagmonitor.NewPublisher(cl, control, instance, lagmonitor.PublishClock(func() time.Time { return time.Now().Add(skew) }))
		if err != nil {
			t.Fatal(err)
		}
		for seq := uint64(1); seq <= 3; seq++ {
			wrote := make([]time.Time, len(readers))
			for i, rd := range readers {
				wrote[i] = rd.now().Truncate(time.Millisecond) // the broker's stamp is in whole ms
			}
			if _, err := p.Publish(ctx, lagmonitor.Signal{Topic: "orders", Group: "g", Level: lagmonitor.LevelHigh, Reason: "test", TTL: ttl}); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("g/%s:%d", instance, seq)
			for i, rd := range readers {
				holds := func(at time.Time) bool {
					for _, s := range rd.r.Signals("orders", at) {
						if fmt.Sprintf("%s/%s:%d", s.Group, s.Instance, s.Seq) == want {
							return true
						}
					}
					return false
				}
				testkit.Eventually(t, 30*time.Second, fmt.Sprintf("reader %d to hold %s", i, want), func() bool { return holds(rd.now()) })
				seen := rd.now()
				if !holds(wrote[i].Add(ttl - time.Millisecond)) {
					t.Errorf("reader %d: %s not held a TTL after its write (%v)", i, want, wrote[i])
				}
				if holds(seen.Add(ttl)) {
					t.Errorf("reader %d: %s held beyond a TTL after it was read (%v)", i, want, seen)
				}
			}
		}
	}
	for i, rd := range readers {
		st := rd.r.Stats()
		t.Logf("reader %d: accepted %d, broker clock offset %v (live %v)", i, st.Accepted, st.BrokerClockOffset, st.BrokerClockLive)
		if st.Accepted != 6 || st.Skewed+st.Future+st.Expired != 0 || !st.BrokerClockLive {
			t.Errorf("reader %d: %+v; want 6 accepted, none rejected or expired, the broker's clock learned", i, st)
		}
	}
	for _, r := range testkit.ReadTopic(t, c.Brokers, control, 6, 30*time.Second) {
		s, _, err := lagmonitor.Decode(r.Key, r.Value)
		if err != nil || r.Attrs.TimestampType() != 1 {
			t.Fatalf("offset %d: timestamp type %d, %v; want LogAppendTime", r.Offset, r.Attrs.TimestampType(), err)
		}
		if skew := s.IssuedAt.Sub(r.Timestamp).Round(time.Second).Abs(); skew != time.Minute {
			t.Errorf("offset %d: issued %v, stamped %v by the broker; want a minute apart", r.Offset, s.IssuedAt, r.Timestamp)
		}
	}
}
