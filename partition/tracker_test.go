package partition

import (
	"math/rand/v2"
	"testing"
)

func TestTrackerInOrder(t *testing.T) {
	var tr Tracker
	if _, _, ok := tr.Watermark(); ok {
		t.Fatal("empty tracker has a watermark")
	}
	var seqs []Seq
	for off := int64(10); off < 15; off++ {
		s, ok := tr.Add(off, 3, Stamps{})
		if !ok {
			t.Fatalf("Add(%d) refused", off)
		}
		seqs = append(seqs, s)
	}
	for i, s := range seqs {
		if !tr.Done(s) {
			t.Fatalf("Done(%d) did not advance", i)
		}
		wm, ep, _ := tr.Watermark()
		if want := int64(11 + i); wm != want || ep != 3 {
			t.Fatalf("watermark = %d@%d, want %d@3", wm, ep, want)
		}
	}
	if tr.Pending() != 0 {
		t.Fatalf("pending = %d, want 0", tr.Pending())
	}
}

func TestTrackerOutOfOrderWithGaps(t *testing.T) {
	var tr Tracker
	offsets := []int64{0, 1, 5, 6, 100, 101} // gaps: compaction, txn markers
	seqs := make([]Seq, len(offsets))
	for i, o := range offsets {
		seqs[i], _ = tr.Add(o, 0, Stamps{})
	}
	tr.Done(seqs[2])
	tr.Done(seqs[3])
	if _, _, ok := tr.Watermark(); ok {
		t.Fatal("watermark moved past incomplete offset 0")
	}
	tr.Done(seqs[0])
	if wm, _, _ := tr.Watermark(); wm != 1 {
		t.Fatalf("watermark = %d, want 1", wm)
	}
	tr.Done(seqs[1])
	if wm, _, _ := tr.Watermark(); wm != 7 {
		t.Fatalf("watermark = %d, want 7 (past the completed 5,6)", wm)
	}
	if _, o, _, ok := tr.Oldest(); !ok || o != 100 {
		t.Fatalf("oldest = %d,%v want 100", o, ok)
	}
	tr.Done(seqs[5])
	tr.Done(seqs[4])
	if wm, _, _ := tr.Watermark(); wm != 102 {
		t.Fatalf("watermark = %d, want 102", wm)
	}
}

func TestTrackerRejectsBadInput(t *testing.T) {
	var tr Tracker
	s, _ := tr.Add(5, 0, Stamps{})
	if _, ok := tr.Add(5, 0, Stamps{}); ok {
		t.Fatal("duplicate offset accepted")
	}
	if _, ok := tr.Add(4, 0, Stamps{}); ok {
		t.Fatal("decreasing offset accepted")
	}
	if tr.Done(s + 7) {
		t.Fatal("unknown seq advanced the watermark")
	}
	if !tr.Done(s) || tr.Done(s) {
		t.Fatal("double Done must be a no-op")
	}
}

func TestTrackerSteadyStateNoAlloc(t *testing.T) {
	var tr Tracker
	const window = 256
	seqs := make([]Seq, 0, window)
	off := int64(0)
	fill := func() {
		for len(seqs) < window {
			s, _ := tr.Add(off, 0, Stamps{})
			off += 2
			seqs = append(seqs, s)
		}
	}
	fill()
	for _, s := range seqs { // warm up the ring
		tr.Done(s)
	}
	seqs = seqs[:0]
	allocs := testing.AllocsPerRun(100, func() {
		fill()
		for i := len(seqs) - 1; i >= 0; i-- {
			tr.Done(seqs[i])
		}
		seqs = seqs[:0]
	})
	if allocs != 0 {
		t.Fatalf("steady state allocates %.1f times per run", allocs)
	}
}

