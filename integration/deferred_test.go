package integration_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
	"github.com/floodgate-kafka/floodgate/producer/deferred"
)

// deferredEnv names the role of a deferred-lane child process and its
// setup: "role|brokers|topic|control|group".
const deferredEnv = "FLOODGATE_TEST_DEFERRED_CHILD"

// runDeferredChild runs a child of TestDeferredLaneSurvivesKills, if
// this process is one: a "producer" that defers bulk records forever,
// printing "ok VALUE" once each is safely deferred, or a "relay".
func runDeferredChild() bool {
	spec := os.Getenv(deferredEnv)
	if spec == "" {
		return false
	}
	f := strings.Split(spec, "|")
	if len(f) != 5 {
		fmt.Fprintln(os.Stderr, "bad", deferredEnv, spec)
		os.Exit(2)
	}
	role, brokers, topic, control, group := f[0], strings.Split(f[1], ","), f[2], f[3], f[4]
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "deferred child:", err)
		os.Exit(2)
	}
	switch role {
	case "relay":
		r, err := deferred.NewRelay(deferred.RelayConfig{Brokers: brokers, ControlTopic: control, Topics: []string{topic},
			Group: group, Rate: 300, KgoOpts: []kgo.Opt{kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond)},
			ConsumerOpts: []consumer.Opt{consumer.CommitInterval(200 * time.Millisecond)}})
		if err != nil {
			fail(err)
		}
		fail(fmt.Errorf("relay stopped: %w", r.Run(ctx)))
	case "producer":
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			fail(err)
		}
		lane, err := deferred.NewLane(cl, deferred.Config{Topics: []string{topic}, Group: group})
		if err != nil {
			fail(err)
		}
		if err := lane.Start(ctx); err != nil {
			fail(err)
		}
		p, err := producer.Wrap(cl, producer.ControlTopic(control), producer.Topics(topic),
			producer.WithPolicy(producer.DefaultPolicy(priority.Default).DeferringShed()), producer.WithDeferrer(lane))
		if err != nil {
			fail(err)
		}
		if err := p.Start(ctx); err != nil {
			fail(err)
		}
		for p.Stats().Topics[0].Level != lagmonitor.LevelCritical {
			time.Sleep(10 * time.Millisecond) // a child polls its own state; the test awaits its output
		}
		out := bufio.NewWriter(os.Stdout)
		var mu sync.Mutex
		sem := make(chan struct{}, 64)
		for i := 0; ; i++ {
			sem <- struct{}{}
			v := fmt.Sprintf("%d-%d", os.Getpid(), i)
			r := &kgo.Record{Topic: topic, Key: []byte(v), Value: []byte(v),
				Headers: []kgo.RecordHeader{{Key: priority.Header, Value: []byte(priority.Bulk)}}}
			p.Produce(ctx, r, func(r *kgo.Record, err error) {
				defer func() { <-sem }()
				if err != nil {
					fmt.Fprintln(os.Stderr, "deferred child:", err)
					return
				}
				mu.Lock()
				fmt.Fprintf(out, "ok %s\n", r.Value)
				_ = out.Flush()
				mu.Unlock()
			})
		}
	}
	fail(fmt.Errorf("unknown role %q", role))
	return true
}

// deferredChild is a child process of TestDeferredLaneSurvivesKills.
type deferredChild struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startDeferredChild(t *testing.T, spec string, onLine func(string)) *deferredChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), deferredEnv+"="+spec)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &deferredChild{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			onLine(sc.Text())
		}
	}()
	t.Cleanup(c.kill)
	return c
}

// kill sends SIGKILL and waits for the child's output and exit.
func (c *deferredChild) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	_ = c.cmd.Wait()
}

// valueSet is a set of record values, counted, safe for concurrent use.
type valueSet struct {
	mu sync.Mutex
	m  map[string]int
}

func (s *valueSet) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]int)
	}
	s.m[v]++
}

func (s *valueSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *valueSet) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.m))
	for k, v := range s.m {
		out[k] = v
	}
	return out
}

