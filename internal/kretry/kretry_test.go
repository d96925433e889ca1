package kretry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestCoordinatorRetriesUntilReady(t *testing.T) {
	calls := 0
	err := Coordinator(context.Background(), func(context.Context) error {
		calls++
		switch calls {
		case 1:
			return fmt.Errorf("describing: %w", kerr.CoordinatorNotAvailable)
		case 2:
			return errors.Join(errors.New("shard"), kerr.CoordinatorLoadInProgress)
		case 3:
			return kerr.NotCoordinator
		}
		return nil
	})
	if err != nil || calls != 4 {
		t.Fatalf("Coordinator = %v after %d calls, want nil after 4", err, calls)
	}
}

func TestCoordinatorReturnsOtherErrorsAtOnce(t *testing.T) {
	calls := 0
	err := Coordinator(context.Background(), func(context.Context) error {
		calls++
		return fmt.Errorf("lag: %w", kerr.GroupIDNotFound)
	})
	if !errors.Is(err, kerr.GroupIDNotFound) || calls != 1 {
		t.Fatalf("Coordinator = %v after %d calls, want GROUP_ID_NOT_FOUND after 1", err, calls)
	}
}

func TestCoordinatorEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Coordinator(ctx, func(context.Context) error {
		if calls++; calls == 3 {
			cancel()
		}
		return kerr.CoordinatorNotAvailable
	})
	if !errors.Is(err, kerr.CoordinatorNotAvailable) || calls != 3 {
		t.Fatalf("Coordinator = %v after %d calls, want the last COORDINATOR_NOT_AVAILABLE after 3", err, calls)
	}
}

func TestWhileRetriesAnUnknownTopic(t *testing.T) {
	calls := 0
	err := While(context.Background(), UnknownTopic, func(context.Context) error {
		if calls++; calls < 3 {
			return fmt.Errorf("looking up: %w", kerr.UnknownTopicOrPartition)
		}
		return kerr.TopicAuthorizationFailed
	})
	if calls != 3 || !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("%d calls, error %v: want the unknown topic retried twice and the third error returned", calls, err)
	}
}
