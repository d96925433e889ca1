package producer

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRefusalQueueRetryWhileClosing: a promise that produces again while
// the queue closes (a retry racing Close) has that refusal delivered, and
// close returns; a refusal pushed after close by a caller holding
// promiseMu (a promise of kgo's, retrying) is delivered too, not run
// inline under the lock it holds.
func TestRefusalQueueRetryWhileClosing(t *testing.T) {
	var promiseMu sync.Mutex
	var q refusalQueue
	q.start(&promiseMu)
	got := make(chan error, 2)
	q.push(func(*kgo.Record, error) {
		for { // until close has begun: the retry below races it
			q.mu.Lock()
			closing := q.closing
			q.mu.Unlock()
			if closing {
				break
			}
			runtime.Gosched()
		}
		q.push(func(_ *kgo.Record, err error) { got <- err }, nil, ErrClosed)
	}, nil, ErrNotStarted)
	closed := make(chan struct{})
	go func() {
		q.close()
		close(closed)
	}()
	await := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s within 30s", what)
		}
	}
	await("close to return", closed)
	select {
	case err := <-got:
		if err != ErrClosed {
			t.Fatalf("retry's promise got %v, want ErrClosed", err)
		}
	default:
		t.Fatal("the promise of a record pushed while closing was not delivered by close")
	}

	delivered := make(chan struct{})
	promiseMu.Lock() // as in a promise of kgo's
	q.push(func(*kgo.Record, error) { close(delivered) }, nil, ErrClosed)
	promiseMu.Unlock()
	await("a promise pushed after close, under promiseMu, to be delivered", delivered)
}
