// Command testsummary reads the `go test -json` events that scripts/test has
// gotestsum write to a file and prints which broker the integration suite
// ran on and a closing count line:
//
//	broker: integration ran on existing cluster at 127.0.0.1:19092, Kafka v4.4 (controlled by scripts/kafka)
//	tests: 412 passed, 0 failed, 3 skipped
//
// Tests and subtests count alike, as gotestsum counts them; a package that
// failed outside its tests (a build error, TestMain, a timeout) counts as
// one failure.
//
// usage: go run ./scripts/testsummary FILE
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// brokerPrefix starts the line integration.Shared writes to stderr once it
// picked a cluster.
const brokerPrefix = "integration: using "

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type summary struct {
	passed, failed, skipped int
	brokers                 []string // "<package> ran on <cluster>", in order seen
	ranIntegration          bool
	requireReal             bool // FLOODGATE_REQUIRE_REAL_KAFKA is set
}

func summarize(r io.Reader) (summary, error) {
	var s summary
	seen := map[string]bool{}
	testFailed := map[string]bool{} // packages with a failed test
	var pkgFailed []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			return s, fmt.Errorf("bad event %.80q: %w", line, err)
		}
		if path.Base(e.Package) == "integration" {
			s.ranIntegration = true
		}
		switch {
		case e.Action == "output":
			out := strings.TrimSpace(e.Output)
			if cluster, ok := strings.CutPrefix(out, brokerPrefix); ok {
				b := path.Base(e.Package) + " ran on " + cluster
				if !seen[b] {
					seen[b] = true
					s.brokers = append(s.brokers, b)
				}
			}
		case e.Test == "":
			if e.Action == "fail" {
				pkgFailed = append(pkgFailed, e.Package)
			}
		case e.Action == "pass":
			s.passed++
		case e.Action == "fail":
			s.failed++
			testFailed[e.Package] = true
		case e.Action == "skip":
			s.skipped++
		}
	}
	for _, p := range pkgFailed {
		if !testFailed[p] {
			s.failed++
		}
	}
	return s, sc.Err()
}

func (s summary) write(w io.Writer) {
	switch {
	case len(s.brokers) > 0:
		for _, b := range s.brokers {
			if s.requireReal && strings.Contains(b, " ran on kfake ") {
				b += " (FLOODGATE_REQUIRE_REAL_KAFKA=1 forbids it: set FLOODGATE_KAFKA_BROKERS)"
			}
			fmt.Fprintf(w, "broker: %s\n", b)
		}
	case s.ranIntegration:
		fmt.Fprintln(w, "broker: the integration suite picked none (see its failures above)")
	default:
		fmt.Fprintln(w, "broker: none (the integration suite was not run)")
	}
	fmt.Fprintf(w, "tests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./scripts/testsummary FILE (go test -json output)")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	defer f.Close()
	s, err := summarize(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
	v := os.Getenv("FLOODGATE_REQUIRE_REAL_KAFKA")
	s.requireReal = v != "" && v != "0" && v != "false"
	s.write(os.Stdout)
}
