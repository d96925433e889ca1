package producer

import (
	"fmt"
	"strings"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
	"github.com/floodgate-kafka/floodgate/priority"
)

// Action is what admission does with a record of one class at one
// pressure level: a cell of a [Policy].
type Action int8

// The actions, from the least strict to the strictest. Defer, Shed and
// FailFast are equally strict: each refuses the record at once.
const (
	// Admit produces the record at once. Its class's recent demand is
	// still reserved out of the topic's rate before a less important
	// class is given a rate (see the package documentation, "Rates").
	Admit Action = iota
	// Limit produces the record within its class's rate: at once if a
	// token is free, after a wait if one frees within the cap, else it
	// fails with [ErrThrottled].
	Limit
	// Defer hands the record to the [Deferrer] (see [WithDeferrer]),
	// which delivers it later; a policy with a Defer cell needs one.
	Defer
	// Shed refuses the record at once with [ErrShed]: its class is
	// dropped at this level.
	Shed
	// FailFast refuses the record at once with [ErrOverloaded], so that
	// the caller can answer its own caller at once (for example HTTP
	// 503 with Retry-After) instead of holding it.
	FailFast
)

var actionNames = [...]string{"admit", "limit", "defer", "shed", "fail-fast"}

// String returns the action's name: "admit", "limit", "defer", "shed" or
// "fail-fast".
func (a Action) String() string {
	if a >= Admit && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int8(a))
}

// severity orders actions for the policy's checks: admit < limit < the
// refusals.
func (a Action) severity() int {
	switch a {
	case Admit:
		return 0
	case Limit:
		return 1
	}
	return 2
}

// levels are the pressure levels a policy has a row for, ok first.
var levels = [...]lagmonitor.Level{lagmonitor.LevelOK, lagmonitor.LevelElevated, lagmonitor.LevelHigh, lagmonitor.LevelCritical}

// defaultRows are the rows of [DefaultPolicy] for the classes critical,
// normal and bulk, by level.
var defaultRows = [len(levels)][3]Action{
	lagmonitor.LevelOK:       {Admit, Admit, Admit},
	lagmonitor.LevelElevated: {Admit, Admit, Limit},
	lagmonitor.LevelHigh:     {Admit, Limit, Shed},
	lagmonitor.LevelCritical: {Limit, FailFast, Shed},
}

// Policy is the admission table: for each pressure level and each class
// of an order, an [Action]. [DefaultPolicy] builds the default; With
// overrides one cell. A Policy is a value: With returns a changed copy.
// Its checks happen once, in [Policy.Validate], which [New] and [Wrap]
// call; an invalid With (an unknown level or class) is reported there.
// The zero value is not usable.
type Policy struct {
	order priority.Order
	cells [len(levels)][]Action // by level, by rank
	err   error                 // the first invalid With
}

// DefaultPolicy returns the default table for the classes of o:
//
//	level      critical   normal     bulk
//	ok         admit      admit      admit
//	elevated   admit      admit      limit
//	high       admit      limit      shed
//	critical   limit      fail-fast  shed
//
// An order of one's own is mapped by rank: its most important class
// (rank 0) takes the critical column, its least important the bulk
// column, and every class between them the normal column. An order of
// one class takes the critical column (it is the most important work
// there is: limited at the worst, never shed); one of two classes takes
// the critical and bulk columns.
func DefaultPolicy(o priority.Order) Policy {
	classes := o.Classes()
	p := Policy{order: o}
	if len(classes) == 0 {
		p.err = configErr("Policy", "built from an empty order (use priority.Default or priority.NewOrder)")
		return p
	}
	for l := range levels {
		row := make([]Action, len(classes))
		for rank := range classes {
			row[rank] = defaultRows[l][defaultColumn(rank, len(classes))]
		}
		p.cells[l] = row
	}
	return p
}

// defaultColumn returns the column of [DefaultPolicy] (0 critical, 1
// normal, 2 bulk) of the class of rank rank among n.
func defaultColumn(rank, n int) int {
	switch {
	case rank == 0:
		return 0
	case rank == n-1:
		return 2
	}
	return 1
}

// Order returns the order of classes the policy has columns for.
func (p Policy) Order() priority.Order { return p.order }

// With returns a copy of p whose cell for level and class is a. An
// unknown level or class (or action) makes the copy invalid, which
// [Policy.Validate] reports.
func (p Policy) With(level lagmonitor.Level, class priority.Class, a Action) Policy {
	if p.err != nil {
		return p
	}
	rank, ok := p.order.Rank(class)
	switch {
	case level < lagmonitor.LevelOK || level > lagmonitor.LevelCritical:
		p.err = configErr("Policy", "With: unknown level %v", level)
		return p
	case !ok:
		p.err = configErr("Policy", "With: %v %q (the policy's order is %s)", priority.ErrUnknownClass, class, p.order)
		return p
	case a < Admit || a > FailFast:
		p.err = configErr("Policy", "With: unknown action %v", a)
		return p
	}
	row := append([]Action(nil), p.cells[level]...)
	row[rank] = a
	p.cells[level] = row
	return p
}

