package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kind says what a [Cluster] runs on.
type Kind string

// The kinds of cluster.
const (
	Existing  Kind = "existing"  // named by FLOODGATE_KAFKA_BROKERS
	Container Kind = "container" // testcontainers-go
	Fake      Kind = "kfake"     // franz-go's embedded fake
)

// Environment variables the helper reads.
const (
	EnvBrokers     = "FLOODGATE_KAFKA_BROKERS"
	EnvScript      = "FLOODGATE_KAFKA_SCRIPT"
	EnvRequireReal = "FLOODGATE_REQUIRE_REAL_KAFKA"
	EnvImage       = "FLOODGATE_KAFKA_IMAGE"
	EnvScale       = "FLOODGATE_SCENARIO_SCALE"
	// EnvRun and EnvPortBase are scripts/kafka's run dir and port base;
	// [FaultEnv] derives the cluster-fault test's own cluster from them.
	EnvRun      = "FLOODGATE_KAFKA_RUN"
	EnvPortBase = "FLOODGATE_KAFKA_PORT_BASE"
)

// DefaultImage is the container image used when FLOODGATE_KAFKA_IMAGE is
// unset. testcontainers-go's Kafka module drives Confluent's packaging of
// Apache Kafka (confluent-local), so that is what it can start.
const DefaultImage = "confluentinc/confluent-local:7.9.0"

// Cluster is a broker cluster the tests run against.
type Cluster struct {
	Kind    Kind
	Brokers []string
	// Script controls the brokers when the cluster was started by
	// scripts/kafka (nil otherwise).
	Script *Script
	// Version is the Kafka release the brokers' ApiVersions answer points
	// to (franz-go's kversion guess, such as "v4.4"; patch releases look
	// alike), or why it is unknown. Empty for kfake.
	Version string

	fake      *kfake.Cluster
	container *tckafka.KafkaContainer
}

// Real reports whether c is a real Apache Kafka, not kfake.
func (c *Cluster) Real() bool { return c.Kind != Fake }

func (c *Cluster) String() string {
	s := fmt.Sprintf("%s cluster at %s", c.Kind, strings.Join(c.Brokers, ","))
	if c.Version != "" {
		s += ", Kafka " + c.Version
	}
	if c.Script != nil {
		s += " (controlled by " + c.Script.Path + ")"
	}
	return s
}

// RequireReal reports whether FLOODGATE_REQUIRE_REAL_KAFKA is set.
func RequireReal() bool {
	v := os.Getenv(EnvRequireReal)
	return v != "" && v != "0" && v != "false"
}

// Unavailable fails the test when a real broker is required (CI) and skips
// it otherwise, with the same message.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if RequireReal() {
		tb.Fatalf("%s (%s=1: a real broker is required)", msg, EnvRequireReal)
	}
	tb.Skip(msg)
}

var (
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
)

// Shared returns the cluster of this test binary, picking it on first use
// (see the package documentation). Call [Close] from TestMain.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = pick()
		if sharedErr == nil && shared.Real() {
			shared.Version = guessVersion(shared.Brokers)
		}
		if sharedErr == nil {
			fmt.Fprintf(os.Stderr, "integration: using %s\n", shared)
		}
	})
	if sharedErr != nil {
		tb.Fatalf("integration: %v", sharedErr)
	}
	if !shared.Real() && RequireReal() {
		tb.Fatalf("integration: no real broker: set %s (for example to what `scripts/kafka start` prints) or make a Docker engine reachable; %s=1 forbids the kfake fallback", EnvBrokers, EnvRequireReal)
	}
	tb.Logf("broker: %s", shared)
	return shared
}

// Close releases the shared cluster, if one was started.
func Close() {
	if shared == nil {
		return
	}
	if shared.fake != nil {
		shared.fake.Close()
	}
	if shared.container != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = testcontainers.TerminateContainer(shared.container, testcontainers.StopContext(ctx))
	}
}

func pick() (*Cluster, error) {
	if env := os.Getenv(EnvBrokers); env != "" {
		c := &Cluster{Kind: Existing, Brokers: strings.Split(env, ",")}
		if path := os.Getenv(EnvScript); path != "" {
			c.Script = &Script{Path: path}
		}
		return c, nil
	}
	if dockerReachable() {
		return startContainer()
	}
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("starting kfake: %w", err)
	}
	return &Cluster{Kind: Fake, Brokers: fake.ListenAddrs(), fake: fake}, nil
}

// guessVersion asks the brokers which Kafka release they are (from the
// API versions they serve) and returns the guess, or why there is none.
func guessVersion(brokers []string) string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return "version unknown: " + err.Error()
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	vs, err := kadm.NewClient(cl).ApiVersions(ctx)
	if err != nil {
		return "version unknown: " + err.Error()
	}
	guesses := map[string]bool{}
	var out []string
	for _, v := range vs.Sorted() {
		g := "unreachable"
		if v.Err == nil {
			g = v.VersionGuess()
		}
		if !guesses[g] {
			guesses[g] = true
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		return "version unknown: no brokers in metadata"
	}
	return strings.Join(out, " / ")
}

