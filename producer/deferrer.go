package producer

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Deferrer takes the records that the policy defers ([Defer] cells)
// instead of shedding them, to deliver them later: the seam of a
// deferred lane (a topic the records wait on, and a relay that produces
// them to their destination once the pressure has passed). The producer
// only calls it; this package implements none.
//
// Defer must not block: it starts handing r over and calls promise
// exactly once, from any goroutine, when r is safely deferred (nil) or
// could not be (an error). The producer then calls the caller's promise
// with the same record and: nil, the record deferred (it has not reached
// its topic yet; Stats counts it as Deferred), or a [*RefusedError] of
// kind [ErrShed] whose Err is the Deferrer's error (the record is shed
// after all). d is the decision that deferred r (topic, class, level,
// reason, signal), to keep with it.
//
// Shed or defer: a record is deferred only where the policy's cell says
// [Defer]; a [Shed] cell sheds it whether or not a Deferrer is set, and
// a policy with a Defer cell needs one ([WithDeferrer], checked by New
// and Wrap). Shadow mode never defers: it counts and reports the record
// as deferred, and produces it.
type Deferrer interface {
	Defer(ctx context.Context, r *kgo.Record, d Decision, promise func(*kgo.Record, error))
}

// KeyHolder is a [Deferrer] that keeps the records of a key in order
// past its deferred ones (package producer/deferred's key-ordered lane).
// Records admitted directly can overtake deferred records of the same
// key: the deferred ones reach the topic only when the relay delivers
// them. While Holds reports r's key as held (it has records deferred and
// not yet delivered), a record the policy would admit or limit is
// deferred too, at once and without waiting for a rate (deferring does
// not load the topic); a record the policy refuses is refused as usual.
// Records without a key, and records in shadow mode, are never held.
//
// Holds is called for every keyed record to a followed topic: it must be
// fast and safe for concurrent use.
type KeyHolder interface {
	Deferrer
	Holds(topic string, key []byte) bool
}
