package testkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate-kafka/floodgate/consumer"
	"github.com/floodgate-kafka/floodgate/partition"
)

// Run starts rt.Run in a goroutine. The returned stop cancels it and
// checks that it returned nil within a minute; it also runs at cleanup.
func Run(tb testing.TB, rt *consumer.Runtime) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- rt.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					tb.Errorf("Run returned %v", err)
				}
			case <-time.After(time.Minute):
				tb.Errorf("Run did not return within a minute of cancel")
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// PauseCounter is a hook counting partitions paused and resumed and
// records refetched.
type PauseCounter struct{ Paused, Resumed, Refetched atomic.Int64 }

// OnPartitionsPaused implements consumer.HookPartitionsPaused.
func (p *PauseCounter) OnPartitionsPaused(m map[string]map[int32]partition.Reasons) {
	for _, ps := range m {
		p.Paused.Add(int64(len(ps)))
	}
}

// OnPartitionsResumed implements consumer.HookPartitionsResumed.
func (p *PauseCounter) OnPartitionsResumed(m map[string][]int32) {
	for _, ps := range m {
		p.Resumed.Add(int64(len(ps)))
	}
}

// OnRecordsRefetch implements consumer.HookRecordsRefetch.
func (p *PauseCounter) OnRecordsRefetch(_ string, _ int32, _ int64, n int) { p.Refetched.Add(int64(n)) }

// RevokeCounter is a hook counting revoked partitions.
type RevokeCounter struct{ Revoked atomic.Int64 }

// OnAssigned implements consumer.HookRebalance.
func (*RevokeCounter) OnAssigned(map[string][]int32) {}

// OnRevoked implements consumer.HookRebalance.
func (r *RevokeCounter) OnRevoked(m map[string][]int32, _ int) {
	for _, ps := range m {
		r.Revoked.Add(int64(len(ps)))
	}
}

// OnLost implements consumer.HookRebalance.
func (*RevokeCounter) OnLost(map[string][]int32, int) {}

// Child is a consumer child process: the test binary run again with extra
// environment, reporting each handled record on stdout as "partition
// offset" lines (see [ReportHandled]), which are fed to a ledger.
type Child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartChild re-executes the test binary (running no test) with env and
// feeds the records it reports into ledger under topic.
func StartChild(tb testing.TB, env []string, ledger *Ledger, topic string) *Child {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c := &Child{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var p int32
			var o int64
			if _, err := fmt.Sscanf(sc.Text(), "%d %d", &p, &o); err == nil {
				ledger.Handled(topic, p, o)
			}
		}
	}()
	return c
}

// Kill sends SIGKILL: no drain, no commit, no leave. It waits until the
// child's output is consumed and the process reaped.
func (c *Child) Kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	_ = c.cmd.Wait()
}

// ReportHandled returns a function for the child side that writes one
// "partition offset" line per handled record and flushes it, so that a
// record is reported before its handler returns (before it can be
// committed). It is safe for concurrent use.
func ReportHandled(w io.Writer) func(partition int32, offset int64) error {
	var mu sync.Mutex
	out := bufio.NewWriter(w)
	return func(p int32, o int64) error {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "%d %d\n", p, o)
		return out.Flush()
	}
}
