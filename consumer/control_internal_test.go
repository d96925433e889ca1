package consumer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/partition"
)

// ctlRuntime is a runtime that owns t[0] and t[1], for driving admit and finish by
// hand: no client, no workers.
func ctlRuntime(t *testing.T, opts ...Opt) *Runtime {
	t.Helper()
	base := []Opt{Brokers("127.0.0.1:1"), Group("g"), Topics("t"), WithOrdering(OrderNone),
		PartitionMaxRecords(3), PartitionMaxSpan(6)}
	rt, err := newRuntime(func(context.Context, *kgo.Record) error { return nil }, true, append(base, opts...))
	if err != nil {
		t.Fatal(err)
	}
	rt.bind = &binding{owned: map[tp]struct{}{{"t", 0}: {}, {"t", 1}: {}}}
	return rt
}

// ctlRec is a transaction's control record (a commit marker's key and
// value) at off.
func ctlRec(off int64) *kgo.Record {
	return &kgo.Record{Topic: "t", Offset: off, Key: []byte{0, 0, 0, 1}, Value: []byte{0, 0, 0, 0, 0, 0},
		Attrs: kgo.NewRecordAttrs(kgo.RecordAttrsOpts{Control: true, Transactional: true})}
}

func dataRec(off int64) *kgo.Record {
	return &kgo.Record{Topic: "t", Offset: off, Key: []byte("k"), Value: make([]byte, 100), Timestamp: time.Now(),
		Attrs: kgo.NewRecordAttrs(kgo.RecordAttrsOpts{Transactional: true})}
}

// fetch is one poll's records of t[0] with the log's end at end.
func fetch(end int64, rs ...*kgo.Record) kgo.Fetches { return fetchOf(0, end, rs...) }

// fetchOf is one poll's records of t[p].
func fetchOf(p int32, end int64, rs ...*kgo.Record) kgo.Fetches {
	for _, r := range rs {
		r.Partition = p
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: []kgo.FetchPartition{{
		Partition: p, HighWatermark: end, LastStableOffset: end, Records: rs}}}}}}
}

// ctlAdmit admits fs and fails the test on an error.
func ctlAdmit(t *testing.T, rt *Runtime, fs kgo.Fetches) map[string]map[int32]kgo.EpochOffset {
	t.Helper()
	rewinds, err := rt.admit(fs)
	if err != nil {
		t.Fatal(err)
	}
	return rewinds
}

// handle takes the queued record at off (OrderNone) off the run queue and
// finishes it as handled, as a worker would.
func handle(t *testing.T, rt *Runtime, off int64) {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for i, n := 0, rt.runq.len(); i < n; i++ {
		task, _ := rt.runq.pop()
		if task.it.rec.Offset != off {
			rt.runq.push(task)
			continue
		}
		task.ps.running++
		rt.finish(task.ps, task.it, true)
		return
	}
	t.Fatalf("record %d is not queued", off)
}

// ctlState is what a test checks of t[0].
type ctlState struct {
	next, watermark, commit int64
	inflight, queued        int
	buffered                int64
	control                 uint64
}

func ctlStateOf(rt *Runtime) ctlState {
	st := rt.Stats()
	p := st.Partitions[0]
	rt.mu.Lock()
	defer rt.mu.Unlock()
	commit := int64(-1)
	if offs, _ := rt.parts[tp{"t", 0}].addUncommitted(nil, nil, time.Time{}); offs != nil {
		commit = offs["t"][0].Offset
	}
	return ctlState{next: p.Next, watermark: p.Watermark, commit: commit, inflight: p.InFlightRecords,
		queued: rt.runq.len(), buffered: st.BufferedBytes, control: p.ControlRecords}
}

