package partition

import (
	"errors"
	"strings"
	"testing"
)

func TestLimitsValidateNamesField(t *testing.T) {
	ok := Limits{MaxRecords: 10, MaxBytes: 100, ResumeRecords: 5, ResumeBytes: 50}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for field, l := range map[string]Limits{
		"MaxRecords":    {MaxRecords: 0, MaxBytes: 100},
		"MaxBytes":      {MaxRecords: 10, MaxBytes: -1},
		"ResumeRecords": {MaxRecords: 10, MaxBytes: 100, ResumeRecords: 10},
		"ResumeBytes":   {MaxRecords: 10, MaxBytes: 100, ResumeRecords: 1, ResumeBytes: 100},
	} {
		err := l.Validate()
		if !errors.Is(err, ErrInvalidLimits) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

func TestWindowHysteresis(t *testing.T) {
	w := NewWindow(Limits{MaxRecords: 4, MaxBytes: 1000, ResumeRecords: 1, ResumeBytes: 500})
	for i := 0; i < 3; i++ {
		if !w.Fits(10) {
			t.Fatalf("record %d does not fit", i)
		}
		if w.Add(10) {
			t.Fatalf("full after %d records", i+1)
		}
	}
	if !w.Add(10) || !w.Full() {
		t.Fatal("window of 4 not full after 4 records")
	}
	if w.Fits(10) {
		t.Fatal("a fifth record fits a window of 4")
	}
	for i := 0; i < 2; i++ {
		if w.Release(10) {
			t.Fatalf("resumed above the resume mark after %d releases", i+1)
		}
	}
	if !w.Full() {
		t.Fatal("window left full state above resume mark")
	}
	if !w.Release(10) {
		t.Fatal("did not resume at the resume mark")
	}
	if w.Full() || w.Records() != 1 || w.Bytes() != 10 {
		t.Fatalf("state after drain: full=%v records=%d bytes=%d", w.Full(), w.Records(), w.Bytes())
	}
}

func TestWindowBytesAndOversizedRecord(t *testing.T) {
	w := NewWindow(Limits{MaxRecords: 100, MaxBytes: 100, ResumeRecords: 50, ResumeBytes: 10})
	if !w.Fits(500) {
		t.Fatal("an empty window must admit one oversized record")
	}
	if !w.Add(500) {
		t.Fatal("oversized record did not fill the window")
	}
	if w.Fits(1) {
		t.Fatal("a record fits beside an oversized one")
	}
	if !w.Release(500) {
		t.Fatal("did not drain")
	}
	w.Add(60)
	if w.Fits(50) {
		t.Fatal("60+50 bytes fit a 100-byte window")
	}
	if !w.Refuse() || w.Refuse() {
		t.Fatal("Refuse must report the transition once")
	}
	if w.Release(60) != true {
		t.Fatal("refused window did not drain")
	}
}

func TestReasons(t *testing.T) {
	var r Reasons
	if r.Paused() || r.String() != "none" {
		t.Fatal("zero reasons")
	}
	r |= WindowFull | Lag
	if !r.Has(Lag) || r.Has(Priority) || r.String() != "window_full+lag" {
		t.Fatalf("got %v", r)
	}
	r &^= WindowFull
	if !r.Paused() {
		t.Fatal("clearing one reason cleared another")
	}
}

func TestWindowExpectFetch(t *testing.T) {
	w := NewWindow(Limits{MaxRecords: 10, MaxBytes: 1000, ResumeRecords: 2, ResumeBytes: 200})
	if w.ExpectFetch(50, 5000) {
		t.Fatal("an empty window paused for a fetch it cannot hold: it must admit at least one record")
	}
	for i := 0; i < 4; i++ {
		w.Add(10)
	}
	if r, b := w.Room(); r != 6 || b != 960 {
		t.Fatalf("room = %d records / %d bytes, want 6 / 960", r, b)
	}
	if w.ExpectFetch(6, 960) || w.Full() {
		t.Fatal("a fetch that fits exactly filled the window")
	}
	if !w.ExpectFetch(7, 10) || !w.Full() {
		t.Fatal("a fetch of 7 records into a room of 6 did not fill the window")
	}
	if w.ExpectFetch(7, 10) {
		t.Fatal("ExpectFetch reported the transition twice")
	}
	// Hysteresis as for a full window: resume only at the resume marks.
	if w.Release(10) || !w.Full() {
		t.Fatal("resumed above the resume mark")
	}
	if !w.Release(10) {
		t.Fatal("did not resume at the resume mark")
	}
	w2 := NewWindow(Limits{MaxRecords: 10, MaxBytes: 100, ResumeRecords: 2, ResumeBytes: 20})
	w2.Add(60)
	if !w2.ExpectFetch(1, 41) {
		t.Fatal("a fetch of 41 bytes into a room of 40 did not fill the window")
	}
}
