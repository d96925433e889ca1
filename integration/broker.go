package integration

import (
	"context"
	_ "embed"
	"errors"
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
	"github.com/twmb/franz-go/pkg/kmsg"
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
	// EnvServerProps holds extra broker settings (key=value lines) for
	// every broker the suite starts, after those of broker.properties.
	EnvServerProps = "FLOODGATE_KAFKA_SERVER_PROPS"
	// EnvContainerLabel is a label (key=value) put on the Kafka container,
	// so that whoever runs the suite can find and remove what a killed
	// test binary left behind (.ci/run does).
	EnvContainerLabel = "FLOODGATE_KAFKA_CONTAINER_LABEL"
)

// DefaultImage is the container image used when FLOODGATE_KAFKA_IMAGE is
// unset. testcontainers-go's Kafka module drives Confluent's packaging of
// Apache Kafka (confluent-local; 8.3 ships Kafka 4.3, the major version of
// scripts/kafka's 4.4.0), or an image with the same start-up layout, such
// as the one `scripts/kafka image` builds from the Apache Kafka jars.
const DefaultImage = "confluentinc/confluent-local:8.3.1"

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
	// Image is the container image, for the container kind.
	Image string
	// Fallback says why the suite runs on kfake although a Docker engine
	// answers: the container that could not start, and its error.
	Fallback string

	// noConsumerGroups says why the brokers do not serve KIP-848 groups
	// (empty if they do, or for kfake); see [Cluster.RequireConsumerGroups].
	noConsumerGroups string
	// minSession is the brokers' group.min.session.timeout.ms (0 if
	// unknown); see [Cluster.RequireSessionTimeout].
	minSession time.Duration

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
	if c.Image != "" {
		s += " (image " + c.Image + ")"
	}
	if c.Script != nil {
		s += " (controlled by " + c.Script.Path + ")"
	}
	if c.Fallback != "" {
		s += " (" + c.Fallback + ")"
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
			shared.probe()
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
		// A throwaway broker: no graceful stop to wait for.
		_ = testcontainers.TerminateContainer(shared.container, testcontainers.StopContext(ctx), testcontainers.StopTimeout(time.Second))
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
	var fallback string
	if dockerReachable() {
		c, err := startContainer()
		if err == nil {
			return c, nil
		}
		// A Docker engine that cannot run the image (no registry, say) is
		// no broker: where a real one is required that is the failure,
		// elsewhere the suite goes on on kfake and says why.
		fallback = fmt.Sprintf("a Docker engine answers, but %v; without an image registry build an image with `scripts/kafka image` and set %s to it", err, EnvImage)
		if RequireReal() {
			return nil, errors.New(fallback)
		}
		fmt.Fprintf(os.Stderr, "integration: %s; falling back to kfake\n", fallback)
	}
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("starting kfake: %w", err)
	}
	return &Cluster{Kind: Fake, Brokers: fake.ListenAddrs(), Fallback: fallback, fake: fake}, nil
}

// probe asks the brokers which Kafka release they are (from the API
// versions they serve), whether they serve KIP-848 consumer groups, and
// their smallest classic session timeout.
func (c *Cluster) probe() {
	c.Version, c.noConsumerGroups = "version unknown", "the brokers' API versions are unknown"
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		c.Version += ": " + err.Error()
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		c.Version += ": " + err.Error()
		return
	}
	guesses := map[string]bool{}
	var out []string
	c.noConsumerGroups = ""
	for _, v := range vs.Sorted() {
		g := "unreachable"
		if v.Err == nil {
			g = v.VersionGuess()
			if why := consumerGroupsMissing(v.Raw()); why != "" && c.noConsumerGroups == "" {
				c.noConsumerGroups = fmt.Sprintf("broker %d: %s", v.NodeID, why)
			}
		} else if c.noConsumerGroups == "" {
			c.noConsumerGroups = fmt.Sprintf("broker %d: %v", v.NodeID, v.Err)
		}
		if !guesses[g] {
			guesses[g] = true
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		c.Version += ": no brokers in metadata"
		return
	}
	c.Version = strings.Join(out, " / ")

	// The brokers' static config holds the session bounds; any broker's
	// answer stands for all (the suite's brokers share one config).
	if rcs, err := adm.DescribeBrokerConfigs(ctx, vs.Sorted()[0].NodeID); err == nil {
		for _, rc := range rcs {
			for _, cfg := range rc.Configs {
				if cfg.Key == "group.min.session.timeout.ms" {
					if ms, err := strconv.Atoi(cfg.MaybeValue()); err == nil {
						c.minSession = time.Duration(ms) * time.Millisecond
					}
				}
			}
		}
	}
}

