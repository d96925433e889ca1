// Package integration runs floodgate's scenarios against a real broker and
// holds the helper that picks one.
//
// # Which broker
//
// [Shared] picks the cluster for a test binary once, and logs which on
// stderr ("integration: using ..."; scripts/test repeats it at the end), with
// the Kafka release a real cluster's API versions point to:
//
//  1. FLOODGATE_KAFKA_BROKERS=host:port,... names a running cluster (for
//     example the one `scripts/kafka start` prints); if FLOODGATE_KAFKA_SCRIPT
//     names the scripts/kafka that started it, fault tests may stop and
//     restart its brokers;
//  2. else, when a Docker engine is reachable, testcontainers-go's Kafka
//     module starts a single-node KRaft broker in a container
//     (FLOODGATE_KAFKA_IMAGE picks the image);
//  3. else franz-go's embedded kfake cluster.
//
// FLOODGATE_REQUIRE_REAL_KAFKA=1 turns "no real broker" (the kfake
// fallback), and a fault test that cannot control brokers, into a test
// failure with a clear message; CI sets it. Elsewhere such tests are
// skipped with the same message.
//
// # Scenarios
//
// The same tests run on every broker kind: a burst within bounds with
// pause/resume, ordering, consumers killed with SIGKILL (child processes)
// and restarted, a rebalance storm, a broker restart and, with a 3-node
// cluster started through FLOODGATE_KAFKA_SCRIPT, a broker killed under
// replication factor 3. That cluster runs beside the first, in the run dir
// and ports [FaultEnv] derives from FLOODGATE_KAFKA_RUN and
// FLOODGATE_KAFKA_PORT_BASE. Each accounts for every record and checks at every
// commit that nothing was committed past a record not yet handled.
// FLOODGATE_SCENARIO_SCALE (default 1) multiplies their sizes.
package integration
