// Command httpproducer is a pressure-aware HTTP producer: POST
// /events?class=bulk produces the request's body as a record of that class
// (critical, normal or bulk; normal by default) through a
// producer.Producer, and answers 202 Accepted once the broker has it, or,
// when admission refuses it, 429 Too Many Requests (throttled) or 503
// Service Unavailable (shed, or failing fast) with a Retry-After header.
//
// Run with no arguments, it shows itself at work and exits within about
// 30s: it serves on a loopback port, starts a consumer that is slow for
// a while (with a lag monitor publishing its pressure), fires requests of
// each class at the server, and prints, every second, the pressure level
// the producer obeys and the status codes and Retry-After values the
// requests got, as the pressure rises and, once the consumer is fast
// again, falls. It runs against an embedded kfake cluster unless
// FLOODGATE_KAFKA_BROKERS names a real one (host:port,...), on which it
// creates the topic events and the control topic floodgate.pressure if
// they are missing.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

const (
	topic   = "events"
	control = "floodgate.pressure"
	group   = "httpproducer-example"
)

// handler produces a POST's body to topic with p, by the class the query
// names, and answers with what admission and the broker made of it.
func handler(p *producer.Producer, topic string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST an event", http.StatusMethodNotAllowed)
			return
		}
		class := priority.Normal
		if q := r.URL.Query().Get("class"); q != "" {
			c, err := priority.Default.Parse(q)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			class = c
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		// kgo's Produce takes no per-call option: the context carries
		// the class (a floodgate-priority header would do as well).
		ctx := producer.WithClass(r.Context(), class)
		err = p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: body}).FirstErr()
		var refused *producer.RefusedError
		switch {
		case errors.As(err, &refused):
			w.Header().Set("Retry-After", strconv.Itoa(refused.RetryAfterSeconds()))
			http.Error(w, refused.Error(), refused.StatusCode())
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}
}

