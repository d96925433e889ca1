package lagmonitor

import (
	"time"
)

// endHistory keeps observations of a partition's end offset over time, to
// estimate when the record at an offset was appended (kafka-lag-exporter's
// interpolation): the time lag of a partition whose next record the
// consumer does not hold (a paused one, say).
//
// Its memory is fixed (historyCap points of 16 bytes), however often the
// end is observed and however long the lag: points are kept at a
// resolution that coarsens with their age. Between two kept points the
// appending time of an offset is interpolated linearly, so the estimate is
// exact for a steady append rate and, whatever the rate, wrong by at most
// the time between the two points around the offset. That time is kept
// at or below max(historyMinGap, age / historyRes) for ages up to
// historyHorizon (within 2s up to 100s, 2.4s at 2 minutes, 4.8s at 4
// minutes, 12s at 10 minutes); past it the points spread apart with the
// square of the age, and an offset older than the oldest point is given
// that point's time, a lower bound of its age.
//
// It is pure (every time is an argument) and not safe for concurrent use.
type endHistory struct {
	pts [historyCap]endPoint // oldest first; ends never decrease
	n   int
}

// endPoint is one observation of a partition's end offset; at in Unix
// nanoseconds, so that a point takes 16 bytes.
type endPoint struct {
	end, at int64
}

const (
	// historyCap bounds the points kept: 2.6 KiB per partition.
	historyCap = 168
	// historyMinGap is the finest resolution kept: observations closer
	// together than it (listings every 100ms, fetches) are merged.
	historyMinGap = 2 * time.Second
	// historyRes is the relative resolution kept: a gap between two
	// points at age a may grow to a / historyRes.
	historyRes = 50
	// historyHorizon is the age up to which that resolution holds
	// whatever the history's span: past it, the gap allowed grows with
	// the square of the age, so that all the older points take at most
	// historyRes/2 of the history (50 + 50 ln(horizon/100s) + 25 = 165
	// points, of historyCap).
	historyHorizon = 10 * time.Minute
)

// allowedGap is the gap between two points that the resolution allows at
// age (in nanoseconds).
func allowedGap(age int64) float64 {
	g := max(float64(historyMinGap), float64(age)/historyRes)
	if r := float64(age) / float64(historyHorizon); r > 1 {
		g *= r * r
	}
	return g
}

func (h *endHistory) last() (endPoint, bool) {
	if h.n == 0 {
		return endPoint{}, false
	}
	return h.pts[h.n-1], true
}

// observe records that the end offset was end at at. An observation out
// of order, or of an end below the last (a truncated log), starts the
// history over.
func (h *endHistory) observe(end int64, at time.Time) {
	if end < 0 {
		return
	}
	p := endPoint{end, at.UnixNano()}
	l, ok := h.last()
	switch {
	case !ok:
	case p.at < l.at || p.end < l.end:
		h.n = 0
	case h.n >= 2 && h.pts[h.n-2].end == p.end:
		// A flat stretch is kept as its first and last observation.
		h.pts[h.n-1] = p
		return
	case h.n >= 2 && p.at-h.pts[h.n-2].at < int64(historyMinGap):
		// Finer than the resolution kept: the new point replaces the
		// last, and the gap it leaves is under historyMinGap.
		h.pts[h.n-1] = p
		return
	}
	if h.n == historyCap {
		h.thin(p.at)
	}
	h.pts[h.n] = p
	h.n++
}

// thin drops the inner point whose removal widens the history's
// uncertainty the least, relative to the resolution its age allows: a
// point between two of the same end costs nothing; otherwise the gap its
// neighbours would leave, over the gap allowed at the age of the younger
// neighbour.
func (h *endHistory) thin(now int64) {
	best, bestCost := -1, 0.0
	for i := 1; i < h.n-1; i++ {
		prev, next := h.pts[i-1], h.pts[i+1]
		cost := 0.0
		if prev.end != next.end {
			cost = float64(next.at-prev.at) / allowedGap(now-next.at)
		}
		if best < 0 || cost < bestCost {
			best, bestCost = i, cost
		}
	}
	copy(h.pts[best:h.n], h.pts[best+1:h.n])
	h.n--
}

// appendedAt estimates when the record at offset was appended: between the
// last observation whose end did not include it and the first that did,
// linearly. ok is false when no observation included it yet. An offset
// older than every observation gets the oldest observation's time, a lower
// bound of its age.
func (h *endHistory) appendedAt(offset int64) (t time.Time, ok bool) {
	// The first point whose end includes offset (ends never decrease).
	lo, hi := 0, h.n
	for lo < hi {
		mid := (lo + hi) / 2
		if h.pts[mid].end <= offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	switch {
	case lo == h.n:
		return time.Time{}, false
	case lo == 0:
		return time.Unix(0, h.pts[0].at), true
	}
	prev, p := h.pts[lo-1], h.pts[lo]
	frac := float64(offset-prev.end+1) / float64(p.end-prev.end)
	return time.Unix(0, prev.at+int64(frac*float64(p.at-prev.at))), true
}
