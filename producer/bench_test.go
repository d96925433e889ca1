package producer

import (
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

// BenchmarkAdmit measures admission alone (no produce), per record:
// without pressure (the common case), and with normal limited at a rate
// it never reaches.
func BenchmarkAdmit(b *testing.B) {
	brokers := testkit.ChildCluster(b, 3, "orders")
	for _, bc := range []struct {
		name  string
		level lagmonitor.Level
	}{{"ok", lagmonitor.LevelOK}, {"high", lagmonitor.LevelHigh}} {
		b.Run(bc.name, func(b *testing.B) {
			p, err := New(Brokers(brokers...), ControlTopic(ctl), Topics("orders"), Measure(time.Hour, time.Second))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			if err := p.Start(testCtx(b)); err != nil {
				b.Fatal(err)
			}
			f := p.follow["orders"]
			f.mu.Lock() // a signal as the reader would give it, without a control topic
			f.ctl.setPressure(lagmonitor.Pressure{Topic: "orders", Level: bc.level, Rate: 1e12, Group: "g", Instance: "i",
				Seq: 1, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
			f.readerCh = make(chan struct{}) // never closed: the pressure above stays
			f.mu.Unlock()
			r := rec(priority.Normal)
			ctx := testCtx(b)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, _, err := p.admit(ctx, r, time.Time{}); err != nil { // capAt as Produce gives it
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
