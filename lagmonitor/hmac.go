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

// The headers of a control-topic record's signatures, and of a
// tombstone's sequence number and issue time (see the package doc's
// "Control topic" section). Their values are UTF-8 text, so that kcat
// shows them.
const (
	// SignatureHeader carries the v1 signature: "<key id>:<MAC in
	// lowercase hex>" (64 hex digits), the MAC over the record's key and
	// value.
	SignatureHeader = "floodgate-signature"
	// SignatureV2Header carries the v2 signature, written as the v1 one,
	// the MAC over the control topic's name, the record's key and value,
	// and its [SeqHeader] and [IssuedAtHeader].
	SignatureV2Header = "floodgate-signature-v2"
	// SeqHeader carries a tombstone's sequence number, in decimal: the
	// publisher's next, from the counter of its signals' seq.
	SeqHeader = "floodgate-seq"
	// IssuedAtHeader carries a tombstone's issue time, in decimal Unix
	// milliseconds (13 digits).
	IssuedAtHeader = "floodgate-issued-at-ms"
)

// The domains that start every MACed message, so that a MAC made here
// means nothing anywhere else, and a v1 MAC nothing as a v2 one.
const (
	macDomain   = "floodgate-signal-v1\x00"
	macDomainV2 = "floodgate-signal-v2\x00"
)

// MinKeyBytes is the shortest HMAC key [NewSigner] and [NewVerifier]
// accept.
const MinKeyBytes = 16

// ErrUnauthenticated is wrapped by [Verifier.Verify]'s errors: a record
// whose signature is missing (when required), malformed, made with a key id
// the verifier does not know, or wrong.
var ErrUnauthenticated = errors.New("lagmonitor: signal not authenticated")

// Signer signs control-topic records with HMAC-SHA256 under one key id, so
// that readers holding the key reject signals from processes without it.
// It writes the v2 signature and, unless [SignV2Only], the v1 one too, so
// that readers of earlier releases (which know only v1, and reject a
// record signed otherwise) go on reading while the fleet is upgraded. It
// is safe for concurrent use.
type Signer struct {
	kid    string
	key    []byte
	v2Only bool
}

// SignerOpt configures a [Signer].
type SignerOpt interface{ applySigner(*Signer) }

type signerOpt func(*Signer)

func (o signerOpt) applySigner(s *Signer) { o(s) }

// SignV2Only stops writing the v1 signature: records carry the v2 one
// alone. Use it once every reader verifies v2 (a reader of an earlier
// release requiring signatures rejects a record without v1). Default:
// both are written.
func SignV2Only() SignerOpt { return signerOpt(func(s *Signer) { s.v2Only = true }) }

// NewSigner returns a signer for the key named keyID. keyID is 1 to 64
// characters of ASCII letters, digits, '.', '_' and '-' (it travels in the
// header); key is at least [MinKeyBytes] bytes and is copied.
func NewSigner(keyID string, key []byte, opts ...SignerOpt) (*Signer, error) {
	if err := checkKey(keyID, key); err != nil {
		return nil, err
	}
	s := &Signer{kid: keyID, key: append([]byte(nil), key...)}
	for _, o := range opts {
		o.applySigner(s)
	}
	return s, nil
}

// KeyID returns the signer's key id.
func (s *Signer) KeyID() string { return s.kid }

// Sign sets r's [SignatureV2Header] and, unless [SignV2Only], its
// [SignatureHeader] (replacing any) to the HMAC-SHA256s, under the
// signer's key, that the package doc's "Control topic" section lays out:
// v2 over r.Topic (the control topic), r's key and value and its
// [SeqHeader] and [IssuedAtHeader] values, v1 over r's key and value. A
// tombstone (nil value) is signed too. Sign the record last, its Topic
// set: any change to what the MACs cover voids them. A record with two
// headers of one of those names is signed over the first, and rejected by
// verifiers.
func (s *Signer) Sign(r *kgo.Record) {
	hs := r.Headers[:0:0]
	for _, h := range r.Headers {
		if h.Key != SignatureHeader && h.Key != SignatureV2Header {
			hs = append(hs, h)
		}
	}
	if !s.v2Only {
		v1 := s.kid + ":" + hex.EncodeToString(macV1(s.key, r.Key, r.Value))
		hs = append(hs, kgo.RecordHeader{Key: SignatureHeader, Value: []byte(v1)})
	}
	seq, _ := headerValue(r.Headers, SeqHeader)
	at, _ := headerValue(r.Headers, IssuedAtHeader)
	v2 := s.kid + ":" + hex.EncodeToString(macV2(s.key, r.Topic, r.Key, r.Value, seq, at))
	r.Headers = append(hs, kgo.RecordHeader{Key: SignatureV2Header, Value: []byte(v2)})
}

