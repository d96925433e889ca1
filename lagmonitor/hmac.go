package lagmonitor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kname"
)

// SignatureHeader is the header that carries a control-topic record's
// signature: "<key id>:<MAC in lowercase hex>" (64 hex digits).
const SignatureHeader = "floodgate-signature"

// macDomain starts every MACed message, so that a MAC made here means
// nothing anywhere else.
const macDomain = "floodgate-signal-v1\x00"

// MinKeyBytes is the shortest HMAC key [NewSigner] and [NewVerifier]
// accept.
const MinKeyBytes = 16

// ErrUnauthenticated is wrapped by [Verifier.Verify]'s errors: a record
// whose signature is missing (when required), malformed, made with a key id
// the verifier does not know, or wrong.
var ErrUnauthenticated = errors.New("lagmonitor: signal not authenticated")

// Signer signs control-topic records with HMAC-SHA256 under one key id, so
// that readers holding the key reject signals from processes without it.
// It is safe for concurrent use.
type Signer struct {
	kid string
	key []byte
}

// NewSigner returns a signer for the key named keyID. keyID is 1 to 64
// characters of ASCII letters, digits, '.', '_' and '-' (it travels in the
// header); key is at least [MinKeyBytes] bytes and is copied.
func NewSigner(keyID string, key []byte) (*Signer, error) {
	if err := checkKey(keyID, key); err != nil {
		return nil, err
	}
	return &Signer{kid: keyID, key: append([]byte(nil), key...)}, nil
}

// KeyID returns the signer's key id.
func (s *Signer) KeyID() string { return s.kid }

// Sign sets r's [SignatureHeader] (replacing any) to the HMAC-SHA256, under
// the signer's key, of r's key and value as the package doc's "Control
// topic" section lays out. A tombstone (nil value) is signed too. Sign the
// record last: any change to its key or value voids the signature.
func (s *Signer) Sign(r *kgo.Record) {
	v := s.kid + ":" + hex.EncodeToString(mac(s.key, r.Key, r.Value))
	hs := r.Headers[:0:0]
	for _, h := range r.Headers {
		if h.Key != SignatureHeader {
			hs = append(hs, h)
		}
	}
	r.Headers = append(hs, kgo.RecordHeader{Key: SignatureHeader, Value: []byte(v)})
}

// Verifier checks control-topic records' signatures against a key ring:
// several key ids, so that keys can be rotated (publishers sign with the
// new key once every reader knows it; the old key leaves the ring once no
// publisher uses it). It is safe for concurrent use.
type Verifier struct {
	keys     map[string][]byte
	required bool
}

// NewVerifier returns a verifier knowing keys (key id → key; ids and keys
// as [NewSigner] wants them; copied). With required, a record without a
// signature is rejected; without, it is accepted (while publishers are
// being given keys), but a signature that is present must still verify.
func NewVerifier(keys map[string][]byte, required bool) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: a verifier needs at least one key", ErrInvalidConfig)
	}
	v := &Verifier{keys: make(map[string][]byte, len(keys)), required: required}
	for kid, key := range keys {
		if err := checkKey(kid, key); err != nil {
			return nil, err
		}
		v.keys[kid] = append([]byte(nil), key...)
	}
	return v, nil
}

// Required reports whether v rejects unsigned records.
func (v *Verifier) Required() bool { return v.required }

// Verify checks r's signature. It returns nil for a record whose signature
// verifies, or that carries none when none is required; otherwise an
// error wrapping [ErrUnauthenticated] that says why (missing, more than
// one, malformed, unknown key id, wrong MAC). The MAC is compared in
// constant time.
func (v *Verifier) Verify(r *kgo.Record) error {
	var sig []byte
	n := 0
	for _, h := range r.Headers {
		if h.Key == SignatureHeader {
			sig = h.Value
			n++
		}
	}
	switch {
	case n == 0 && v.required:
		return fmt.Errorf("%w: no %s header", ErrUnauthenticated, SignatureHeader)
	case n == 0:
		return nil
	case n > 1:
		return fmt.Errorf("%w: %d %s headers", ErrUnauthenticated, n, SignatureHeader)
	}
	kid, hexMAC, ok := strings.Cut(string(sig), ":")
	if !ok || len(hexMAC) != 2*sha256.Size {
		return fmt.Errorf("%w: %s is not <key id>:<64 hex digits>", ErrUnauthenticated, SignatureHeader)
	}
	got, err := hex.DecodeString(hexMAC)
	if err != nil {
		return fmt.Errorf("%w: %s is not <key id>:<64 hex digits>", ErrUnauthenticated, SignatureHeader)
	}
	key, ok := v.keys[kid]
	if !ok {
		return fmt.Errorf("%w: unknown key id %q", ErrUnauthenticated, truncate(kid, 64))
	}
	if !hmac.Equal(got, mac(key, r.Key, r.Value)) {
		return fmt.Errorf("%w: wrong MAC for key id %q", ErrUnauthenticated, kid)
	}
	return nil
}

// mac returns HMAC-SHA256(key, M) where M is
//
//	"floodgate-signal-v1" 0x00
//	len(recordKey) as a 4-byte big-endian signed integer, recordKey
//	len(value) likewise, value; for a null value (tombstone) the length
//	is -1 (FF FF FF FF) and no bytes follow
//
// (Kafka's own encoding of nullable bytes, so that a null value and an
// empty one differ).
func mac(key, recordKey, value []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(macDomain))
	writeNullable(m, recordKey)
	writeNullable(m, value)
	return m.Sum(nil)
}

func writeNullable(h hash.Hash, b []byte) {
	var n [4]byte
	l := int32(len(b))
	if b == nil {
		l = -1
	}
	binary.BigEndian.PutUint32(n[:], uint32(l))
	h.Write(n[:])
	h.Write(b)
}

func checkKey(kid string, key []byte) error {
	if kid == "" || len(kid) > 64 || !kname.Topic(kid) {
		return fmt.Errorf("%w: key id %q is not 1 to 64 of A-Z a-z 0-9 . _ -", ErrInvalidConfig, truncate(kid, 64))
	}
	if len(key) < MinKeyBytes {
		return fmt.Errorf("%w: key %q has %d bytes, at least %d needed", ErrInvalidConfig, kid, len(key), MinKeyBytes)
	}
	return nil
}