// TestControlRecordsPassAtOnce: a transaction's control record reaches
// its terminal state on admission: never queued for a handler, no window
// room or bytes held, and the watermark (and what a commit sends) passes
// it as soon as every record before it is terminal, as it passes the gap
// of aborted records read_committed leaves before an abort marker.
func TestControlRecordsPassAtOnce(t *testing.T) {
	rt := ctlRuntime(t)
	// A marker first (a transaction before this member's start), records
	// 1 and 2, a commit marker, aborted records 4..9 left out as under
	// read_committed, their abort marker, record 11.
	ctlAdmit(t, rt, fetch(12, ctlRec(0), dataRec(1), dataRec(2), ctlRec(3), ctlRec(10), dataRec(11)))
	want := ctlState{next: 1, watermark: 1, commit: 1, inflight: 3, queued: 3, buffered: 3 * (1 + 100), control: 3}
	if got := ctlStateOf(rt); got != want {
		t.Fatalf("after admission: %+v, want %+v", got, want)
	}
	handle(t, rt, 2)
	if got := ctlStateOf(rt); got.next != 1 || got.commit != 1 {
		t.Fatalf("record 1 still in flight: next %d commit %d, want 1 1", got.next, got.commit)
	}
	handle(t, rt, 1) // passes 2, the marker at 3 and the aborted gap up to 10
	if got := ctlStateOf(rt); got.next != 11 || got.commit != 11 {
		t.Fatalf("records 1 and 2 handled: next %d commit %d, want 11 11", got.next, got.commit)
	}
	handle(t, rt, 11)
	// Only markers: the end of the log is reached without a handler.
	ctlAdmit(t, rt, fetch(14, ctlRec(12), ctlRec(13)))
	want = ctlState{next: 14, watermark: 14, commit: 14, control: 5}
	if got := ctlStateOf(rt); got != want {
		t.Fatalf("two trailing markers: %+v, want %+v", got, want)
	}
	st := rt.Stats()
	if st.ControlRecords != 5 || st.Handled != 0 || st.Partitions[0].Completed != 3 {
		t.Fatalf("Stats: ControlRecords %d Handled %d Completed %d, want 5 0 (no handler ran here) 3",
			st.ControlRecords, st.Handled, st.Partitions[0].Completed)
	}
	rt.mu.Lock()
	at, ok := rt.parts[tp{"t", 0}].restartAt()
	rt.mu.Unlock()
	if !ok || at.Offset != 14 {
		t.Fatalf("a revoke would restart at %v (%v), want 14", at, ok)
	}
}

// TestControlRecordsNotQueued: in every ordering mode a control record
// takes no place in a lane or the run queue (no key lane for its key).
func TestControlRecordsNotQueued(t *testing.T) {
	for _, mode := range []Ordering{OrderPartition, OrderKey, OrderNone} {
		rt := ctlRuntime(t, WithOrdering(mode))
		ctlAdmit(t, rt, fetch(12, ctlRec(0), dataRec(1), dataRec(2), ctlRec(3), ctlRec(10), dataRec(11)))
		rt.mu.Lock()
		ps := rt.parts[tp{"t", 0}]
		queued, lanes := 0, 0
		switch mode {
		case OrderNone:
			queued = rt.runq.len()
		case OrderPartition:
			queued = ps.lane.q.len()
		case OrderKey:
			for _, l := range ps.keys {
				queued += l.q.len()
				lanes++
			}
		}
		rt.mu.Unlock()
		if queued != 3 || mode == OrderKey && lanes != 1 {
			t.Errorf("%s: %d records queued in %d key lanes, want the 3 data records (1 key lane)", mode, queued, lanes)
		}
	}
}