// Verifier checks control-topic records' signatures against a key ring:
// several key ids, so that keys can be rotated (publishers sign with the
// new key once every reader knows it; the old key leaves the ring once no
// publisher uses it). A v2 signature that is present must verify; a
// record with a v1 signature alone (from a publisher of an earlier
// release) is accepted unless [VerifyRequireV2]. It is safe for
// concurrent use.
type Verifier struct {
	keys      map[string][]byte
	required  bool
	requireV2 bool
}

// VerifierOpt configures a [Verifier].
type VerifierOpt interface{ applyVerifier(*Verifier) }

type verifierOpt func(*Verifier)

func (o verifierOpt) applyVerifier(v *Verifier) { o(v) }

// VerifyRequireV2 rejects every record without a v2 signature: those of
// publishers of earlier releases, which sign with v1 alone, and those
// whose v2 signature was stripped (the way to replay a tombstone, which
// only v2 binds to its sequence number). Use it once every publisher
// signs with v2. It needs required signatures ([NewVerifier]'s required).
// Default: v1 alone is accepted.
func VerifyRequireV2() VerifierOpt { return verifierOpt(func(v *Verifier) { v.requireV2 = true }) }

// NewVerifier returns a verifier knowing keys (key id → key; ids and keys
// as [NewSigner] wants them; copied). With required, a record without a
// signature is rejected; without, it is accepted (while publishers are
// being given keys), but a signature that is present must still verify.
func NewVerifier(keys map[string][]byte, required bool, opts ...VerifierOpt) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: a verifier needs at least one key", ErrInvalidConfig)
	}
	v := &Verifier{keys: make(map[string][]byte, len(keys)), required: required}
	for _, o := range opts {
		o.applyVerifier(v)
	}
	if v.requireV2 && !required {
		return nil, fmt.Errorf("%w: VerifyRequireV2 needs signatures required", ErrInvalidConfig)
	}
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

// RequiresV2 reports whether v rejects records without a v2 signature
// ([VerifyRequireV2]).
func (v *Verifier) RequiresV2() bool { return v.requireV2 }

// Verify checks r's signatures: [Verifier.VerifyVersion] without the
// version.
func (v *Verifier) Verify(r *kgo.Record) error {
	_, err := v.VerifyVersion(r)
	return err
}

