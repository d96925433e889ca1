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
// destination's records only while a live signal says it is ok and has
// room: at ok a signal suggests the room its consumers have (a little
// under their measured capacity, or a little over what they drain while
// they keep up and their capacity is unknown or stale: they probe). The
// relay fills what the destination's producers leave of that room (it
// measures the destination's incoming rate and its own), at most
// [RelayConfig].SuggestedShare of the room and Rate, climbing from a
// tenth of it over Ramp, so that it never pushes the consumers back under
// pressure as they recover. A signal at ok that suggests no room (the
// consumers idle, their capacity unknown) gets [DefaultProbeRate]. Under
// pressure, and without a live signal, it waits, pausing the deferred
// partitions, and says why ([RelayStats].Destinations): deferred work is
// the one place where no signal must not mean "go" (a relay whose
// consumers' monitor is down would pour its backlog into consumers
// nobody measures); [RelayConfig].WithoutSignal relays without one, at
// Rate.
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
// deferred partition.
//
// A key is held from the moment a record of it is handed to the lane
// until the relay's group has committed past its last known deferred
// record in every deferred partition that holds one. The lane knows the
// records it deferred, and follows the deferred topics for the others
// (what other producers, or itself before a restart, deferred): from the
// relay's committed offsets on, reading what they hold before
// [Lane.Start] returns, and following the partitions added to them later
// within PollInterval plus the age of the follower's metadata
// (kgo.MetadataMinAge, 5s by default). Across producers, a key deferred
// by another one is held once the follower has read it: a record of the
// key produced directly in that window can still overtake it.
//
// What is guaranteed: the records of a key that one key-ordered producer
// hands over reach the destination in the order it handed them over (at
// least once: a record delivered again, below, may also appear after
// later ones), on these conditions:
//
//   - Partitioner. The relay keeps each deferred partition's order and
//     delivers partitions independently, so a key's deferred records must
//     be in one partition: the lane's client must put a keyed record in
//     the partition murmur2 of its key picks, as kgo's default partitioner
//     does (and Kafka's, so that every producer deferring the key puts it
//     in the same partition). [NewLane] checks the client's partitioner
//     (kgo.RecordPartitioner) and refuses another. Records written to a
//     deferred topic by other tools stay where they were written. The
//     relay produces with its own client's partitioner (kgo's default
//     unless [RelayConfig].KgoOpts set one): it must agree with the
//     producer's for a key's relayed and direct records to share a
//     destination partition, as consumers' order is a partition's.
//   - The deferred topic's partition count does not change while it
//     holds records of the key. After a change, the key's later deferred
//     records go to another partition (murmur2 modulo the new count); the
//     relay may deliver them before the earlier ones, which wait in the
//     old partition. The lane still holds the key until every partition
//     holding one of its records is delivered past it, so records
//     produced directly come after all of them. Add partitions to a
//     deferred topic once it is drained ("floodgate deferred status"
//     shows its backlog).
//   - No divert. The relay retries a record it cannot produce in place,
//     holding its partition back: order is kept, and the partition waits.
//     A relay given a router ([RelayConfig].ConsumerOpts,
//     consumer.WithRouter; retrytopics) diverts such a record to a retry
//     tier or the quarantine lane and goes on: the divert is terminal for
//     its consumer runtime, which commits past the record, and the lane
//     releases the key although the record has not reached the
//     destination. The diverted record leaves its key's order: the
//     records of the key behind it on the deferred partition, and those
//     produced after the release, reach the destination before it; from a
//     retry tier it is delivered later; from the quarantine lane only if
//     it is replayed (dlq.Replay puts it back at the end of its deferred
//     topic, behind the key's later records), or never. The lane does not
//     hold the key until the divert is resolved: the relay delivers the
//     records behind the diverted one meanwhile, so holding would not
//     keep them behind it, and a quarantined record may never be
//     resolved. The relay's runtime counts diverts
//     ([Relay.Runtime]().Stats().Diverted). Give a relay that must keep
//     key order no router.
//   - Relay restarts and rebalances lose nothing and keep the hold: a
//     relay that stops, dies or loses a partition before it committed
//     delivers the uncommitted records again, so a key's records may
//     reach the destination twice (k-1 k-2 k-1 k-2); the key stays held
//     until the commit, so the records of it handed over meanwhile are
//     deferred behind them. A restarted producer's lane reads the held
//     keys again before its Start returns.
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
// records instead (a divert takes the record out of its key's order:
// see Ordering).
package deferred
