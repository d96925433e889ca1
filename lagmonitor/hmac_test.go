package lagmonitor_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

var (
	keyA = []byte("0123456789abcdef")
	keyB = []byte("fedcba9876543210fedcba9876543210")
)

func mustSigner(t *testing.T, kid string, key []byte, opts ...lagmonitor.SignerOpt) *lagmonitor.Signer {
	t.Helper()
	s, err := lagmonitor.NewSigner(kid, key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVerifier(t *testing.T, required bool, ring map[string][]byte, opts ...lagmonitor.VerifierOpt) *lagmonitor.Verifier {
	t.Helper()
	v, err := lagmonitor.NewVerifier(ring, required, opts...)
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
	if n != 1 || len(r.Headers) != 3 || !strings.HasPrefix(sigHeader(r), "k1:") {
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

// The v2 MAC over the bytes the package doc specifies, as computed by
// another implementation (Python's hmac over "floodgate-signal-v2\x00" +
// be32(18) + "floodgate.pressure" + be32(18) + key + be32(-1) + be32(2) +
// "17" + be32(13) + "1767225600123" for the tombstone; be32(7) + value and
// be32(-1) twice for the signal without headers). The doc's test vector.
func TestSignatureV2KnownAnswer(t *testing.T) {
	s := mustSigner(t, "k1", keyA)
	tomb := &kgo.Record{Topic: "floodgate.pressure", Key: []byte("orders/i-1/billing"), Headers: []kgo.RecordHeader{
		{Key: lagmonitor.SeqHeader, Value: []byte("17")}, {Key: lagmonitor.IssuedAtHeader, Value: []byte("1767225600123")},
	}}
	s.Sign(tomb)
	if got, want := header(tomb, lagmonitor.SignatureV2Header), "k1:5ecb024c844e04ed8c194a7a3d98cc6d7ac201891e13ad838f42210d213a54e0"; got != want {
		t.Errorf("v2 signature of a tombstone\n got %s\nwant %s", got, want)
	}
	if got, want := sigHeader(tomb), "k1:63c78a1479e34aa6379285bd3d619b8623008b0b9ee26c56f2ca96071a59f713"; got != want {
		t.Errorf("v1 signature of the tombstone (its headers not covered)\n got %s\nwant %s", got, want)
	}
	sig := &kgo.Record{Topic: "floodgate.pressure", Key: []byte("orders/i-1/billing"), Value: []byte(`{"x":1}`)}
	s.Sign(sig)
	if got, want := header(sig, lagmonitor.SignatureV2Header), "k1:b43dd15b1c6f39474f1d5d16d747d9719b7f10ae67e0040e5dcdc40d8a2dfbf8"; got != want {
		t.Errorf("v2 signature of a value\n got %s\nwant %s", got, want)
	}
}

func header(r *kgo.Record, name string) string {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

// signV1 signs r as a publisher of an earlier release does: the v1
// signature alone, written from the package doc's layout.
func signV1(kid string, key []byte, r *kgo.Record) {
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: lagmonitor.SignatureHeader, Value: []byte(kid + ":" + hex.EncodeToString(v1MAC(key, r)))})
}

func v1MAC(key []byte, r *kgo.Record) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("floodgate-signal-v1\x00"))
	for _, b := range [][]byte{r.Key, r.Value} {
		n := int32(len(b))
		if b == nil {
			n = -1
		}
		_ = binary.Write(m, binary.BigEndian, n)
		m.Write(b)
	}
	return m.Sum(nil)
}

// verifyV1 checks r as a verifier of an earlier release does, requiring a
// signature: exactly one floodgate-signature header, whose MAC over key
// and value verifies; every other header is ignored.
func verifyV1(keys map[string][]byte, r *kgo.Record) error {
	var sigs []string
	for _, h := range r.Headers {
		if h.Key == lagmonitor.SignatureHeader {
			sigs = append(sigs, string(h.Value))
		}
	}
	if len(sigs) != 1 {
		return fmt.Errorf("%d floodgate-signature headers", len(sigs))
	}
	kid, mac, _ := strings.Cut(sigs[0], ":")
	got, err := hex.DecodeString(mac)
	if err != nil || keys[kid] == nil || !hmac.Equal(got, v1MAC(keys[kid], r)) {
		return fmt.Errorf("signature %q does not verify", sigs[0])
	}
	return nil
}

// Records a new publisher signs are verified by an earlier release's
// verifier (v1 alone), unless signed with SignV2Only; records an earlier
// release signed (v1 alone) are verified by the new verifier, unless it
// requires v2.
func TestSignatureCompatibility(t *testing.T) {
	ring := map[string][]byte{"k1": keyA}
	tomb := func() *kgo.Record {
		hs, err := lagmonitor.TombstoneHeaders(17, time.UnixMilli(1_767_225_600_123))
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: ctl, Key: []byte("orders/i-1/billing"), Headers: hs}
	}
	value := func() *kgo.Record {
		return &kgo.Record{Topic: ctl, Key: []byte("orders/i-1/billing"), Value: []byte(`{"version":1}`)}
	}
	for _, r := range []*kgo.Record{tomb(), value()} {
		mustSigner(t, "k1", keyA).Sign(r)
		if err := verifyV1(ring, r); err != nil {
			t.Errorf("dual-signed %q: an earlier release's verifier rejects it: %v", r.Value, err)
		}
		if v, err := mustVerifier(t, true, ring, lagmonitor.VerifyRequireV2()).VerifyVersion(r); v != 2 || err != nil {
			t.Errorf("dual-signed %q: version %d, %v; want 2", r.Value, v, err)
		}
	}
	only := tomb()
	mustSigner(t, "k1", keyA, lagmonitor.SignV2Only()).Sign(only)
	if sigHeader(only) != "" || header(only, lagmonitor.SignatureV2Header) == "" {
		t.Errorf("SignV2Only wrote %+v", only.Headers)
	}
	if err := verifyV1(ring, only); err == nil {
		t.Error("an earlier release's verifier accepted a record without v1: SignV2Only would be safe before every reader is new")
	}
	for _, r := range []*kgo.Record{tomb(), value()} {
		r.Headers = nil // a tombstone of an earlier release has no headers
		signV1("k1", keyA, r)
		if v, err := mustVerifier(t, true, ring).VerifyVersion(r); v != 1 || err != nil {
			t.Errorf("v1-signed %q: version %d, %v; want 1", r.Value, v, err)
		}
		if err := mustVerifier(t, true, ring, lagmonitor.VerifyRequireV2()).Verify(r); !errors.Is(err, lagmonitor.ErrUnauthenticated) || !strings.Contains(err.Error(), "v2 signatures are required") {
			t.Errorf("v1-signed %q under VerifyRequireV2: %v", r.Value, err)
		}
	}
}

