package integration_test

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// TestGroupLagAgreesWithKafkaTools: lagmonitor.DescribeGroupLag reports the
// committed offsets, end offsets and lags that Apache Kafka's own
// kafka-consumer-groups --describe reports for the same group, under both
// group protocols, and a time lag for each lagging partition.
func TestGroupLagAgreesWithKafkaTools(t *testing.T) {
	c := integration.Shared(t)
	if !c.Real() {
		integration.Unavailable(t, "comparing with kafka-consumer-groups needs a real Kafka broker (%s)", c)
	}
	// Kafka's tools, as scripts/kafka runs them, talk to any broker: the
	// cluster's own script, else the repository's (a container's broker).
	tools := c.Script
	if tools == nil {
		var err error
		if tools, err = integration.RepoScript(); err != nil {
			integration.Unavailable(t, "comparing with kafka-consumer-groups needs the Kafka tools scripts/kafka runs: %v", err)
		}
	}
	// The consumers take s.opts' 6s classic session.
	eachProtocol(t, c, 6*time.Second, func(t *testing.T, proto consumer.GroupProtocol) {
		s := newScenario(t, c, 3, 1)
		s.produce(testkit.NewProducer(t, c.Brokers), 3000, 30, 20)
		// Each partition handles its first 300 records and holds the
		// rest, so that every partition has a commit and a lag
		// whichever partitions the fetches serve first (an Empty
		// group's describe lists only committed partitions).
		const perPartition = 300
		var handled [3]atomic.Int64
		rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
			if handled[r.Partition].Add(1) > perPartition {
				<-ctx.Done() // hold the rest: the group keeps a lag
				return ctx.Err()
			}
			s.ledger.Handled(r.Topic, r.Partition, r.Offset)
			return nil
		}, s.opts(consumer.WithGroupProtocol(proto), consumer.CommitInterval(100*time.Millisecond), consumer.ShutdownTimeout(100*time.Millisecond))...)
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, rt)
		testkit.Eventually(t, time.Minute, "300 records of each partition handled", func() bool {
			for i := range handled {
				if handled[i].Load() < perPartition {
					return false
				}
			}
			return true
		})
		stop() // commits what completed; the group is Empty, its offsets stay
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ours, err := lagmonitor.DescribeGroupLag(ctx, c.Brokers, s.group, []string{s.topic})
		if err != nil {
			t.Fatal(err)
		}
		theirs := kafkaConsumerGroups(t, tools, c.Brokers, s.group)
		if len(ours.Partitions) != 3 {
			t.Fatalf("lagmonitor sees %d partitions, want 3: %+v", len(ours.Partitions), ours)
		}
		var total int64
		for _, p := range ours.Partitions {
			row, ok := theirs[fmt.Sprintf("%s/%d", p.Topic, p.Partition)]
			if !ok {
				t.Fatalf("kafka-consumer-groups does not list %s[%d]: %v", p.Topic, p.Partition, theirs)
			}
			if row != [3]int64{p.Next, p.End, p.OffsetLag} {
				t.Errorf("%s[%d]: lagmonitor committed/end/lag %d/%d/%d, kafka-consumer-groups %v", p.Topic, p.Partition, p.Next, p.End, p.OffsetLag, row)
			}
			if p.OffsetLag > 0 && p.TimeLag <= 0 {
				t.Errorf("%s[%d] lags %d records but has no time lag", p.Topic, p.Partition, p.OffsetLag)
			}
			total += p.OffsetLag
		}
		if total != ours.OffsetLag || total != 3000-3*perPartition {
			t.Fatalf("total lag %d (reported %d) for 3000 records of which %d were committed", total, ours.OffsetLag, 3*perPartition)
		}
		t.Logf("group %s: %s, lag %d records, %v", s.group, ours.State, ours.OffsetLag, ours.TimeLag.Round(time.Millisecond))
	})
}

// kafkaConsumerGroups runs Kafka's kafka-consumer-groups --describe for
// group through scripts/kafka and returns, per "topic/partition", its
// CURRENT-OFFSET, LOG-END-OFFSET and LAG ("-" is -1).
func kafkaConsumerGroups(t *testing.T, script *integration.Script, brokers []string, group string) map[string][3]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script.Path, "tool", "consumer-groups",
		"--bootstrap-server", strings.Join(brokers, ","), "--describe", "--group", group)
	cmd.Env = append(cmd.Environ(), script.Env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kafka-consumer-groups: %v\n%s", err, out)
	}
	rows := map[string][3]int64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[0] != group {
			continue
		}
		num := func(s string) int64 {
			if s == "-" {
				return -1
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("kafka-consumer-groups line %q: %v", sc.Text(), err)
			}
			return n
		}
		rows[f[1]+"/"+f[2]] = [3]int64{num(f[3]), num(f[4]), num(f[5])}
	}
	return rows
}
