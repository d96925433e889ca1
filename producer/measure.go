package producer

import (
	"context"
	"fmt"
	"time"
)

// followLoop reads the pressure of every followed topic again whenever
// the reader's signals change, so that records waiting for admission
// decide again at once (the hot path also reads it again lazily).
func (p *Producer) followLoop() {
	defer p.loops.Done()
	for {
		ch := p.reader.Changed()
		p.refreshAll(false)
		select {
		case <-p.quit:
			return
		case <-ch:
		}
	}
}

// refreshAll reads the pressure of every followed topic again (all of
// them if force, else those whose signals changed or expired).
func (p *Producer) refreshAll(force bool) {
	now := p.cfg.now()
	for _, f := range p.followed {
		f.mu.Lock()
		lc := p.refreshLocked(f, now, force)
		f.mu.Unlock()
		p.levelChanged(lc)
	}
}

// measureLoop measures the followed topics' rates every interval, from
// Start to Close.
func (p *Producer) measureLoop() {
	defer p.loops.Done()
	tick := time.NewTicker(p.cfg.interval)
	defer tick.Stop()
	for {
		p.measure(p.ctx) // cancelled by Close
		select {
		case <-p.quit:
			return
		case <-tick.C:
		}
	}
}

// measure lists the end offsets of the followed topics and feeds each
// topic's meters: the topic's incoming rate, this producer's own, and
// each class's demand. Always, not only under a limit, so that the rates
// are known the moment a limit begins. A topic whose end offsets cannot
// all be listed keeps its last rates (and share); the failure is counted
// and logged, never blocking a record.
func (p *Producer) measure(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, measureTimeout)
	ends, err := p.adm.ListEndOffsets(ctx, p.cfg.topics...)
	cancel()
	if err != nil && isClosed(p.quit) {
		return // cancelled by Close
	}
	if err != nil {
		p.controlError(fmt.Errorf("listing the end offsets of the followed topics: %w", err))
	}
	now := p.cfg.now()
	offered := make([]uint64, len(p.ctl.classes))
	for _, f := range p.followed {
		var sum int64
		ok := err == nil && len(ends[f.topic]) > 0
		if ok {
			for _, o := range ends[f.topic] {
				if o.Err != nil {
					ok = false
					p.controlError(fmt.Errorf("listing the end offset of %s[%d]: %w", f.topic, o.Partition, o.Err))
					break
				}
				sum += o.Offset
			}
		}
		for r := range offered {
			offered[r] = f.offered[r].Load()
		}
		if ok {
			f.nparts.Store(int32(len(ends[f.topic])))
		}
		acked := f.acked.Load()
		f.mu.Lock()
		changed := f.ctl.observe(now, sum, ok, acked, offered)
		if f.rest != nil {
			changed = f.rest.observe(now, sum, ok, acked, offered) || changed
		}
		for part, hp := range f.hot {
			o, found := ends.Lookup(f.topic, part)
			for r := range offered {
				offered[r] = hp.offered[r].Load()
			}
			changed = hp.ctl.observe(now, o.Offset, ok && found && o.Err == nil, hp.acked.Load(), offered) || changed
			if _, named := f.ctl.p.Partitions[part]; !named && !hp.ctl.easing() {
				delete(f.hot, part) // no longer hot, done easing
				f.hotN.Add(-1)
				changed = true
			}
		}
		if len(f.hot) == 0 && f.rest != nil {
			f.hot, f.rest = nil, nil
		}
		if changed {
			f.broadcastLocked()
		}
		f.mu.Unlock()
	}
}