// dockerReachable reports whether a Docker engine answers on DOCKER_HOST or
// the default socket.
func dockerReachable() bool {
	network, addr := "unix", "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		switch {
		case strings.HasPrefix(h, "unix://"):
			addr = strings.TrimPrefix(h, "unix://")
		case strings.HasPrefix(h, "tcp://"):
			network, addr = "tcp", strings.TrimPrefix(h, "tcp://")
		default:
			return false
		}
	}
	conn, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	// A socket file can outlive its daemon: ask for the API version.
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 12)
	n, _ := conn.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "HTTP/1.") && strings.Contains(string(buf[:n]), " 200")
}

func startContainer() (*Cluster, error) {
	image := os.Getenv(EnvImage)
	if image == "" {
		image = DefaultImage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kc, err := tckafka.Run(ctx, image, tckafka.WithClusterID("floodgate-test"))
	if err != nil {
		return nil, fmt.Errorf("starting Kafka container %s: %w", image, err)
	}
	brokers, err := kc.Brokers(ctx)
	if err != nil {
		_ = testcontainers.TerminateContainer(kc)
		return nil, fmt.Errorf("container brokers: %w", err)
	}
	return &Cluster{Kind: Container, Brokers: brokers, container: kc}, nil
}

// Script runs scripts/kafka, which starts and faults a real Kafka on this
// machine.
type Script struct {
	Path string
	Env  []string // extra environment, e.g. FLOODGATE_KAFKA_RUN for a second cluster
}

// RepoScript returns the repository's scripts/kafka when it and the Java
// and Maven it needs are present, or an error saying what is missing.
func RepoScript() (*Script, error) {
	if p := os.Getenv(EnvScript); p != "" {
		return &Script{Path: p}, nil
	}
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "scripts", "kafka")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("scripts/kafka not found: %w", err)
	}
	for _, tool := range []string{"java", "mvn", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("scripts/kafka needs %s: %w", tool, err)
		}
	}
	return &Script{Path: path}, nil
}

// FaultEnv is the environment under which scripts/kafka runs a second
// cluster beside the one FLOODGATE_KAFKA_RUN and FLOODGATE_KAFKA_PORT_BASE
// name (or the script's defaults): run dir <run>-fault, port base
// <base>+10000 (the defaults give /tmp/floodgate-kafka-fault and 29092).
// Two test runs with their own run dirs and port bases thus never share a
// fault cluster (keep <base>+10201 below the ephemeral port range, 32768 on
// Linux). .ci/run derives the same to clean up.
func FaultEnv() []string {
	run := strings.TrimRight(os.Getenv(EnvRun), "/")
	if run == "" {
		run = filepath.Join(os.TempDir(), "floodgate-kafka")
	}
	base, err := strconv.Atoi(os.Getenv(EnvPortBase))
	if err != nil || base <= 0 {
		base = 19092
	}
	return []string{EnvRun + "=" + run + "-fault", EnvPortBase + "=" + strconv.Itoa(base+10000)}
}

// With returns a copy of s with extra environment.
func (s *Script) With(env ...string) *Script {
	return &Script{Path: s.Path, Env: append(append([]string(nil), s.Env...), env...)}
}

func (s *Script) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{s.Path}, args...)...)
	cmd.Env = append(os.Environ(), s.Env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", s.Path, strings.Join(args, " "), err, tail(stderr.String(), 2000))
	}
	return strings.TrimSpace(string(out)), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Start starts (or reuses) a cluster of the given size and returns its
// bootstrap brokers.
func (s *Script) Start(ctx context.Context, nodes int) ([]string, error) {
	out, err := s.run(ctx, "start", "--brokers", strconv.Itoa(nodes))
	if err != nil {
		return nil, err
	}
	lines := strings.Split(out, "\n")
	return strings.Split(strings.TrimSpace(lines[len(lines)-1]), ","), nil
}

// Stop stops the cluster and removes its data.
func (s *Script) Stop(ctx context.Context) error { _, err := s.run(ctx, "stop"); return err }

// KillBroker kills node n (1-based) with SIGKILL.
func (s *Script) KillBroker(ctx context.Context, n int) error {
	_, err := s.run(ctx, "kill-broker", strconv.Itoa(n))
	return err
}

// RestartBroker starts node n again and waits until it serves.
func (s *Script) RestartBroker(ctx context.Context, n int) error {
	_, err := s.run(ctx, "restart-broker", strconv.Itoa(n))
	return err
}

// CreateTopic creates topic with the given partitions and replication
// factor (and extra configs), failing the test on error.
func CreateTopic(tb testing.TB, brokers []string, topic string, partitions int32, rf int16, configs map[string]*string) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, rf, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		tb.Fatalf("creating topic %s (%d partitions, rf %d): %v", topic, partitions, rf, err)
	}
	// Wait until every partition has a leader that answers.
	deadline := time.Now().Add(time.Minute)
	for {
		md, err := kadm.NewClient(cl).Metadata(ctx, topic)
		if err == nil {
			if t, ok := md.Topics[topic]; ok && t.Err == nil && len(t.Partitions) == int(partitions) && allLed(t) {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("topic %s: partitions without leader after 1m (last error %v)", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func allLed(t kadm.TopicDetail) bool {
	for _, p := range t.Partitions {
		if p.Leader < 0 || p.Err != nil {
			return false
		}
	}
	return true
}

// Scale returns FLOODGATE_SCENARIO_SCALE applied to n (at least 1).
func Scale(n int) int {
	f, err := strconv.ParseFloat(os.Getenv(EnvScale), 64)
	if err != nil || f <= 0 {
		f = 1
	}
	return max(1, int(float64(n)*f))
}
