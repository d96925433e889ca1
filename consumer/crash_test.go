package consumer_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

const crashEnv = "FLOODGATE_CRASH_CHILD_BROKERS"

// crashChild runs the child side of TestCrashLosesNothing when the test
// binary is re-executed with crashEnv set: a runtime that reports every
// handled record on stdout (before the handler returns, so a record is
// reported before it can be committed) until it is killed.
func crashChild() bool {
	brokers := os.Getenv(crashEnv)
	if brokers == "" {
		return false
	}
	report := testkit.ReportHandled(os.Stdout)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		time.Sleep(200 * time.Microsecond)
		return report(r.Partition, r.Offset)
	},
		consumer.Brokers(strings.Split(brokers, ",")...), consumer.Group("crash"), consumer.Topics("crash"),
		consumer.WithOrdering(consumer.OrderKey), consumer.MaxConcurrency(8),
		consumer.PartitionMaxRecords(100), consumer.CommitInterval(50*time.Millisecond),
		consumer.KgoOpts(kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(200*time.Millisecond)),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_ = rt.Run(context.Background()) // runs until killed
	os.Exit(3)
	return true
}

// TestCrashLosesNothing kills consumer processes with SIGKILL mid-stream
// (no drain, no commit, no leave) and checks that the survivors handle every
// record at least once.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the crash test, which runs child processes")
	}
	const n, parts, kills = 6000, 4, 3
	_, brokers := testkit.Cluster(t, parts, "crash")
	produced := testkit.Produce(t, brokers, "crash", n, 50, 20)
	ledger := testkit.NewLedger(produced)

	env := []string{crashEnv + "=" + strings.Join(brokers, ",")}
	for k := 0; k < kills; k++ {
		child := testkit.StartChild(t, env, ledger, "crash")
		_, before := ledger.Progress()
		target := before + n/(kills+2)
		testkit.Eventually(t, 2*time.Minute, fmt.Sprintf("child %d to handle %d records", k, target-before), func() bool {
			_, h := ledger.Progress()
			return h >= target
		})
		child.Kill()
		_, after, dups, _ := ledger.Counts()
		t.Logf("kill %d: handled %d distinct records so far, %d duplicates", k, after, dups)
	}
	child := testkit.StartChild(t, env, ledger, "crash")
	ledger.WaitAll(t, 3*time.Minute)
	child.Kill()
	exp, handled, dups, extra := ledger.Counts()
	t.Logf("records=%d handled=%d duplicates=%d unexpected=%d after %d kills", exp, handled, dups, extra, kills)
	if extra != 0 {
		t.Fatalf("%d records handled that were never produced", extra)
	}
}
