package consumer_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/partition"
)

// fetchErrLog is a HookFetchError recording what it was told.
type fetchErrLog struct {
	mu   sync.Mutex
	errs []error
	fata []bool
}

func (f *fetchErrLog) OnFetchError(_ string, _ int32, err error, fatal bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
	f.fata = append(f.fata, fatal)
}

// find returns the first recorded error that errors.As into target.
func (f *fetchErrLog) find(target any) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, err := range f.errs {
		if errors.As(err, target) {
			return true
		}
	}
	return false
}

// TestFatalFetchErrorEndsRun: a poll error that retrying cannot fix (no
// read right on the topic) ends Run with a *FetchError instead of
// consuming nothing forever, and reaches the hooks.
func TestFatalFetchErrorEndsRun(t *testing.T) {
	c, brokers := testkit.Cluster(t, 1, "fa")
	testkit.Produce(t, brokers, "fa", 10, 1, 1)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: "fa", Err: kerr.TopicAuthorizationFailed, Count: -1})
	hook := &fetchErrLog{}
	rt, err := consumer.New(func(context.Context, *kgo.Record) error { return nil },
		consumer.Brokers(brokers...), consumer.Group("fa"), consumer.Topics("fa"), consumer.WithHooks(hook))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(context.Background()) }()
	var runErr error
	select {
	case runErr = <-errc:
	case <-time.After(time.Minute):
		rt.Close()
		t.Fatal("Run did not end within a minute of a fatal fetch error")
	}
	var fe *consumer.FetchError
	if !errors.As(runErr, &fe) || !errors.Is(runErr, kerr.TopicAuthorizationFailed) || fe.Topic != "fa" {
		t.Fatalf("Run = %v, want a *FetchError for fa with TOPIC_AUTHORIZATION_FAILED", runErr)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.errs) == 0 || !hook.fata[len(hook.fata)-1] {
		t.Fatalf("HookFetchError got %v (fatal %v)", hook.errs, hook.fata)
	}
	if s := rt.Stats(); s.FetchErrors == 0 || !errors.Is(s.FetchErr, kerr.TopicAuthorizationFailed) {
		t.Fatalf("Stats: FetchErrors %d FetchErr %v", s.FetchErrors, s.FetchErr)
	}
}

// TestDeletedWhilePausedIsDataLoss: records deleted (retention,
// DeleteRecords) while their partition was paused are reset past by the
// client with only a warning; the runtime reports them as data loss.
func TestDeletedWhilePausedIsDataLoss(t *testing.T) {
	_, brokers := testkit.Cluster(t, 1, "dl")
	p := testkit.NewProducer(t, brokers)
	first, err := p.Produce("dl", 100, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	ledger := testkit.NewLedger(first)
	hook := &fetchErrLog{}
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("dl"), consumer.Topics("dl"), consumer.WithHooks(hook))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	ledger.WaitAll(t, time.Minute)
	dl := map[string][]int32{"dl": {0}}
	rt.Pause(partition.Manual, dl)
	if _, err := p.Produce("dl", 100, 1, 10); err != nil { // offsets 100 to 199
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: "dl", Partition: 0, At: 150})
	if resp, err := kadm.NewClient(p.Client()).DeleteRecords(ctx, del); err != nil || resp.Error() != nil {
		t.Fatalf("DeleteRecords: %v %v", err, resp.Error())
	}
	rt.Resume(partition.Manual, dl)
	var loss *consumer.DataLossError
	testkit.Eventually(t, time.Minute, "the deleted offsets to be reported as data loss", func() bool { return hook.find(&loss) })
	if loss.Expected != 100 || loss.Got != 150 || loss.Truncated {
		t.Fatalf("DataLossError %+v, want offsets 100 to 149 deleted", loss)
	}
	if s := rt.Stats(); s.DataLoss == 0 {
		t.Fatal("Stats.DataLoss is 0")
	}
	stop()
}

// TestTruncationRestartsTracking: when the client finds the log truncated
// below what it read (kgo.ErrDataLoss) and refetches from the truncation
// point, the records at reused offsets are handled, not dropped as
// already tracked, and commits follow the new log.
func TestTruncationRestartsTracking(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(1, "tr"), kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	ledger := testkit.NewLedger(testkit.Produce(t, brokers, "tr", 100, 1, 10))
	hook := &fetchErrLog{}
	commits := &commitLog{}
	var seen sync.Map // offset -> handlings
	var count atomic.Int64
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		n, _ := seen.LoadOrStore(r.Offset, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		count.Add(1)
		ledger.Handled(r.Topic, r.Partition, r.Offset)
		return nil
	}, consumer.Brokers(brokers...), consumer.Group("tr"), consumer.Topics("tr"),
		consumer.WithHooks(hook, commits), consumer.CommitInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, rt)
	ledger.WaitAll(t, time.Minute)
	testkit.Eventually(t, time.Minute, "a commit at the end", func() bool { return commits.get(0) == 100 })

	// The new leader says the log ends at 60: everything the client read
	// from 60 on was truncated.
	c.ControlKey(int16(kmsg.OffsetForLeaderEpoch), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.OffsetForLeaderEpochRequest)
		resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetForLeaderEpochResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.LeaderEpoch = rp.LeaderEpoch
				sp.EndOffset = 60
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	leader := c.LeaderFor("tr", 0)
	if err := c.MoveTopicPartition("tr", 0, 3-leader); err != nil { // nodes are 1 and 2... or 0 and 1
		if err := c.MoveTopicPartition("tr", 0, 1-leader); err != nil {
			t.Fatalf("moving the partition's leadership: %v", err)
		}
	}
	var dl *kgo.ErrDataLoss
	testkit.Eventually(t, time.Minute, "the client to report the truncation", func() bool { return hook.find(&dl) })
	testkit.Eventually(t, time.Minute, "the records from the truncation point to be handled again", func() bool {
		n, ok := seen.Load(int64(99))
		return ok && n.(*atomic.Int64).Load() >= 2
	})
	if n, _ := seen.Load(int64(59)); n.(*atomic.Int64).Load() != 1 {
		t.Fatalf("offset 59, below the truncation point, handled %d times", n.(*atomic.Int64).Load())
	}
	testkit.Eventually(t, time.Minute, "a commit at the end of the new log", func() bool { return commits.get(0) == 100 })
	if s := rt.Stats(); s.DataLoss == 0 {
		t.Fatal("Stats.DataLoss is 0")
	}
	stop()
}