// consumerGroupsMissing says why a broker with these API versions does not
// serve KIP-848 consumer groups, or "" if it does: it must offer
// ConsumerGroupHeartbeat and have the feature group.version finalized at 1
// or more (Kafka 4.0 on, by default).
func consumerGroupsMissing(v *kmsg.ApiVersionsResponse) string {
	if v == nil {
		return "no API versions"
	}
	heartbeat := false
	for _, k := range v.ApiKeys {
		if k.ApiKey == kmsg.ConsumerGroupHeartbeat.Int16() {
			heartbeat = true
		}
	}
	if !heartbeat {
		return "no ConsumerGroupHeartbeat API (KIP-848 groups need Kafka 4.0 or later)"
	}
	for _, f := range v.FinalizedFeatures {
		if f.Name == "group.version" && f.MaxVersionLevel >= 1 {
			return ""
		}
	}
	return "the feature group.version is not finalized at 1 or more (KIP-848 groups need Kafka 4.0 or later, or the feature enabled)"
}

// RequireConsumerGroups skips the test unless the cluster serves KIP-848
// consumer groups (the "consumer" protocol): kfake does not (a failure
// when a real broker is required, see [Unavailable]), nor does Kafka
// before 4.0 (a skip with the reason, whatever is required: the broker
// is real, only too old for this feature).
func (c *Cluster) RequireConsumerGroups(tb testing.TB) {
	tb.Helper()
	if !c.Real() {
		Unavailable(tb, "KIP-848 groups need a real Kafka 4.x broker (%s)", c)
		return
	}
	if c.noConsumerGroups != "" {
		tb.Skipf("KIP-848 consumer groups are not served by %s: %s", c, c.noConsumerGroups)
	}
}

// RequireSessionTimeout skips the test (see [Unavailable]) when its
// classic-protocol consumers ask for a session timeout d that the brokers
// refuse, because their group.min.session.timeout.ms is above it: such a
// consumer never joins, and the test would only time out. The brokers
// the suite starts allow 1s (broker.properties).
func (c *Cluster) RequireSessionTimeout(tb testing.TB, d time.Duration) {
	tb.Helper()
	if c.minSession > d {
		Unavailable(tb, "the consumers here ask for a %v session timeout, but the brokers' group.min.session.timeout.ms is %d (%s): set it to %d or less, as broker.properties does for the brokers the suite starts",
			d, c.minSession.Milliseconds(), c, d.Milliseconds())
	}
}

