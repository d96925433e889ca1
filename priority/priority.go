// Package priority names the classes of work floodgate treats differently
// under pressure, and orders them: the most important is served last when
// work must be shed, throttled or paused, the least important first.
//
// # Classes
//
// A [Class] is a name. [Critical], [Normal] and [Bulk] are the default
// classes, in that order of importance ([Default]); an application may
// define its own, in an [Order] of its own, most important first.
//
// # Which class a piece of work is
//
// On the producer side, a record's class is its [Header] header's value
// (UTF-8 text, any Kafka tool shows it) or what the producer call says;
// on the consumer side, a topic's class comes from a [Topics] mapping.
//
// # Concurrency
//
// The types here are values, safe for concurrent reads once built.
package priority

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Class is a class of work, by name.
type Class string

// The default classes, most important first.
const (
	Critical Class = "critical" // served whatever the pressure, throttled only at the worst
	Normal   Class = "normal"   // the default class
	Bulk     Class = "bulk"     // what can wait, or be shed, first
)

// Header is the record header that carries a record's class, as the
// class's name.
const Header = "floodgate-priority"

// ErrUnknownClass is wrapped by the errors of a class that an [Order] does
// not list.
var ErrUnknownClass = errors.New("priority: unknown class")

// Order lists classes from the most important to the least. The zero
// value is not usable; see [Default] and [NewOrder].
type Order struct {
	classes []Class
}

// Default is the order Critical, Normal, Bulk.
var Default = Order{classes: []Class{Critical, Normal, Bulk}}

// NewOrder returns the order of classes, most important first. Names must
// be non-empty, distinct, and without spaces or commas.
func NewOrder(classes ...Class) (Order, error) {
	if len(classes) == 0 {
		return Order{}, errors.New("priority: an order needs at least one class")
	}
	seen := make(map[Class]bool, len(classes))
	for _, c := range classes {
		if c == "" || strings.ContainsAny(string(c), " ,\t\n") {
			return Order{}, fmt.Errorf("priority: class name %q must be non-empty, without spaces or commas", c)
		}
		if seen[c] {
			return Order{}, fmt.Errorf("priority: class %q listed twice", c)
		}
		seen[c] = true
	}
	return Order{classes: slices.Clone(classes)}, nil
}

// Classes returns the classes, most important first.
func (o Order) Classes() []Class { return slices.Clone(o.classes) }

// Rank returns c's place in the order, 0 for the most important; ok is
// false for a class the order does not list.
func (o Order) Rank(c Class) (rank int, ok bool) {
	i := slices.Index(o.classes, c)
	return i, i >= 0
}

// Parse returns the class named s, if the order lists it.
func (o Order) Parse(s string) (Class, error) {
	c := Class(strings.TrimSpace(s))
	if _, ok := o.Rank(c); !ok {
		return "", fmt.Errorf("%w %q (known: %s)", ErrUnknownClass, s, o)
	}
	return c, nil
}

// MoreImportant reports whether a is more important than b; a class the
// order does not list is the least important.
func (o Order) MoreImportant(a, b Class) bool {
	ra, oka := o.Rank(a)
	rb, okb := o.Rank(b)
	switch {
	case !oka:
		return false
	case !okb:
		return true
	}
	return ra < rb
}

// Least returns the least important class.
func (o Order) Least() Class { return o.classes[len(o.classes)-1] }

func (o Order) String() string {
	s := make([]string, len(o.classes))
	for i, c := range o.classes {
		s[i] = string(c)
	}
	return strings.Join(s, ",")
}

// Topics maps topics to classes, for a consumer that reads several: a
// topic not listed has the default class. The zero value maps every topic
// to [Normal].
type Topics struct {
	byTopic map[string]Class
	def     Class
}

// NewTopics returns a mapping of topics to classes of order, with def for
// the topics not listed.
func NewTopics(o Order, def Class, classes map[string]Class) (Topics, error) {
	if _, ok := o.Rank(def); !ok {
		return Topics{}, fmt.Errorf("default class: %w %q", ErrUnknownClass, def)
	}
	m := make(map[string]Class, len(classes))
	for t, c := range classes {
		if _, ok := o.Rank(c); !ok {
			return Topics{}, fmt.Errorf("topic %q: %w %q", t, ErrUnknownClass, c)
		}
		m[t] = c
	}
	return Topics{byTopic: m, def: def}, nil
}

// Of returns topic's class.
func (t Topics) Of(topic string) Class {
	if c, ok := t.byTopic[topic]; ok {
		return c
	}
	if t.def == "" {
		return Normal
	}
	return t.def
}
