package consumer_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/priority"
)

// TestRebalanceUnderLoad has a second and third runtime join and leave the
// group while records flow: nothing is lost, and duplicates stay within
// what the in-flight bounds allow.
func TestRebalanceUnderLoad(t *testing.T) {
	const (
		parts   = 6
		maxRecs = 100
	)
	_, brokers := testkit.Cluster(t, parts, "rb")
	ledger := testkit.NewLedger(nil)

	// Load: records flow for the whole membership dance.
	prod := testkit.NewProducer(t, brokers)
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			rs, err := prod.Produce("rb", 60, 30, 50)
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range rs {
				ledger.Expect(r.Topic, r.Partition, r.Offset)
			}
		}
	}()
	revokes := &testkit.RevokeCounter{}
	mk := func(name string, handled *atomic.Int64) *consumer.Runtime {
		rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
			if r.Offset%20 == 0 {
				time.Sleep(500 * time.Microsecond)
			}
			ledger.Handled(r.Topic, r.Partition, r.Offset)
			handled.Add(1)
			return nil
		},
			consumer.Brokers(brokers...), consumer.Group("rb"), consumer.Topics("rb"),
			consumer.WithOrdering(consumer.OrderKey), consumer.MaxConcurrency(8),
			consumer.PartitionMaxRecords(maxRecs), consumer.CommitInterval(time.Hour),
			consumer.WithHooks(revokes),
			consumer.KgoOpts(kgo.ClientID(name)),
		)
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	progress := func(what string, n *atomic.Int64) {
		t.Helper()
		from := n.Load()
		testkit.Eventually(t, time.Minute, what, func() bool { return n.Load() > from+50 })
	}
	var ha, hb, hc atomic.Int64
	a := mk("a", &ha)
	run(t, a)
	progress("a handles records", &ha)

	b := mk("b", &hb)
	stopB := run(t, b)
	progress("b handles records after joining", &hb)

	c := mk("c", &hc)
	stopC := run(t, c)
	progress("c handles records after joining", &hc)

	stopB()
	progress("a or c handle records after b left", &hc)
	stopC()
	progress("a handles records after c left", &ha)
	close(stopLoad)
	<-loadDone
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("a stats: %+v", a.Stats())
			t.Logf("a kgo paused: %v", a.Client().PauseFetchPartitions(nil))
		}
	})
	ledger.WaitAll(t, 30*time.Second)

	exp, handled, dups, extra := ledger.Counts()
	// Every membership change may at worst re-deliver each partition's
	// window once.
	bound := 4 * parts * maxRecs
	t.Logf("records=%d handled=%d duplicates=%d (bound %d) revokes=%d per-member a=%d b=%d c=%d",
		exp, handled, dups, bound, revokes.Revoked.Load(), ha.Load(), hb.Load(), hc.Load())
	if extra != 0 {
		t.Fatalf("%d unexpected records", extra)
	}
	if dups > bound {
		t.Fatalf("%d duplicates exceed the in-flight bound %d", dups, bound)
	}
	if revokes.Revoked.Load() == 0 {
		t.Fatal("no partition was ever revoked: the test did not rebalance")
	}
}

func TestWrapUsesCallersClient(t *testing.T) {
	_, brokers := testkit.Cluster(t, 2, "w")
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "w", 500, 5, 5))
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("w"), kgo.ConsumeTopics("w"),
	}, consumer.GroupOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rt, err := consumer.Wrap(cl, func(ctx context.Context, r *kgo.Record) error {
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Client() != cl {
		t.Fatal("Client() is not the wrapped client")
	}
	if _, err := consumer.Wrap(cl, func(context.Context, *kgo.Record) error { return nil }); !errors.Is(err, consumer.ErrClientMisconfigured) {
		t.Fatalf("wrapping a client twice: %v", err)
	}
	stop := run(t, rt)
	ledger.WaitAll(t, time.Minute)
	stop()
	// The wrapped client is still the caller's: it still works.
	if err := cl.Ping(context.Background()); err != nil {
		t.Fatalf("wrapped client unusable after Run: %v", err)
	}
}

func TestWrapRejectsMisconfiguredClient(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "w")
	noop := func(context.Context, *kgo.Record) error { return nil }
	base := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("w")}
	group := kgo.ConsumerGroup("w")
	gopts := consumer.GroupOpts()
	cases := []struct {
		name string
		opts []kgo.Opt
		want string
	}{
		{"no group", base, "kgo.ConsumerGroup"},
		{"autocommit", append([]kgo.Opt{group, kgo.BlockRebalanceOnPoll()}, base...), "autocommit"},
		{"no block", append([]kgo.Opt{group, kgo.DisableAutoCommit()}, base...), "kgo.BlockRebalanceOnPoll"},
		{"no callbacks", append([]kgo.Opt{group, kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll()}, base...), "callbacks"},
		{"no block with GroupOpts", append(append([]kgo.Opt{group}, base...), gopts[0], gopts[2], gopts[3], gopts[4], gopts[5]), "kgo.BlockRebalanceOnPoll"},
		// GroupOpts but its last, kgo.KeepControlRecords: a transaction's
		// markers would be invisible, and a partition ending in one lag.
		{"no control records with GroupOpts", append(append([]kgo.Opt{group}, base...), gopts[:len(gopts)-1]...), "kgo.KeepControlRecords"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, err := kgo.NewClient(c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			_, err = consumer.Wrap(cl, noop)
			if !errors.Is(err, consumer.ErrClientMisconfigured) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Wrap = %v, want ErrClientMisconfigured naming %s", err, c.want)
			}
		})
	}
	if _, err := consumer.Wrap(nil, noop); !errors.Is(err, consumer.ErrClientMisconfigured) {
		t.Fatalf("Wrap(nil) = %v", err)
	}
}

