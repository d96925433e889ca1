package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

func TestLagCommandLine(t *testing.T) {
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"lag", "-h"}, 0, "kafka-consumer-groups"},
		{[]string{"lag"}, 2, "--brokers is required"},
		{[]string{"lag", "--brokers", "x:1"}, 2, "--group is required"},
		{[]string{"lag", "--brokers", "x:1", "--group", "g", "--interval", "0s"}, 2, "--interval must be > 0"},
		{[]string{"lag", "--brokers", "x:1", "--group", "g", "--high", "1s"}, 2, "Thresholds.High"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		if code := run(context.Background(), c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.err) {
			t.Errorf("floodgate %s: status %d, stderr:\n%s\nwant %d with %q", strings.Join(c.args, " "), code, errb.String(), c.code, c.err)
		}
	}
}

// TestLagCommand: the command reports the group's committed offsets, end
// offsets, lags and a time lag for each lagging partition, in a table and
// in JSON.
func TestLagCommand(t *testing.T) {
	_, brokers := testkit.Cluster(t, 2, "orders")
	testkit.Produce(t, brokers, "orders", 100, 10, 10)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The group committed 20 records of partition 0 and none of 1.
	var offsets kadm.Offsets
	offsets.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 20, LeaderEpoch: -1})
	if resp, err := kadm.NewClient(cl).CommitOffsets(ctx, "billing", offsets); err != nil || resp.Error() != nil {
		t.Fatalf("committing: %v %v", err, resp.Error())
	}
	args := []string{"lag", "--brokers", strings.Join(brokers, ","), "--group", "billing"}
	var out, errb bytes.Buffer
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("status %d, stderr %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TOPIC") {
		t.Fatalf("table:\n%s", out.String())
	}
	if f := strings.Fields(lines[1]); f[0] != "orders" || f[1] != "0" || f[2] != "20" || f[3] != "50" || f[4] != "30" || f[5] == "0s" {
		t.Errorf("partition 0 row %q: want committed 20, end 50, lag 30 and a time lag", lines[1])
	}
	if f := strings.Fields(lines[2]); f[1] != "1" || f[2] != "-" || f[4] != "-" {
		t.Errorf("partition 1 row %q: want no commit and no lag", lines[2])
	}
	if !strings.HasPrefix(lines[3], "total") || !strings.Contains(lines[3], "30") {
		t.Errorf("total line %q", lines[3])
	}
	out.Reset()
	if code := run(ctx, append(args, "--json"), &out, &errb); code != 0 {
		t.Fatalf("--json: status %d, stderr %s", code, errb.String())
	}
	var rep lagJSON
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output %q: %v", out.String(), err)
	}
	if rep.Group != "billing" || rep.OffsetLag != 30 || len(rep.Parts) != 2 || rep.Parts[0].Lag == nil || *rep.Parts[0].Lag != 30 || rep.Parts[1].Lag != nil || rep.DrainRate != nil {
		t.Errorf("--json: %+v", rep)
	}
}

func TestLagCommandUnknownGroup(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "orders")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"lag", "--brokers", strings.Join(brokers, ","), "--group", "nobody"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), `group "nobody"`) || out.Len() != 0 {
		t.Fatalf("status %d, stdout %q, stderr %q: want status 1 and an error naming the group", code, out.String(), errb.String())
	}
}
