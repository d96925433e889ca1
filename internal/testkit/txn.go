package testkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TxnStep is one step of a log written with transactions (see
// [WriteTxnLog]). Producer 0 writes outside any transaction; producer i > 0
// is transactional producer i, whose first records begin a transaction
// that stays open until a step of it with End set.
type TxnStep struct {
	Producer int
	// Records to write (keys "k0", "k1", ... taken in turn).
	Records int
	// End ends producer's open transaction after writing, committing or
	// aborting it; TxnOpen leaves it open.
	End TxnEnd
}

// TxnEnd says how a [TxnStep] ends its producer's transaction.
type TxnEnd int

// How a step ends its transaction.
const (
	TxnOpen TxnEnd = iota
	TxnCommit
	TxnAbort
)

// TxnLog is what [WriteTxnLog] wrote: every data record with whether a
// read_committed consumer reads it, and how many control records
// (commit and abort markers) the ended transactions appended.
type TxnLog struct {
	Records   []*kgo.Record
	Committed []bool // outside any transaction, or in a committed one
	Markers   int
}

// Deliverable returns the records a consumer at that isolation level
// reads: every data record under read_uncommitted, the committed ones
// under read_committed.
func (l TxnLog) Deliverable(readCommitted bool) []*kgo.Record {
	var out []*kgo.Record
	for i, r := range l.Records {
		if !readCommitted || l.Committed[i] {
			out = append(out, r)
		}
	}
	return out
}

// WriteTxnLog writes steps, in order, to partition 0 of topic, each record
// acknowledged before the next step; the transactional producers' ids are
// unique to the call. Every transaction must be ended by the last step.
func WriteTxnLog(tb testing.TB, brokers []string, topic string, steps []TxnStep) TxnLog {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := time.Now().UnixNano()
	clients := make(map[int]*kgo.Client)
	client := func(p int) *kgo.Client {
		if cl := clients[p]; cl != nil {
			return cl
		}
		opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ProducerBatchCompression(kgo.NoCompression())}
		if p > 0 {
			opts = append(opts, kgo.TransactionalID(fmt.Sprintf("%s-txn-%d-%d", topic, p, run)))
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			tb.Fatalf("producer %d: %v", p, err)
		}
		tb.Cleanup(cl.Close)
		clients[p] = cl
		return cl
	}
	var (
		log  TxnLog
		open = make(map[int][]int) // producer: indexes in log.Records of its open transaction
		key  int
	)
	for i, s := range steps {
		cl := client(s.Producer)
		if s.Producer > 0 && s.Records > 0 && open[s.Producer] == nil {
			if err := cl.BeginTransaction(); err != nil {
				tb.Fatalf("step %d: BeginTransaction: %v", i, err)
			}
			open[s.Producer] = []int{}
		}
		for range s.Records {
			r := &kgo.Record{Topic: topic, Partition: 0, Key: fmt.Appendf(nil, "k%d", key%3), Value: fmt.Appendf(nil, "step %d", i)}
			key++
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				tb.Fatalf("step %d: producing: %v", i, err)
			}
			log.Records = append(log.Records, r)
			log.Committed = append(log.Committed, s.Producer == 0)
			if s.Producer > 0 {
				open[s.Producer] = append(open[s.Producer], len(log.Records)-1)
			}
		}
		if s.Producer == 0 || s.End == TxnOpen {
			continue
		}
		if open[s.Producer] == nil {
			tb.Fatalf("step %d: producer %d has no transaction to end", i, s.Producer)
		}
		commit := s.End == TxnCommit
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			tb.Fatalf("step %d: EndTransaction(commit %v): %v", i, commit, err)
		}
		for _, j := range open[s.Producer] {
			log.Committed[j] = commit
		}
		delete(open, s.Producer)
		log.Markers++
	}
	if len(open) > 0 {
		tb.Fatalf("WriteTxnLog: %d transactions left open", len(open))
	}
	return log
}
