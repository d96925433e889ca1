package consumer

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/partition"
)

// StuckRecord describes the oldest record of a partition that has not
// reached a terminal state, while it holds the partition: everything after
// it waits to be committed (and, in OrderPartition, to be handled).
type StuckRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	// Attempts counts the record's failed handler attempts in this
	// delivery; 0 means it never failed (its handler is slow, or it waits
	// for its turn).
	Attempts int
	// Age is how long ago the record was admitted.
	Age time.Duration
	// Err is the latest error: the handler's, or, while its divert is
	// being produced, the produce's. Nil if none.
	Err error
	// DivertTopic is where the record's replacement is being produced (a
	// retry tier or the quarantine lane); "" if it is not being diverted.
	DivertTopic string
	// Reason is what the partition is paused for because of the record:
	// partition.SpanFull or partition.DivertFailed (zero in Stats while
	// it is not paused yet).
	Reason partition.Reasons
}

// failure is the state of a record that failed at least once.
type failure struct {
	attempts int
	err      error
	divert   string // topic of the divert in flight, "" if none
}

// noteFailure records that it failed (attempt, err), that its divert to
// topic started (attempt 0, err nil) or that the divert's produce failed
// (attempt 0, err). Called from workers and produce promises, never with mu
// held.
func (rt *Runtime) noteFailure(ps *pstate, it item, attempt int, err error, divert string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if it.gen != ps.gen || ps.gone {
		return
	}
	f := ps.failure(it.rec.Offset)
	if attempt > 0 {
		f.attempts = attempt
	}
	if err != nil {
		f.err = err
	}
	if divert != "" {
		f.divert = divert
	}
}

// failure returns ps's failure record of the record at off, adding it.
// Called with mu held.
func (ps *pstate) failure(off int64) *failure {
	f := ps.fails[off]
	if f == nil {
		if ps.fails == nil {
			ps.fails = make(map[int64]*failure)
		}
		f = &failure{}
		ps.fails[off] = f
	}
	return f
}

// stuckRecord describes ps's oldest record not yet terminal. Called with mu
// held.
func (rt *Runtime) stuckRecord(ps *pstate, reason partition.Reasons, now time.Time) (StuckRecord, bool) {
	_, off, st, ok := ps.tr.Oldest()
	if !ok {
		return StuckRecord{}, false
	}
	s := StuckRecord{Topic: ps.topic, Partition: ps.partition, Offset: off, Age: now.Sub(time.Unix(0, st.Admitted)), Reason: reason}
	if f := ps.fails[off]; f != nil {
		s.Attempts, s.Err, s.DivertTopic = f.attempts, f.err, f.divert
	}
	return s, true
}

// reportStuck calls the stuck hooks and logs s. Called without mu.
func (rt *Runtime) reportStuck(s StuckRecord) {
	for _, h := range rt.hooks.stuck {
		h.OnStuck(s)
	}
	level, msg := kgo.LogLevelWarn, "floodgate: partition paused: the span from its oldest record not yet terminal to the newest admitted one reached PartitionMaxSpan"
	if s.Reason&partition.DivertFailed != 0 {
		level, msg = kgo.LogLevelError, "floodgate: partition paused: a failed record cannot be moved to a retry tier or the quarantine lane and the router has nothing else to try; retrying the produce slowly until it succeeds"
	}
	rt.logf(level, msg, "topic", s.Topic, "partition", s.Partition, "offset", s.Offset,
		"attempts", s.Attempts, "age", s.Age.Round(time.Millisecond), "divert_topic", s.DivertTopic, "err", s.Err)
}
