package kpart

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMurmur2Golden pins Murmur2 to partitions computed independently:
// Kafka's Utils.murmur2 (the Java client's default partitioner) of the
// UTF-8 keys, & 0x7fffffff, mod the count. Another language computing
// where a keyed record goes must agree.
func TestMurmur2Golden(t *testing.T) {
	for _, c := range []struct {
		key  string
		n    int
		want int32
	}{
		// jshell, kafka-clients 4.4.0:
		// Utils.toPositive(Utils.murmur2(key.getBytes(UTF_8))) % n
		{"", 16, 9}, {"a", 16, 12}, {"orders", 12, 0}, {"order-42", 6, 0}, {"customer-1001", 100, 93},
		{"floodgate.pressure", 7, 1}, {"héllo", 1000, 2},
	} {
		if got := Murmur2([]byte(c.key), c.n); got != c.want {
			t.Errorf("Murmur2(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
}

func TestCheckKeyedAndIsManual(t *testing.T) {
	for _, c := range []struct {
		name          string
		p             kgo.Partitioner
		keyed, manual bool
	}{
		{"kgo's default", kgo.UniformBytesPartitioner(64<<10, true, true, nil), true, false},
		{"sticky key", kgo.StickyKeyPartitioner(nil), true, false},
		{"manual", kgo.ManualPartitioner(), false, true},
		{"round robin", kgo.RoundRobinPartitioner(), false, false},
		{"crc32 keys", kgo.StickyKeyPartitioner(kgo.SaramaCompatHasher(func(b []byte) uint32 { return uint32(len(b)) * 7 })), false, false},
	} {
		tp := c.p.ForTopic("t")
		if got := CheckKeyed(tp, "t") == nil; got != c.keyed {
			t.Errorf("%s: CheckKeyed says keyed %v, want %v", c.name, got, c.keyed)
		}
		if got := IsManual(c.p.ForTopic("t"), "t"); got != c.manual {
			t.Errorf("%s: IsManual %v, want %v", c.name, got, c.manual)
		}
	}
}