// RequireScript skips the test unless scripts/kafka started the cluster
// and FLOODGATE_KAFKA_SCRIPT lets the test stop and restart its brokers.
// On the container kind it always skips, a real broker required or not: a
// restarted container comes back on a new mapped port, which the clients'
// seed brokers and the advertised listener do not know, so CI runs these
// tests on scripts/kafka.
func (c *Cluster) RequireScript(tb testing.TB, what string) {
	tb.Helper()
	if c.Kind == Container {
		tb.Skipf("%s needs a cluster started by scripts/kafka, not a container: a restarted container gets a new mapped port (CI runs this on scripts/kafka)", what)
	}
	if c.Script == nil {
		Unavailable(tb, "%s needs a cluster started by scripts/kafka: set %s to its bootstrap and %s to the script", what, EnvBrokers, EnvScript)
	}
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
	env, err := ContainerEnv()
	if err != nil {
		return nil, err
	}
	opts := []testcontainers.ContainerCustomizer{tckafka.WithClusterID("floodgate-test"), testcontainers.WithEnv(env)}
	if l := os.Getenv(EnvContainerLabel); l != "" {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s=%q: want key=value", EnvContainerLabel, l)
		}
		opts = append(opts, testcontainers.WithLabels(map[string]string{k: v}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kc, err := tckafka.Run(ctx, image, opts...)
	if err != nil {
		_ = testcontainers.TerminateContainer(kc, testcontainers.StopTimeout(time.Second))
		return nil, fmt.Errorf("starting Kafka container %s: %w", image, err)
	}
	brokers, err := kc.Brokers(ctx)
	if err != nil {
		_ = testcontainers.TerminateContainer(kc, testcontainers.StopTimeout(time.Second))
		return nil, fmt.Errorf("container brokers: %w", err)
	}
	return &Cluster{Kind: Container, Brokers: brokers, Image: image, container: kc}, nil
}

//go:embed broker.properties
var brokerProperties string

// Setting is one broker setting.
type Setting struct{ Key, Value string }

// BrokerSettings returns the settings of every broker the suite starts,
// in order: those of broker.properties (scripts/kafka writes them into its
// nodes' server.properties, for one node as here, replication scaled to its
// cluster), then the lines of FLOODGATE_KAFKA_SERVER_PROPS.
func BrokerSettings() ([]Setting, error) {
	out, err := parseProperties("broker.properties", brokerProperties)
	if err != nil {
		return nil, err
	}
	extra, err := parseProperties(EnvServerProps, os.Getenv(EnvServerProps))
	if err != nil {
		return nil, err
	}
	return append(out, extra...), nil
}

// parseProperties reads key=value lines; blank lines and lines starting
// with # or ! are comments. Keys are lower case, as Kafka's are, so that
// they survive the trip through an environment variable's name.
func parseProperties(name, text string) ([]Setting, error) {
	var out []Setting
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s, line %d: %q is not key=value", name, i+1, line)
		}
		if propertyName(envName(k)) != k {
			return nil, fmt.Errorf("%s, line %d: key %q does not survive the trip through a KAFKA_* variable (lower-case letters, digits, dots, single dashes and underscores)", name, i+1, k)
		}
		out = append(out, Setting{k, v})
	}
	return out, nil
}

// ContainerEnv returns [BrokerSettings] as the KAFKA_* environment a Kafka
// container turns into its properties, as Confluent's images and the one
// `scripts/kafka image` builds do: KAFKA_, then the key in upper case with
// "_" for ".", "__" for "_" and "___" for "-" (log.segment.bytes becomes
// KAFKA_LOG_SEGMENT_BYTES). A later setting of a key wins.
func ContainerEnv() (map[string]string, error) {
	settings, err := BrokerSettings()
	if err != nil {
		return nil, err
	}
	env := make(map[string]string, len(settings))
	for _, s := range settings {
		env[envName(s.Key)] = s.Value
	}
	return env, nil
}

// envName is the KAFKA_* variable of a broker property.
func envName(key string) string {
	r := strings.NewReplacer("_", "__", "-", "___", ".", "_")
	return "KAFKA_" + strings.ToUpper(r.Replace(key))
}

// propertyName is the property of a KAFKA_* variable, as Confluent's
// images decode it.
func propertyName(env string) string {
	s := strings.ToLower(strings.TrimPrefix(env, "KAFKA_"))
	s = strings.ReplaceAll(s, "_", ".")
	s = strings.ReplaceAll(s, "...", "-")
	return strings.ReplaceAll(s, "..", "_")
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
