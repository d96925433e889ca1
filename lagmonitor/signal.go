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
	// Capacity is the records per second the instance's partitions of
	// Topic were last measured to drain at most, while saturated
	// (held for a while after); 0 when unknown. At ok the instance
	// suggests a rate from it (the room producers may fill), so
	// that a recovery does not climb past it.
	Capacity float64
	// Partitions is how many partitions of Topic the instance owns, and
	// TopicPartitions how many Topic has as the instance's metadata
	// shows; 0 when unknown (a signal of an older writer). A reader
	// takes the instance's share of the topic as their ratio: a rate
	// the instance suggests holds for that share of the records.
	Partitions, TopicPartitions int
	// Paused counts the instance's partitions of Topic by pause reason
	// (the reason's name: "window_full", "lag", ...).
	Paused map[string]int `json:",omitempty"`
	// Hot lists, worst first and at most [MaxHot], the instance's
	// partitions of Topic whose level is above that of its other
	// partitions (RestLevel): records bound for them can be limited
	// apart, so that one partition melting does not hold the whole
	// topic, nor hide under a healthy average. Level is the worst of
	// all, hot or not.
	Hot []HotPartition `json:",omitempty"`
	// RestLevel is the level of the instance's partitions not listed in
	// Hot; it is written, and means something, only when Hot is not
	// empty.
	RestLevel Level
	// UnstableOffsets counts the records above the last stable offset
	// (in transactions still open), summed over the instance's
	// partitions of Topic; LSOStall is the longest time one of those
	// last stable offsets has not moved while records sat above it (a
	// hanging transaction). Both are 0 for a read_uncommitted consumer.
	UnstableOffsets int64
	LSOStall        time.Duration
	// Reason says in words why the level is what it is.
	Reason   string
	IssuedAt time.Time
	// TTL is how long the signal holds: past IssuedAt+TTL it means no
	// pressure (fail-open).
	TTL time.Duration
}

// MaxHot bounds [Signal.Hot]: the hot partitions one signal names.
const MaxHot = 8

// HotPartition is one partition of a [Signal]'s topic that lags worse
// than the instance's others: its own level (decided from its own lags
// with the topic's thresholds), lags, drain and suggested rate.
type HotPartition struct {
	Partition int32
	Level     Level
	OffsetLag int64
	TimeLag   time.Duration
	// DrainRate is the partition's records handled per second,
	// smoothed; SuggestedRate the rate producers together should keep
	// the records bound for it under (0: no suggestion); Capacity the
	// most it was measured to drain (0: unknown), from which producers
	// take its room once it is no longer hot.
	DrainRate, SuggestedRate, Capacity float64
}

// LevelOf returns the level s gives to records bound for partition p: the
// hot partition's own level if s lists p, else RestLevel if s lists hot
// partitions, else the signal's level.
func (s *Signal) LevelOf(p int32) Level {
	if len(s.Hot) == 0 {
		return s.Level
	}
	for _, h := range s.Hot {
		if h.Partition == p {
			return h.Level
		}
	}
	return s.RestLevel
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
