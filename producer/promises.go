package producer

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// refusalQueue delivers the promises of records the client never saw
// (refused, deferred, or produced before Start or after Close) on a
// goroutine of its own, in order, each under the producer's promiseMu so
// that no two promises run at once, as kgo guarantees for its own. It is
// unbounded: it holds what callers handed in, and a promise must be fast.
type refusalQueue struct {
	promiseMu *sync.Mutex

	mu      sync.Mutex
	q       []refusal
	closing bool
	ended   bool          // the goroutine has returned
	wake    chan struct{} // capacity 1
	done    chan struct{} // closed when the goroutine has returned
}

type refusal struct {
	promise func(*kgo.Record, error)
	r       *kgo.Record
	err     error
}

func (q *refusalQueue) start(promiseMu *sync.Mutex) {
	q.promiseMu = promiseMu
	q.wake = make(chan struct{}, 1)
	q.done = make(chan struct{})
	go q.run()
}

// push queues promise(r, err). Once the queue's goroutine has returned
// (after close) it is called on a goroutine of its own, still under
// promiseMu: never inline, for the caller may be a promise itself (a retry
// after Close), holding promiseMu.
func (q *refusalQueue) push(promise func(*kgo.Record, error), r *kgo.Record, err error) {
	if promise == nil {
		return
	}
	q.mu.Lock()
	if q.ended {
		q.mu.Unlock()
		go q.call(refusal{promise, r, err})
		return
	}
	q.q = append(q.q, refusal{promise, r, err})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *refusalQueue) run() {
	defer close(q.done)
	for range q.wake {
		for {
			q.mu.Lock()
			batch := q.q
			q.q = nil
			if len(batch) == 0 && q.closing {
				// What a promise pushed while closing was delivered
				// above; what comes now goes to push's own goroutine.
				q.ended = true
				q.mu.Unlock()
				return
			}
			q.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, x := range batch {
				q.call(x)
			}
		}
	}
}

func (q *refusalQueue) call(x refusal) {
	q.promiseMu.Lock()
	defer q.promiseMu.Unlock()
	x.promise(x.r, x.err)
}

// close delivers what is queued, including what its promises push
// meanwhile, and stops the goroutine; see push for later ones.
func (q *refusalQueue) close() {
	q.mu.Lock()
	q.closing = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	<-q.done
}
