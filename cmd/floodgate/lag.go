package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// lagCommand is "floodgate lag": a consumer group's lag seen from outside.
func lagCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("floodgate lag", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "comma-separated seed brokers (required)")
	group := fs.String("group", "", "the consumer group (required)")
	var topics listFlag
	fs.Var(&topics, "topic", "report only this topic; repeatable or comma-separated (default: every topic the group commits to or is assigned)")
	watch := fs.Bool("watch", false, "measure again every --interval until interrupted, with drain rates and levels over time")
	interval := fs.Duration("interval", 5*time.Second, "time between two measures with --watch")
	asJSON := fs.Bool("json", false, "print one JSON object per measure and line instead of a table")
	def := lagmonitor.DefaultThresholds()
	elevated := fs.Duration("elevated", def.Elevated.TimeLag, "time lag at which the level is elevated")
	high := fs.Duration("high", def.High.TimeLag, "time lag at which the level is high")
	critical := fs.Duration("critical", def.Critical.TimeLag, "time lag at which the level is critical")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: floodgate lag --brokers host:port --group G [--topic T] [--watch] [--json]\n\n"+
			"Measures a consumer group's lag from outside the group, as Kafka's\n"+
			"kafka-consumer-groups --describe does (committed offsets against end\n"+
			"offsets; the figures agree), under either group protocol, and adds each\n"+
			"lagging partition's time lag: the age of the record at its committed\n"+
			"offset, read from the partition. A partition without a committed offset\n"+
			"shows \"-\". The level is the one the time lag reaches (--elevated, --high,\n"+
			"--critical); with --watch it moves with the lag monitor's hysteresis, and\n"+
			"the drain rate is the committed offsets' progress between two measures.\n"+
			"OPEN-TXN counts the records above a partition's last stable offset (in\n"+
			"transactions still open) and the age of the oldest: a read_committed\n"+
			"group cannot read past them, so a hanging transaction shows there.\n"+
			"It joins no group and commits nothing.\n\n"+
			"Exit status: 0, 1 if the group cannot be measured, 2 for bad flags.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	seeds := seedList(*brokers)
	th := def
	th.Elevated.TimeLag, th.High.TimeLag, th.Critical.TimeLag = *elevated, *high, *critical
	var err error
	switch {
	case len(seeds) == 0:
		err = errors.New("--brokers is required")
	case *group == "":
		err = errors.New("--group is required")
	case *interval <= 0:
		err = fmt.Errorf("--interval must be > 0, got %v", *interval)
	default:
		err = th.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "floodgate lag: %v\n", err)
		return 2
	}
	machine, err := lagmonitor.NewLevelMachine(th)
	if err != nil {
		fmt.Fprintf(stderr, "floodgate lag: %v\n", err)
		return 2
	}

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var prev *lagmonitor.GroupLag
	var prevAt time.Time
	for {
		at := time.Now()
		gl, err := lagmonitor.DescribeGroupLag(ctx, seeds, *group, topics)
		if err != nil {
			if ctx.Err() != nil && *watch {
				return 0
			}
			out.Flush()
			fmt.Fprintf(stderr, "floodgate lag: %v\n", err)
			return 1
		}
		level := th.EntryLevel(gl.TimeLag, gl.OffsetLag)
		if *watch {
			level = machine.Observe(at, gl.TimeLag, gl.OffsetLag).Level
		}
		rep := lagReport(gl, level, th, prev, at.Sub(prevAt))
		rep.At = at
		if *asJSON {
			enc := json.NewEncoder(out)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(rep)
		} else {
			writeLagTable(out, rep, *watch)
		}
		out.Flush()
		if !*watch {
			return 0
		}
		prev, prevAt = &gl, at
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(*interval):
		}
	}
}

// lagJSON is one measure as --json prints it.
type lagJSON struct {
	At        time.Time `json:"at"`
	Group     string    `json:"group"`
	State     string    `json:"state"`
	OffsetLag int64     `json:"offset_lag"`
	TimeLagMs int64     `json:"time_lag_ms"`
	DrainRate *float64  `json:"drain_rate"` // null until two measures
	Level     string    `json:"level"`
	// Records above the last stable offsets (open transactions) and the
	// age of the oldest: what holds a read_committed group back.
	UnstableOffsets int64         `json:"unstable_offsets"`
	LSOStallMs      int64         `json:"lso_stall_ms"`
	Parts           []lagPartJSON `json:"partitions"`
}

