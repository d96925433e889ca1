package lagmonitor_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// testSignal is a signal with every field set.
func testSignal() lagmonitor.Signal {
	return lagmonitor.Signal{
		Version:       lagmonitor.SignalVersion,
		Group:         "billing",
		Topic:         "orders",
		Instance:      "billing-host1-4242-9f8e7d6c",
		Seq:           17,
		Level:         lagmonitor.LevelHigh,
		OffsetLag:     120000,
		TimeLag:       42500 * time.Millisecond,
		DrainRate:     1520.25,
		SuggestedRate: 1400,
		Paused:        map[string]int{"lag": 2, "window_full": 1},
		Reason:        "time lag 42.5s over 30s <for 3 windows>",
		IssuedAt:      time.UnixMilli(1_767_225_600_123).UTC(),
		TTL:           15 * time.Second,
	}
}

// The exact bytes of a signal: the wire format the package doc describes,
// which other languages read and write. Changing them is a format change.
const goldenValue = `{"version":1,"group":"billing","topic":"orders","instance":"billing-host1-4242-9f8e7d6c","seq":17,"level":"high","offset_lag":120000,"time_lag_ms":42500,"drain_rate":1520.25,"suggested_rate":1400,"paused":{"lag":2,"window_full":1},"reason":"time lag 42.5s over 30s <for 3 windows>","issued_at_ms":1767225600123,"ttl_ms":15000}`

func TestEncodeGolden(t *testing.T) {
	s := testSignal()
	key, value, err := lagmonitor.Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	if string(key) != "orders/billing-host1-4242-9f8e7d6c/billing" {
		t.Errorf("key %q", key)
	}
	if string(value) != goldenValue {
		t.Errorf("value\n got %s\nwant %s", value, goldenValue)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	s := testSignal()
	s.IssuedAt = s.IssuedAt.Add(456 * time.Microsecond) // cut to the millisecond
	s.TimeLag += 999 * time.Microsecond
	key, value, err := lagmonitor.Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	got, tomb, err := lagmonitor.Decode(key, value)
	if err != nil || tomb {
		t.Fatalf("Decode: %v, tombstone %v", err, tomb)
	}
	want := testSignal()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip\n got %+v\nwant %+v", got, want)
	}

	s.Paused, s.Reason, s.Version = nil, "", 0 // optional fields; version 0 means current
	_, value, err = lagmonitor.Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(value), "paused") || strings.Contains(string(value), "reason") {
		t.Errorf("empty optional fields written: %s", value)
	}
	got, _, err = lagmonitor.Decode(key, value)
	if err != nil || got.Paused != nil || got.Reason != "" || got.Version != lagmonitor.SignalVersion {
		t.Errorf("Decode: %v, %+v", err, got)
	}
}

func TestEncodeCutsReason(t *testing.T) {
	s := testSignal()
	s.Reason = strings.Repeat("é", 600) + "\xff" // 1201 bytes, a stray byte at the end
	_, value, err := lagmonitor.Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := lagmonitor.Decode(lagmonitor.Key(s.Topic, s.Instance, s.Group), value)
	if err != nil {
		t.Fatal(err)
	}
	if got.Reason != strings.Repeat("é", 512) {
		t.Errorf("reason of %d bytes, want 512 é (1024 bytes)", len(got.Reason))
	}
}

