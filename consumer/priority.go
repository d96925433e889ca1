package consumer

import (
	"github.com/floodgate-kafka/floodgate/partition"
	"github.com/floodgate-kafka/floodgate/priority"
)

// WithPriorities gives the topics the runtime consumes priority classes:
// order ranks the classes (priority.Default: critical, normal, bulk) and
// topics maps each topic to its class. When the bytes in flight near
// MaxBufferedBytes, the partitions of the less important classes pause
// first (reason partition.Priority), and as the bytes drain they resume in
// the reverse order, so that the most important class keeps the memory:
//
//   - the least important class pauses at 70% of MaxBufferedBytes, each
//     more important class 10 points later, the most important never
//     (the budget itself still bounds it, reason partition.Memory);
//   - a class resumes 20 points below where it paused (least important 50%).
//
// A lag monitor (package lagmonitor) can also pause the less important
// classes while a more important one lags: [Runtime.ClassOf] says which
// class a topic is. Default: no classes.
func WithPriorities(order priority.Order, topics priority.Topics) Opt {
	return opt(func(c *cfg) { c.order, c.classes, c.hasClasses = order, topics, true })
}

// prioMark is when the partitions of one class pause and resume for the
// byte budget.
type prioMark struct {
	pause, resume int64
	paused        bool
}

// initPriorities computes the marks of every class but the most
// important. Called once, from newRuntime.
func (rt *Runtime) initPriorities() {
	if !rt.cfg.hasClasses {
		return
	}
	classes := rt.cfg.order.Classes()
	k := len(classes)
	rt.prioMarks = make([]prioMark, k)
	for r := 1; r < k; r++ { // rank 0, the most important, has no mark
		pausePct := 70 + 10*(k-1-r) // least important (r = k-1): 70
		if pausePct >= 100 {
			pausePct = 95
		}
		rt.prioMarks[r] = prioMark{
			pause:  rt.cfg.maxBufferedBytes * int64(pausePct) / 100,
			resume: rt.cfg.maxBufferedBytes * int64(pausePct-20) / 100,
		}
	}
}

// rankOf returns the rank of topic's class, -1 without classes.
func (rt *Runtime) rankOf(topic string) int {
	if !rt.cfg.hasClasses {
		return -1
	}
	r, ok := rt.cfg.order.Rank(rt.cfg.classes.Of(topic))
	if !ok {
		return len(rt.prioMarks) - 1 // a class the order does not list is the least important
	}
	return r
}

// checkPriorities pauses or resumes classes as the bytes in flight cross
// their marks. Called with mu held, after admissions and releases.
func (rt *Runtime) checkPriorities() {
	for r := 1; r < len(rt.prioMarks); r++ {
		m := &rt.prioMarks[r]
		switch {
		case !m.paused && rt.buffered >= m.pause:
			m.paused = true
			rt.prioPaused++
			for _, ps := range rt.parts {
				if ps.rank == r && !ps.revoking {
					rt.setReason(ps, partition.Priority)
				}
			}
		case m.paused && rt.buffered <= m.resume:
			m.paused = false
			rt.prioPaused--
			for _, ps := range rt.parts {
				if ps.rank == r {
					rt.clearReason(ps, partition.Priority)
				}
			}
			rt.wake()
		}
	}
}

// ClassOf returns the priority class of topic, and false when the runtime
// has no classes ([WithPriorities]).
func (rt *Runtime) ClassOf(topic string) (priority.Class, bool) {
	if !rt.cfg.hasClasses {
		return "", false
	}
	return rt.cfg.classes.Of(topic), true
}

// Order returns the runtime's order of classes, and false when it has
// none.
func (rt *Runtime) Order() (priority.Order, bool) {
	return rt.cfg.order, rt.cfg.hasClasses
}
