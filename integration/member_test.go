package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/integration"
	"github.com/floodgate-kafka/floodgate/internal/testkit"
)

const (
	memberEnv    = "FLOODGATE_INTEGRATION_MEMBER" // brokers|topic|group|protocol
	memberCommit = 200 * time.Millisecond
)

// memberSessionTO is the classic protocol's session timeout of the members
// (kgo.SessionTimeout): 6s, or FLOODGATE_MEMBER_SESSION (a Go duration) for
// measurements with Kafka's default 45s. KIP-848 members take theirs from
// the broker (6s on a scripts/kafka broker).
var memberSessionTO = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("FLOODGATE_MEMBER_SESSION")); err == nil && d > 0 {
		return d
	}
	return 6 * time.Second
}()

// runMemberChild is a group member of TestMemberKilled in a child process:
// it reports each handled record on stdout before the handler returns and
// runs until it is killed.
func runMemberChild() bool {
	spec := os.Getenv(memberEnv)
	if spec == "" {
		return false
	}
	f := strings.Split(spec, "|")
	if len(f) != 4 {
		fmt.Fprintln(os.Stderr, "bad", memberEnv, spec)
		os.Exit(2)
	}
	report := testkit.ReportHandled(os.Stdout)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		time.Sleep(time.Millisecond)
		return report(r.Partition, r.Offset)
	}, memberOpts(strings.Split(f[0], ","), f[1], f[2], protocolNamed(f[3]))...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_ = rt.Run(context.Background())
	os.Exit(3)
	return true
}

func protocolNamed(s string) consumer.GroupProtocol {
	if s == consumer.GroupProtocolConsumer.String() {
		return consumer.GroupProtocolConsumer
	}
	return consumer.GroupProtocolClassic
}

// memberOpts are the options every member of TestMemberKilled shares.
func memberOpts(brokers []string, topic, group string, p consumer.GroupProtocol, extra ...consumer.Opt) []consumer.Opt {
	return append([]consumer.Opt{
		consumer.Brokers(brokers...), consumer.Topics(topic), consumer.Group(group),
		consumer.WithGroupProtocol(p), consumer.PartitionMaxRecords(100), consumer.CommitInterval(memberCommit),
		consumer.KgoOpts(kgo.SessionTimeout(memberSessionTO), kgo.HeartbeatInterval(500*time.Millisecond)),
	}, extra...)
}

// commitGaps records when a member's commits succeed and the longest time
// without one.
type commitGaps struct {
	mu       sync.Mutex
	last     time.Time
	longest  time.Duration
	failures int
}

func (g *commitGaps) OnCommit(_ map[string]map[int32]kgo.EpochOffset, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.failures++
		return
	}
	now := time.Now()
	if !g.last.IsZero() {
		g.longest = max(g.longest, now.Sub(g.last))
	}
	g.last = now
}

// since returns the longest gap between successful commits seen so far,
// counting the time since the last one, and the failed commits.
func (g *commitGaps) since() (time.Duration, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(g.longest, time.Since(g.last)), g.failures
}

func (g *commitGaps) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.last, g.longest, g.failures = time.Now(), 0, 0
}

