package priority

import (
	"errors"
	"testing"
)

func TestDefaultOrder(t *testing.T) {
	if got := Default.String(); got != "critical,normal,bulk" {
		t.Fatalf("Default = %s", got)
	}
	for _, c := range []struct {
		a, b Class
		want bool
	}{{Critical, Normal, true}, {Normal, Bulk, true}, {Bulk, Critical, false}, {Normal, Normal, false},
		{"vip", Bulk, false}, {Bulk, "vip", true}} {
		if got := Default.MoreImportant(c.a, c.b); got != c.want {
			t.Errorf("MoreImportant(%s, %s) = %v", c.a, c.b, got)
		}
	}
	if Default.Least() != Bulk {
		t.Fatal("Least is not bulk")
	}
	if c, err := Default.Parse(" bulk "); err != nil || c != Bulk {
		t.Fatalf("Parse(bulk) = %q %v", c, err)
	}
	if _, err := Default.Parse("vip"); !errors.Is(err, ErrUnknownClass) {
		t.Fatalf("Parse(vip) = %v", err)
	}
}

func TestNewOrder(t *testing.T) {
	o, err := NewOrder("gold", "silver", "bronze")
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := o.Rank("silver"); !ok || r != 1 {
		t.Fatalf("Rank(silver) = %d %v", r, ok)
	}
	for _, bad := range [][]Class{nil, {""}, {"a b"}, {"a,b"}, {"x", "x"}} {
		if _, err := NewOrder(bad...); err == nil {
			t.Errorf("NewOrder(%q) accepted", bad)
		}
	}
}

func TestTopics(t *testing.T) {
	var zero Topics
	if zero.Of("x") != Normal {
		t.Fatal("the zero mapping is not normal")
	}
	m, err := NewTopics(Default, Bulk, map[string]Class{"payments": Critical})
	if err != nil {
		t.Fatal(err)
	}
	if m.Of("payments") != Critical || m.Of("logs") != Bulk {
		t.Fatalf("payments %s, logs %s", m.Of("payments"), m.Of("logs"))
	}
	if _, err := NewTopics(Default, "vip", nil); !errors.Is(err, ErrUnknownClass) {
		t.Fatalf("unknown default: %v", err)
	}
	if _, err := NewTopics(Default, Normal, map[string]Class{"t": "vip"}); !errors.Is(err, ErrUnknownClass) {
		t.Fatalf("unknown topic class: %v", err)
	}
}
