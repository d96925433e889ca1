package producer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
	"github.com/floodgate-kafka/floodgate/producer"
)

func ExampleDefaultPolicy() {
	fmt.Print(producer.DefaultPolicy(priority.Default))
	// Output:
	// level      critical   normal     bulk
	// ok         admit      admit      admit
	// elevated   admit      admit      limit
	// high       admit      limit      shed
	// critical   limit      fail-fast  shed
}

// A policy of one's own: critical work is limited from high on, and bulk
// work is deferred rather than shed (which needs a Deferrer).
func ExamplePolicy_With() {
	p := producer.DefaultPolicy(priority.Default).
		With(lagmonitor.LevelHigh, priority.Critical, producer.Limit).
		With(lagmonitor.LevelHigh, priority.Bulk, producer.Defer).
		With(lagmonitor.LevelCritical, priority.Bulk, producer.Defer)
	if err := p.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(p)
	// Output:
	// level      critical   normal     bulk
	// ok         admit      admit      admit
	// elevated   admit      admit      limit
	// high       limit      limit      defer
	// critical   limit      fail-fast  defer
}

// Orders of one's own map onto the default table by rank.
func ExampleDefaultPolicy_order() {
	o, _ := priority.NewOrder("gold", "silver", "bronze", "scrap")
	fmt.Print(producer.DefaultPolicy(o))
	// Output:
	// level      gold       silver     bronze     scrap
	// ok         admit      admit      admit      admit
	// elevated   admit      admit      admit      limit
	// high       admit      limit      limit      shed
	// critical   limit      fail-fast  fail-fast  shed
}

// A producer in an HTTP handler: a refused record becomes a 429 or 503
// with a Retry-After header.
func Example() {
	p, err := producer.New(
		producer.Brokers("localhost:9092"),
		producer.ControlTopic("floodgate.pressure"),
		producer.Topics("orders"),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if err := p.Start(context.Background()); err != nil {
		log.Fatal(err)
	}

	http.HandleFunc("/orders", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		ctx := producer.WithClass(req.Context(), priority.Normal)
		err := p.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: body}).FirstErr()
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
	})
}