// DeferringShed returns a copy of p in which classes (by default the
// least important class of its order) are deferred wherever p sheds
// them: with a deferred lane ([WithDeferrer]), that work is parked and
// delivered later instead of being dropped. A class the order does not
// list makes the copy invalid, as in [Policy.With].
func (p Policy) DeferringShed(classes ...priority.Class) Policy {
	if len(classes) == 0 {
		if cs := p.order.Classes(); len(cs) > 0 {
			classes = cs[len(cs)-1:]
		}
	}
	for _, c := range classes {
		for _, l := range levels {
			if rank, ok := p.order.Rank(c); ok && p.cells[l] != nil && p.cells[l][rank] != Shed {
				continue
			}
			p = p.With(l, c, Defer)
		}
	}
	return p
}

// Action returns the cell for level and class. A level above critical
// reads as critical, one below ok as ok; a class the order does not list
// reads as its least important class (as [priority.Order.MoreImportant]
// ranks it).
func (p Policy) Action(level lagmonitor.Level, class priority.Class) Action {
	rank, ok := p.order.Rank(class)
	if !ok {
		rank = len(p.cells[0]) - 1
	}
	return p.cell(level, rank)
}

func (p Policy) cell(level lagmonitor.Level, rank int) Action {
	level = min(max(level, lagmonitor.LevelOK), lagmonitor.LevelCritical)
	return p.cells[level][rank]
}

// Validate reports the first problem of p, naming the cell, wrapped
// around [ErrInvalidConfig]:
//
//   - the ok row must admit every class: a live "ok" signal cannot be
//     stricter than no signal at all (fail-open);
//   - pressure never relaxes a class: a class's action at a level is at
//     least as strict as at the level below (admit, then limit, then
//     any refusal);
//   - importance means something: at each level a class's action is at
//     most as strict as that of any less important class.
func (p Policy) Validate() error {
	if p.err != nil {
		return p.err
	}
	n := len(p.order.Classes())
	if n == 0 || len(p.cells[0]) != n {
		return configErr("Policy", "is the zero value: build it with DefaultPolicy")
	}
	classes := p.order.Classes()
	for rank, c := range classes {
		if a := p.cells[lagmonitor.LevelOK][rank]; a != Admit {
			return configErr(cellName(lagmonitor.LevelOK, c), "is %s: the ok row must admit every class (an ok signal means no pressure)", a)
		}
	}
	for l := 1; l < len(levels); l++ {
		for rank, c := range classes {
			a, below := p.cells[l][rank], p.cells[l-1][rank]
			if a.severity() < below.severity() {
				return configErr(cellName(levels[l], c), "is %s, less strict than %s at %s: pressure must not relax a class", a, below, levels[l-1])
			}
			if rank > 0 {
				if more := p.cells[l][rank-1]; more.severity() > a.severity() {
					return configErr(cellName(levels[l], classes[rank-1]), "is %s, stricter than %s for the less important %s", more, a, c)
				}
			}
		}
	}
	return nil
}

// hasDefer reports whether a cell of p defers.
func (p Policy) hasDefer() (lagmonitor.Level, priority.Class, bool) {
	classes := p.order.Classes()
	for l := range levels {
		for rank, a := range p.cells[l] {
			if a == Defer {
				return levels[l], classes[rank], true
			}
		}
	}
	return 0, "", false
}

func cellName(l lagmonitor.Level, c priority.Class) string {
	return fmt.Sprintf("Policy[%s][%s]", l, c)
}

// String renders the table, one line per level, as [DefaultPolicy]
// shows it.
func (p Policy) String() string {
	if p.err != nil {
		return "invalid policy: " + p.err.Error()
	}
	classes := p.order.Classes()
	width := len("elevated")
	for _, c := range classes {
		width = max(width, len(c))
	}
	for _, n := range actionNames {
		width = max(width, len(n))
	}
	var b strings.Builder
	pad := func(s string, last bool) {
		b.WriteString(s)
		if !last {
			b.WriteString(strings.Repeat(" ", width+2-len(s)))
		}
	}
	pad("level", len(classes) == 0)
	for i, c := range classes {
		pad(string(c), i == len(classes)-1)
	}
	b.WriteByte('\n')
	for l := range levels {
		if len(p.cells[l]) != len(classes) {
			break
		}
		pad(levels[l].String(), false)
		for rank, a := range p.cells[l] {
			pad(a.String(), rank == len(classes)-1)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
