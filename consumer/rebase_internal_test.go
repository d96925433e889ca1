package consumer

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/partition"
)

// TestRebaseKeepsOlderRecordsUncommitted: after data loss restarts a
// partition's tracking below what was admitted, a record of the older
// generation that is still running (below the reset, so still in the log)
// holds commits and the restart offset at or below it until it finished;
// one that ended without a terminal state holds them for good.
func TestRebaseKeepsOlderRecordsUncommitted(t *testing.T) {
	for _, terminal := range []bool{true, false} {
		rt := &Runtime{}
		ps := &pstate{tp: tp{"t", 0}, win: partition.NewWindow(partition.Limits{MaxRecords: 1000, MaxBytes: 1 << 20}),
			commit: -1, next: -1, floor: -1}
		// Records 100..199 admitted; 100..119 and 121..199 done, 120 runs.
		var held item
		for off := int64(100); off < 200; off++ {
			seq, _ := ps.tr.Add(off, 0, partition.Stamps{})
			it := item{rec: &kgo.Record{Offset: off}, seq: seq, gen: ps.gen, size: 1}
			ps.win.Add(1)
			ps.running++
			rt.inflight++
			if off == 120 {
				held = it
				continue
			}
			rt.finish(ps, it, true)
		}
		// The log was truncated at 180: tracking starts over there, and
		// the new generation's records complete.
		rt.rebase(ps)
		for off := int64(180); off < 250; off++ {
			seq, _ := ps.tr.Add(off, 0, partition.Stamps{})
			ps.win.Add(1)
			ps.running++
			rt.inflight++
			rt.finish(ps, item{rec: &kgo.Record{Offset: off}, seq: seq, gen: ps.gen, size: 1}, true)
		}
		offsets, _ := ps.addUncommitted(nil, nil, time.Time{})
		if got := offsets["t"][0].Offset; got != 120 {
			t.Fatalf("commit %d while record 120 of the older generation runs, want 120", got)
		}
		if at, ok := ps.restartAt(); !ok || at.Offset != 120 {
			t.Fatalf("restart at %v (%v) while record 120 runs, want 120", at, ok)
		}
		rt.finish(ps, held, terminal)
		offsets, _ = ps.addUncommitted(nil, nil, time.Time{})
		want := int64(250)
		if !terminal {
			want = 120
		}
		if got := offsets["t"][0].Offset; got != want {
			t.Fatalf("record 120 ended (terminal %v): commit %d, want %d", terminal, got, want)
		}
		if at, _ := ps.restartAt(); at.Offset != want {
			t.Fatalf("record 120 ended (terminal %v): restart at %d, want %d", terminal, at.Offset, want)
		}
	}
}
