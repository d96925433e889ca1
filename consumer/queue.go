package consumer

// ring is a growable FIFO of values with a power-of-two capacity. It
// allocates only when it grows, so a queue that has reached its working
// size allocates nothing per element.
type ring[T any] struct {
	buf        []T
	head, size int
}

func (q *ring[T]) len() int { return q.size }

func (q *ring[T]) push(v T) {
	if q.size == len(q.buf) {
		n := 2 * len(q.buf)
		if n == 0 {
			n = 8
		}
		buf := make([]T, n)
		for i := 0; i < q.size; i++ {
			buf[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
		}
		q.buf, q.head = buf, 0
	}
	q.buf[(q.head+q.size)&(len(q.buf)-1)] = v
	q.size++
}

func (q *ring[T]) pop() (v T, ok bool) {
	if q.size == 0 {
		return v, false
	}
	var zero T
	v = q.buf[q.head]
	q.buf[q.head] = zero // let the GC have what the element referenced
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.size--
	return v, true
}

// drain removes every element, calling fn on each.
func (q *ring[T]) drain(fn func(T)) {
	for {
		v, ok := q.pop()
		if !ok {
			return
		}
		fn(v)
	}
}
