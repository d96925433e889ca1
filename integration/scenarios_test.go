package integration_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

// TestBurstWithinBounds: a burst meets a slow handler; the bounds hold at
// every observation, partitions pause and resume, every record is handled
// exactly once.
func TestBurstWithinBounds(t *testing.T) {
	c := integration.Shared(t)
	const (
		parts       = 6
		maxRecs     = 100
		maxBytes    = 16 << 10
		maxBuffered = 48 << 10
		concurrency = 12
	)
	s := newScenario(t, c, parts, 1)
	n := integration.Scale(20000)
	s.produce(testkit.NewProducer(t, c.Brokers), n, 500, 100)

	pc := &testkit.PauseCounter{}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset%25 == 0 {
			time.Sleep(time.Millisecond)
		}
		s.ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, s.opts(
		consumer.WithOrdering(consumer.OrderKey), consumer.MaxConcurrency(concurrency),
		consumer.PartitionMaxRecords(maxRecs), consumer.PartitionMaxBytes(maxBytes),
		consumer.MaxBufferedBytes(maxBuffered), consumer.CommitInterval(200*time.Millisecond),
		consumer.WithHooks(pc),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	observations := 0
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if exp, handled := s.ledger.Progress(); handled == exp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3m: %s", s.ledger.Missing(10))
		}
		st := rt.Stats()
		observations++
		if st.BufferedBytes > maxBuffered || st.Running > concurrency {
			t.Fatalf("buffered %d bytes (max %d), %d handlers running (max %d)", st.BufferedBytes, maxBuffered, st.Running, concurrency)
		}
		for _, p := range st.Partitions {
			if p.InFlightRecords > maxRecs || p.InFlightBytes > maxBytes {
				t.Fatalf("partition %d: %d records / %d bytes in flight, caps %d / %d", p.Partition, p.InFlightRecords, p.InFlightBytes, maxRecs, maxBytes)
			}
		}
		time.Sleep(2 * time.Millisecond) // sampling period
	}
	stop()
	if pc.Paused.Load() == 0 || pc.Resumed.Load() == 0 {
		t.Fatalf("no pause (%d) or resume (%d) under a burst", pc.Paused.Load(), pc.Resumed.Load())
	}
	s.report("burst", 0, fmt.Sprintf("observations=%d pauses=%d resumes=%d refetched=%d", observations, pc.Paused.Load(), pc.Resumed.Load(), rt.Stats().Refetched))
}

// TestOrdering checks per-partition and per-key order on the broker.
func TestOrdering(t *testing.T) {
	c := integration.Shared(t)
	for _, mode := range []consumer.Ordering{consumer.OrderPartition, consumer.OrderKey} {
		t.Run(mode.String(), func(t *testing.T) {
			s := newScenario(t, c, 3, 1)
			s.produce(testkit.NewProducer(t, c.Brokers), integration.Scale(6000), 12, 20)
			var (
				mu        sync.Mutex
				last      = map[string]int64{}
				violation string
			)
			rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
				lane := fmt.Sprint(r.Partition)
				if mode == consumer.OrderKey {
					lane += "/" + string(r.Key)
				}
				mu.Lock()
				if prev, ok := last[lane]; ok && r.Offset <= prev && violation == "" {
					violation = fmt.Sprintf("lane %s: offset %d after %d", lane, r.Offset, prev)
				}
				last[lane] = r.Offset
				mu.Unlock()
				s.ledger.Handled(r.Topic, r.Partition, r.Offset)
				return nil
			}, s.opts(consumer.WithOrdering(mode), consumer.MaxConcurrency(8), consumer.PartitionMaxRecords(200))...)
			if err != nil {
				t.Fatal(err)
			}
			stop := run(t, rt)
			s.ledger.WaitAll(t, 2*time.Minute)
			stop()
			if violation != "" {
				t.Fatal(violation)
			}
			s.report("ordering-"+mode.String(), 0, "")
		})
	}
}

// TestRebalanceStorm: two members join and leave repeatedly while a third
// stays and records flow: nothing is lost, duplicates stay within what the
// windows hold at each change.
func TestRebalanceStorm(t *testing.T) {
	c := integration.Shared(t)
	const parts, maxRecs = 6, 100
	s := newScenario(t, c, parts, 1)
	stopLoad := s.load(testkit.NewProducer(t, c.Brokers), 40, 20*time.Millisecond)
	defer stopLoad()

	revokes := &testkit.RevokeCounter{}
	counts := make([]atomic.Int64, 3)
	mk := func(i int) *consumer.Runtime {
		rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
			if r.Offset%10 == 0 {
				time.Sleep(time.Millisecond)
			}
			s.ledger.Handled(r.Topic, r.Partition, r.Offset)
			counts[i].Add(1)
			return nil
		}, s.opts(consumer.PartitionMaxRecords(maxRecs), consumer.CommitInterval(500*time.Millisecond),
			consumer.WithHooks(revokes), consumer.KgoOpts(kgo.ClientID(fmt.Sprintf("member-%d", i))))...)
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	run(t, mk(0))
	progress(t, "member 0 to handle records", &counts[0], 50)
	rounds := integration.Scale(3)
	changes := 0
	for round := 0; round < rounds; round++ {
		stop1 := run(t, mk(1))
		progress(t, fmt.Sprintf("round %d: member 1 to handle records after joining", round), &counts[1], 20)
		stop2 := run(t, mk(2))
		progress(t, fmt.Sprintf("round %d: member 2 to handle records after joining", round), &counts[2], 20)
		stop1()
		progress(t, fmt.Sprintf("round %d: member 0 to go on after member 1 left", round), &counts[0], 20)
		stop2()
		progress(t, fmt.Sprintf("round %d: member 0 to go on after member 2 left", round), &counts[0], 20)
		changes += 4
	}
	stopLoad()
	s.ledger.WaitAll(t, 2*time.Minute)
	s.report("rebalance-storm", changes*parts*maxRecs, fmt.Sprintf("membership_changes=%d partitions_revoked=%d", changes, revokes.Revoked.Load()))
}

