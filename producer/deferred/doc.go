// Package deferred is the producer's deferred lane: records that a
// pressure-aware producer would shed are parked on a deferred topic
// instead, and a relay produces them to their destination once its
// consumers have caught up, so that shed work is reconciled rather than
// dropped.
//
// # The two halves
//
// A [Lane] is the producing side, a [producer.Deferrer]: give it to the
// producer with producer.WithDeferrer, and make the policy defer where it
// would shed (producer.Policy.DeferringShed):
//
//	lane, err := deferred.NewLane(cl, deferred.Config{Topics: []string{"orders"}})
//	if err != nil { ... }
//	defer lane.Close()
//	if err := lane.Start(ctx); err != nil { ... } // creates orders.deferred if missing; may be retried
//	p, err := producer.Wrap(cl, producer.ControlTopic("floodgate.pressure"), producer.Topics("orders"),
//		producer.WithPolicy(producer.DefaultPolicy(priority.Default).DeferringShed()),
//		producer.WithDeferrer(lane))
//
// A deferred record's promise gets nil once its copy is acknowledged on
// the deferred topic: like kgo's nil, it means that the record is
// durably in Kafka, and the relay delivers it; Decision hooks and the
// producer's Stats tell deferred records from produced ones. A record
// that cannot be deferred (the deferred topic refuses it) is shed after
// all, with the lane's error as the cause.
//
// A [Relay] is the delivering side: a floodgate consumer runtime in its
// own group on the deferred topics, run in the producer's process or in
// its own (the floodgate command's "deferred relay"). It delivers a
// destination's records only while its level is ok, within a rate (its
// own cap, [RelayConfig].Rate, and a share of the rate the ok signal
// suggests, so that it fills the room the consumers report and no more),
// pausing the deferred partitions of a destination under pressure.
// Under pressure the relay's handlers wait for the destination to be ok
// until their context ends: the relay's consumer runtime has short revoke
// and shutdown timeouts ([DefaultRelayRevokeTimeout],
// [DefaultRelayShutdownTimeout]; [RelayConfig].ConsumerOpts may set
// others), so that a rebalance or a stop under pressure takes seconds,
// not the runtime's default 10s and 30s; the records it cancels are
// delivered later, their offsets not committed.
// [NewRelay] builds its clients and [Relay.Run] releases them when it
// returns; [Relay.Close] releases them for a relay that does not reach
// Run, and stops one that is running:
//
//	r, err := deferred.NewRelay(deferred.RelayConfig{Brokers: brokers, ControlTopic: "floodgate.pressure", Topics: []string{"orders"}})
//	if err != nil { ... }
//	defer r.Close()
//	... // more setup
//	err = r.Run(ctx)
//
// # Delivery
//
// At least once, none lost: a deferred record's offset is committed only
// after its destination acknowledged it, so a relay killed at any moment
// delivers again from the last commit, and a producer restart loses
// nothing its promises acknowledged. The relayed record has the
// deferred record's key, value and headers, without the deferred headers
// (floodgate-deferred-*, [retrytopics.DeferredHeaderPrefix]), and a new
// timestamp: its consumers' time lag then measures their own queue, not
// the time the record spent deferred (which would hold the pressure up);
// the deferral time and the record's own timestamp stay readable on the
// deferred topic ([Decode]).
//
// # Ordering
//
// Records admitted directly can overtake deferred records of the same
// key: the deferred ones reach the destination when the relay delivers
// them, after the records admitted meanwhile. Where that matters, make
// the lane key-ordered ([Config].KeyOrdered): while a key has deferred
// records the relay has not delivered, the producer defers that key's
// later records too (even those of classes it admits; records without a
// key are never held), so they queue behind, in order, on the same
// deferred partition. A key is released once the relay's group has
// committed past its last deferred record. The lane learns which keys
// are held from its own deferrals and by following the deferred topics
// (what other producers, or itself before a restart, deferred), from the
// relay's committed offsets on, and reads what they hold before [Lane.Start]
// returns. A key-ordered lane therefore also orders records across
// producers, within the time its follower takes to read a deferral of
// another producer (a record of the key produced directly in that window
// can still overtake). The relay keeps each deferred partition's order.
//
// # Malformed input
//
// The relay routes a record by the deferred topic it is on, never by its
// headers: a record written to a deferred topic by another tool, with
// deferred headers missing, malformed or naming another destination, is
// delivered to the topic's destination, counted ([RelayStats].Malformed)
// and reported in [RelayStats].LastErr. A record that cannot be produced
// to its destination is retried in place (the consumer runtime's
// backoff), holding its partition back; give the relay a router
// ([RelayConfig].ConsumerOpts, consumer.WithRouter) to quarantine such
// records instead.
package deferred
