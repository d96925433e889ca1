package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPressureCommandLine(t *testing.T) {
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"pressure"}, 2, "usage: floodgate pressure"},
		{[]string{"pressure", "nope"}, 2, "unknown subcommand"},
		{[]string{"pressure", "watch", "-h"}, 0, "tombstone"},
		{[]string{"pressure", "watch"}, 2, "--brokers is required"},
		{[]string{"pressure", "watch", "--brokers", "x:1", "--hmac-keys", "/does/not/exist"}, 2, "--hmac-keys"},
		{[]string{"pressure", "watch", "--brokers", "x:1", "--require-v2"}, 2, "--require-v2 needs --hmac-keys"},
		{[]string{"deferred", "relay", "--brokers", "x:1", "--topic", "t", "--require-v2"}, 2, "--require-v2 needs --hmac-keys"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		if code := run(context.Background(), c.args, &out, &errb); code != c.code || !strings.Contains(errb.String(), c.err) {
			t.Errorf("floodgate %s: status %d, stderr:\n%s\nwant %d with %q", strings.Join(c.args, " "), code, errb.String(), c.code, c.err)
		}
	}
}

// TestPressureWatch: the command prints every record of the control topic
// decoded, with its status: live, expired, tombstone, rejected (a record
// that does not decode, or an unsigned one when keys are given).
func TestPressureWatch(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, "orders")
	if err := c.CreateTopic("ctl", 3, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, lagmonitor.ClientOpts("ctl")...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	signer, err := lagmonitor.NewSigner("k1", bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := lagmonitor.NewPublisher(cl, "ctl", "inst-1", lagmonitor.PublishSigner(signer))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := lagmonitor.Signal{Group: "g", Topic: "orders", Level: lagmonitor.LevelHigh, OffsetLag: 42, TimeLag: 3 * time.Second, TTL: time.Minute}
	if _, err := pub.Publish(ctx, base); err != nil {
		t.Fatal(err)
	}
	old := base
	old.IssuedAt, old.TTL = time.Now().Add(-time.Hour), time.Second
	if _, err := pub.Publish(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := pub.Tombstone(ctx, "orders", "inst-1", "g"); err != nil {
		t.Fatal(err)
	}
	garbage := &kgo.Record{Topic: "ctl", Key: []byte("orders/x/g"), Value: []byte("{not json")}
	if err := cl.ProduceSync(ctx, garbage).FirstErr(); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("# a key\nk1:"+strings.Repeat("07", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, withKeys := range []bool{false, true} {
		args := []string{"pressure", "watch", "--brokers", strings.Join(brokers, ","), "--topic", "ctl", "--from-start", "--json", "--for", "orders"}
		if withKeys {
			args = append(args, "--hmac-keys", keys)
		}
		wctx, wcancel := context.WithCancel(ctx)
		var out, errb syncBuffer
		done := make(chan int, 1)
		go func() { done <- run(wctx, args, &out, &errb) }()
		testkit.Eventually(t, 30*time.Second, "four lines of output", func() bool { return strings.Count(out.String(), "\n") >= 4 })
		wcancel()
		if code := <-done; code != 0 {
			t.Fatalf("status %d, stderr %s", code, errb.String())
		}
		var statuses []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var l struct {
				Status, Signature string
				Seq               uint64
				Signal            *struct {
					Level     string `json:"level"`
					OffsetLag int64  `json:"offset_lag"`
				}
			}
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			statuses = append(statuses, l.Status)
			if l.Status == "live" && (l.Signal == nil || l.Signal.OffsetLag != 42 || l.Signal.Level != "high") {
				t.Errorf("live line %s: want the wire signal, level high, offset lag 42", line)
			}
			if l.Status == "tombstone" && l.Seq != 3 {
				t.Errorf("tombstone line %s: want seq 3 (after the signals' 1 and 2)", line)
			}
			if withKeys && l.Status != "rejected" && l.Signature != "v2" {
				t.Errorf("line %s: want signature v2", line)
			}
		}
		want := "live expired tombstone rejected" // the garbage does not decode, signed or not
		if got := strings.Join(statuses, " "); got != want {
			t.Errorf("keys %v: statuses %q, want %q\n%s", withKeys, got, want, out.String())
		}
	}
}

// With --hmac-keys the watch verifies v1 and v2 signatures and says which
// verified; with --require-v2 a record signed with v1 alone is rejected.
func TestWatchSignatures(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("k1:"+strings.Repeat("07", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lenient, err := readKeys(keys, false)
	if err != nil {
		t.Fatal(err)
	}
	strict, err := readKeys(keys, true)
	if err != nil || !strict.RequiresV2() {
		t.Fatalf("readKeys with requireV2: %v", err)
	}
	signer, err := lagmonitor.NewSigner("k1", key)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := lagmonitor.TombstoneHeaders(7, time.UnixMilli(1_767_225_600_123))
	if err != nil {
		t.Fatal(err)
	}
	tomb := &kgo.Record{Topic: "ctl", Key: []byte("orders/i-1/g"), Headers: hs}
	signer.Sign(tomb)
	v1Only := &kgo.Record{Topic: "ctl", Key: tomb.Key}
	for _, h := range tomb.Headers {
		if h.Key == lagmonitor.SignatureHeader { // a tombstone of an earlier release: v1, no headers
			v1Only.Headers = append(v1Only.Headers, h)
		}
	}
	for _, c := range []struct {
		r    *kgo.Record
		v    *lagmonitor.Verifier
		want string
	}{
		{tomb, lenient, "tombstone v2 seq=7"},
		{tomb, strict, "tombstone v2 seq=7"},
		{v1Only, lenient, "tombstone v1"},
		{v1Only, strict, "rejected"},
	} {
		l := decodeWatch(c.r, c.v, time.Now())
		var b bytes.Buffer
		writeWatchLine(&b, l)
		got := strings.Join(strings.Fields(b.String()), " ")
		for _, w := range strings.Fields(c.want) {
			if !strings.Contains(got, w) {
				t.Errorf("requireV2 %v: line %q does not say %q", c.v.RequiresV2(), got, w)
			}
		}
	}
}

// TestWatchShowsAddedFields: the watch's line names a signal's capacity,
// share, hot partitions and open transactions when they are set, and
// nothing of them when not (a signal of an older monitor).
func TestWatchShowsAddedFields(t *testing.T) {
	s := lagmonitor.Signal{Capacity: 1600.5, Partitions: 3, TopicPartitions: 12, RestLevel: lagmonitor.LevelOK,
		Hot:             []lagmonitor.HotPartition{{Partition: 7, Level: lagmonitor.LevelHigh, TimeLag: 42500 * time.Millisecond, SuggestedRate: 180.5}},
		UnstableOffsets: 40, LSOStall: 65 * time.Second}
	want := " capacity=1600.5/s partitions=3/12 hot=7:high:42.5s:180.5/s rest=ok open_txn=40(1m5s)"
	if got := signalExtras(&s); got != want {
		t.Errorf("extras %q, want %q", got, want)
	}
	if got := signalExtras(&lagmonitor.Signal{}); got != "" {
		t.Errorf("extras of a signal without them: %q", got)
	}
}
