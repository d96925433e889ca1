package partition

// Tracker tracks the records of one partition from admission to completion
// and yields the commit watermark. Records are added in increasing offset
// order (gaps allowed) and completed in any order.
//
// The zero value is ready to use.
type Tracker struct {
	ring []entry // power-of-two ring of in-flight entries
	head uint64  // sequence of the oldest incomplete entry
	tail uint64  // sequence the next Add will return

	wmOffset int64 // watermark: offset past the completed prefix
	wmEpoch  int32 // leader epoch of the record that set the watermark
	wmSet    bool
	last     int64 // last offset added, for order checks
	hasLast  bool
	passed   uint64 // records the watermark has passed, ever
}

type entry struct {
	offset int64
	stamps Stamps
	epoch  int32
	done   bool
}

// Stamps are two times the caller keeps with a record in the tracker, in
// units of its choice: the consumer runtime keeps when the record was
// admitted (Unix ns) and the record's own timestamp (Unix ms), for the age
// of a stuck record and the time lag.
type Stamps struct {
	Admitted, Record int64
}

// Seq identifies a record added to a [Tracker]; pass it to [Tracker.Done].
type Seq uint64

// Add records that the record at offset (with the given leader epoch) is in
// flight and returns the handle to complete it with. st is kept for the
// caller and returned by [Tracker.Oldest]. Offsets must increase strictly; Add reports ok=false,
// and tracks nothing, for an offset at or below the last one added.
func (t *Tracker) Add(offset int64, epoch int32, st Stamps) (s Seq, ok bool) {
	if t.hasLast && offset <= t.last {
		return 0, false
	}
	if t.tail-t.head == uint64(len(t.ring)) {
		t.grow()
	}
	t.ring[t.tail&uint64(len(t.ring)-1)] = entry{offset: offset, stamps: st, epoch: epoch}
	s = Seq(t.tail)
	t.tail++
	t.last, t.hasLast = offset, true
	return s, true
}

func (t *Tracker) grow() {
	n := len(t.ring) * 2
	if n == 0 {
		n = 16
	}
	ring := make([]entry, n)
	for s := t.head; s < t.tail; s++ {
		ring[s&uint64(n-1)] = t.ring[s&uint64(len(t.ring)-1)]
	}
	t.ring = ring
}

// Done marks the record s as complete. It reports whether the watermark
// moved. Completing a record twice, or an unknown handle, does nothing.
func (t *Tracker) Done(s Seq) (advanced bool) {
	seq := uint64(s)
	if seq < t.head || seq >= t.tail {
		return false
	}
	mask := uint64(len(t.ring) - 1)
	e := &t.ring[seq&mask]
	if e.done {
		return false
	}
	e.done = true
	for t.head < t.tail {
		e := &t.ring[t.head&mask]
		if !e.done {
			break
		}
		t.wmOffset, t.wmEpoch, t.wmSet = e.offset+1, e.epoch, true
		t.head++
		t.passed++
		advanced = true
	}
	return advanced
}

// Watermark returns the offset just past the longest completed prefix, with
// the leader epoch of the record at its end. ok is false until a record has
// completed.
func (t *Tracker) Watermark() (offset int64, epoch int32, ok bool) {
	return t.wmOffset, t.wmEpoch, t.wmSet
}

// Pending returns how many added records have not been passed by the
// watermark (incomplete records and completed ones behind an incomplete one):
// the span from the oldest incomplete record to the newest added one, which
// is what the tracker holds in memory.
func (t *Tracker) Pending() int { return int(t.tail - t.head) }

// Passed returns how many records the watermark has passed since the
// tracker was created. The difference of two readings counts the records
// completed in between in offset order, which is what a commit between them
// covers.
func (t *Tracker) Passed() uint64 { return t.passed }

// Oldest returns the oldest incomplete record: its handle, offset and the
// stamps it was added with; ok is false when every added record is
// complete.
func (t *Tracker) Oldest() (s Seq, offset int64, st Stamps, ok bool) {
	if t.head == t.tail {
		return 0, 0, Stamps{}, false
	}
	e := &t.ring[t.head&uint64(len(t.ring)-1)]
	return Seq(t.head), e.offset, e.stamps, true
}

// Last returns the offset of the newest record added; ok is false before
// the first Add.
func (t *Tracker) Last() (offset int64, ok bool) { return t.last, t.hasLast }