// TestControlRecordsNeedNoRoom: a control record is admitted while the
// window is full and the byte budget spent, and a router is never asked
// when it is due; only a full span (it takes a place in the tracker)
// makes it wait.
func TestControlRecordsNeedNoRoom(t *testing.T) {
	// t[1] spends the byte budget (2 × 101 of 300 bytes): t[0]'s marker
	// is admitted, its next record is not.
	rt := ctlRuntime(t, PartitionMaxBytes(250), MaxBufferedBytes(300), WithRouter(askRouter{t}))
	ctlAdmit(t, rt, fetchOf(1, 10, dataRec(0), dataRec(1)))
	rewinds := ctlAdmit(t, rt, fetch(10, ctlRec(0), dataRec(1)))
	if got, ok := rewinds["t"][0]; !ok || got.Offset != 1 {
		t.Fatalf("rewinds %v, want t[0]'s record 1 refused for the byte budget", rewinds)
	}
	p := rt.Stats().Partitions[0]
	if p.ControlRecords != 1 || p.Next != 1 || !p.Paused.Has(partition.Memory) || p.InFlightBytes != 0 {
		t.Fatalf("the marker while the byte budget is spent: %d control records, Next %d, paused %v, %d bytes in flight; want 1, 1, memory, 0",
			p.ControlRecords, p.Next, p.Paused, p.InFlightBytes)
	}

	// A full window (3 records) still takes a marker.
	rt = ctlRuntime(t)
	ctlAdmit(t, rt, fetch(10, dataRec(0), dataRec(1), dataRec(2)))
	if rewinds := ctlAdmit(t, rt, fetch(10, ctlRec(3), dataRec(4))); rewinds["t"][0].Offset != 4 {
		t.Fatalf("rewinds %v, want record 4 refused for the window", rewinds)
	}
	if p := rt.Stats().Partitions[0]; p.ControlRecords != 1 || !p.Paused.Has(partition.WindowFull) {
		t.Fatalf("the marker behind a full window: %d control records, paused %v", p.ControlRecords, p.Paused)
	}

	// A full span (6 places: 0 stuck, 1..5 done) refuses it.
	rt = ctlRuntime(t)
	ctlAdmit(t, rt, fetch(10, dataRec(0), dataRec(1), dataRec(2)))
	handle(t, rt, 1)
	handle(t, rt, 2)
	ctlAdmit(t, rt, fetch(10, dataRec(3), dataRec(4)))
	handle(t, rt, 3)
	handle(t, rt, 4)
	ctlAdmit(t, rt, fetch(10, ctlRec(5)))
	if rewinds := ctlAdmit(t, rt, fetch(10, ctlRec(6))); rewinds["t"][0].Offset != 6 {
		t.Fatalf("rewinds %v, want the marker at 6 refused for the span", rewinds)
	}
	if p := rt.Stats().Partitions[0]; p.ControlRecords != 1 || !p.Paused.Has(partition.SpanFull) || p.Span != 6 {
		t.Fatalf("full span: %d control records, paused %v, span %d; want 1, span_full, 6", p.ControlRecords, p.Paused, p.Span)
	}
	handle(t, rt, 0)
	if p := rt.Stats().Partitions[0]; p.Next != 6 || p.Paused.Has(partition.SpanFull) {
		t.Fatalf("record 0 handled: Next %d paused %v, want 6 and the span lifted", p.Next, p.Paused)
	}
}

// askRouter fails the test when asked about a control record.
type askRouter struct{ t *testing.T }

func (r askRouter) Due(rec *kgo.Record) time.Time {
	if rec.Attrs.IsControl() {
		r.t.Errorf("router asked when control record %d is due", rec.Offset)
	}
	return time.Time{}
}

func (askRouter) Failed(*kgo.Record, int, error) Decision { return Decision{} }

func (askRouter) Undeliverable(_, _ *kgo.Record, _ error) *kgo.Record { return nil }

// TestControlRecordAfterTruncation: a control record at an offset already
// tracked means the log was truncated: tracking starts over with it (data
// loss reported), and commits stay at an older record still in flight.
func TestControlRecordAfterTruncation(t *testing.T) {
	rt := ctlRuntime(t)
	ctlAdmit(t, rt, fetch(3, dataRec(0), dataRec(1), dataRec(2)))
	handle(t, rt, 0)
	handle(t, rt, 2)
	ctlAdmit(t, rt, fetch(3, ctlRec(2))) // 2 again: the log was truncated at 2
	st := rt.Stats()
	var dle *DataLossError
	if !errors.As(st.FetchErr, &dle) || !dle.Truncated || st.DataLoss != 1 {
		t.Fatalf("FetchErr %v DataLoss %d, want a truncation reported", st.FetchErr, st.DataLoss)
	}
	if got := ctlStateOf(rt); got.commit != 1 {
		t.Fatalf("commit %d while record 1 of the older generation runs, want 1", got.commit)
	}
	handle(t, rt, 1)
	if got := ctlStateOf(rt); got.commit != 3 || got.next != 3 {
		t.Fatalf("record 1 handled: commit %d next %d, want 3 3 (past the new marker)", got.commit, got.next)
	}
}
