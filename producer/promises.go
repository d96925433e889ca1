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

// push queues promise(r, err); after close it calls it at once.
func (q *refusalQueue) push(promise func(*kgo.Record, error), r *kgo.Record, err error) {
	if promise == nil {
		return
	}
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		q.call(refusal{promise, r, err})
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
			closing := q.closing
			q.mu.Unlock()
			if len(batch) == 0 {
				if closing {
					return
				}
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

// close delivers what is queued and stops the goroutine; later pushes
// are delivered at once.
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
