// Package kretry retries the requests that a broker refuses while it is
// not ready for them: group requests while a group coordinator is not
// ready (on a cluster's first use of a group, the offsets topic being
// created; after a broker restart; while a coordinator moves), and lookups
// of a topic just created, which each broker learns of a moment after
// CreateTopics succeeds ([AwaitTopic]). franz-go's admin client
// (kadm) returns such a refusal as the request's error at once; its own
// consumer retries it.
package kretry

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// MaxWait bounds how long [Do] retries when ctx has no
// earlier deadline: a coordinator takes seconds to load, and a new topic
// reaches every broker's metadata within seconds, not minutes.
const MaxWait = 15 * time.Second

// backoff bounds: the first retry comes soon (a fresh offsets topic
// is ready within a second or two), later ones less often.
const (
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = time.Second
)

// NotReady reports whether err says the group coordinator is not ready
// (COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS or
// NOT_COORDINATOR), anywhere in err's tree.
func NotReady(err error) bool {
	return errors.Is(err, kerr.CoordinatorNotAvailable) || errors.Is(err, kerr.CoordinatorLoadInProgress) ||
		errors.Is(err, kerr.NotCoordinator)
}

// Do calls fn, and again with a growing backoff while retry(err) holds
// for its error, until ctx ends or MaxWait has passed; it returns fn's
// last value and error. retry is [NotReady] for a group request,
// [NotServed] for the lookup of a topic just created ([AwaitTopic]).
func Do[T any](ctx context.Context, retry func(error) bool, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, MaxWait)
	defer cancel()
	wait := firstBackoff
	for {
		v, err := fn(ctx)
		if err == nil || !retry(err) {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		wait = min(2*wait, maxBackoff)
	}
}