type lagPartJSON struct {
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Committed int64    `json:"committed"` // -1: none
	End       int64    `json:"end"`
	Lag       *int64   `json:"lag"` // null without a commit
	TimeLagMs int64    `json:"time_lag_ms"`
	DrainRate *float64 `json:"drain_rate"`
	Level     string   `json:"level"`
	Unstable  int64    `json:"unstable_offsets"`
	LSOStall  int64    `json:"lso_stall_ms"`
	Member    string   `json:"member,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Host      string   `json:"host,omitempty"`
	Error     string   `json:"error,omitempty"`
}

func lagReport(gl lagmonitor.GroupLag, level lagmonitor.Level, th lagmonitor.Thresholds, prev *lagmonitor.GroupLag, dt time.Duration) lagJSON {
	rep := lagJSON{Group: gl.Group, State: gl.State, OffsetLag: gl.OffsetLag, TimeLagMs: gl.TimeLag.Milliseconds(), Level: level.String(),
		UnstableOffsets: gl.UnstableOffsets, LSOStallMs: gl.LSOStall.Milliseconds()}
	prevCommit := map[string]int64{}
	if prev != nil {
		for _, p := range prev.Partitions {
			prevCommit[fmt.Sprintf("%s/%d", p.Topic, p.Partition)] = p.Next
		}
	}
	var total float64
	haveRate := false
	for _, p := range gl.Partitions {
		j := lagPartJSON{Topic: p.Topic, Partition: p.Partition, Committed: p.Next, End: p.End, TimeLagMs: p.TimeLag.Milliseconds(),
			Level: th.EntryLevel(p.TimeLag, p.OffsetLag).String(), Member: p.Member, ClientID: p.ClientID, Host: p.Host,
			Unstable: p.Unstable, LSOStall: p.LSOStall.Milliseconds()}
		if p.Next >= 0 {
			lag := p.OffsetLag
			j.Lag = &lag
		}
		if p.Err != nil {
			j.Error = p.Err.Error()
		}
		if c, ok := prevCommit[fmt.Sprintf("%s/%d", p.Topic, p.Partition)]; ok && c >= 0 && p.Next >= c && dt > 0 {
			r := float64(p.Next-c) / dt.Seconds()
			j.DrainRate = &r
			total += r
			haveRate = true
		}
		rep.Parts = append(rep.Parts, j)
	}
	if haveRate {
		rep.DrainRate = &total
	}
	return rep
}

func writeLagTable(w io.Writer, rep lagJSON, watch bool) {
	if watch {
		fmt.Fprintf(w, "%s\n", rep.At.Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tTIME-LAG\tRATE/s\tLEVEL\tOPEN-TXN\tMEMBER")
	for _, p := range rep.Parts {
		committed, lag := "-", "-"
		if p.Committed >= 0 {
			committed = fmt.Sprint(p.Committed)
		}
		if p.Lag != nil {
			lag = fmt.Sprint(*p.Lag)
		}
		member := p.Member
		if member == "" {
			member = "-"
		}
		if p.Error != "" {
			member += " error: " + p.Error
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Topic, p.Partition, committed, p.End, lag,
			fmtMillis(p.TimeLagMs), fmtRate(p.DrainRate), p.Level, fmtOpen(p.Unstable, p.LSOStall), member)
	}
	fmt.Fprintf(tw, "total\t\t\t\t%d\t%s\t%s\t%s\t%s\tgroup %s (%s)\n", rep.OffsetLag, fmtMillis(rep.TimeLagMs), fmtRate(rep.DrainRate), rep.Level,
		fmtOpen(rep.UnstableOffsets, rep.LSOStallMs), rep.Group, rep.State)
	tw.Flush()
}

func fmtMillis(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

// fmtOpen shows the records in open transactions and the oldest's age:
// "-" when none.
func fmtOpen(n, ageMs int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%d (%s)", n, fmtMillis(ageMs))
}

func fmtRate(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *r)
}

// listFlag is a repeatable, comma-separated string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