// TestMemberKilled kills one member of three with SIGKILL and starts a
// replacement while records flow. Under the classic protocol the
// replacement's join waits for the dead member's session to expire, and
// kgo holds the survivors' commits meanwhile; under KIP-848 nothing waits.
// Either way the survivors commit again within a stated time, nothing is
// lost, and the duplicates are the killed member's uncommitted work.
func TestMemberKilled(t *testing.T) {
	c := integration.Shared(t)
	eachProtocol(t, c, memberSessionTO, func(t *testing.T, proto consumer.GroupProtocol) {
		s := newScenario(t, c, 6, 1)
		stopLoad := s.load(testkit.NewProducer(t, c.Brokers), 50, 20*time.Millisecond)
		defer stopLoad()

		gaps := []*commitGaps{{}, {}}
		counts := make([]atomic.Int64, 2)
		for i := range gaps {
			rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
				time.Sleep(time.Millisecond)
				s.ledger.Handled(r.Topic, r.Partition, r.Offset)
				counts[i].Add(1)
				return nil
			}, memberOpts(c.Brokers, s.topic, s.group, proto, consumer.WithHooks(gaps[i], commitChecker{s}))...)
			if err != nil {
				t.Fatal(err)
			}
			run(t, rt)
		}
		env := []string{memberEnv + "=" + strings.Join(c.Brokers, ",") + "|" + s.topic + "|" + s.group + "|" + proto.String()}
		victim := testkit.StartChild(t, env, s.ledger, s.topic)
		for i := range counts {
			progress(t, fmt.Sprintf("survivor %d to handle records", i), &counts[i], 50)
		}
		_, before := s.ledger.Progress()
		testkit.Eventually(t, 2*time.Minute, "the victim to handle records", func() bool {
			_, h := s.ledger.Progress()
			return h > before+200
		})
		if proto == consumer.GroupProtocolConsumer {
			assertGroupType(t, c.Brokers, s.group, "consumer")
		}

		victim.Kill()
		killed := time.Now()
		for _, g := range gaps {
			g.reset()
		}
		_, _, dupsBefore, _ := s.ledger.Counts()
		replacement := testkit.StartChild(t, env, s.ledger, s.topic)
		defer replacement.Kill()
		// Watch the survivors for the time the dead member's session
		// takes to expire, plus a rebalance.
		watch := memberSessionTO + 10*time.Second
		bound := memberSessionTO + 8*time.Second // classic: the join waits for the dead member
		if proto == consumer.GroupProtocolConsumer {
			bound = 5*memberCommit + 3*time.Second // nothing waits for the dead member
		}
		for i := range counts {
			progress(t, fmt.Sprintf("survivor %d to go on after the kill", i), &counts[i], 50)
		}
		for time.Since(killed) < watch {
			time.Sleep(100 * time.Millisecond) // sampling the gaps, which the hooks record
		}
		var longest time.Duration
		var failed int
		for i, g := range gaps {
			gap, f := g.since()
			longest, failed = max(longest, gap), failed+f
			if gap > bound {
				t.Errorf("survivor %d went %v without a successful commit after the kill (bound %v, %d failed commits)", i, gap.Round(time.Millisecond), bound, f)
			}
		}
		stopLoad()
		s.ledger.WaitAll(t, 3*time.Minute)
		_, _, dups, _ := s.ledger.Counts()
		s.report("member-killed-"+proto.String(), noBound, fmt.Sprintf("protocol=%s longest_commit_gap=%s bound=%s failed_commits=%d duplicates_after_kill=%d",
			proto, longest.Round(time.Millisecond), bound, failed, dups-dupsBefore))
	})
}

// assertGroupType checks that the broker lists group as a group of type
// typ ("consumer" for KIP-848, "classic").
func assertGroupType(t *testing.T, brokers []string, group, typ string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	groups, err := kadm.NewClient(cl).ListGroupsByType(ctx, []string{typ})
	if err != nil {
		t.Fatalf("listing %s groups: %v", typ, err)
	}
	if _, ok := groups[group]; !ok {
		t.Fatalf("group %s is not listed as a %q group: the protocol asked for is not in use", group, typ)
	}
}

// TestGroupChaos kills random members of a group of three child processes
// with SIGKILL, each replaced at once, while records flow: nothing is lost,
// and the duplicates per kill are reported (the killed member's uncommitted
// work, and, where commits were held by a rebalance waiting for a dead
// member, more).
func TestGroupChaos(t *testing.T) {
	c := integration.Shared(t)
	eachProtocol(t, c, memberSessionTO, func(t *testing.T, proto consumer.GroupProtocol) {
		s := newScenario(t, c, 6, 1)
		stopLoad := s.load(testkit.NewProducer(t, c.Brokers), 50, 20*time.Millisecond)
		defer stopLoad()
		env := []string{memberEnv + "=" + strings.Join(c.Brokers, ",") + "|" + s.topic + "|" + s.group + "|" + proto.String()}
		members := make([]*testkit.Child, 3)
		for i := range members {
			members[i] = testkit.StartChild(t, env, s.ledger, s.topic)
		}
		defer func() {
			for _, m := range members {
				m.Kill()
			}
		}()
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
		kills := integration.Scale(3)
		for k := 0; k < kills; k++ {
			_, before := s.ledger.Progress()
			target := before + 1000 + rng.IntN(2000)
			testkit.Eventually(t, 3*time.Minute, fmt.Sprintf("kill %d: the group to handle %d more records", k, target-before), func() bool {
				_, h := s.ledger.Progress()
				return h >= target
			})
			i := rng.IntN(len(members))
			members[i].Kill()
			members[i] = testkit.StartChild(t, env, s.ledger, s.topic)
		}
		stopLoad()
		s.ledger.WaitAll(t, 3*time.Minute)
		exp, _, dups, _ := s.ledger.Counts()
		s.report("group-chaos-"+proto.String(), noBound, fmt.Sprintf("protocol=%s kills=%d session=%s duplicates_per_kill=%d duplicate_share=%.2f%%",
			proto, kills, memberSessionTO, dups/kills, 100*float64(dups)/float64(exp)))
	})
}