// TestDeferredLaneSurvivesKills: on real Kafka, under a critical signal,
// producer processes defer bulk records and are SIGKILLed, one after the
// other, in the middle of deferring; back at ok, relay processes deliver
// them and the first is SIGKILLed in the middle of relaying. Every record
// whose promise said deferred reaches the destination, at least once.
func TestDeferredLaneSurvivesKills(t *testing.T) {
	c := integration.Shared(t)
	s := newScenario(t, c, 3, 1)
	control := s.topic + ".pressure"
	pubCl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner(control, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer pubCl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := lagmonitor.EnsureControlTopic(ctx, pubCl, control, 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	pub, err := lagmonitor.NewPublisher(pubCl, control, "svc-1")
	if err != nil {
		t.Fatal(err)
	}
	level := func(l lagmonitor.Level) {
		t.Helper()
		// At ok, room for 600/s: the relays (Rate 300, half the room
		// at most) relay at their Rate once their ramp is over.
		room := 0.0
		if l == lagmonitor.LevelOK {
			room = 600
		}
		if _, err := pub.Publish(ctx, lagmonitor.Signal{Topic: s.topic, Group: "svc", Level: l, SuggestedRate: room, Reason: "test", TTL: 10 * time.Minute}); err != nil {
			t.Fatal(err)
		}
	}
	level(lagmonitor.LevelCritical)

	spec := func(role string) string {
		return strings.Join([]string{role, strings.Join(c.Brokers, ","), s.topic, control, s.group}, "|")
	}
	var acked valueSet
	onAck := func(line string) {
		if v, ok := strings.CutPrefix(line, "ok "); ok {
			acked.add(v)
		}
	}
	for round, want := range []int{300, 600} {
		child := startDeferredChild(t, spec("producer"), onAck)
		testkit.Eventually(t, time.Minute, fmt.Sprintf("producer %d to defer %d records in all", round, want), func() bool { return acked.len() >= want })
		child.kill()
	}
	deferredTopic := s.topic + deferred.DefaultSuffix

	// What reaches the destination, read as it comes.
	var delivered valueSet
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.ConsumeTopics(s.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for rctx.Err() == nil {
			rd.PollFetches(rctx).EachRecord(func(r *kgo.Record) { delivered.add(string(r.Value)) })
		}
	}()
	defer func() { rcancel(); rwg.Wait(); rd.Close() }()
	if n := delivered.len(); n != 0 {
		t.Fatalf("%d records reached %s under a critical signal", n, s.topic)
	}

	level(lagmonitor.LevelOK)
	relay1 := startDeferredChild(t, spec("relay"), func(string) {})
	testkit.Eventually(t, time.Minute, "the first relay to deliver 150 records", func() bool { return delivered.len() >= 150 })
	relay1.kill()
	firstRelay := delivered.len()
	startDeferredChild(t, spec("relay"), func(string) {})
	want := acked.snapshot()
	testkit.Eventually(t, 2*time.Minute, fmt.Sprintf("every one of the %d deferred records to reach %s", len(want), s.topic), func() bool {
		got := delivered.snapshot()
		for v := range want {
			if got[v] == 0 {
				return false
			}
		}
		return true
	})
	got := delivered.snapshot()
	dups, extra := 0, 0
	for v, n := range got {
		dups += n - 1
		if want[v] == 0 {
			extra++ // deferred when its producer was killed, before its promise
		}
	}
	t.Logf("%d records deferred (promised) by 2 killed producers on %s; %d delivered by the first relay before its SIGKILL; all delivered, %d duplicates, %d more delivered that were in flight when a producer died",
		len(want), deferredTopic, firstRelay, dups, extra)
}

// TestDeferTooLarge: on real Kafka, a record its deferred topic refuses
// (larger than its max.message.bytes) is shed after all, its error naming
// the cause, and counted; the lane goes on deferring.
func TestDeferTooLarge(t *testing.T) {
	c := integration.Shared(t)
	if !c.Real() {
		t.Skip("kfake does not enforce a topic's max.message.bytes")
	}
	s := newScenario(t, c, 1, 1)
	control := s.topic + ".pressure"
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner(control, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := lagmonitor.EnsureControlTopic(ctx, cl, control, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	pub, err := lagmonitor.NewPublisher(cl, control, "svc-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, lagmonitor.Signal{Topic: s.topic, Group: "svc", Level: lagmonitor.LevelCritical, Reason: "test", TTL: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	lane, err := deferred.NewLane(cl, deferred.Config{Topics: []string{s.topic}, TopicConfigs: map[string]string{"max.message.bytes": "2000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer lane.Close()
	if err := lane.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := producer.Wrap(cl, producer.ControlTopic(control), producer.Topics(s.topic),
		producer.WithPolicy(producer.DefaultPolicy(priority.Default).DeferringShed()), producer.WithDeferrer(lane))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "the producer to see level critical", func() bool {
		return p.Stats().Topics[0].Level == lagmonitor.LevelCritical
	})
	bulk := func(v string) *kgo.Record {
		return &kgo.Record{Topic: s.topic, Value: []byte(v), Headers: []kgo.RecordHeader{{Key: priority.Header, Value: []byte(priority.Bulk)}}}
	}
	noise := make([]byte, 10_000) // incompressible: kgo compresses batches
	for i := range noise {
		noise[i] = byte(rand.Uint32())
	}
	err = p.ProduceSync(ctx, bulk(string(noise))).FirstErr()
	var re *producer.RefusedError
	if !errors.Is(err, producer.ErrShed) || !errors.As(err, &re) || !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("a record too large for the deferred topic: %v, want shed, caused by MESSAGE_TOO_LARGE", err)
	}
	t.Logf("refused as: %v", err)
	if st := lane.Stats(); st.Failed != 1 || st.Deferred != 0 || st.LastErr == nil {
		t.Fatalf("lane stats %+v", st)
	}
	if err := p.ProduceSync(ctx, bulk("small")).FirstErr(); err != nil {
		t.Fatalf("a small record after the large one: %v", err)
	}
	if st := lane.Stats(); st.Deferred != 1 {
		t.Fatalf("lane stats %+v", st)
	}
}