func main() {
	brokers, stop := brokers()
	defer stop()
	cfg := defaultDemo()
	res, err := demo(context.Background(), os.Stdout, brokers, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if res.Refused() == 0 {
		fmt.Println("no request was refused: the consumer kept up (a faster machine than expected?)")
	}
}

// demoConfig shapes the demonstration.
type demoConfig struct {
	// SlowFor is how long the consumer is slow, handling a record in
	// Slow (one at a time); then it is fast again.
	SlowFor, Slow time.Duration
	// Bound ends the demonstration whatever happened.
	Bound time.Duration
	// Rates are the requests per second by class.
	Rates map[priority.Class]float64
	// Thresholds are the monitor's levels.
	Thresholds lagmonitor.Thresholds
	// Ramp is the producer's recovery ramp.
	Ramp time.Duration
}

func defaultDemo() demoConfig {
	return demoConfig{
		SlowFor: 10 * time.Second, Slow: 20 * time.Millisecond, // 50 records/s
		Bound: 28 * time.Second,
		Rates: map[priority.Class]float64{priority.Critical: 5, priority.Normal: 40, priority.Bulk: 40},
		Thresholds: lagmonitor.Thresholds{
			Elevated:     lagmonitor.Mark{TimeLag: 500 * time.Millisecond},
			High:         lagmonitor.Mark{TimeLag: 1500 * time.Millisecond},
			Critical:     lagmonitor.Mark{TimeLag: 4 * time.Second},
			ExitFraction: 0.5,
			Dwell:        time.Second,
		},
		Ramp: 2 * time.Second,
	}
}

// statusKey is a status code and the Retry-After header that came with
// it ("" if none).
type statusKey struct {
	Code       int
	RetryAfter string
}

// tally counts the answers of each class.
type tally map[priority.Class]map[statusKey]int

func (t tally) add(class priority.Class, k statusKey) {
	if t[class] == nil {
		t[class] = map[statusKey]int{}
	}
	t[class][k]++
}

// demoResult is what the requests got: in all, while the producer was
// under pressure, and at the end, after the recovery.
type demoResult struct {
	All, Pressure, After tally
	// Recovered says whether the level came back to ok and the ramp
	// ended before the bound.
	Recovered bool
}

// Refused returns the requests answered 429 or 503.
func (r demoResult) Refused() int {
	n := 0
	for _, ks := range r.All {
		for k, c := range ks {
			if k.Code == http.StatusTooManyRequests || k.Code == http.StatusServiceUnavailable {
				n += c
			}
		}
	}
	return n
}

// demo runs the demonstration on brokers and writes what it sees to out.
func demo(ctx context.Context, out io.Writer, brokers []string, cfg demoConfig) (demoResult, error) {
	res := demoResult{All: tally{}, Pressure: tally{}, After: tally{}}
	if err := ensureTopics(ctx, brokers); err != nil {
		return res, err
	}

	// The consumer service: a runtime, slow for a while, and its lag
	// monitor, which publishes with the runtime's client.
	var slow atomic.Bool
	slow.Store(true)
	rt, err := consumer.New(func(ctx context.Context, r *kgo.Record) error {
		if slow.Load() {
			time.Sleep(cfg.Slow) // a slow downstream call
		}
		return nil
	},
		consumer.Brokers(brokers...), consumer.Group(group), consumer.Topics(topic),
		consumer.MaxConcurrency(1),
		consumer.KgoOpts(lagmonitor.ClientOpts(control)...),
	)
	if err != nil {
		return res, err
	}
	mon, err := lagmonitor.New(rt, lagmonitor.Config{Group: group, ControlTopic: control, Thresholds: cfg.Thresholds,
		Heartbeat: time.Second, RefreshInterval: 500 * time.Millisecond})
	if err != nil {
		return res, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- rt.Run(cctx) }()
	go func() { errc <- mon.Run(cctx) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-errc; err != nil {
				log.Print(err)
			}
		}
	}()

	// The HTTP service: a pressure-aware producer behind the handler.
	p, err := producer.New(producer.Brokers(brokers...), producer.ControlTopic(control), producer.Topics(topic),
		producer.MaxWait(200*time.Millisecond), producer.Ramp(cfg.Ramp))
	if err != nil {
		return res, err
	}
	defer p.Close()
	if err := p.Start(ctx); err != nil {
		return res, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	mux := http.NewServeMux()
	mux.Handle("/events", handler(p, topic))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		_ = p.Flush(sctx)
	}()
	url := "http://" + ln.Addr().String() + "/events?class="
	fmt.Fprintf(out, "serving POST %s{critical,normal,bulk}; the consumer handles %d records/s for %v, then is fast again\n",
		url, time.Second/cfg.Slow, cfg.SlowFor)

	// The callers: requests of each class at their rates.
	var (
		mu        sync.Mutex
		interval  = tally{}
		wg        sync.WaitGroup
		client    = &http.Client{Timeout: 5 * time.Second}
		stopLoad  = make(chan struct{})
		pressured atomic.Bool // the producer is under pressure or recovering
		after     atomic.Bool // back to ok, the ramp over
	)
	send := func(class priority.Class) {
		defer wg.Done()
		underPressure, recovered := pressured.Load(), after.Load() // as the request leaves
		resp, err := client.Post(url+string(class), "text/plain", strings.NewReader("an event of class "+string(class)))
		if err != nil {
			log.Print(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		k := statusKey{resp.StatusCode, resp.Header.Get("Retry-After")}
		mu.Lock()
		defer mu.Unlock()
		interval.add(class, k)
		res.All.add(class, k)
		if underPressure {
			res.Pressure.add(class, k)
		}
		if recovered {
			res.After.add(class, k)
		}
	}
	for class, perSec := range cfg.Rates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Duration(float64(time.Second) / perSec))
			defer tick.Stop()
			for {
				select {
				case <-stopLoad:
					return
				case <-tick.C:
					wg.Add(1)
					go send(class)
				}
			}
		}()
	}

	// Every second: the level the producer obeys, and the answers.
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var cleanSince time.Time // when the producer was last seen back at ok, its ramp over
	for range tick.C {
		elapsed := time.Since(start)
		if slow.Load() && elapsed >= cfg.SlowFor {
			slow.Store(false)
			fmt.Fprintf(out, "%5.1fs  the consumer is fast again\n", elapsed.Seconds())
		}
		ts := p.Stats().Topics[0]
		state := ts.Level.String()
		if ts.Recovering {
			state += " (recovering)"
		}
		pressured.Store(ts.Level > lagmonitor.LevelOK || ts.Recovering)
		mu.Lock()
		line := interval.String()
		interval = tally{}
		mu.Unlock()
		fmt.Fprintf(out, "%5.1fs  %-21s %s\n", elapsed.Seconds(), state, line)

		settled := !slow.Load() && ts.Level == lagmonitor.LevelOK && !ts.Recovering
		switch {
		case !settled:
			cleanSince = time.Time{}
		case cleanSince.IsZero():
			cleanSince = time.Now()
			after.Store(true)
		case time.Since(cleanSince) >= 2*time.Second:
			res.Recovered = true
		}
		if res.Recovered || elapsed >= cfg.Bound {
			break
		}
	}
	close(stopLoad)
	wg.Wait()
	if res.Recovered {
		fmt.Fprintln(out, "done: requests were refused with a Retry-After while the consumer lagged, and accepted again once it caught up")
	} else {
		fmt.Fprintf(out, "stopped at the %v bound before the pressure had fallen back\n", cfg.Bound)
	}
	fmt.Fprintf(out, "in all: %s\n", res.All.String())
	return res, nil
}

// String renders a tally: "critical 202×5 | normal 202×20 429×3 (Retry-After 1) | bulk 503×40 (Retry-After 5)".
func (t tally) String() string {
	var parts []string
	for _, class := range priority.Default.Classes() {
		ks := t[class]
		keys := make([]statusKey, 0, len(ks))
		for k := range ks {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b statusKey) int {
			if a.Code != b.Code {
				return a.Code - b.Code
			}
			return strings.Compare(a.RetryAfter, b.RetryAfter)
		})
		s := string(class)
		for _, k := range keys {
			s += fmt.Sprintf(" %d×%d", k.Code, ks[k])
			if k.RetryAfter != "" {
				s += fmt.Sprintf(" (Retry-After %s)", k.RetryAfter)
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " | ")
}

// brokers returns FLOODGATE_KAFKA_BROKERS, or starts an embedded cluster.
func brokers() ([]string, func()) {
	if env := os.Getenv("FLOODGATE_KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ","), func() {}
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		log.Fatal(err)
	}
	return c.ListenAddrs(), c.Close
}

// ensureTopics creates the topic (3 partitions) and the control topic if
// they are missing.
func ensureTopics(ctx context.Context, brokers []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 3, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating %s: %w", topic, err)
	}
	_, err = lagmonitor.EnsureControlTopic(ctx, cl, control, 3, 3*time.Second)
	return err
}
