package testkit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

const childClusterEnv = "FLOODGATE_KFAKE_CHILD" // partitions|topic,topic...

// ChildCluster starts a kfake cluster seeded with topics in a child
// process (the test binary run again, see [ServeChildCluster]) and returns
// its seed brokers; the child stops when the test ends. Benchmarks use it
// so that the broker's work is not counted against the client's CPU and
// does not compete with it inside one Go runtime.
func ChildCluster(tb testing.TB, partitions int32, topics ...string) []string {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d|%s", childClusterEnv, partitions, strings.Join(topics, ",")))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting the kfake child: %v", err)
	}
	tb.Cleanup(func() {
		stdin.Close() // the child closes its cluster and exits
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		addrs, found := strings.CutPrefix(l, "brokers ")
		if !ok || !found {
			tb.Fatalf("the kfake child said %q, not its brokers", l)
		}
		return strings.Split(addrs, ",")
	case <-time.After(time.Minute):
		tb.Fatal("the kfake child did not start within a minute")
		return nil
	}
}

// ServeChildCluster runs the child side of [ChildCluster] when the test
// binary was started as one: it serves a kfake cluster until its stdin
// closes, then exits. Call it first thing in TestMain; it returns false in
// an ordinary test run.
func ServeChildCluster() bool {
	spec := os.Getenv(childClusterEnv)
	if spec == "" {
		return false
	}
	parts, topics, _ := strings.Cut(spec, "|")
	n, err := strconv.Atoi(parts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad", childClusterEnv, spec)
		os.Exit(2)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(n), strings.Split(topics, ",")...),
		kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(2)
	}
	fmt.Printf("brokers %s\n", strings.Join(c.ListenAddrs(), ","))
	_, _ = io.Copy(io.Discard, os.Stdin)
	c.Close()
	os.Exit(0)
	return true
}

// CPUTime returns the CPU time (user and system) this process used so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
