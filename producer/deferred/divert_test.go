package deferred

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// TestKeyOrderedDivert pins what the package documentation says a divert
// does to key order: the destination refuses k-1, the relay's retrytopics
// router quarantines it, the relay goes on with k-2 and commits past
// both, and the lane releases k, although k-1 never reached orders: the
// divert took k-1 out of k's order, and holding k longer would not have
// put it back (k-2 is delivered before it all the same).
func TestKeyOrderedDivert(t *testing.T) {
	e := newEnv(t)
	cl := e.client(t)
	lane := e.lane(t, cl, Config{KeyOrdered: true, Partitions: 1, PollInterval: 50 * time.Millisecond})
	deferSync(t, lane, "k", "k-1")
	deferSync(t, lane, "k", "k-2")

	p, err := retrytopics.New(retrytopics.Config{Group: DefaultGroup, Topics: []string{"orders.deferred"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureTopics(testCtx(t), cl); err != nil {
		t.Fatal(err)
	}
	var refused atomic.Bool
	testkit.OnProduceTo(t, e.cluster, "orders", func() *kerr.Error {
		if refused.CompareAndSwap(false, true) {
			return kerr.PolicyViolation // not retriable: the relay's handler fails
		}
		return nil
	})
	e.level(t, lagmonitor.LevelOK)
	relay, _ := e.relay(t, RelayConfig{ConsumerOpts: p.Opts()})
	testkit.Eventually(t, 30*time.Second, "the relay to quarantine k-1, deliver k-2, and the lane to release k", func() bool {
		return !lane.Holds("orders", []byte("k"))
	})
	if st := relay.Runtime().Stats(); st.Diverted != 1 || relay.Stats().Relayed != 1 {
		t.Fatalf("relay: %d diverted, %d relayed; want k-1 diverted, k-2 relayed", st.Diverted, relay.Stats().Relayed)
	}
	if n := endOffsets(t, cl, "orders"); n != 1 {
		t.Fatalf("orders holds %d records, want k-2 alone", n)
	}
	if got, _ := values(t, e.brokers, "orders", 1); got["k-2"] != 1 {
		t.Fatalf("orders holds %v, want k-2", got)
	}
	if got, _ := values(t, e.brokers, p.QuarantineTopic("orders.deferred"), 1); got["k-1"] != 1 {
		t.Fatalf("the quarantine lane holds %v, want k-1", got)
	}
}
