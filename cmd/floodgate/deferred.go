package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/internal/kconn"
	"github.com/floodgate-kafka/floodgate/internal/kretry"
	"github.com/floodgate-kafka/floodgate/producer/deferred"
)

// deferredCommand dispatches "floodgate deferred <relay|status>".
func deferredCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		deferredUsage(stderr)
		return 2
	}
	switch args[0] {
	case "relay":
		return deferredRelayCommand(ctx, args[1:], stdout, stderr)
	case "status":
		return deferredStatusCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		deferredUsage(stderr)
		return 0
	default:
		fmt.Fprintf(stderr, "floodgate deferred: unknown subcommand %q\n\n", args[0])
		deferredUsage(stderr)
		return 2
	}
}

func deferredUsage(w io.Writer) {
	fmt.Fprint(w, "usage: floodgate deferred <subcommand> [flags]\n\n"+
		"The deferred lane: records producers deferred under pressure, parked on\n"+
		"<topic>.deferred until their topic's consumers have caught up.\n\n"+
		"subcommands:\n"+
		"  relay      deliver the deferred records to their topics once the level is ok\n"+
		"  status     the records waiting on each deferred topic\n\n"+
		"Run 'floodgate deferred <subcommand> -h' for its flags.\n")
}

func deferredRelayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("floodgate deferred relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "comma-separated seed brokers (required)")
	control := fs.String("control", "floodgate.pressure", "the control topic the consumers' monitors publish on")
	var topics listFlag
	fs.Var(&topics, "topic", "a destination topic whose deferred records to relay (required); repeatable or comma-separated")
	suffix := fs.String("suffix", deferred.DefaultSuffix, "a destination's deferred topic is its name with this suffix")
	group := fs.String("group", deferred.DefaultGroup, "the relay's consumer group")
	rate := fs.Float64("rate", deferred.DefaultRate, "at most this many records per second to each destination")
	share := fs.Float64("share", deferred.DefaultSuggestedShare, "at most this share of the room an ok signal suggests")
	ramp := fs.Duration("ramp", deferred.DefaultRelayRamp, "climb from a tenth of the room left to all of it over this long once a destination opens")
	withoutSignal := fs.Bool("without-signal", false, "relay at --rate to a destination no live signal covers (its monitors down); by default the relay waits for a signal that says there is room")
	keyFile := fs.String("hmac-keys", "", "file of \"key-id:hex-key\" lines: obey only signals signed with these keys (v1 or v2)")
	requireV2 := fs.Bool("require-v2", false, "with --hmac-keys: obey only signals with a v2 signature (once every publisher signs with v2)")
	every := fs.Duration("stats", 10*time.Second, "print the relay's counters this often (0: never)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: floodgate deferred relay --brokers host:port --topic TOPIC [flags]\n\n"+
			"Consumes each TOPIC's deferred topic in --group and produces its records\n"+
			"to TOPIC, without their floodgate-deferred-* headers and freshly stamped,\n"+
			"while a live signal on the control topic says TOPIC is ok and has room:\n"+
			"it fills what TOPIC's producers leave of the room the signal suggests,\n"+
			"within --rate and --share of the room, climbing over --ramp. Without a\n"+
			"live signal it waits (--without-signal relays at --rate). A record's\n"+
			"offset is committed after TOPIC acknowledged it: at least once. Runs\n"+
			"until interrupted; run several in one group to share the partitions.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	cfg := deferred.RelayConfig{Brokers: seedList(*brokers), ControlTopic: *control, Topics: topics,
		Suffix: *suffix, Group: *group, Rate: *rate, SuggestedShare: *share, Ramp: *ramp, WithoutSignal: *withoutSignal}
	var err error
	switch {
	case len(cfg.Brokers) == 0:
		err = errors.New("--brokers is required")
	case len(topics) == 0:
		err = errors.New("--topic is required")
	case *requireV2 && *keyFile == "":
		err = errors.New("--require-v2 needs --hmac-keys")
	case *keyFile != "":
		cfg.Verifier, err = readKeys(*keyFile, *requireV2)
	}
	if err == nil {
		var r *deferred.Relay
		if r, err = deferred.NewRelay(cfg); err == nil {
			return runRelay(ctx, r, *every, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "floodgate deferred relay: %v\n", err)
	return 2
}

// runRelay runs r until ctx ends, printing its counters every interval.
func runRelay(ctx context.Context, r *deferred.Relay, every time.Duration, stdout, stderr io.Writer) int {
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	print := func() {
		s := r.Stats()
		fmt.Fprintf(stdout, "relayed %d, waiting %d, paused %v, malformed %d, produce errors %d", s.Relayed, s.Waiting, s.Paused, s.Malformed, s.ProduceErrors)
		if s.LastErr != nil {
			fmt.Fprintf(stdout, ", last error: %v", s.LastErr)
		}
		fmt.Fprintln(stdout)
		for _, d := range s.Destinations {
			fmt.Fprintf(stdout, "  %s: %s\n", d.Topic, d.Reason)
		}
	}
	for {
		select {
		case err := <-done:
			print()
			if err != nil {
				fmt.Fprintf(stderr, "floodgate deferred relay: %v\n", err)
				return 1
			}
			return 0
		case <-tick:
			print()
		}
	}
}

func deferredStatusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("floodgate deferred status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "comma-separated seed brokers (required)")
	var topics listFlag
	fs.Var(&topics, "topic", "a destination topic (required); repeatable or comma-separated")
	suffix := fs.String("suffix", deferred.DefaultSuffix, "a destination's deferred topic is its name with this suffix")
	group := fs.String("group", deferred.DefaultGroup, "the relay's consumer group")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: floodgate deferred status --brokers host:port --topic TOPIC [flags]\n\n"+
			"Prints, for each TOPIC, the records on its deferred topic that the relay's\n"+
			"group has not yet delivered (end offsets minus its committed offsets), and\n"+
			"the oldest of them.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	seeds := seedList(*brokers)
	switch {
	case len(seeds) == 0:
		fmt.Fprintln(stderr, "floodgate deferred status: --brokers is required")
		return 2
	case len(topics) == 0:
		fmt.Fprintln(stderr, "floodgate deferred status: --topic is required")
		return 2
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		fmt.Fprintf(stderr, "floodgate deferred status: %v\n", err)
		return 2
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tDEFERRED TOPIC\tWAITING\tOLDEST DEFERRED")
	for _, t := range topics {
		dt := t + *suffix
		waiting, oldest, err := deferredBacklog(ctx, cl, *group, dt)
		if err != nil {
			fmt.Fprintf(stderr, "floodgate deferred status: %s: %v\n", dt, err)
			return 1
		}
		old := "-"
		if !oldest.IsZero() {
			old = fmt.Sprintf("%s (%s ago)", oldest.UTC().Format(time.RFC3339), time.Since(oldest).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", t, dt, waiting, old)
	}
	_ = tw.Flush()
	return 0
}

// deferredBacklog returns the records of dt that group has not
// committed, and the deferral time of the oldest (zero if none, or if it
// has no readable deferral time).
func deferredBacklog(ctx context.Context, cl *kgo.Client, group, dt string) (int64, time.Time, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, dt)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	starts, err := adm.ListStartOffsets(ctx, dt)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	committed, err := kretry.Do(ctx, kretry.NotReady, func(ctx context.Context) (kadm.OffsetResponses, error) {
		return adm.FetchOffsets(ctx, group)
	})
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return 0, time.Time{}, err
	}
	var waiting int64
	from := map[string]map[int32]kgo.Offset{dt: {}}
	ends.Each(func(o kadm.ListedOffset) {
		at := starts[dt][o.Partition].Offset
		if c, ok := committed.Lookup(dt, o.Partition); ok && c.Err == nil && c.At > at {
			at = c.At
		}
		if o.Offset > at {
			waiting += o.Offset - at
			from[dt][o.Partition] = kgo.NewOffset().At(at)
		}
	})
	if waiting == 0 {
		return 0, time.Time{}, nil
	}
	// The oldest: the first waiting record of each partition.
	rd, err := kgo.NewClient(append(kconn.Opts(cl), kgo.SeedBrokers(kconn.Seeds(cl)...), kgo.ConsumePartitions(from))...)
	if err != nil {
		return waiting, time.Time{}, err
	}
	defer rd.Close()
	var oldest time.Time
	pending := make(map[int32]bool, len(from[dt]))
	for p := range from[dt] {
		pending[p] = true
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for len(pending) > 0 && rctx.Err() == nil {
		rd.PollFetches(rctx).EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 || !pending[p.Partition] {
				return
			}
			delete(pending, p.Partition)
			at := p.Records[0].Timestamp
			if m, ok, err := deferred.Decode(p.Records[0]); ok && err == nil && !m.At.IsZero() {
				at = m.At
			}
			if oldest.IsZero() || at.Before(oldest) {
				oldest = at
			}
		})
	}
	return waiting, oldest, nil
}
