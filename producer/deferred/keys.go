package deferred

import (
	"slices"
	"sync"
)

// keys tracks, per destination topic, the keys that have deferred
// records the relay has not yet delivered: a key is held from the moment
// a record of it is handed to the lane (its produce to the deferred
// topic in flight) until the relay's group has committed past the last
// deferred record of it that is known (its own, acknowledged, and those
// the follower reads, which other producers deferred) in every deferred
// partition that holds one. A key's records are in one partition while
// the deferred topic's partition count stays as it was (the lane checks
// that its client partitions by key); they are in several after the
// count changed, and the key is then held until each is delivered past.
type keys struct {
	mu        sync.Mutex
	byTopic   map[string]map[string]*keyEntry // destination → key → entry
	committed map[string]map[int32]int64      // deferred topic → partition → the relay's committed offset
}

// keyEntry is one held key.
type keyEntry struct {
	inflight int       // records of the key handed to the lane, not yet acknowledged
	last     []partOff // per deferred partition holding a record of it not known delivered, the last one's offset
}

// partOff is a record's place on a deferred topic.
type partOff struct {
	part int32
	off  int64
}

func newKeys() *keys {
	return &keys{byTopic: make(map[string]map[string]*keyEntry), committed: make(map[string]map[int32]int64)}
}

// holds reports whether key of topic is held.
func (k *keys) holds(topic string, key []byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.byTopic[topic][string(key)] != nil
}

// entry returns the entry of key, made if need be. k.mu is held.
func (k *keys) entry(topic string, key []byte) *keyEntry {
	m := k.byTopic[topic]
	if m == nil {
		m = make(map[string]*keyEntry)
		k.byTopic[topic] = m
	}
	e := m[string(key)]
	if e == nil {
		e = &keyEntry{}
		m[string(key)] = e
	}
	return e
}

// handing holds key while a record of it is being deferred.
func (k *keys) handing(topic string, key []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.entry(topic, key).inflight++
}

// handed records the outcome of handing: deferred at (part, off) on
// deferredTopic, or not (ok false).
func (k *keys) handed(topic, deferredTopic string, key []byte, part int32, off int64, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.entry(topic, key)
	e.inflight--
	if ok {
		e.see(part, off)
	}
	k.pruneLocked(topic, deferredTopic, key, e)
}

// seen records a deferred record of key that the follower read.
func (k *keys) seen(topic, deferredTopic string, key []byte, part int32, off int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.committed[deferredTopic][part]; ok && off < c {
		return // delivered already: nothing to hold
	}
	e := k.entry(topic, key)
	e.see(part, off)
	k.pruneLocked(topic, deferredTopic, key, e)
}

// see notes a record of the key at off in part.
func (e *keyEntry) see(part int32, off int64) {
	for i := range e.last {
		if e.last[i].part == part {
			e.last[i].off = max(e.last[i].off, off)
			return
		}
	}
	e.last = append(e.last, partOff{part, off})
}

// pruneLocked forgets the partitions of e the relay committed past, and
// drops e once none is left and nothing of its key is in flight.
func (k *keys) pruneLocked(topic, deferredTopic string, key []byte, e *keyEntry) {
	committed := k.committed[deferredTopic]
	e.last = slices.DeleteFunc(e.last, func(po partOff) bool {
		c, ok := committed[po.part]
		return ok && c > po.off
	})
	if e.inflight == 0 && len(e.last) == 0 {
		delete(k.byTopic[topic], string(key))
	}
}

// setCommitted records the relay group's committed offsets of
// deferredTopic (the destination's) and releases the keys they pass. A
// key whose offsets did not move has nothing to release (handed and seen
// prune against the offsets known): the held keys are walked only when
// an offset advanced.
func (k *keys) setCommitted(topic, deferredTopic string, offsets map[int32]int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.committed[deferredTopic]
	if c == nil {
		c = make(map[int32]int64)
		k.committed[deferredTopic] = c
	}
	advanced := false
	for p, o := range offsets {
		if prev, ok := c[p]; !ok || o > prev {
			c[p] = o
			advanced = true
		}
	}
	if !advanced {
		return
	}
	for key, e := range k.byTopic[topic] {
		k.pruneLocked(topic, deferredTopic, []byte(key), e)
	}
}

// count returns the keys held.
func (k *keys) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, m := range k.byTopic {
		n += len(m)
	}
	return n
}