// TestStaticMemberRestart: a static member (consumer.InstanceID) that
// stops and comes back within its session timeout takes its partitions back
// without a rebalance: the other member's partitions are never revoked,
// and nothing is lost.
func TestStaticMemberRestart(t *testing.T) {
	c := integration.Shared(t)
	eachProtocol(t, c, memberSessionTO, func(t *testing.T, proto consumer.GroupProtocol) {
		if !c.Real() {
			integration.Unavailable(t, "static membership needs a real Kafka broker (kfake: %s)", c)
		}
		s := newScenario(t, c, 4, 1)
		stopLoad := s.load(testkit.NewProducer(t, c.Brokers), 20, 20*time.Millisecond)
		defer stopLoad()
		own := []*ownership{{}, {}}
		mk := func(id string, counts *atomic.Int64, o *ownership) *consumer.Runtime {
			rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
				s.ledger.Handled(r.Topic, r.Partition, r.Offset)
				counts.Add(1)
				return nil
			}, memberOpts(c.Brokers, s.topic, s.group, proto, consumer.InstanceID(s.group+"-"+id),
				consumer.WithHooks(o, commitChecker{s}))...)
			if err != nil {
				t.Fatal(err)
			}
			return rt
		}
		var na, nb atomic.Int64
		stopA := run(t, mk("a", &na, own[0]))
		run(t, mk("b", &nb, own[1]))
		testkit.Eventually(t, time.Minute, "the two members to own two partitions each", func() bool {
			return own[0].owned() == 2 && own[1].owned() == 2
		})
		progress(t, "member b to handle records", &nb, 50)
		settled := own[1].revoked()
		stopA()
		var na2 atomic.Int64
		run(t, mk("a", &na2, own[0]))
		progress(t, "member a, restarted, to handle records", &na2, 50)
		progress(t, "member b to go on after a came back", &nb, 200)
		if got := own[1].revoked(); got != settled {
			t.Errorf("member b had %d partitions revoked when static member a restarted: a rebalance happened", got-settled)
		}
		stopLoad()
		s.ledger.WaitAll(t, 2*time.Minute)
		s.report("static-restart-"+proto.String(), noBound, fmt.Sprintf("protocol=%s revoked_on_restart=%d", proto, own[1].revoked()-settled))
	})
}

// ownership is a HookRebalance keeping the partitions a member owns and
// how many it had revoked.
type ownership struct {
	mu   sync.Mutex
	now  map[string]map[int32]bool
	revs int
}

func (o *ownership) OnAssigned(m map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.now == nil {
		o.now = map[string]map[int32]bool{}
	}
	for t, ps := range m {
		if o.now[t] == nil {
			o.now[t] = map[int32]bool{}
		}
		for _, p := range ps {
			o.now[t][p] = true
		}
	}
}

func (o *ownership) drop(m map[string][]int32, revoked bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			delete(o.now[t], p)
			if revoked {
				o.revs++
			}
		}
	}
}

func (o *ownership) OnRevoked(m map[string][]int32, _ int) { o.drop(m, true) }
func (o *ownership) OnLost(m map[string][]int32, _ int)    { o.drop(m, false) }

func (o *ownership) owned() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, ps := range o.now {
		n += len(ps)
	}
	return n
}

func (o *ownership) revoked() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.revs
}

// eachProtocol runs f as a subtest under each group protocol, after
// checking that the brokers serve it (else the subtest is unavailable, see
// [integration.Unavailable]): KIP-848 groups, or classic sessions as short
// as classicSession.
func eachProtocol(t *testing.T, c *integration.Cluster, classicSession time.Duration, f func(t *testing.T, proto consumer.GroupProtocol)) {
	for _, proto := range []consumer.GroupProtocol{consumer.GroupProtocolClassic, consumer.GroupProtocolConsumer} {
		t.Run(proto.String(), func(t *testing.T) {
			if proto == consumer.GroupProtocolConsumer {
				c.RequireConsumerGroups(t)
			} else {
				c.RequireSessionTimeout(t, classicSession)
			}
			f(t, proto)
		})
	}
}
