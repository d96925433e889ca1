package consumer

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// unretryableProduce are the produce errors that the same record sent to
// the same topic again cannot overcome. A missing topic is not among them:
// it may be created (or auto-created) later.
var unretryableProduce = []error{
	kerr.MessageTooLarge,            // bigger than the topic's max.message.bytes (or the client's batch cap)
	kerr.RecordListTooLarge,         // bigger than the topic's segment
	kerr.InvalidRecord,              // rejected by broker validation (e.g. no key on a compacted topic)
	kerr.CorruptMessage,             // null key on a compacted topic, bad size; kgo does not retry it either
	kerr.InvalidTimestamp,           // outside message.timestamp.*.max.ms
	kerr.InvalidTopicException,      // an illegal topic name, or an internal topic
	kerr.TopicAuthorizationFailed,   // no WRITE on the topic
	kerr.ClusterAuthorizationFailed, // no IDEMPOTENT_WRITE (old brokers)
	kerr.TransactionalIDAuthorizationFailed,
	kerr.PolicyViolation,
	kerr.UnsupportedForMessageFormat,
	kerr.InvalidRequiredAcks,
}

// IsUnretryableProduceError reports whether a produce failed with an error
// that producing the same record to the same topic again cannot fix: the
// record is too large for the topic, the broker rejects it, the topic name
// is invalid, or the client may not write to it. A failed divert with such
// an error goes to [Router.Undeliverable] instead of being retried.
//
// Timeouts, leadership changes, unknown (not yet created) topics and a
// closed client are not unretryable.
func IsUnretryableProduceError(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range unretryableProduce {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