func TestEncodeRefuses(t *testing.T) {
	for name, mutate := range map[string]func(*lagmonitor.Signal){
		"version 2":            func(s *lagmonitor.Signal) { s.Version = 2 },
		"seq 0":                func(s *lagmonitor.Signal) { s.Seq = 0 },
		"seq beyond 2^53-1":    func(s *lagmonitor.Signal) { s.Seq = 1 << 53 },
		"negative offset lag":  func(s *lagmonitor.Signal) { s.OffsetLag = -1 },
		"negative time lag":    func(s *lagmonitor.Signal) { s.TimeLag = -time.Second },
		"NaN drain rate":       func(s *lagmonitor.Signal) { s.DrainRate = math.NaN() },
		"infinite rate":        func(s *lagmonitor.Signal) { s.SuggestedRate = math.Inf(1) },
		"negative rate":        func(s *lagmonitor.Signal) { s.SuggestedRate = -1 },
		"no TTL":               func(s *lagmonitor.Signal) { s.TTL = 0 },
		"sub-millisecond TTL":  func(s *lagmonitor.Signal) { s.TTL = time.Microsecond },
		"TTL over MaxTTL":      func(s *lagmonitor.Signal) { s.TTL = lagmonitor.MaxTTL + time.Millisecond },
		"zero issued-at":       func(s *lagmonitor.Signal) { s.IssuedAt = time.Time{} },
		"unknown level":        func(s *lagmonitor.Signal) { s.Level = 9 },
		"instance with slash":  func(s *lagmonitor.Signal) { s.Instance = "a/b" },
		"empty instance":       func(s *lagmonitor.Signal) { s.Instance = "" },
		"illegal topic":        func(s *lagmonitor.Signal) { s.Topic = "orders!" },
		"empty group":          func(s *lagmonitor.Signal) { s.Group = "" },
		"bad pause reason":     func(s *lagmonitor.Signal) { s.Paused = map[string]int{"Window Full": 1} },
		"negative pause count": func(s *lagmonitor.Signal) { s.Paused = map[string]int{"lag": -1} },
	} {
		s := testSignal()
		mutate(&s)
		if _, _, err := lagmonitor.Encode(&s); !errors.Is(err, lagmonitor.ErrInvalidSignal) {
			t.Errorf("%s: Encode returned %v, want ErrInvalidSignal", name, err)
		}
	}
}

func TestDecodeTombstone(t *testing.T) {
	key := lagmonitor.Key("orders", "i-1", "billing/eu") // a group may hold '/'
	s, tomb, err := lagmonitor.Decode(key, nil)
	if err != nil || !tomb {
		t.Fatalf("Decode(nil value): %v, tombstone %v", err, tomb)
	}
	if s.Topic != "orders" || s.Instance != "i-1" || s.Group != "billing/eu" {
		t.Errorf("tombstone names %+v", s)
	}
	if _, _, err := lagmonitor.Decode(key, []byte{}); !errors.Is(err, lagmonitor.ErrMalformed) {
		t.Errorf("an empty (not null) value: %v, want ErrMalformed", err)
	}
	if _, _, err := lagmonitor.Decode([]byte("orders/i-1"), nil); !errors.Is(err, lagmonitor.ErrMalformed) {
		t.Errorf("tombstone with a two-part key: %v, want ErrMalformed", err)
	}
}

