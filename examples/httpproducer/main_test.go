package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

func cluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// TestHandler: 202 without pressure; under a consumer's signal published
// on the control topic, 503 (shed, failing fast) and 429 (throttled)
// with a Retry-After header, by class; 400 for an unknown class and 405
// for anything but POST.
func TestHandler(t *testing.T) {
	brokers := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ensureTopics(ctx, brokers); err != nil {
		t.Fatal(err)
	}
	p, err := producer.New(producer.Brokers(brokers...), producer.ControlTopic(control), producer.Topics(topic),
		producer.MaxWait(0), producer.Measure(time.Hour, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler(p, topic))
	defer srv.Close()
	post := func(class string) (int, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/events?class="+class, "text/plain", strings.NewReader("e"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	expect := func(what, class string, code int, retryAfter bool) {
		t.Helper()
		got, ra := post(class)
		if got != code || (ra != "") != retryAfter {
			t.Errorf("%s, class %q: %d, Retry-After %q; want %d, with Retry-After %v", what, class, got, ra, code, retryAfter)
		}
		if retryAfter {
			if n, err := strconv.Atoi(ra); err != nil || n < 1 {
				t.Errorf("%s, class %q: Retry-After %q is not a whole number of seconds >= 1", what, class, ra)
			}
		}
	}
	for _, c := range []string{"critical", "normal", "bulk", ""} {
		expect("no pressure", c, http.StatusAccepted, false)
	}
	expect("an unknown class", "gold", http.StatusBadRequest, false)
	if resp, err := http.Get(srv.URL + "/events"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v, want 405", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}

	// The consumers' signals.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(lagmonitor.Partitioner(control, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pub, err := lagmonitor.NewPublisher(cl, control, lagmonitor.NewInstanceID(group))
	if err != nil {
		t.Fatal(err)
	}
	signal := func(level lagmonitor.Level, rate float64) {
		t.Helper()
		if _, err := pub.Publish(ctx, lagmonitor.Signal{Group: group, Topic: topic, Level: level, SuggestedRate: rate, Reason: "test", TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for ts := p.Stats().Topics[0]; ts.Level != level || ts.Pressure.Rate != rate; ts = p.Stats().Topics[0] {
			if time.Now().After(deadline) {
				t.Fatalf("the producer did not see level %s, rate %v, within 15s", level, rate)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	signal(lagmonitor.LevelCritical, 1e6)
	expect("critical", "critical", http.StatusAccepted, false)
	expect("critical", "normal", http.StatusServiceUnavailable, true) // fails fast
	expect("critical", "bulk", http.StatusServiceUnavailable, true)   // shed
	// High, one normal record per 1000s: its burst, then throttled.
	signal(lagmonitor.LevelHigh, 0.001)
	expect("high, the burst", "normal", http.StatusAccepted, false)
	expect("high, no token", "normal", http.StatusTooManyRequests, true)
	expect("high", "critical", http.StatusAccepted, false)
}

// TestDemo runs the demonstration, shortened: requests are answered 202
// while the consumer keeps up, 429 or 503 with a Retry-After header while
// it lags, and 202 again once it caught up.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demonstration takes about 15s")
	}
	cfg := defaultDemo()
	cfg.SlowFor, cfg.Bound = 6*time.Second, 40*time.Second
	var out strings.Builder
	res, err := demo(context.Background(), &out, cluster(t), cfg)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Recovered {
		t.Fatalf("the pressure did not fall back within %v", cfg.Bound)
	}
	refusedWithHint := 0
	for class, ks := range res.All {
		for k, n := range ks {
			switch k.Code {
			case http.StatusAccepted:
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				if k.RetryAfter == "" {
					t.Errorf("%d requests of class %s answered %d without a Retry-After header", n, class, k.Code)
				}
			default:
				t.Errorf("%d requests of class %s answered %d", n, class, k.Code)
			}
		}
	}
	for _, ks := range res.Pressure {
		for k, n := range ks {
			if k.Code != http.StatusAccepted && k.RetryAfter != "" {
				refusedWithHint += n
			}
		}
	}
	if refusedWithHint == 0 {
		t.Errorf("no request was answered 429 or 503 with a Retry-After while the producer was under pressure: %s", res.Pressure)
	}
	for _, class := range priority.Default.Classes() {
		ks := res.After[class]
		if ks[statusKey{Code: http.StatusAccepted}] == 0 {
			t.Errorf("no request of class %s accepted after the recovery: %v", class, ks)
		}
		for k, n := range ks {
			if k.Code != http.StatusAccepted {
				t.Errorf("%d requests of class %s answered %d after the recovery", n, class, k.Code)
			}
		}
	}
	if res.All[priority.Critical][statusKey{Code: http.StatusAccepted}] == 0 {
		t.Errorf("no critical request accepted: %v", res.All[priority.Critical])
	}
}
