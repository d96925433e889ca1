package main

import (
	"strings"
	"testing"
)

const events = `{"Action":"start","Package":"example.com/m/partition"}
{"Action":"run","Package":"example.com/m/partition","Test":"TestA"}
{"Action":"pass","Package":"example.com/m/partition","Test":"TestA"}
{"Action":"run","Package":"example.com/m/partition","Test":"TestB"}
{"Action":"run","Package":"example.com/m/partition","Test":"TestB/sub"}
{"Action":"pass","Package":"example.com/m/partition","Test":"TestB/sub"}
{"Action":"pass","Package":"example.com/m/partition","Test":"TestB"}
{"Action":"pass","Package":"example.com/m/partition"}
{"Action":"run","Package":"example.com/m/integration","Test":"TestBurst"}
{"Action":"output","Package":"example.com/m/integration","Test":"TestBurst","Output":"integration: using kfake cluster at 127.0.0.1:3456\n"}
{"Action":"pass","Package":"example.com/m/integration","Test":"TestBurst"}
{"Action":"run","Package":"example.com/m/integration","Test":"TestBrokerRestart"}
{"Action":"output","Package":"example.com/m/integration","Test":"TestBrokerRestart","Output":"    scenarios_test.go:186: needs a real broker\n"}
{"Action":"skip","Package":"example.com/m/integration","Test":"TestBrokerRestart"}
{"Action":"run","Package":"example.com/m/integration","Test":"TestOrder"}
{"Action":"fail","Package":"example.com/m/integration","Test":"TestOrder"}
{"Action":"fail","Package":"example.com/m/integration"}
{"ImportPath":"example.com/m/dlq","Action":"build-output","Output":"dlq.go:1: syntax error\n"}
{"ImportPath":"example.com/m/dlq","Action":"build-fail"}
{"Action":"start","Package":"example.com/m/dlq"}
{"Action":"output","Package":"example.com/m/dlq","Output":"FAIL\texample.com/m/dlq [build failed]\n"}
{"Action":"fail","Package":"example.com/m/dlq","FailedBuild":"example.com/m/dlq"}
`

func TestSummarize(t *testing.T) {
	s, err := summarize(strings.NewReader(events))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	s.write(&b)
	want := "broker: integration ran on kfake cluster at 127.0.0.1:3456\n" +
		"tests: 4 passed, 2 failed, 1 skipped\n"
	if b.String() != want {
		t.Fatalf("got\n%swant\n%s", b.String(), want)
	}
}

func TestSummarizeRequireReal(t *testing.T) {
	s, err := summarize(strings.NewReader(events))
	if err != nil {
		t.Fatal(err)
	}
	s.requireReal = true
	var b strings.Builder
	s.write(&b)
	if !strings.Contains(b.String(), "kfake cluster at 127.0.0.1:3456 (FLOODGATE_REQUIRE_REAL_KAFKA=1 forbids it") {
		t.Fatalf("no hint about FLOODGATE_REQUIRE_REAL_KAFKA in\n%s", b.String())
	}
}

func TestSummarizeNoIntegration(t *testing.T) {
	s, err := summarize(strings.NewReader(`{"Action":"pass","Package":"example.com/m/partition","Test":"TestA"}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	s.write(&b)
	want := "broker: none (the integration suite was not run)\ntests: 1 passed, 0 failed, 0 skipped\n"
	if b.String() != want {
		t.Fatalf("got\n%swant\n%s", b.String(), want)
	}
}

func TestSummarizeBadEvent(t *testing.T) {
	if _, err := summarize(strings.NewReader("{not json\n")); err == nil {
		t.Fatal("no error for a broken event")
	}
}
