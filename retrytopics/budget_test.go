package retrytopics

import (
	"testing"
	"time"
)

func TestBudgetRatioAndFloor(t *testing.T) {
	b := newBudget(0.1, 1, 10*time.Second)
	now := time.Unix(1000, 0)
	// The floor alone: 1/s over a 10s window.
	granted := 0
	for i := 0; i < 100; i++ {
		if b.withdraw(now) {
			granted++
		}
	}
	if granted != 10 {
		t.Fatalf("floor granted %d retries, want 10", granted)
	}
	// 1000 first attempts add 100 retries.
	for i := 0; i < 1000; i++ {
		b.deposit(now)
	}
	granted = 0
	for i := 0; i < 1000; i++ {
		if b.withdraw(now) {
			granted++
		}
	}
	if granted != 100 {
		t.Fatalf("ratio granted %d retries, want 100", granted)
	}
	// The window slides: 10 seconds later the old deposits and withdrawals
	// are gone, and the floor is back.
	later := now.Add(10 * time.Second)
	granted = 0
	for i := 0; i < 100; i++ {
		if b.withdraw(later) {
			granted++
		}
	}
	if granted != 10 {
		t.Fatalf("after the window granted %d, want 10", granted)
	}
}
