package kretry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestDoRetriesUntilReady(t *testing.T) {
	calls := 0
	v, err := Do(context.Background(), NotReady, func(context.Context) (int, error) {
		calls++
		switch calls {
		case 1:
			return 0, fmt.Errorf("describing: %w", kerr.CoordinatorNotAvailable)
		case 2:
			return 0, errors.Join(errors.New("shard"), kerr.CoordinatorLoadInProgress)
		case 3:
			return 0, kerr.NotCoordinator
		}
		return calls, nil
	})
	if err != nil || calls != 4 || v != 4 {
		t.Fatalf("Do = %d, %v after %d calls, want 4, nil after 4", v, err, calls)
	}
}

func TestDoReturnsOtherErrorsAtOnce(t *testing.T) {
	calls := 0
	_, err := Do(context.Background(), NotReady, func(context.Context) (int, error) {
		calls++
		return 0, fmt.Errorf("lag: %w", kerr.GroupIDNotFound)
	})
	if !errors.Is(err, kerr.GroupIDNotFound) || calls != 1 {
		t.Fatalf("Do = %v after %d calls, want GROUP_ID_NOT_FOUND after 1", err, calls)
	}
}

func TestDoEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := Do(ctx, NotReady, func(context.Context) (int, error) {
		if calls++; calls == 3 {
			cancel()
		}
		return 0, kerr.CoordinatorNotAvailable
	})
	if !errors.Is(err, kerr.CoordinatorNotAvailable) || calls != 3 {
		t.Fatalf("Do = %v after %d calls, want the last COORDINATOR_NOT_AVAILABLE after 3", err, calls)
	}
}

func TestDoRetriesATopicNotServed(t *testing.T) {
	calls := 0
	_, err := Do(context.Background(), NotServed, func(context.Context) (int32, error) {
		switch calls++; calls {
		case 1:
			return 0, fmt.Errorf("looking up: %w", kerr.UnknownTopicOrPartition)
		case 2:
			return 0, kerr.LeaderNotAvailable
		}
		return 0, kerr.TopicAuthorizationFailed
	})
	if calls != 3 || !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("%d calls, error %v: want the unknown topic and the missing leader retried, and the third error returned", calls, err)
	}
}
