package producer_test

import (
	"fmt"

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