func TestDecodeIgnoresUnknownFields(t *testing.T) {
	s := testSignal()
	key := lagmonitor.Key(s.Topic, s.Instance, s.Group)
	value := strings.Replace(goldenValue, `"seq":17,`, `"seq":17,"zone":{"name":"eu","n":[1,2,{"x":null}]},"Seq":99,`, 1)
	got, _, err := lagmonitor.Decode(key, []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 17 {
		t.Errorf("seq %d: field names are matched exactly, \"Seq\" is another field", got.Seq)
	}
}

func TestDecodeRejects(t *testing.T) {
	s := testSignal()
	key := string(lagmonitor.Key(s.Topic, s.Instance, s.Group))
	repl := func(old, new string) string {
		if !strings.Contains(goldenValue, old) {
			t.Fatalf("golden value lacks %q", old)
		}
		return strings.Replace(goldenValue, old, new, 1)
	}
	for _, c := range []struct{ name, key, value, want string }{
		{"truncated", key, goldenValue[:len(goldenValue)/2], "not JSON"},
		{"not an object", key, `[1,2]`, "not a JSON object"},
		{"trailing data", key, goldenValue + `{}`, "after the JSON object"},
		{"wrong version", key, repl(`"version":1`, `"version":2`), "version 2"},
		{"version as string", key, repl(`"version":1`, `"version":"1"`), "version"},
		{"version missing", key, repl(`"version":1,`, ``), "version missing"},
		{"required field missing", key, repl(`"ttl_ms":15000`, `"ttlms":15000`), "ttl_ms missing"},
		{"field twice", key, repl(`"seq":17,`, `"seq":17,"seq":18,`), "twice"},
		{"key names another topic", "payments/" + s.Instance + "/" + s.Group, goldenValue, "key"},
		{"key names another instance", s.Topic + "/other/" + s.Group, goldenValue, "key"},
		{"key names another group", s.Topic + "/" + s.Instance + "/billing2", goldenValue, "key"},
		{"key of two parts", "orders/billing", goldenValue, "topic/instance/group"},
		{"key not UTF-8", "orders/\xff/billing", goldenValue, "UTF-8"},
		{"value not UTF-8", key, repl(`time lag`, "time \xffag"), "UTF-8"},
		{"huge seq", key, repl(`"seq":17`, `"seq":18446744073709551615`), "2^53-1"},
		{"seq 2^53", key, repl(`"seq":17`, `"seq":9007199254740992`), "2^53-1"},
		{"seq as float", key, repl(`"seq":17`, `"seq":17.0`), "not an integer"},
		{"seq with exponent", key, repl(`"seq":17`, `"seq":1e3`), "not an integer"},
		{"seq 0", key, repl(`"seq":17`, `"seq":0`), "seq 0"},
		{"negative seq", key, repl(`"seq":17`, `"seq":-17`), "negative"},
		{"negative offset lag", key, repl(`"offset_lag":120000`, `"offset_lag":-1`), "offset_lag"},
		{"negative time lag", key, repl(`"time_lag_ms":42500`, `"time_lag_ms":-5`), "time_lag_ms"},
		{"negative drain rate", key, repl(`"drain_rate":1520.25`, `"drain_rate":-0.5`), "drain_rate"},
		{"huge drain rate", key, repl(`"drain_rate":1520.25`, `"drain_rate":1e999`), "finite"},
		{"rate as string", key, repl(`"suggested_rate":1400`, `"suggested_rate":"1400"`), "not a number"},
		{"unknown level", key, repl(`"level":"high"`, `"level":"HIGH"`), "level"},
		{"level as number", key, repl(`"level":"high"`, `"level":2`), "not a string"},
		{"TTL 0", key, repl(`"ttl_ms":15000`, `"ttl_ms":0`), "ttl_ms"},
		{"TTL of a day", key, repl(`"ttl_ms":15000`, `"ttl_ms":86400000`), "ttl_ms"},
		{"issued-at in seconds", key, repl(`"issued_at_ms":1767225600123`, `"issued_at_ms":1767225600`), "issued_at_ms"},
		{"issued-at in microseconds", key, repl(`"issued_at_ms":1767225600123`, `"issued_at_ms":1767225600123000`), "issued_at_ms"},
		{"paused not an object", key, repl(`"paused":{"lag":2,"window_full":1}`, `"paused":["lag"]`), "paused"},
		{"paused count negative", key, repl(`"lag":2`, `"lag":-2`), "paused"},
		{"paused reason twice", key, repl(`"lag":2`, `"lag":2,"lag":3`), "twice"},
		{"paused reason odd", key, repl(`"lag":2`, `"Lag Reason":2`), "paused"},
		{"reason too long", key, repl(`"reason":"time lag`, `"reason":"`+strings.Repeat("x", 1025)), "reason"},
		{"illegal topic", "or ders/" + s.Instance + "/" + s.Group, strings.Replace(goldenValue, `"orders"`, `"or ders"`, 1), "topic"},
		{"too large", key, repl(`"reason":"`, `"reason":"`+strings.Repeat(" ", lagmonitor.MaxValueBytes)), "bytes"},
	} {
		_, _, err := lagmonitor.Decode([]byte(c.key), []byte(c.value))
		if !errors.Is(err, lagmonitor.ErrMalformed) {
			t.Errorf("%s: Decode returned %v, want ErrMalformed", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", c.name, err, c.want)
		}
	}
}

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// encodes back to a value that decodes to the same signal under the same
// key.
func FuzzDecode(f *testing.F) {
	s := testSignal()
	key := string(lagmonitor.Key(s.Topic, s.Instance, s.Group))
	f.Add(key, []byte(goldenValue), false)
	f.Add(key, []byte(goldenValueFull), false)
	f.Add(key, []byte(goldenValue[:100]), false)
	f.Add(key, []byte(strings.Replace(goldenValue, `"version":1`, `"version":2`, 1)), false)
	f.Add("payments/i/g", []byte(goldenValue), false)
	f.Add(key, []byte(strings.Replace(goldenValue, `"offset_lag":120000`, `"offset_lag":99999999999999999999999999`, 1)), false)
	f.Add(key, []byte(strings.Replace(goldenValue, `"drain_rate":1520.25`, `"drain_rate":1e308`, 1)), false)
	f.Add(key, []byte(strings.Replace(goldenValue, "time lag", "time \xc3\x28ag", 1)), false)
	f.Add("orders/\xff\xfe/billing", []byte(goldenValue), false)
	f.Add(key, []byte(nil), true)
	f.Add(key, []byte(`{"version":1,"version":1}`), false)
	f.Add(key, []byte(`{"paused":{"a":{"b":[[[[]]]]}}}`), false)
	f.Fuzz(func(t *testing.T, key string, value []byte, null bool) {
		if null {
			value = nil
		}
		got, tomb, err := lagmonitor.Decode([]byte(key), value)
		if err != nil {
			if !errors.Is(err, lagmonitor.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if tomb {
			if value != nil {
				t.Fatal("a non-null value decoded as a tombstone")
			}
			if string(lagmonitor.Key(got.Topic, got.Instance, got.Group)) != key {
				t.Fatalf("tombstone key %q decoded as %+v", key, got)
			}
			return
		}
		k2, v2, err := lagmonitor.Encode(&got)
		if err != nil {
			t.Fatalf("Decode accepted %q but Encode refuses %+v: %v", value, got, err)
		}
		if string(k2) != key {
			t.Fatalf("key %q re-encoded as %q", key, k2)
		}
		again, _, err := lagmonitor.Decode(k2, v2)
		if err != nil {
			t.Fatalf("re-encoded value rejected: %v\n%s", err, v2)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip changed the signal\nfirst  %+v\nsecond %+v", got, again)
		}
	})
}

// testSignalFull is testSignal with every field added within version 1.
func testSignalFull() lagmonitor.Signal {
	s := testSignal()
	s.Capacity = 1600.5
	s.Partitions, s.TopicPartitions = 3, 12
	s.Hot = []lagmonitor.HotPartition{
		{Partition: 7, Level: lagmonitor.LevelHigh, OffsetLag: 90000, TimeLag: 42500 * time.Millisecond, DrainRate: 210, SuggestedRate: 180.5, Capacity: 215},
		{Partition: 2, Level: lagmonitor.LevelElevated, OffsetLag: 20000, TimeLag: 9 * time.Second, DrainRate: 400},
	}
	s.RestLevel = lagmonitor.LevelOK
	s.UnstableOffsets, s.LSOStall = 40, 65*time.Second
	return s
}

// goldenValueFull is testSignalFull on the wire: the fields added within
// version 1 sit between suggested_rate and reason, each omitted when zero.
const goldenValueFull = `{"version":1,"group":"billing","topic":"orders","instance":"billing-host1-4242-9f8e7d6c","seq":17,"level":"high","offset_lag":120000,"time_lag_ms":42500,"drain_rate":1520.25,"suggested_rate":1400,"capacity":1600.5,"partitions":3,"topic_partitions":12,"paused":{"lag":2,"window_full":1},"hot":[{"partition":7,"level":"high","offset_lag":90000,"time_lag_ms":42500,"drain_rate":210,"suggested_rate":180.5,"capacity":215},{"partition":2,"level":"elevated","offset_lag":20000,"time_lag_ms":9000,"drain_rate":400,"suggested_rate":0}],"rest_level":"ok","unstable_offsets":40,"lso_stall_ms":65000,"reason":"time lag 42.5s over 30s <for 3 windows>","issued_at_ms":1767225600123,"ttl_ms":15000}`

// TestCodecCompatibility: the fields added within version 1 are
// optional both ways. A reader of the first release (which knows only
// its fields) reads a new signal as the signal without them, and a new
// reader reads a signal of the first release (goldenValue) as one
// without them.
func TestCodecCompatibility(t *testing.T) {
	s := testSignalFull()
	key, value, err := lagmonitor.Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	if string(value) != goldenValueFull {
		t.Fatalf("value\n got %s\nwant %s", value, goldenValueFull)
	}
	got, _, err := lagmonitor.Decode(key, value)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("new reader, new signal: %v\n got %+v\nwant %+v", err, got, s)
	}
	old, _, err := lagmonitor.DecodeLegacy(key, value)
	if err != nil || !reflect.DeepEqual(old, testSignal()) {
		t.Fatalf("first-release reader, new signal: %v\n got %+v\nwant %+v", err, old, testSignal())
	}
	got, _, err = lagmonitor.Decode(key, []byte(goldenValue))
	if err != nil || !reflect.DeepEqual(got, testSignal()) {
		t.Fatalf("new reader, first-release signal: %v\n got %+v\nwant %+v", err, got, testSignal())
	}
	if l := got.LevelOf(7); l != lagmonitor.LevelHigh {
		t.Errorf("a signal without hot partitions gives partition 7 level %v, want its level high", l)
	}
	if l, l2, l3 := s.LevelOf(7), s.LevelOf(2), s.LevelOf(0); l != lagmonitor.LevelHigh || l2 != lagmonitor.LevelElevated || l3 != lagmonitor.LevelOK {
		t.Errorf("LevelOf 7, 2, 0: %v %v %v, want high elevated ok", l, l2, l3)
	}
}

func TestDecodeRejectsAddedFields(t *testing.T) {
	s := testSignal()
	key := string(lagmonitor.Key(s.Topic, s.Instance, s.Group))
	repl := func(old, new string) string {
		if !strings.Contains(goldenValueFull, old) {
			t.Fatalf("golden value lacks %q", old)
		}
		return strings.Replace(goldenValueFull, old, new, 1)
	}
	hot7 := `{"partition":7,"level":"high","offset_lag":90000,"time_lag_ms":42500,"drain_rate":210,"suggested_rate":180.5}`
	for _, c := range []struct{ name, value, want string }{
		{"negative capacity", repl(`"capacity":1600.5`, `"capacity":-1`), "capacity"},
		{"partitions above the topic's", repl(`"partitions":3`, `"partitions":13`), "above topic_partitions"},
		{"negative partitions", repl(`"partitions":3`, `"partitions":-3`), "partitions"},
		{"hot not an array", strings.Replace(goldenValue, `"reason"`, `"hot":{"partition":7},"rest_level":"ok","reason"`, 1), "field hot: not an array"},
		{"hot partition out of range", repl(`"partition":7`, `"partition":12`), "out of range"},
		{"hot partition twice", repl(`"partition":2`, `"partition":7`), "twice"},
		{"hot entry without level", repl(`"partition":7,"level":"high",`, `"partition":7,`), "level missing"},
		{"hot level above the signal's", repl(`"partition":7,"level":"high"`, `"partition":7,"level":"critical"`), "at most level"},
		{"hot level not above the rest", repl(`"rest_level":"ok"`, `"rest_level":"elevated"`), "not above rest_level"},
		{"hot without rest level", repl(`,"rest_level":"ok"`, ``), "without a rest_level"},
		{"rest level without hot", strings.Replace(goldenValue, `"reason"`, `"rest_level":"ok","reason"`, 1), "without hot"},
		{"unknown rest level", repl(`"rest_level":"ok"`, `"rest_level":"fine"`), "rest_level"},
		{"too many hot", repl(`"hot":[`, `"hot":[`+strings.Repeat(hot7+",", lagmonitor.MaxHot)), "at most 8"},
		{"negative unstable offsets", repl(`"unstable_offsets":40`, `"unstable_offsets":-40`), "unstable_offsets"},
		{"fractional LSO stall", repl(`"lso_stall_ms":65000`, `"lso_stall_ms":65000.5`), "not an integer"},
	} {
		_, _, err := lagmonitor.Decode([]byte(key), []byte(c.value))
		if !errors.Is(err, lagmonitor.ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Decode returned %v, want ErrMalformed saying %q", c.name, err, c.want)
		}
	}
	// Unknown fields inside a hot entry are ignored, as at the top level.
	v := repl(`"partition":7,`, `"partition":7,"zone":"eu",`)
	if got, _, err := lagmonitor.Decode([]byte(key), []byte(v)); err != nil || got.Hot[0].Partition != 7 {
		t.Errorf("unknown field in a hot entry: %v", err)
	}
}
