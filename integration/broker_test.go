package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestBrokerSettings(t *testing.T) {
	t.Setenv(EnvServerProps, "")
	settings, err := BrokerSettings()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range settings {
		got[s.Key] = s.Value
	}
	// What the scenarios rely on: TestCrashKill's children ask for a 3 s
	// session, KIP-848 groups get 6 s / 500 ms from the broker.
	for k, want := range map[string]string{
		"group.min.session.timeout.ms":         "1000",
		"group.consumer.session.timeout.ms":    "6000",
		"group.consumer.heartbeat.interval.ms": "500",
		"group.initial.rebalance.delay.ms":     "0",
		"offsets.topic.replication.factor":     "1",
	} {
		if got[k] != want {
			t.Errorf("%s=%q, want %q", k, got[k], want)
		}
	}
	env, err := ContainerEnv()
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != len(got) {
		t.Errorf("%d variables for %d settings", len(env), len(got))
	}
	for _, want := range []string{"KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS=1000", "KAFKA_LOG_SEGMENT_BYTES=16777216", "KAFKA_NUM_NETWORK_THREADS=2"} {
		k, v, _ := strings.Cut(want, "=")
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
}

func TestServerPropsOverride(t *testing.T) {
	t.Setenv(EnvServerProps, "# extra\ngroup.min.session.timeout.ms = 2000\n\nsome_key-x.y=a=b\n")
	env, err := ContainerEnv()
	if err != nil {
		t.Fatal(err)
	}
	if got := env["KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS"]; got != "2000" {
		t.Errorf("a later setting does not win: %q", got)
	}
	if got := env["KAFKA_SOME__KEY___X_Y"]; got != "a=b" {
		t.Errorf("KAFKA_SOME__KEY___X_Y=%q, want a=b (env %v)", got, env)
	}
	for _, bad := range []string{"no-equals-sign", "Upper.Case=1", "a_.b=1", "=1"} {
		t.Setenv(EnvServerProps, bad)
		if _, err := ContainerEnv(); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

func TestEnvNames(t *testing.T) {
	for key, env := range map[string]string{
		"advertised.listeners":           "KAFKA_ADVERTISED_LISTENERS",
		"log.cleaner.dedupe.buffer.size": "KAFKA_LOG_CLEANER_DEDUPE_BUFFER_SIZE",
		"a_b.c":                          "KAFKA_A__B_C",
		"a-b":                            "KAFKA_A___B",
	} {
		if got := envName(key); got != env {
			t.Errorf("envName(%q) = %q, want %q", key, got, env)
		}
		if got := propertyName(env); got != key {
			t.Errorf("propertyName(%q) = %q, want %q", env, got, key)
		}
	}
}

// TestImageConfigure runs the configure script of the image `scripts/kafka
// image` builds with the environment testcontainers-go's Kafka module and
// ContainerEnv give a container: the properties it writes are the broker
// settings, the module's listeners, and nothing of the launcher's or the
// REST proxy's variables.
func TestImageConfigure(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "kafka.d", "image", "configure")
	if _, err := os.Stat(script); err != nil {
		t.Skipf("no image configure script: %v", err)
	}
	env, err := ContainerEnv()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "kafka.properties")
	cmd := exec.Command("bash", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KAFKA_PROPERTIES_FILE=" + out,
		// Some of the module's variables (testcontainers-go v0.40).
		"KAFKA_LISTENERS=PLAINTEXT://0.0.0.0:9093,BROKER://0.0.0.0:9092,CONTROLLER://0.0.0.0:9094",
		"KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://127.0.0.1:32768,BROKER://abc:9092",
		"KAFKA_REST_BOOTSTRAP_SERVERS=PLAINTEXT://0.0.0.0:9093",
		"KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS=1", // the module's; broker.properties says 10
		"KAFKA_HEAP_OPTS=-Xmx1g",
	}
	// Of duplicate variables exec keeps the last, as the container request's
	// map keeps ContainerEnv's value over the module's.
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("configure: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	props, err := parseProperties(out, string(b))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range props {
		got[p.Key] = p.Value
	}
	settings, _ := BrokerSettings()
	for _, s := range settings {
		if got[s.Key] != s.Value {
			t.Errorf("%s=%q in the container's properties, want %q", s.Key, got[s.Key], s.Value)
		}
	}
	if got["advertised.listeners"] != "PLAINTEXT://127.0.0.1:32768,BROKER://abc:9092" || got["log.dirs"] == "" {
		t.Errorf("advertised.listeners=%q, log.dirs=%q", got["advertised.listeners"], got["log.dirs"])
	}
	for _, k := range []string{"rest.bootstrap.servers", "heap.opts", "properties.file"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s in the broker's properties", k)
		}
	}
	if want := len(settings) + 3; len(got) != want { // listeners, advertised.listeners, log.dirs
		t.Errorf("%d properties, want %d:\n%s", len(got), want, b)
	}
}

func TestConsumerGroupsMissing(t *testing.T) {
	heartbeat := kmsg.ApiVersionsResponseApiKey{ApiKey: kmsg.ConsumerGroupHeartbeat.Int16(), MaxVersion: 1}
	groupVersion := func(level int16) kmsg.ApiVersionsResponseFinalizedFeature {
		return kmsg.ApiVersionsResponseFinalizedFeature{Name: "group.version", MaxVersionLevel: level, MinVersionLevel: level}
	}
	for _, tc := range []struct {
		name string
		resp kmsg.ApiVersionsResponse
		want string // a word of the reason; "" if served
	}{
		{"Kafka 3.x without the API", kmsg.ApiVersionsResponse{}, "ConsumerGroupHeartbeat"},
		{"the API, the feature off", kmsg.ApiVersionsResponse{ApiKeys: []kmsg.ApiVersionsResponseApiKey{heartbeat}, FinalizedFeatures: []kmsg.ApiVersionsResponseFinalizedFeature{groupVersion(0)}}, "group.version"},
		{"the API, no feature", kmsg.ApiVersionsResponse{ApiKeys: []kmsg.ApiVersionsResponseApiKey{heartbeat}}, "group.version"},
		{"Kafka 4.x", kmsg.ApiVersionsResponse{ApiKeys: []kmsg.ApiVersionsResponseApiKey{heartbeat}, FinalizedFeatures: []kmsg.ApiVersionsResponseFinalizedFeature{groupVersion(1)}}, ""},
	} {
		got := consumerGroupsMissing(&tc.resp)
		if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want a reason naming %q", tc.name, got, tc.want)
		}
	}
}
