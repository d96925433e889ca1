package lagmonitor

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// series builds samples one second apart from t0, with the given
// committed offsets and lags.
func series(committed, lag []int64) []TrendSample {
	s := make([]TrendSample, len(committed))
	for i := range committed {
		s[i] = TrendSample{At: at(time.Duration(i) * time.Second), Committed: committed[i], Lag: lag[i]}
	}
	return s
}

func TestTrendClassify(t *testing.T) {
	c := DefaultTrendConfig()
	end := at(5 * time.Second) // one second after the last of 5 samples
	for _, tc := range []struct {
		name      string
		committed []int64
		lag       []int64
		now       time.Time
		want      Trend
	}{
		{"one sample", []int64{10}, []int64{5}, end, TrendUnknown},
		{"stale: no sample for longer than the span", []int64{10, 20, 30, 40, 50}, []int64{9, 9, 9, 9, 9}, at(8*time.Second + 1), TrendUnknown},
		{"just fresh enough", []int64{10, 20, 30, 40, 50}, []int64{9, 9, 9, 9, 9}, at(8 * time.Second), TrendSteady},
		{"caught up now", []int64{10, 20, 30, 40, 50}, []int64{90, 80, 70, 60, 0}, end, TrendOK},
		{"caught up, committed idle", []int64{10, 10, 10, 10, 10}, []int64{0, 0, 0, 0, 0}, end, TrendOK},
		{"zero earlier does not hide a rise", []int64{10, 20, 30, 40, 50}, []int64{0, 10, 40, 80, 120}, end, TrendRising},
		{"rewind", []int64{100, 110, 50, 60, 70}, []int64{5, 5, 5, 5, 5}, end, TrendRewound},
		{"stalled", []int64{10, 10, 10, 10, 10}, []int64{3, 8, 20, 30, 50}, end, TrendStalled},
		{"stalled at a constant lag", []int64{10, 10, 10, 10, 10}, []int64{7, 7, 7, 7, 7}, end, TrendStalled},
		{"not stalled: lag zero at the start", []int64{10, 10, 10, 10, 10}, []int64{0, 4, 8, 12, 16}, end, TrendRising},
		{"rising, consumer moving", []int64{10, 20, 30, 40, 50}, []int64{100, 150, 130, 170, 200}, end, TrendRising},
		{"falling", []int64{10, 50, 90, 130, 170}, []int64{1000, 900, 950, 700, 500}, end, TrendFalling},
		{"steady within tolerance", []int64{10, 20, 30, 40, 50}, []int64{1000, 800, 1200, 900, 1100}, end, TrendSteady},
		{"just beyond tolerance", []int64{10, 20, 30, 40, 50}, []int64{1000, 1000, 1000, 1000, 1112}, end, TrendRising},
		{"negative lag counts as zero", []int64{10, 20, 30, 40, 50}, []int64{-3, 5, 5, 5, 5}, end, TrendRising},
	} {
		if got := c.Classify(series(tc.committed, tc.lag), tc.now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Zero tolerance: any change counts.
	zero := TrendConfig{Samples: 2, Tolerance: 0}
	if got := zero.Classify(series([]int64{1, 2}, []int64{100, 101}), at(2*time.Second)); got != TrendRising {
		t.Errorf("zero tolerance: %v, want rising", got)
	}
	if got := zero.Classify(series([]int64{1, 2}, []int64{100, 100}), at(2*time.Second)); got != TrendSteady {
		t.Errorf("zero tolerance, no change: %v, want steady", got)
	}
}

func TestTrendWindow(t *testing.T) {
	w, err := NewTrendWindow(TrendConfig{Samples: 3, Tolerance: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	add := func(sec int, committed, lag int64) bool {
		return w.Add(TrendSample{At: at(time.Duration(sec) * time.Second), Committed: committed, Lag: lag})
	}
	add(0, 10, 5)
	add(1, 10, 5)
	if got := w.Trend(at(2 * time.Second)); got != TrendUnknown {
		t.Fatalf("a window of 2 of 3 samples: %v, want unknown", got)
	}
	add(2, 10, 5)
	if got := w.Trend(at(3 * time.Second)); got != TrendStalled {
		t.Fatalf("%v, want stalled", got)
	}
	// The window slides: the oldest sample goes, the consumer moves.
	add(3, 20, 5)
	if got := w.Samples(); len(got) != 3 || got[0].At != at(time.Second) || got[2].Committed != 20 {
		t.Fatalf("samples after sliding: %+v", got)
	}
	if got := w.Trend(at(4 * time.Second)); got != TrendSteady {
		t.Fatalf("%v, want steady", got)
	}
	// Same time replaces the newest; an earlier one is ignored.
	if !add(3, 20, 50) || w.Len() != 3 || w.Samples()[2].Lag != 50 {
		t.Fatalf("same-time sample did not replace the newest: %+v", w.Samples())
	}
	if add(1, 99, 99) || w.Samples()[2].Lag != 50 {
		t.Fatal("an earlier sample was taken")
	}
	if got := w.Trend(at(4 * time.Second)); got != TrendRising {
		t.Fatalf("%v, want rising", got)
	}
	// Samples returns a copy.
	w.Samples()[0].Lag = -1
	if w.Samples()[0].Lag == -1 {
		t.Fatal("Samples exposes the window")
	}
	w.Reset()
	if w.Len() != 0 || w.Trend(at(4*time.Second)) != TrendUnknown {
		t.Fatal("Reset kept samples")
	}
}

func TestTrendConfigValidateNamesField(t *testing.T) {
	if err := DefaultTrendConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if d := DefaultTrendConfig(); d.Samples != 10 || d.Tolerance != 0.1 {
		t.Fatalf("defaults changed without updating the docs: %+v", d)
	}
	for _, c := range []struct {
		field string
		c     TrendConfig
	}{
		{"TrendConfig.Samples", TrendConfig{Samples: 1}},
		{"TrendConfig.Tolerance", TrendConfig{Samples: 2, Tolerance: -0.1}},
		{"TrendConfig.Tolerance", TrendConfig{Samples: 2, Tolerance: 1}},
		{"TrendConfig.Tolerance", TrendConfig{Samples: 2, Tolerance: math.NaN()}},
	} {
		err := c.c.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want ErrInvalidConfig naming it", c.field, err)
		}
		if _, err := NewTrendWindow(c.c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: NewTrendWindow = %v", c.field, err)
		}
	}
}

func TestTrendString(t *testing.T) {
	for tr, want := range map[Trend]string{TrendUnknown: "unknown", TrendOK: "ok", TrendStalled: "stalled", TrendRewound: "rewound", Trend(42): "trend(42)"} {
		if got := tr.String(); got != want {
			t.Errorf("%d: %q, want %q", int8(tr), got, want)
		}
	}
}
