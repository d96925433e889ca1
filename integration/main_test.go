package integration_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

func TestMain(m *testing.M) {
	if runChild() || runMemberChild() || runDeferredChild() {
		return
	}
	code := m.Run()
	integration.Close()
	os.Exit(code)
}

// scenario is one test's topic, group, ledger and commit checker on the
// shared cluster.
type scenario struct {
	t      *testing.T
	c      *integration.Cluster
	topic  string
	group  string
	ledger *testkit.Ledger
	// terminal holds the source records that reached a terminal state,
	// which is what commits may pass; the same as ledger unless records
	// can be diverted.
	terminal *testkit.Ledger
	start    time.Time
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

func newScenario(t *testing.T, c *integration.Cluster, partitions int32, rf int16) *scenario {
	t.Helper()
	name := fmt.Sprintf("%s-%d", unsafeName.ReplaceAllString(t.Name(), "_"), time.Now().UnixNano())
	integration.CreateTopic(t, c.Brokers, name, partitions, rf, nil)
	l := testkit.NewLedger(nil)
	return &scenario{t: t, c: c, topic: name, group: name, ledger: l, terminal: l, start: time.Now()}
}

// opts are the runtime options every scenario shares.
func (s *scenario) opts(extra ...consumer.Opt) []consumer.Opt {
	return append([]consumer.Opt{
		consumer.Brokers(s.c.Brokers...), consumer.Group(s.group), consumer.Topics(s.topic),
		consumer.WithHooks(commitChecker{s}),
		consumer.KgoOpts(kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond)),
	}, extra...)
}

// commitChecker fails the test if an offset is committed while a record
// below it was never handled. Topics here have contiguous offsets from 0.
type commitChecker struct{ s *scenario }

func (c commitChecker) OnCommit(offsets map[string]map[int32]kgo.EpochOffset, _ error) {
	for p, eo := range offsets[c.s.topic] {
		if prefix := c.s.terminal.HandledPrefix(c.s.topic, p); eo.Offset > prefix {
			c.s.t.Errorf("committed offset %d of partition %d, but offset %d never reached a terminal state", eo.Offset, p, prefix)
		}
	}
}

// produce writes n records and expects them in the ledger.
func (s *scenario) produce(p *testkit.Producer, n, keys, size int) {
	s.t.Helper()
	rs, err := p.Produce(s.topic, n, keys, size)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, r := range rs {
		s.ledger.Expect(r.Topic, r.Partition, r.Offset)
	}
}

// load produces batches of n records until the returned stop is called;
// stop waits for the producer goroutine.
func (s *scenario) load(p *testkit.Producer, n int, every time.Duration) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			rs, err := p.Produce(s.topic, n, 20, 64)
			if err != nil {
				s.t.Errorf("load: %v", err)
				return
			}
			for _, r := range rs {
				s.ledger.Expect(r.Topic, r.Partition, r.Offset)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-done }) }
}

// run is testkit.Run, short for the tests here.
func run(t *testing.T, rt *consumer.Runtime) func() { return testkit.Run(t, rt) }

// noBound marks a scenario whose duplicates are reported, not bounded.
const noBound = -1

// report logs the scenario's figures in one greppable line and checks the
// accounting: every record handled, none unexpected, duplicates within
// dupBound (unless noBound).
func (s *scenario) report(name string, dupBound int, extra string) {
	s.t.Helper()
	exp, handled, dups, unexpected := s.ledger.Counts()
	bound := "none"
	if dupBound != noBound {
		bound = fmt.Sprint(dupBound)
	}
	kafka := strings.ReplaceAll(s.c.Version, " ", "")
	if kafka == "" {
		kafka = "-"
	}
	line := fmt.Sprintf("FIGURES scenario=%s broker=%s kafka=%s records=%d handled=%d duplicates=%d bound=%s elapsed=%s %s",
		name, s.c.Kind, kafka, exp, handled, dups, bound, time.Since(s.start).Round(100*time.Millisecond), extra)
	s.t.Log(line)
	if path := os.Getenv("FLOODGATE_FIGURES"); path != "" {
		if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
	if handled != exp {
		s.t.Fatal(s.ledger.Missing(10))
	}
	if unexpected != 0 {
		s.t.Fatalf("%d handled records were never produced", unexpected)
	}
	if dupBound != noBound && dups > dupBound {
		s.t.Fatalf("%d duplicates exceed the bound %d", dups, dupBound)
	}
}

// progress waits until n moved by at least by.
func progress(t *testing.T, what string, n *atomic.Int64, by int64) {
	t.Helper()
	from := n.Load()
	testkit.Eventually(t, 2*time.Minute, what, func() bool { return n.Load() >= from+by })
}
