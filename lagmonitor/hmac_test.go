package lagmonitor_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

var (
	keyA = []byte("0123456789abcdef")
	keyB = []byte("fedcba9876543210fedcba9876543210")
)

func mustSigner(t *testing.T, kid string, key []byte) *lagmonitor.Signer {
	t.Helper()
	s, err := lagmonitor.NewSigner(kid, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVerifier(t *testing.T, required bool, ring map[string][]byte) *lagmonitor.Verifier {
	t.Helper()
	v, err := lagmonitor.NewVerifier(ring, required)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sigHeader(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == lagmonitor.SignatureHeader {
			return string(h.Value)
		}
	}
	return ""
}

// The MAC over the bytes the package doc specifies, as computed by another
// implementation (openssl dgst -sha256 -hmac 0123456789abcdef over
// "floodgate-signal-v1\x00" + be32(18) + key + be32(7) + value, and with
// be32(-1) and no value for the tombstone).
func TestSignatureKnownAnswer(t *testing.T) {
	s := mustSigner(t, "k1", keyA)
	r := &kgo.Record{Key: []byte("orders/i-1/billing"), Value: []byte(`{"x":1}`)}
	s.Sign(r)
	if got, want := sigHeader(r), "k1:d827883790213c9d84f50bcf7b3a24170d8cf514cca256a18042cefa732c06ea"; got != want {
		t.Errorf("signature of a value\n got %s\nwant %s", got, want)
	}
	tomb := &kgo.Record{Key: []byte("orders/i-1/billing")}
	s.Sign(tomb)
	if got, want := sigHeader(tomb), "k1:63c78a1479e34aa6379285bd3d619b8623008b0b9ee26c56f2ca96071a59f713"; got != want {
		t.Errorf("signature of a tombstone\n got %s\nwant %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	signA := mustSigner(t, "k1", keyA)
	signB := mustSigner(t, "k2", keyB)
	ring := map[string][]byte{"k1": keyA, "k2": keyB}
	strict := mustVerifier(t, true, ring)
	lenient := mustVerifier(t, false, ring)

	signed := func(s *lagmonitor.Signer, key, value []byte) *kgo.Record {
		r := &kgo.Record{Key: key, Value: value, Headers: []kgo.RecordHeader{{Key: "other", Value: []byte("x")}}}
		s.Sign(r)
		return r
	}
	key, value := []byte("orders/i-1/billing"), []byte(`{"version":1}`)

	for _, c := range []struct {
		name    string
		r       *kgo.Record
		v       *lagmonitor.Verifier
		wantErr string // "" accepts
	}{
		{"signed with k1", signed(signA, key, value), strict, ""},
		{"signed with k2 (rotation)", signed(signB, key, value), strict, ""},
		{"forged value", func() *kgo.Record { r := signed(signA, key, value); r.Value = []byte(`{"version":2}`); return r }(), strict, "wrong MAC"},
		{"forged key", func() *kgo.Record { r := signed(signA, key, value); r.Key = []byte("orders/i-2/billing"); return r }(), strict, "wrong MAC"},
		{"unknown key id", signed(mustSigner(t, "k3", keyA), key, value), strict, "unknown key id"},
		{"known key id, other key", signed(mustSigner(t, "k1", keyB), key, value), strict, "wrong MAC"},
		{"missing, required", &kgo.Record{Key: key, Value: value}, strict, "no floodgate-signature"},
		{"missing, not required", &kgo.Record{Key: key, Value: value}, lenient, ""},
		{"forged, not required", func() *kgo.Record { r := signed(signA, key, value); r.Value = nil; return r }(), lenient, "wrong MAC"},
		{"tombstone signed", signed(signA, key, nil), strict, ""},
		{"tombstone unsigned, required", &kgo.Record{Key: key}, strict, "no floodgate-signature"},
		{"tombstone unsigned, not required", &kgo.Record{Key: key}, lenient, ""},
		{"empty value signed, sent as tombstone", func() *kgo.Record { r := signed(signA, key, []byte{}); r.Value = nil; return r }(), strict, "wrong MAC"},
		{"tombstone signed, sent with a value", func() *kgo.Record { r := signed(signA, key, nil); r.Value = value; return r }(), strict, "wrong MAC"},
		{"two signatures", func() *kgo.Record {
			r := signed(signA, key, value)
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: lagmonitor.SignatureHeader, Value: []byte(sigHeader(r))})
			return r
		}(), strict, "2 floodgate-signature headers"},
		{"no colon", &kgo.Record{Key: key, Value: value, Headers: []kgo.RecordHeader{{Key: lagmonitor.SignatureHeader, Value: []byte("k1")}}}, strict, "not <key id>"},
		{"short MAC", &kgo.Record{Key: key, Value: value, Headers: []kgo.RecordHeader{{Key: lagmonitor.SignatureHeader, Value: []byte("k1:abcd")}}}, strict, "not <key id>"},
		{"MAC not hex", &kgo.Record{Key: key, Value: value, Headers: []kgo.RecordHeader{{Key: lagmonitor.SignatureHeader, Value: []byte("k1:" + strings.Repeat("zz", 32))}}}, strict, "not <key id>"},
	} {
		err := c.v.Verify(c.r)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: rejected: %v", c.name, err)
		case c.wantErr != "" && !errors.Is(err, lagmonitor.ErrUnauthenticated):
			t.Errorf("%s: Verify returned %v, want ErrUnauthenticated", c.name, err)
		case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
			t.Errorf("%s: error %q does not say %q", c.name, err, c.wantErr)
		}
	}
}

func TestSignReplacesSignature(t *testing.T) {
	r := &kgo.Record{Key: []byte("orders/i-1/billing"), Value: []byte("{}"), Headers: []kgo.RecordHeader{
		{Key: lagmonitor.SignatureHeader, Value: []byte("old:sig")}, {Key: "trace", Value: []byte("t")},
	}}
	mustSigner(t, "k1", keyA).Sign(r)
	n := 0
	for _, h := range r.Headers {
		if h.Key == lagmonitor.SignatureHeader {
			n++
		}
	}
	if n != 1 || len(r.Headers) != 2 || !strings.HasPrefix(sigHeader(r), "k1:") {
		t.Errorf("headers after Sign: %+v", r.Headers)
	}
	if err := mustVerifier(t, true, map[string][]byte{"k1": keyA}).Verify(r); err != nil {
		t.Error(err)
	}
}

func TestSignerVerifierConfig(t *testing.T) {
	for _, c := range []struct {
		kid string
		key []byte
	}{{"", keyA}, {"k:1", keyA}, {"k/1", keyA}, {strings.Repeat("k", 65), keyA}, {"k1", []byte("short")}} {
		if _, err := lagmonitor.NewSigner(c.kid, c.key); !errors.Is(err, lagmonitor.ErrInvalidConfig) {
			t.Errorf("NewSigner(%q, %d bytes): %v, want ErrInvalidConfig", c.kid, len(c.key), err)
		}
		if _, err := lagmonitor.NewVerifier(map[string][]byte{c.kid: c.key}, true); !errors.Is(err, lagmonitor.ErrInvalidConfig) {
			t.Errorf("NewVerifier(%q, %d bytes): %v, want ErrInvalidConfig", c.kid, len(c.key), err)
		}
	}
	if _, err := lagmonitor.NewVerifier(nil, true); !errors.Is(err, lagmonitor.ErrInvalidConfig) {
		t.Errorf("NewVerifier with no key: %v, want ErrInvalidConfig", err)
	}
	// The signer keeps its own copy of the key.
	key := append([]byte(nil), keyA...)
	s := mustSigner(t, "k1", key)
	key[0] ^= 1
	r := &kgo.Record{Key: []byte("orders/i-1/billing"), Value: []byte("{}")}
	s.Sign(r)
	if err := mustVerifier(t, true, map[string][]byte{"k1": keyA}).Verify(r); err != nil {
		t.Errorf("changing the caller's key slice changed the signer's key: %v", err)
	}
}
