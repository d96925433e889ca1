package integration_test

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writeLoopBench writes each run's samples to dir/loopbench-<run>.csv and
// the plot of both runs to dir/loopbench.png, and prints the paths.
func writeLoopBench(dir string, cfg benchConfig, runs []*loopRun) error {
	for _, r := range runs {
		path := filepath.Join(dir, "loopbench-"+r.name+".csv")
		if err := writeSamplesCSV(path, cfg, r.samples); err != nil {
			return err
		}
		fmt.Printf("loopbench: wrote %s\n", path)
	}
	path := filepath.Join(dir, "loopbench.png")
	if err := plotLoopBench(path, cfg, runs); err != nil {
		return err
	}
	fmt.Printf("loopbench: wrote %s\n", path)
	return nil
}

// writeSamplesCSV writes one row per sample: time, phase, the monitor's
// measure, the producers' level, every partition's lags and every
// class's cumulative counts.
func writeSamplesCSV(path string, cfg benchConfig, samples []benchSample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	head := []string{"t_s", "phase", "level", "producer_level", "recovering", "offset_lag", "time_lag_s", "suggested_rate", "capacity", "drain_rate", "handled"}
	for p := range cfg.Partitions {
		head = append(head, fmt.Sprintf("p%d_offset_lag", p), fmt.Sprintf("p%d_time_lag_s", p), fmt.Sprintf("p%d_handled", p))
	}
	for _, c := range benchClasses {
		for _, k := range []string{"offered", "admitted", "throttled", "shed", "failed_fast", "deferred", "failed", "handled"} {
			head = append(head, string(c)+"_"+k)
		}
	}
	_ = w.Write(head)
	fl := func(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }
	it := func(x int64) string { return strconv.FormatInt(x, 10) }
	for _, s := range samples {
		phase, plevel := "overload", ""
		if s.At >= cfg.Overload {
			phase = "recovery"
		}
		if s.ProducerLevel >= 0 {
			plevel = s.ProducerLevel.String()
		}
		row := []string{fl(s.At.Seconds()), phase, s.Level.String(), plevel, strconv.Itoa(s.Recovering), it(s.OffsetLag),
			fl(s.TimeLag.Seconds()), fl(s.Suggested), fl(s.Capacity), fl(s.Drain), it(s.Handled)}
		for p := range s.PartOffset {
			row = append(row, it(s.PartOffset[p]), fl(s.PartTime[p].Seconds()), it(s.PartHandled[p]))
		}
		for _, c := range s.Class {
			for _, x := range []int64{c.Offered, c.Admitted, c.Throttled, c.Shed, c.FailedFast, c.Deferred, c.Failed, c.Handled} {
				row = append(row, it(x))
			}
		}
		_ = w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// The plot's colours: the classes', then the lags'.
var (
	classColors = [3]color.Color{color.RGBA{R: 200, A: 255}, color.RGBA{G: 120, B: 200, A: 255}, color.RGBA{R: 120, G: 120, B: 120, A: 255}}
	colorWorst  = color.RGBA{R: 200, G: 60, A: 255}
	colorTotal  = color.RGBA{B: 160, A: 255}
	colorMark   = color.RGBA{R: 150, G: 150, B: 150, A: 255}
)

// plotLoopBench draws one column per run: the time lag (worst partition
// and the hot one), the total offset lag, the levels (monitor and
// producers) and the rates admitted by class with the records handled;
// a dashed line marks the overload's end.
func plotLoopBench(path string, cfg benchConfig, runs []*loopRun) error {
	const rows = 4
	tiles := make([][]*plot.Plot, rows)
	for i := range tiles {
		tiles[i] = make([]*plot.Plot, len(runs))
	}
	for j, r := range runs {
		col, err := runPlots(cfg, r)
		if err != nil {
			return err
		}
		for i := range rows {
			tiles[i][j] = col[i]
		}
	}
	img := vgimg.New(vg.Points(float64(560*len(runs))), vg.Points(900))
	dc := draw.New(img)
	canvases := plot.Align(tiles, draw.Tiles{Rows: rows, Cols: len(runs), PadX: vg.Points(12), PadY: vg.Points(8),
		PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(6)}, dc)
	for i := range tiles {
		for j := range tiles[i] {
			tiles[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// runPlots returns a run's four panels.
func runPlots(cfg benchConfig, r *loopRun) ([]*plot.Plot, error) {
	n := len(r.samples)
	worst, hot, total, level, plevel := make(plotter.XYs, n), make(plotter.XYs, n), make(plotter.XYs, n), make(plotter.XYs, n), make(plotter.XYs, 0, n)
	for i, s := range r.samples {
		x := s.At.Seconds()
		w := s.TimeLag
		for _, l := range s.PartTime {
			w = max(w, l)
		}
		worst[i] = plotter.XY{X: x, Y: w.Seconds()}
		hot[i] = plotter.XY{X: x, Y: s.PartTime[0].Seconds()}
		total[i] = plotter.XY{X: x, Y: float64(s.OffsetLag)}
		level[i] = plotter.XY{X: x, Y: float64(s.Level)}
		if s.ProducerLevel >= 0 {
			plevel = append(plevel, plotter.XY{X: x, Y: float64(s.ProducerLevel) + 0.05})
		}
	}
	var rates [3]plotter.XYs
	handled := make(plotter.XYs, 0, n)
	for i := 1; i < n; i++ {
		a, b := r.samples[i-1], r.samples[i]
		dt := (b.At - a.At).Seconds()
		x := b.At.Seconds()
		for c := range rates {
			rates[c] = append(rates[c], plotter.XY{X: x, Y: float64(b.Class[c].Admitted-a.Class[c].Admitted) / dt})
		}
		handled = append(handled, plotter.XY{X: x, Y: float64(b.Handled-a.Handled) / dt})
	}
	title := map[string]string{"plain": "plain kgo producers", "aware": "pressure-aware producers"}[r.name]
	overEnd := cfg.Overload.Seconds()

	pLag := newPanel(title+": time lag", "seconds")
	if err := addLines(pLag, overEnd, line{"worst partition", worst, colorWorst, false}, line{"partition 0 (hot)", hot, colorTotal, true}); err != nil {
		return nil, err
	}
	pOff := newPanel("total offset lag", "records")
	if err := addLines(pOff, overEnd, line{"all partitions", total, colorTotal, false}); err != nil {
		return nil, err
	}
	pLevel := newPanel("level (0 ok, 1 elevated, 2 high, 3 critical)", "level")
	pLevel.Y.Min, pLevel.Y.Max = -0.2, 3.2
	lines := []line{{"monitor", level, colorWorst, false}}
	if len(plevel) > 0 {
		lines = append(lines, line{"producers (highest)", plevel, colorTotal, true})
	}
	if err := addLines(pLevel, overEnd, lines...); err != nil {
		return nil, err
	}
	pRate := newPanel("admitted (acknowledged) by class, and handled", "records/s")
	pRate.X.Label.Text = "seconds from start"
	lines = nil
	for c := range rates {
		lines = append(lines, line{string(benchClasses[c]), rates[c], classColors[c], false})
	}
	lines = append(lines, line{"handled", handled, color.Black, true})
	if err := addLines(pRate, overEnd, lines...); err != nil {
		return nil, err
	}
	return []*plot.Plot{pLag, pOff, pLevel, pRate}, nil
}

func newPanel(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// line is one series of a panel.
type line struct {
	name   string
	xys    plotter.XYs
	color  color.Color
	dashed bool
}

// addLines adds the series to p, and a dashed vertical mark at x = mark
// spanning them.
func addLines(p *plot.Plot, mark float64, ls ...line) error {
	lo, hi := 0.0, 1.0
	for _, l := range ls {
		if len(l.xys) == 0 {
			continue
		}
		pl, err := plotter.NewLine(l.xys)
		if err != nil {
			return fmt.Errorf("plotting %s: %w", l.name, err)
		}
		pl.Color = l.color
		pl.Width = vg.Points(1)
		if l.dashed {
			pl.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		p.Add(pl)
		p.Legend.Add(l.name, pl)
		for _, xy := range l.xys {
			lo, hi = min(lo, xy.Y), max(hi, xy.Y)
		}
	}
	if p.Y.Max > p.Y.Min { // a fixed range
		lo, hi = p.Y.Min, p.Y.Max
	}
	m, err := plotter.NewLine(plotter.XYs{{X: mark, Y: lo}, {X: mark, Y: hi}})
	if err != nil {
		return err
	}
	m.Color = colorMark
	m.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(m)
	return nil
}