func TestVerifyV2(t *testing.T) {
	ring := map[string][]byte{"k1": keyA, "k2": keyB}
	lenient := mustVerifier(t, false, ring)
	strict := mustVerifier(t, true, ring, lagmonitor.VerifyRequireV2())
	signed := func(mutate func(r *kgo.Record)) *kgo.Record {
		hs, err := lagmonitor.TombstoneHeaders(5, time.UnixMilli(1_767_225_600_000))
		if err != nil {
			t.Fatal(err)
		}
		r := &kgo.Record{Topic: ctl, Key: []byte("orders/i-1/billing"), Headers: hs}
		mustSigner(t, "k1", keyA).Sign(r)
		if mutate != nil {
			mutate(r)
		}
		return r
	}
	setHeader := func(name, value string) func(*kgo.Record) {
		return func(r *kgo.Record) {
			for i := range r.Headers {
				if r.Headers[i].Key == name {
					r.Headers[i].Value = []byte(value)
				}
			}
		}
	}
	drop := func(names ...string) func(*kgo.Record) {
		return func(r *kgo.Record) {
			r.Headers = slices.DeleteFunc(r.Headers, func(h kgo.RecordHeader) bool { return slices.Contains(names, h.Key) })
		}
	}
	for _, c := range []struct {
		name    string
		r       *kgo.Record
		v       *lagmonitor.Verifier
		version int
		wantErr string // "" accepts
	}{
		{"dual-signed", signed(nil), strict, 2, ""},
		{"dual-signed, lenient", signed(nil), lenient, 2, ""},
		{"v2 alone", signed(drop(lagmonitor.SignatureHeader)), strict, 2, ""},
		{"v1 alone (stripped of v2)", signed(drop(lagmonitor.SignatureV2Header)), lenient, 1, ""},
		{"v1 alone, v2 required", signed(drop(lagmonitor.SignatureV2Header)), strict, 0, "v2 signatures are required"},
		{"stripped of v2 and its headers", signed(drop(lagmonitor.SignatureV2Header, lagmonitor.SeqHeader, lagmonitor.IssuedAtHeader)), lenient, 1, ""},
		{"unsigned, v2 required", signed(drop(lagmonitor.SignatureV2Header, lagmonitor.SignatureHeader)), strict, 0, "v2 signatures are required"},
		{"unsigned, lenient", signed(drop(lagmonitor.SignatureV2Header, lagmonitor.SignatureHeader)), lenient, 0, ""},
		{"moved to another control topic", signed(func(r *kgo.Record) { r.Topic = "other-control" }), strict, 0, "floodgate-signature-v2: wrong MAC"},
		{"seq changed", signed(setHeader(lagmonitor.SeqHeader, "9")), strict, 0, "floodgate-signature-v2: wrong MAC"},
		{"issue time changed", signed(setHeader(lagmonitor.IssuedAtHeader, "1767225700000")), strict, 0, "floodgate-signature-v2: wrong MAC"},
		{"seq removed", signed(drop(lagmonitor.SeqHeader)), strict, 0, "floodgate-signature-v2: wrong MAC"},
		{"seq emptied", signed(setHeader(lagmonitor.SeqHeader, "")), strict, 0, "floodgate-signature-v2: wrong MAC"},
		{"seq changed, v1 alone would pass", signed(setHeader(lagmonitor.SeqHeader, "9")), lenient, 0, "floodgate-signature-v2: wrong MAC"},
		{"v1 wrong, v2 right", signed(setHeader(lagmonitor.SignatureHeader, "k1:"+strings.Repeat("00", 32))), strict, 0, "floodgate-signature: wrong MAC"},
		{"v2 with an unknown key id", signed(setHeader(lagmonitor.SignatureV2Header, "k9:"+strings.Repeat("00", 32))), strict, 0, "unknown key id"},
		{"v2 malformed", signed(setHeader(lagmonitor.SignatureV2Header, "k1:zz")), strict, 0, "not <key id>"},
		{"two v2 signatures", signed(func(r *kgo.Record) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: lagmonitor.SignatureV2Header, Value: []byte(header(r, lagmonitor.SignatureV2Header))})
		}), strict, 0, "2 floodgate-signature-v2 headers"},
		{"two seq headers", signed(func(r *kgo.Record) {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: lagmonitor.SeqHeader, Value: []byte("99")})
		}), strict, 0, "2 floodgate-seq"},
	} {
		v, err := c.v.VerifyVersion(c.r)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: rejected: %v", c.name, err)
		case c.wantErr != "" && !errors.Is(err, lagmonitor.ErrUnauthenticated):
			t.Errorf("%s: VerifyVersion returned %v, want ErrUnauthenticated", c.name, err)
		case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
			t.Errorf("%s: error %q does not say %q", c.name, err, c.wantErr)
		case v != c.version:
			t.Errorf("%s: version %d, want %d", c.name, v, c.version)
		}
	}
	if _, err := lagmonitor.NewVerifier(ring, false, lagmonitor.VerifyRequireV2()); !errors.Is(err, lagmonitor.ErrInvalidConfig) {
		t.Errorf("VerifyRequireV2 without required signatures: %v, want ErrInvalidConfig", err)
	}
	if !strict.RequiresV2() || lenient.RequiresV2() {
		t.Error("RequiresV2 does not say the option")
	}
}
