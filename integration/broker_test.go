package integration

import (
	"strings"
	"testing"
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
