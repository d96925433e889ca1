package lagmonitor

import (
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TombstoneHeaders returns the headers a publisher puts on a tombstone:
// [SeqHeader] with seq in decimal, unless seq is 0 (no sequence number),
// and [IssuedAtHeader] with issuedAt in decimal Unix milliseconds. An
// issue time that is not 13 digits of Unix milliseconds (2001 to 2286) is
// an error wrapping [ErrInvalidSignal], as is a seq beyond 2⁵³−1.
func TombstoneHeaders(seq uint64, issuedAt time.Time) ([]kgo.RecordHeader, error) {
	ms := issuedAt.UnixMilli()
	if ms < minIssuedAtMs || ms > maxIssuedAtMs {
		return nil, fmt.Errorf("%w: tombstone issued at %d ms, not Unix milliseconds between 2001 and 2286", ErrInvalidSignal, ms)
	}
	if seq > MaxSafeInteger {
		return nil, fmt.Errorf("%w: tombstone seq %d beyond 2^53-1", ErrInvalidSignal, seq)
	}
	var hs []kgo.RecordHeader
	if seq > 0 {
		hs = append(hs, kgo.RecordHeader{Key: SeqHeader, Value: strconv.AppendUint(nil, seq, 10)})
	}
	return append(hs, kgo.RecordHeader{Key: IssuedAtHeader, Value: strconv.AppendInt(nil, ms, 10)}), nil
}

// ParseTombstoneHeaders returns the sequence number and issue time that a
// tombstone's [SeqHeader] and [IssuedAtHeader] carry: 0, or the zero time,
// for a header absent (a tombstone of an earlier release carries neither;
// one a publisher writes for another instance carries no seq). A header
// present twice, or whose value is not plain decimal digits without a
// leading zero within range (seq 1 to 2⁵³−1; the issue time 13 digits of
// Unix milliseconds), is an error wrapping [ErrMalformed].
func ParseTombstoneHeaders(hs []kgo.RecordHeader) (seq uint64, issuedAt time.Time, err error) {
	if v, n := headerValue(hs, SeqHeader); n > 1 {
		return 0, time.Time{}, fmt.Errorf("%w: %d %s headers", ErrMalformed, n, SeqHeader)
	} else if n == 1 {
		x, ok := decimal(v)
		if !ok || x < 1 || x > MaxSafeInteger {
			return 0, time.Time{}, fmt.Errorf("%w: %s %q is not a decimal from 1 to 2^53-1", ErrMalformed, SeqHeader, truncate(string(v), 32))
		}
		seq = x
	}
	if v, n := headerValue(hs, IssuedAtHeader); n > 1 {
		return 0, time.Time{}, fmt.Errorf("%w: %d %s headers", ErrMalformed, n, IssuedAtHeader)
	} else if n == 1 {
		x, ok := decimal(v)
		if !ok || x < minIssuedAtMs || x > maxIssuedAtMs {
			return 0, time.Time{}, fmt.Errorf("%w: %s %q is not 13 decimal digits of Unix milliseconds", ErrMalformed, IssuedAtHeader, truncate(string(v), 32))
		}
		issuedAt = time.UnixMilli(int64(x)).UTC()
	}
	return seq, issuedAt, nil
}

// decimal parses 1 to 16 decimal digits without a leading zero.
func decimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 || b[0] == '0' {
		return 0, false
	}
	var x uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		x = x*10 + uint64(c-'0')
	}
	return x, true
}
