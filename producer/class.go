package producer

import (
	"context"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/priority"
)

type classKey struct{}

// WithClass returns a context that gives class to the records produced
// with it, for a caller that does not set the floodgate-priority header
// on each record (kgo's Produce takes no per-call options; the context
// carries this one). A record's header, when it has one, wins.
func WithClass(ctx context.Context, class priority.Class) context.Context {
	return context.WithValue(ctx, classKey{}, class)
}

// ClassFrom returns the class [WithClass] put in ctx, if any.
func ClassFrom(ctx context.Context) (priority.Class, bool) {
	c, ok := ctx.Value(classKey{}).(priority.Class)
	return c, ok
}

// classOf returns the class of r produced with ctx, and its rank: the
// value of its last floodgate-priority header, else the class in ctx,
// else the default class. A class the order does not list counts as its
// least important (as priority.Order.MoreImportant ranks it); known is
// false then.
func (p *Producer) classOf(ctx context.Context, r *kgo.Record) (class priority.Class, rank int, known bool) {
	found := false
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == priority.Header {
			v := r.Headers[i].Value
			for rank, c := range p.ctl.classes { // no allocation for a class of the order
				if string(v) == string(c) {
					return c, rank, true
				}
			}
			class, found = priority.Class(v), true
			break
		}
	}
	if !found {
		if c, ok := ClassFrom(ctx); ok {
			class, found = c, true
		}
	}
	if !found {
		class = p.cfg.defClass
	}
	if rank, ok := p.cfg.order.Rank(class); ok {
		return class, rank, true
	}
	if c := priority.Class(strings.TrimSpace(string(class))); c != class { // surrounding spaces
		if rank, ok := p.cfg.order.Rank(c); ok {
			return c, rank, true
		}
	}
	return class, len(p.ctl.classes) - 1, false
}