// countingRuntime handles records into the ledger and counts them.
func (s *scenario) countingRuntime(handled *atomic.Int64) *consumer.Runtime {
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		s.ledger.Handled(r.Topic, r.Partition, r.Offset)
		handled.Add(1)
		return nil
	}, s.opts(consumer.PartitionMaxRecords(200), consumer.CommitInterval(200*time.Millisecond))...)
	if err != nil {
		s.t.Fatal(err)
	}
	return rt
}

// TestBrokerRestart kills the (single) broker mid-run with SIGKILL and
// starts it again: the runtime rides through, nothing is lost, nothing is
// committed early.
func TestBrokerRestart(t *testing.T) {
	c := integration.Shared(t)
	c.RequireScript(t, "the broker restart")
	s := newScenario(t, c, 4, 1)
	prod := testkit.NewProducer(t, c.Brokers)
	stopLoad := s.load(prod, 50, 20*time.Millisecond)
	defer stopLoad()
	var handled atomic.Int64
	stop := run(t, s.countingRuntime(&handled))
	progress(t, "records handled before the restart", &handled, 500)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	down := time.Now()
	if err := c.Script.KillBroker(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Script.RestartBroker(ctx, 1); err != nil {
		t.Fatal(err)
	}
	outage := time.Since(down)
	progress(t, "records handled after the restart", &handled, 500)
	stopLoad()
	s.ledger.WaitAll(t, 3*time.Minute)
	stop()
	// Commits fail while the broker is down and the group re-forms after
	// it: the duplicates are reported; the assertions are no loss and no
	// early commit.
	s.report("broker-restart", noBound, fmt.Sprintf("outage=%s", outage.Round(100*time.Millisecond)))
}

// TestClusterFault starts its own 3-node cluster, consumes a topic with
// replication factor 3 and kills one broker mid-run: nothing is lost.
func TestClusterFault(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	brokers, script := ownCluster(ctx, t, "the cluster-fault test", 3)
	c := &integration.Cluster{Kind: integration.Existing, Brokers: brokers, Script: script}
	s := newScenario(t, c, 6, 3)
	stopLoad := s.load(testkit.NewProducer(t, brokers), 50, 20*time.Millisecond)
	defer stopLoad()
	var handled atomic.Int64
	stop := run(t, s.countingRuntime(&handled))
	progress(t, "records handled before the fault", &handled, 500)
	if err := script.KillBroker(ctx, 2); err != nil {
		t.Fatal(err)
	}
	progress(t, "records handled with broker 2 down", &handled, 1000)
	stopLoad()
	s.ledger.WaitAll(t, 3*time.Minute)
	stop()
	s.report("cluster-fault", noBound, "brokers=3 rf=3 killed=2")
}

// ownCluster starts a fresh cluster of nodes with scripts/kafka beside the
// shared one (integration.FaultEnv), stopped when the test ends, and
// returns its brokers and script; a test run on the container kind skips,
// one without scripts/kafka is unavailable. who names the test.
func ownCluster(ctx context.Context, t *testing.T, who string, nodes int) ([]string, *integration.Script) {
	t.Helper()
	if integration.Shared(t).Kind == integration.Container {
		t.Skipf("%s starts its own Kafka with scripts/kafka, which the container kind does not use (CI runs it on scripts/kafka)", who)
	}
	if os.Getenv(integration.EnvScript) == "" {
		integration.Unavailable(t, "%s starts its own %d-node Kafka: set %s to scripts/kafka (needs Java 17 and Maven)", who, nodes, integration.EnvScript)
	}
	script, err := integration.RepoScript()
	if err != nil {
		t.Fatal(err)
	}
	script = script.With(integration.FaultEnv()...)
	// The run directory is the suite's own: a cluster still there was
	// left by a run that died (a test timeout's panic skips cleanups).
	if err := script.Stop(ctx); err != nil {
		t.Fatalf("stopping a cluster left by an earlier run: %v", err)
	}
	brokers, err := script.Start(ctx, nodes)
	if err != nil {
		t.Fatalf("starting a %d-node cluster: %v", nodes, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := script.Stop(ctx); err != nil {
			t.Errorf("stopping the %d-node cluster: %v", nodes, err)
		}
	})
	return brokers, script
}