// VerifyVersion checks r's signatures and returns the version of the
// strongest that verified: 2 when r's v2 signature verifies (its
// [SeqHeader] and [IssuedAtHeader] are then authentic too), 1 when r
// carries only a v1 signature and it verifies (its key and value are
// authentic, its headers are not), 0 for a record without a signature
// when none is required. Otherwise it returns an error wrapping
// [ErrUnauthenticated] that says why: a signature missing (any, when
// required; v2, with [VerifyRequireV2]), two headers of one name (of a
// signature, or of a header v2 covers), malformed, an unknown key id, a
// wrong MAC. Every signature present must verify. MACs are compared in
// constant time.
func (v *Verifier) VerifyVersion(r *kgo.Record) (int, error) {
	sig1, n1 := headerValue(r.Headers, SignatureHeader)
	sig2, n2 := headerValue(r.Headers, SignatureV2Header)
	switch {
	case n1 > 1:
		return 0, fmt.Errorf("%w: %d %s headers", ErrUnauthenticated, n1, SignatureHeader)
	case n2 > 1:
		return 0, fmt.Errorf("%w: %d %s headers", ErrUnauthenticated, n2, SignatureV2Header)
	case n2 == 0 && v.requireV2:
		return 0, fmt.Errorf("%w: no %s header (v2 signatures are required)", ErrUnauthenticated, SignatureV2Header)
	case n1 == 0 && n2 == 0 && v.required:
		return 0, fmt.Errorf("%w: no %s header", ErrUnauthenticated, SignatureHeader)
	case n1 == 0 && n2 == 0:
		return 0, nil
	}
	if n2 == 1 {
		seq, ns := headerValue(r.Headers, SeqHeader)
		at, na := headerValue(r.Headers, IssuedAtHeader)
		if ns > 1 || na > 1 {
			return 0, fmt.Errorf("%w: %d %s and %d %s headers, at most one of each under a v2 signature", ErrUnauthenticated, ns, SeqHeader, na, IssuedAtHeader)
		}
		if err := v.check(SignatureV2Header, sig2, func(key []byte) []byte { return macV2(key, r.Topic, r.Key, r.Value, seq, at) }); err != nil {
			return 0, err
		}
	}
	if n1 == 1 {
		if err := v.check(SignatureHeader, sig1, func(key []byte) []byte { return macV1(key, r.Key, r.Value) }); err != nil {
			return 0, err
		}
	}
	if n2 == 1 {
		return 2, nil
	}
	return 1, nil
}

// check verifies one signature header's value sig, "<key id>:<hex MAC>",
// against want(key).
func (v *Verifier) check(header string, sig []byte, want func(key []byte) []byte) error {
	kid, hexMAC, ok := strings.Cut(string(sig), ":")
	if !ok || len(hexMAC) != 2*sha256.Size {
		return fmt.Errorf("%w: %s is not <key id>:<64 hex digits>", ErrUnauthenticated, header)
	}
	got, err := hex.DecodeString(hexMAC)
	if err != nil {
		return fmt.Errorf("%w: %s is not <key id>:<64 hex digits>", ErrUnauthenticated, header)
	}
	key, ok := v.keys[kid]
	if !ok {
		return fmt.Errorf("%w: %s: unknown key id %q", ErrUnauthenticated, header, truncate(kid, 64))
	}
	if !hmac.Equal(got, want(key)) {
		return fmt.Errorf("%w: %s: wrong MAC for key id %q", ErrUnauthenticated, header, kid)
	}
	return nil
}

// headerValue returns the value of the first header named name (an empty,
// non-nil slice for a header present with a null value; nil when there is
// none) and how many there are.
func headerValue(hs []kgo.RecordHeader, name string) (value []byte, n int) {
	for _, h := range hs {
		if h.Key != name {
			continue
		}
		if n == 0 {
			value = h.Value
			if value == nil {
				value = []byte{}
			}
		}
		n++
	}
	return value, n
}

// macV1 returns HMAC-SHA256(key, M) where M is
//
//	"floodgate-signal-v1" 0x00
//	len(recordKey) as a 4-byte big-endian signed integer, recordKey
//	len(value) likewise, value; for a null value (tombstone) the length
//	is -1 (FF FF FF FF) and no bytes follow
//
// (Kafka's own encoding of nullable bytes, so that a null value and an
// empty one differ).
func macV1(key, recordKey, value []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(macDomain))
	writeNullable(m, recordKey)
	writeNullable(m, value)
	return m.Sum(nil)
}

// macV2 returns HMAC-SHA256(key, M) where M is
//
//	"floodgate-signal-v2" 0x00
//	the control topic's name, the record's key, its value, and the
//	values of its floodgate-seq and floodgate-issued-at-ms headers, each
//	as v1 writes key and value: length as a 4-byte big-endian signed
//	integer, then the bytes; -1 and no bytes for a null key or value or
//	an absent header
func macV2(key []byte, topic string, recordKey, value, seq, issuedAt []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(macDomainV2))
	writeString(m, topic)
	writeNullable(m, recordKey)
	writeNullable(m, value)
	writeNullable(m, seq)
	writeNullable(m, issuedAt)
	return m.Sum(nil)
}

// writeString writes s as writeNullable writes a non-null b.
func writeString(h hash.Hash, s string) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(int32(len(s))))
	h.Write(n[:])
	h.Write([]byte(s))
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
