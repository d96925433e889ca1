// Package integration runs floodgate's scenarios against a real broker and
// holds the helper that picks one.
//
// It is a module of its own (github.com/floodgate-kafka/floodgate/integration,
// with a replace to the root module and the repository's go.work joining the
// two), so that library users do not inherit testcontainers-go and the
// Docker client through the root go.mod. It imports the root module's
// internal/testkit, which Go allows: its import path nests under the
// internal directory's parent.
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
//     (FLOODGATE_KAFKA_IMAGE picks the image, [DefaultImage] otherwise; `scripts/kafka
//     image` builds one without an image registry); if the container
//     cannot start (no registry, say), the suite goes on as in 3 and says
//     why, or fails when a real broker is required;
//  3. else franz-go's embedded kfake cluster.
//
// FLOODGATE_REQUIRE_REAL_KAFKA=1 turns "no real broker" (the kfake
// fallback), and a fault test that cannot control brokers, into a test
// failure with a clear message; CI sets it. Elsewhere such tests are
// skipped with the same message.
//
// # Broker settings
//
// Every broker the suite starts runs with the settings of broker.properties
// (threads, partitions, and what scenarios rely on: classic sessions down to
// 1 s, KIP-848 sessions of 6 s): scripts/kafka writes them into its nodes,
// and the container gets them as KAFKA_* variables ([ContainerEnv]), which
// Confluent's images and the one scripts/kafka builds turn back into
// properties. FLOODGATE_KAFKA_SERVER_PROPS adds lines to both.
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
//
// BenchmarkLoopControl (run with -bench; skipped on kfake) judges the
// pressure loop as a control system: plain and pressure-aware producers
// side by side against a consumer of known capacity, overloaded, then
// recovering; BENCHMARKS.md at the repository's root has the command and
// the figures.
//
// A scenario that cannot run on a kind says why and skips instead of timing
// out: the broker restart and the cluster fault need scripts/kafka and skip
// on the container kind even when a real broker is required (a restarted
// container gets a new mapped port; CI runs them on scripts/kafka), see
// [Cluster.RequireScript]; KIP-848 groups skip on a broker that does not
// serve them ([Cluster.RequireConsumerGroups]); consumers whose session
// timeout the brokers refuse skip ([Cluster.RequireSessionTimeout]).
package integration
