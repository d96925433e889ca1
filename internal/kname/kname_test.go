package kname

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		name            string
		topic, instance bool
	}{
		{"orders", true, true},
		{"a.b_c-D9", true, true},
		{strings.Repeat("x", MaxLen), true, true},
		{strings.Repeat("x", MaxLen+1), false, false},
		{"", false, false},
		{".", false, true},
		{"..", false, true},
		{"a b", false, false},
		{"a/b", false, false},
		{"é", false, false},
	} {
		if got := Topic(tc.name); got != tc.topic {
			t.Errorf("Topic(%q) = %v, want %v", tc.name, got, tc.topic)
		}
		if got := InstanceID(tc.name); got != tc.instance {
			t.Errorf("InstanceID(%q) = %v, want %v", tc.name, got, tc.instance)
		}
	}
}