// checkTracker adds n records with random gaps, completes them in a random
// order and checks the watermark invariant after every completion.
func checkTracker(t *testing.T, rng *rand.Rand, n int) {
	var tr Tracker
	offsets := make([]int64, n)
	seqs := make([]Seq, n)
	done := make([]bool, n)
	off := int64(rng.IntN(1000))
	for i := range offsets {
		off += 1 + int64(rng.IntN(3)) // gaps of up to two offsets
		offsets[i] = off
		var ok bool
		if seqs[i], ok = tr.Add(off, 0, Stamps{}); !ok {
			t.Fatalf("Add(%d) refused", off)
		}
	}
	firstIncomplete := 0
	for _, i := range rng.Perm(n) {
		tr.Done(seqs[i])
		done[i] = true
		for firstIncomplete < n && done[firstIncomplete] {
			firstIncomplete++
		}
		wm, _, ok := tr.Watermark()
		if firstIncomplete == 0 {
			if ok {
				t.Fatalf("watermark %d set while offset %d incomplete", wm, offsets[0])
			}
			continue
		}
		if !ok {
			t.Fatalf("no watermark although offsets up to %d completed", offsets[firstIncomplete-1])
		}
		if firstIncomplete < n && wm > offsets[firstIncomplete] {
			t.Fatalf("watermark %d passed incomplete offset %d", wm, offsets[firstIncomplete])
		}
		if want := offsets[firstIncomplete-1] + 1; wm != want {
			t.Fatalf("watermark %d, want %d", wm, want)
		}
	}
	if wm, _, _ := tr.Watermark(); wm != offsets[n-1]+1 {
		t.Fatalf("final watermark %d, want %d", wm, offsets[n-1]+1)
	}
	if tr.Pending() != 0 {
		t.Fatalf("pending %d after all complete", tr.Pending())
	}
}

func TestTrackerRandomOrders(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed))
		checkTracker(t, rng, 1+rng.IntN(300))
	}
}

func FuzzTracker(f *testing.F) {
	f.Add(uint64(1), uint16(10))
	f.Add(uint64(42), uint16(1000))
	f.Fuzz(func(t *testing.T, seed uint64, n uint16) {
		if n == 0 {
			return
		}
		checkTracker(t, rand.New(rand.NewPCG(seed, ^seed)), int(n%4096)+1)
	})
}

func BenchmarkTracker(b *testing.B) {
	var tr Tracker
	seqs := make([]Seq, 0, 512)
	b.ReportAllocs()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		s, _ := tr.Add(off, 0, Stamps{})
		off++
		seqs = append(seqs, s)
		if len(seqs) == cap(seqs) {
			for j := len(seqs) - 1; j >= 0; j-- {
				tr.Done(seqs[j])
			}
			seqs = seqs[:0]
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func TestTrackerPassedOldestLast(t *testing.T) {
	var tr Tracker
	if _, ok := tr.Last(); ok {
		t.Fatal("empty tracker has a last offset")
	}
	if _, _, _, ok := tr.Oldest(); ok {
		t.Fatal("empty tracker has an oldest record")
	}
	a, _ := tr.Add(10, 0, Stamps{111, 1})
	b, _ := tr.Add(12, 0, Stamps{222, 2})
	c, _ := tr.Add(13, 0, Stamps{333, 3})
	if l, ok := tr.Last(); !ok || l != 13 {
		t.Fatalf("last = %d,%v want 13", l, ok)
	}
	tr.Done(b)
	tr.Done(c)
	if s, o, st, ok := tr.Oldest(); !ok || s != a || o != 10 || st != (Stamps{111, 1}) {
		t.Fatalf("oldest = seq %d offset %d stamps %v %v, want seq %d offset 10 stamps {111 1}", s, o, st, ok, a)
	}
	if tr.Passed() != 0 || tr.Pending() != 3 {
		t.Fatalf("passed %d pending %d behind an incomplete head, want 0 and 3", tr.Passed(), tr.Pending())
	}
	tr.Done(a)
	if tr.Passed() != 3 || tr.Pending() != 0 {
		t.Fatalf("passed %d pending %d after the head completed, want 3 and 0", tr.Passed(), tr.Pending())
	}
}
