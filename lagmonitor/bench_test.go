package lagmonitor_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// Control-plane scale simulation (issue 8). Time is compressed: one
// benchmark op is one heartbeat round, in which every simulated instance
// publishes one signal for its topic, as fast as the broker takes them;
// rates are then stated per logical second, with a heartbeat every
// benchHeartbeat.
const (
	benchHeartbeat = 5 * time.Second
	benchTTL       = 3 * benchHeartbeat
	benchCtlParts  = 12 // partitions of the control topic
	benchReaders   = 4  // producers, each following one destination topic
)

// BenchmarkControlPlane simulates N consumer instances publishing one
// signal per heartbeat, spread evenly over T destination topics (instance i
// consumes topic i mod T, in group "group-<topic>"), and benchReaders
// producers, each with a Reader following one destination topic. Before
// the readers start, the instances publish the rounds of one reader
// lookback (DefaultLookback / benchHeartbeat = 24 rounds), all of which a
// starting reader reads: compaction only acts on closed segments, so this
// is what a reader starting on a busy control topic reads at worst. It
// reports, per reader: the records and the fetched bytes (batches as the
// broker sent them, kgo's FetchBatchMetrics) per logical second of
// following, the records read and the time taken catching up at start;
// and the records per second written by all instances together. The
// broker runs in another process: kfake in a child process, or the
// cluster FLOODGATE_KAFKA_BROKERS names (a new control topic each run).
//
//	go test -run '^$' -bench ControlPlane -benchtime 20x ./lagmonitor/
func BenchmarkControlPlane(b *testing.B) {
	for _, topics := range []int{1, 20} {
		for _, n := range []int{10, 100, 1000} {
			b.Run(fmt.Sprintf("topics=%d/instances=%d", topics, n), func(b *testing.B) {
				benchControlPlane(b, topics, n)
			})
		}
	}
}

// fetchCounter counts what a reader's client fetched.
type fetchCounter struct{ records, wire, raw atomic.Int64 }

func (c *fetchCounter) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	c.records.Add(int64(m.NumRecords))
	c.wire.Add(int64(m.CompressedBytes))
	c.raw.Add(int64(m.UncompressedBytes))
}

var _ kgo.HookFetchBatchRead = new(fetchCounter)

func benchControlPlane(b *testing.B, ntopics, n int) {
	brokers, control := benchControlTopic(b)
	// Real instances each produce through their own client: a batch
	// holds one signal. One shared client would batch (and compress)
	// many instances' signals together, which real ones never do; a
	// batch cap below two signals keeps them apart.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner(control, nil)),
		kgo.ProducerBatchMaxBytes(700))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()

	topics := make([]string, ntopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("dest-%02d", i)
	}
	pubs := make([]*lagmonitor.Publisher, n)
	for i := range pubs {
		p, err := lagmonitor.NewPublisher(cl, control, lagmonitor.NewInstanceID(fmt.Sprintf("bench%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		pubs[i] = p
	}
	round := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, p := range pubs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				topic := topics[i%ntopics]
				_, err := p.Publish(ctx, lagmonitor.Signal{
					Topic: topic, Group: "group-" + topic, Level: lagmonitor.LevelElevated,
					OffsetLag: 12345, TimeLag: 2500 * time.Millisecond, DrainRate: 850.5, SuggestedRate: 800,
					Paused: map[string]int{"lag": 1}, Reason: "time lag 2.5s over 2s", TTL: benchTTL,
				})
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	history := int(lagmonitor.DefaultLookback / benchHeartbeat)
	for range history {
		round()
	}

	// Each reader follows one destination topic; per round it reads the
	// signals of every topic sharing that topic's control partition.
	type follower struct {
		r         *lagmonitor.Reader
		fc        *fetchCounter
		perRound  int64
		catchUp   time.Duration
		startRead int64
	}
	parts := map[int32]int64{}
	for i := range n {
		parts[lagmonitor.PartitionFor(topics[i%ntopics], benchCtlParts)]++
	}
	fs := make([]*follower, benchReaders)
	for i := range fs {
		f := &follower{fc: new(fetchCounter)}
		topic := topics[i%ntopics]
		f.perRound = parts[lagmonitor.PartitionFor(topic, benchCtlParts)]
		f.r, err = lagmonitor.NewReader(brokers, control, []string{topic},
			lagmonitor.ReadKgoOpts(kgo.WithHooks(f.fc)), lagmonitor.ReadStartupTimeout(time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		defer f.r.Close()
		start := time.Now()
		if err := f.r.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		f.catchUp = time.Since(start)
		f.startRead = int64(f.r.Stats().Read)
		if want := f.perRound * int64(history); f.startRead != want {
			b.Fatalf("reader of %s read %d records catching up, want %d", topic, f.startRead, want)
		}
		fs[i] = f
	}
	wire0, raw0 := make([]int64, len(fs)), make([]int64, len(fs))
	for i, f := range fs {
		wire0[i], raw0[i] = f.fc.wire.Load(), f.fc.raw.Load()
	}

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		round()
		for _, f := range fs {
			want := uint64(f.startRead + f.perRound*int64(i+1))
			testkit.Eventually(b, time.Minute, "a reader did not read a round's signals", func() bool { return f.r.Stats().Read >= want })
		}
	}
	b.StopTimer()

	logical := (time.Duration(b.N) * benchHeartbeat).Seconds()
	var msgs, wire, raw, catchMsgs float64
	var catch []time.Duration
	for i, f := range fs {
		st := f.r.Stats()
		if st.Malformed+st.Unauthenticated+st.Replayed+st.Future != 0 || st.Accepted == 0 {
			b.Fatalf("reader stats %+v", st)
		}
		msgs += float64(int64(st.Read) - f.startRead)
		wire += float64(f.fc.wire.Load() - wire0[i])
		raw += float64(f.fc.raw.Load() - raw0[i])
		catchMsgs += float64(f.startRead)
		catch = append(catch, f.catchUp)
	}
	slices.Sort(catch)
	nr := float64(len(fs))
	b.ReportMetric(float64(n)/benchHeartbeat.Seconds(), "written-msgs/s")
	b.ReportMetric(msgs/nr/logical, "read-msgs/s/reader")
	b.ReportMetric(wire/nr/logical, "read-bytes/s/reader")
	b.ReportMetric(wire/msgs, "fetched-bytes/msg")
	b.ReportMetric(raw/msgs, "batch-bytes/msg")
	b.ReportMetric(catchMsgs/nr, "catchup-msgs/reader")
	b.ReportMetric(float64(catch[len(catch)-1].Milliseconds()), "catchup-max-ms")
	b.ReportMetric(0, "ns/op") // a round's wall time is the simulation's, not the control plane's
}

// benchControlTopic returns the brokers and a control topic: on kfake in a
// child process, or a new topic on the cluster FLOODGATE_KAFKA_BROKERS
// names.
func benchControlTopic(b *testing.B) (brokers []string, control string) {
	env := os.Getenv("FLOODGATE_KAFKA_BROKERS")
	if env == "" {
		return testkit.ChildCluster(b, benchCtlParts, ctl), ctl
	}
	brokers, control = strings.Split(env, ","), fmt.Sprintf("floodgate-control-bench-%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := lagmonitor.EnsureControlTopic(ctx, cl, control, benchCtlParts, benchTTL); err != nil {
		b.Fatal(err)
	}
	return brokers, control
}
