package lagmonitor

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Level is a pressure level, from no pressure to the most. Levels order:
// a higher level is more pressure.
type Level int8

// The pressure levels.
const (
	LevelOK       Level = iota // no pressure: producers produce freely
	LevelElevated              // the consumer falls behind
	LevelHigh                  // it falls behind fast, or far
	LevelCritical              // it is far behind: producers shed what they can
)

var levelNames = [...]string{"ok", "elevated", "high", "critical"}

func (l Level) String() string {
	if l >= LevelOK && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", int8(l))
}

// ParseLevel parses a level's name as [Level.String] writes it.
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if s == n {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("lagmonitor: unknown level %q", s)
}

// SignalVersion is the version of the signal format this package writes.
// Readers reject other versions (counted as malformed).
const SignalVersion = 1

// Signal is the pressure one consumer instance reports, for one group, on
// one topic it consumes: the contract between the consumers that publish
// it on the control topic and the producers that obey it. It is written as
// JSON so that any Kafka tool shows it.
type Signal struct {
	Version  int    // SignalVersion
	Group    string // the consumer group
	Topic    string // the topic consumed (a producer's destination)
	Instance string // the publishing instance; carries a start nonce, so one per incarnation
	Seq      uint64 // per instance (incarnation), strictly increasing
	Level    Level
	// OffsetLag is the records not yet handled, summed over the
	// instance's partitions of Topic.
	OffsetLag int64
	// TimeLag is the age of the oldest record not yet handled, the
	// largest over the instance's partitions of Topic.
	TimeLag time.Duration
	// DrainRate is the records handled per second, smoothed.
	DrainRate float64
	// SuggestedRate is the rate producers together should stay under,
	// in records per second; 0 means no suggestion.
	SuggestedRate float64
	// Paused counts the instance's partitions of Topic by pause reason
	// (the reason's name: "window_full", "lag", ...).
	Paused map[string]int `json:",omitempty"`
	// Reason says in words why the level is what it is.
	Reason   string
	IssuedAt time.Time
	// TTL is how long the signal holds: past IssuedAt+TTL it means no
	// pressure (fail-open).
	TTL time.Duration
}

// ExpiresAt returns when s stops holding.
func (s *Signal) ExpiresAt() time.Time { return s.IssuedAt.Add(s.TTL) }

// Live reports whether s holds at now.
func (s *Signal) Live(now time.Time) bool { return now.Before(s.ExpiresAt()) }

// ErrMalformed is wrapped by the errors of decoding a control-topic record
// that is not a valid signal or key.
var ErrMalformed = errors.New("lagmonitor: malformed signal")

// keySep separates the parts of a control-topic key. Topic names cannot
// contain it, instance ids do not, and the group, which may, comes last.
const keySep = "/"

// Key returns the control-topic key of the signals of instance for group
// on topic: "topic/instance/group". Compaction keeps the latest per key.
func Key(topic, instance, group string) []byte {
	return []byte(topic + keySep + instance + keySep + group)
}

// ParseKey splits a control-topic key made by [Key].
func ParseKey(key []byte) (topic, instance, group string, err error) {
	parts := strings.SplitN(string(key), keySep, 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("%w: key %q is not topic/instance/group", ErrMalformed, truncate(string(key), 64))
	}
	return parts[0], parts[1], parts[2], nil
}

// PartitionFor returns the control-topic partition that carries the
// signals of topic, when the control topic has n partitions: Kafka's
// default key hash (murmur2) of the topic's name, so that a producer reads
// only the partitions of the topics it produces to, and any Kafka tool can
// find them (kcat -p). Every signal of a topic, whatever its group and
// instance, lands in one partition.
func PartitionFor(topic string, n int) int32 {
	if n <= 0 {
		return 0
	}
	return int32(keyHash.ForTopic("").Partition(&kgo.Record{Key: []byte(topic)}, n)) // StickyKeyPartitioner hashes a keyed record
}

var keyHash = kgo.StickyKeyPartitioner(nil)

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
