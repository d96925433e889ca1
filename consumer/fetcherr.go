package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fatalFetch are the poll errors that retrying cannot fix: Run ends with
// them (as a *FetchError) instead of consuming nothing, silently, forever.
var fatalFetch = []error{
	kerr.TopicAuthorizationFailed,
	kerr.GroupAuthorizationFailed,
	kerr.ClusterAuthorizationFailed,
	kerr.SaslAuthenticationFailed,
	kerr.InvalidGroupID,
	kerr.UnsupportedVersion,
}

// isFatalFetchError reports whether a poll error ends Run.
func isFatalFetchError(err error) bool {
	for _, e := range fatalFetch {
		if errors.Is(err, e) {
			return true
		}
	}
	// The client stops fetching the partition until someone sets its
	// offset past the batch: a stall nobody would notice.
	var tooLarge *kgo.ErrDecompressTooLarge
	return errors.As(err, &tooLarge)
}

// pollErrors reports every error of a poll (hooks, Stats, the client's
// logger) and returns the first fatal one. A *kgo.ErrDataLoss restarts the
// partition's tracking at the offset the client reset to.
func (rt *Runtime) pollErrors(fs kgo.Fetches) error {
	var fatal error
	fs.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed) {
			return // the poll's own end; Run handles it
		}
		isFatal := isFatalFetchError(err)
		var dl *kgo.ErrDataLoss
		if errors.As(err, &dl) {
			rt.mu.Lock()
			if ps := rt.parts[tp{t, p}]; ps != nil && !ps.revoking {
				rt.rebase(ps)
				ps.next = dl.ResetTo
			}
			rt.mu.Unlock()
		}
		rt.reportFetchError(t, p, err, isFatal)
		if isFatal && fatal == nil {
			fatal = &FetchError{Topic: t, Partition: p, Err: err}
		}
	})
	return fatal
}

// reportFetchError counts err, keeps it for Stats, calls the hooks and logs
// it (an error repeated by every poll at most every 30s).
func (rt *Runtime) reportFetchError(topic string, partition int32, err error, fatal bool) {
	rt.fetchErrors.Add(1)
	rt.mu.Lock()
	rt.fetchErr = err
	rt.mu.Unlock()
	for _, h := range rt.hooks.fetchErr {
		h.OnFetchError(topic, partition, err, fatal)
	}
	var (
		dl  *kgo.ErrDataLoss
		dle *DataLossError
	)
	level, msg := kgo.LogLevelWarn, "floodgate: poll returned an error; the client retries it"
	switch {
	case fatal:
		level, msg = kgo.LogLevelError, "floodgate: poll returned an error that retrying cannot fix; stopping"
	case errors.As(err, &dl), errors.As(err, &dle):
		rt.dataLoss.Add(1)
		level, msg = kgo.LogLevelError, "floodgate: data loss: records were lost before they could be read"
	}
	if rt.log != nil && rt.logLimit.allow(fmt.Sprintf("%s/%d/%v", topic, partition, err), time.Now()) {
		rt.logf(level, msg, "topic", topic, "partition", partition, "err", err)
	}
}
