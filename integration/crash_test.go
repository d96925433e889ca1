package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

const (
	childEnv       = "FLOODGATE_INTEGRATION_CHILD" // brokers|topic|group
	childMaxRecs   = 50
	childCommit    = 100 * time.Millisecond
	childDelay     = time.Millisecond
	childSessionTO = 3 * time.Second
)

// runChild is the consumer process of TestCrashKill: it reports every
// handled record on stdout before the handler returns (so before it can be
// committed) and runs until it is killed.
func runChild() bool {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return false
	}
	parts := strings.Split(spec, "|")
	if len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "bad", childEnv, spec)
		os.Exit(2)
	}
	report := testkit.ReportHandled(os.Stdout)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		time.Sleep(childDelay)
		return report(r.Partition, r.Offset)
	},
		consumer.Brokers(strings.Split(parts[0], ",")...), consumer.Topics(parts[1]), consumer.Group(parts[2]),
		consumer.PartitionMaxRecords(childMaxRecs), consumer.CommitInterval(childCommit),
		consumer.KgoOpts(kgo.SessionTimeout(childSessionTO), kgo.HeartbeatInterval(300*time.Millisecond)),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_ = rt.Run(context.Background())
	os.Exit(3) // never reached unless the client dies
	return true
}

// TestCrashKill kills consumer processes with SIGKILL at random points and
// restarts them: every record is handled at least once, and duplicates stay
// within what a killed process could have handled without committing.
func TestCrashKill(t *testing.T) {
	c := integration.Shared(t)
	c.RequireSessionTimeout(t, childSessionTO)
	const parts = 4
	s := newScenario(t, c, parts, 1)
	n := integration.Scale(8000)
	s.produce(testkit.NewProducer(t, c.Brokers), n, 40, 30)
	kills := integration.Scale(4)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))

	env := []string{childEnv + "=" + strings.Join(c.Brokers, ",") + "|" + s.topic + "|" + s.group}
	for k := 0; k < kills; k++ {
		child := testkit.StartChild(t, env, s.ledger, s.topic)
		_, before := s.ledger.Progress()
		target := before + 100 + rng.IntN(n/(kills+1))
		testkit.Eventually(t, 3*time.Minute, fmt.Sprintf("child %d to handle up to %d records", k, target), func() bool {
			_, h := s.ledger.Progress()
			return h >= min(target, n)
		})
		child.Kill()
		_, after := s.ledger.Progress()
		t.Logf("kill %d after %d distinct records handled", k, after)
	}
	child := testkit.StartChild(t, env, s.ledger, s.topic)
	s.ledger.WaitAll(t, 3*time.Minute)
	child.Kill()
	// A killed process may have handled, without committing, what its
	// windows held plus what completed since its last commit.
	perPartition := childMaxRecs + 2*int(childCommit/childDelay)
	s.report("crash-sigkill", kills*parts*perPartition, fmt.Sprintf("kills=%d", kills))
}