func TestInvalidConfigNamesField(t *testing.T) {
	noop := func(context.Context, *kgo.Record) error { return nil }
	own := []consumer.Opt{consumer.Brokers("127.0.0.1:1"), consumer.Group("g"), consumer.Topics("t")}
	cases := []struct {
		field string
		opts  []consumer.Opt
	}{
		{"Brokers", []consumer.Opt{consumer.Group("g"), consumer.Topics("t")}},
		{"Group", []consumer.Opt{consumer.Brokers("x:1"), consumer.Topics("t")}},
		{"Topics", []consumer.Opt{consumer.Brokers("x:1"), consumer.Group("g")}},
		{"MaxConcurrency", append(own, consumer.MaxConcurrency(0))},
		{"PartitionMaxRecords", append(own, consumer.PartitionMaxRecords(-1))},
		{"PartitionMaxBytes", append(own, consumer.PartitionMaxBytes(0))},
		{"ResumeFraction", append(own, consumer.ResumeFraction(1))},
		{"MaxBufferedBytes", append(own, consumer.MaxBufferedBytes(1), consumer.PartitionMaxBytes(2))},
		{"CommitInterval", append(own, consumer.CommitInterval(0))},
		{"RevokeTimeout", append(own, consumer.RevokeTimeout(-time.Second))},
		{"ShutdownTimeout", append(own, consumer.ShutdownTimeout(0))},
		{"RetryBackoff", append(own, consumer.RetryBackoff(time.Second, time.Millisecond))},
		{"Ordering", append(own, consumer.WithOrdering(consumer.Ordering(9)))},
		{"Hooks", append(own, consumer.WithHooks(nil))},
		{"PartitionMaxSpan", append(own, consumer.PartitionMaxSpan(-1))},
		{"PartitionMaxSpan", append(own, consumer.PartitionMaxRecords(100), consumer.PartitionMaxSpan(99))},
		{"MaxUncommitted", append(own, consumer.MaxUncommitted(-1, 0))},
		{"MaxUncommitted", append(own, consumer.MaxUncommitted(0, -time.Second))},
		{"MaxUncommitted", append(own, consumer.CommitInterval(time.Second), consumer.MaxUncommitted(0, time.Second))},
		{"GroupProtocol", append(own, consumer.WithGroupProtocol(consumer.GroupProtocol(9)))},
		{"InstanceID", append(own, consumer.InstanceID("no spaces"))},
		{"WithPriorities", append(own, consumer.WithPriorities(priority.Order{}, priority.Topics{}))},
		{"InstanceID", append(own, consumer.InstanceID(strings.Repeat("x", 250)))},
	}
	for _, c := range cases {
		_, err := consumer.New(noop, c.opts...)
		if !errors.Is(err, consumer.ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: New = %v, want ErrInvalidConfig naming the field", c.field, err)
		}
	}
	if _, err := consumer.New(nil, own...); !errors.Is(err, consumer.ErrInvalidConfig) || !strings.Contains(err.Error(), "Handler") {
		t.Errorf("nil handler: %v", err)
	}
}

// TestGroupOptionsReachTheClient: WithGroupProtocol and InstanceID set the
// kgo options of the client New builds, and Wrap rejects them (the wrapped
// client is configured by its owner).
func TestGroupOptionsReachTheClient(t *testing.T) {
	noop := func(context.Context, *kgo.Record) error { return nil }
	rt, err := consumer.New(noop, consumer.Brokers("127.0.0.1:1"), consumer.Group("g"), consumer.Topics("t"),
		consumer.WithGroupProtocol(consumer.GroupProtocolConsumer), consumer.InstanceID("member-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	cl := rt.Client()
	if id, _ := cl.OptValue(kgo.InstanceID).(string); id != "member-1" {
		t.Errorf("kgo.InstanceID = %q, want member-1", id)
	}
	if ssb, _ := cl.OptValue(kgo.ServerSideBalancer).(bool); !ssb {
		t.Error("GroupProtocolConsumer did not set kgo.ServerSideBalancer")
	}
	if bs, _ := cl.OptValue(kgo.Balancers).([]kgo.GroupBalancer); len(bs) == 0 || bs[0].ProtocolName() != "sticky" {
		t.Errorf("first balancer %v: KIP-848 needs sticky or range first", bs)
	}
	wcl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1"), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t")}, consumer.GroupOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer wcl.Close()
	for _, o := range []consumer.Opt{consumer.WithGroupProtocol(consumer.GroupProtocolConsumer), consumer.InstanceID("x")} {
		if _, err := consumer.Wrap(wcl, noop, o); !errors.Is(err, consumer.ErrInvalidConfig) {
			t.Errorf("Wrap with a client-building option: %v, want ErrInvalidConfig", err)
		}
	}
}
