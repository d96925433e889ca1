package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/lagmonitor"
)

// pressureCommand dispatches "floodgate pressure <watch>".
func pressureCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		pressureUsage(stderr)
		return 2
	}
	switch args[0] {
	case "watch":
		return pressureWatchCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		pressureUsage(stderr)
		return 0
	default:
		fmt.Fprintf(stderr, "floodgate pressure: unknown subcommand %q\n\n", args[0])
		pressureUsage(stderr)
		return 2
	}
}

func pressureUsage(w io.Writer) {
	fmt.Fprint(w, "usage: floodgate pressure <subcommand> [flags]\n\n"+
		"Shows the pressure signals consumers publish on the control topic.\n\n"+
		"subcommands:\n"+
		"  watch      follow the control topic, one decoded line per signal\n\n"+
		"Run 'floodgate pressure <subcommand> -h' for its flags.\n")
}

// watchLine is one record as --json prints it: the signal as it is on
// the wire (the control topic's JSON value) when it decodes; for a
// tombstone, the seq and issue time its headers carry; with --hmac-keys,
// the signature that verified.
type watchLine struct {
	Partition  int32              `json:"partition"`
	Offset     int64              `json:"offset"`
	Status     string             `json:"status"` // live, expired, tombstone, rejected
	Error      string             `json:"error,omitempty"`
	Key        string             `json:"key"`
	Signature  string             `json:"signature,omitempty"`    // v1, v2
	Seq        uint64             `json:"seq,omitempty"`          // a tombstone's
	IssuedAtMs int64              `json:"issued_at_ms,omitempty"` // a tombstone's
	Value      json.RawMessage    `json:"signal,omitempty"`
	Signal     *lagmonitor.Signal `json:"-"`
}

func pressureWatchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("floodgate pressure watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "", "comma-separated seed brokers (required)")
	control := fs.String("topic", "floodgate.pressure", "the control topic")
	var only listFlag
	fs.Var(&only, "for", "show only the signals for this destination topic (reads only its control partition); repeatable or comma-separated")
	fromStart := fs.Bool("from-start", false, "read the control topic from its start instead of from now")
	asJSON := fs.Bool("json", false, "print one JSON object per record and line")
	keyFile := fs.String("hmac-keys", "", "file of \"key-id:hex-key\" lines: verify signatures, v1 or v2 (unsigned or forged records show as rejected)")
	requireV2 := fs.Bool("require-v2", false, "with --hmac-keys: records without a v2 signature show as rejected (once every publisher signs with v2)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: floodgate pressure watch --brokers host:port [--topic CONTROL] [--for TOPIC] [--json] [--hmac-keys FILE [--require-v2]]\n\n"+
			"Follows the control topic (all its partitions, or only those carrying the\n"+
			"--for topics) until interrupted, and prints each record decoded: the\n"+
			"signal's topic, group, instance, sequence, level, lags, drain and\n"+
			"suggested rates, and its status: live, expired (its TTL has passed:\n"+
			"it means no pressure), tombstone (an instance stopped) or rejected (it\n"+
			"does not decode, or with --hmac-keys its signature does not verify).\n"+
			"A tombstone shows the seq and issue time its headers carry.\n"+
			"It joins no group and commits nothing.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	seeds := seedList(*brokers)
	var verifier *lagmonitor.Verifier
	var err error
	switch {
	case len(seeds) == 0:
		err = errors.New("--brokers is required")
	case *control == "":
		err = errors.New("--topic is required")
	case *requireV2 && *keyFile == "":
		err = errors.New("--require-v2 needs --hmac-keys")
	case *keyFile != "":
		verifier, err = readKeys(*keyFile, *requireV2)
	}
	if err != nil {
		fmt.Fprintf(stderr, "floodgate pressure watch: %v\n", err)
		return 2
	}
	start := kgo.NewOffset().AtEnd()
	if *fromStart {
		start = kgo.NewOffset().AtStart()
	}
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.KeepControlRecords()}
	wanted := map[string]bool{}
	for _, t := range only {
		wanted[t] = true
	}
	if len(only) > 0 {
		n, err := controlPartitions(ctx, seeds, *control)
		if err != nil {
			fmt.Fprintf(stderr, "floodgate pressure watch: %v\n", err)
			return 1
		}
		parts := map[int32]kgo.Offset{}
		for _, t := range only {
			parts[lagmonitor.PartitionFor(t, int(n))] = start
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{*control: parts}))
	} else {
		opts = append(opts, kgo.ConsumeTopics(*control), kgo.ConsumeResetOffset(start))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintf(stderr, "floodgate pressure watch: %v\n", err)
		return 1
	}
	defer cl.Close()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return 0
		}
		fs.EachError(func(t string, p int32, err error) {
			fmt.Fprintf(stderr, "floodgate pressure watch: %s[%d]: %v\n", t, p, err)
		})
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			if r.Attrs.IsControl() {
				return
			}
			l := decodeWatch(r, verifier, now)
			if len(wanted) > 0 && (l.Signal == nil || !wanted[l.Signal.Topic]) {
				if topic, _, _, err := lagmonitor.ParseKey(r.Key); err != nil || !wanted[topic] {
					return
				}
			}
			if *asJSON {
				_ = enc.Encode(l)
			} else {
				writeWatchLine(out, l)
			}
		})
		out.Flush()
	}
}

func decodeWatch(r *kgo.Record, v *lagmonitor.Verifier, now time.Time) watchLine {
	l := watchLine{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key)}
	if v != nil {
		version, err := v.VerifyVersion(r)
		if err != nil {
			l.Status, l.Error = "rejected", err.Error()
			return l
		}
		if version > 0 {
			l.Signature = fmt.Sprintf("v%d", version)
		}
	}
	s, tomb, err := lagmonitor.Decode(r.Key, r.Value)
	if err == nil && tomb {
		var at time.Time
		if l.Seq, at, err = lagmonitor.ParseTombstoneHeaders(r.Headers); err == nil && !at.IsZero() {
			l.IssuedAtMs = at.UnixMilli()
		}
	}
	switch {
	case err != nil:
		l.Status, l.Error = "rejected", err.Error()
	case tomb:
		l.Status = "tombstone"
	default:
		l.Signal, l.Value = &s, json.RawMessage(r.Value)
		l.Status = "live"
		if !s.Live(now) {
			l.Status = "expired"
		}
	}
	return l
}

func writeWatchLine(w io.Writer, l watchLine) {
	prefix := fmt.Sprintf("[%d]@%d %-9s", l.Partition, l.Offset, l.Status)
	if l.Signature != "" {
		prefix += " " + l.Signature
	}
	switch {
	case l.Signal != nil:
		s := l.Signal
		rate := "-"
		if s.SuggestedRate > 0 {
			rate = fmt.Sprintf("%.1f/s", s.SuggestedRate)
		}
		fmt.Fprintf(w, "%s %s topic=%s group=%s instance=%s seq=%d level=%s offset_lag=%d time_lag=%v drain=%.1f/s suggested=%s%s ttl=%v reason=%q\n",
			prefix, s.IssuedAt.Format("15:04:05.000"), s.Topic, s.Group, s.Instance, s.Seq, s.Level, s.OffsetLag,
			s.TimeLag.Round(time.Millisecond), s.DrainRate, rate, signalExtras(s), s.TTL, s.Reason)
	case l.Error != "":
		fmt.Fprintf(w, "%s key=%q error=%s\n", prefix, l.Key, l.Error)
	case l.IssuedAtMs != 0:
		fmt.Fprintf(w, "%s %s key=%q seq=%d\n", prefix, time.UnixMilli(l.IssuedAtMs).Format("15:04:05.000"), l.Key, l.Seq)
	default:
		fmt.Fprintf(w, "%s key=%q\n", prefix, l.Key)
	}
}

// signalExtras writes a signal's optional fields that are set: its
// capacity, its share of the topic's partitions, its hot partitions over
// the rest's level, and the records in open transactions.
func signalExtras(s *lagmonitor.Signal) string {
	var b strings.Builder
	if s.Capacity > 0 {
		fmt.Fprintf(&b, " capacity=%.1f/s", s.Capacity)
	}
	if s.Partitions > 0 {
		fmt.Fprintf(&b, " partitions=%d/%d", s.Partitions, s.TopicPartitions)
	}
	if len(s.Hot) > 0 {
		b.WriteString(" hot=")
		for i, h := range s.Hot {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d:%s:%v", h.Partition, h.Level, h.TimeLag.Round(time.Millisecond))
			if h.SuggestedRate > 0 {
				fmt.Fprintf(&b, ":%.1f/s", h.SuggestedRate)
			}
		}
		fmt.Fprintf(&b, " rest=%s", s.RestLevel)
	}
	if s.UnstableOffsets > 0 {
		fmt.Fprintf(&b, " open_txn=%d(%v)", s.UnstableOffsets, s.LSOStall.Round(time.Millisecond))
	}
	return b.String()
}

// controlPartitions returns the control topic's partition count.
func controlPartitions(ctx context.Context, seeds []string, topic string) (int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tds, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err == nil {
		if td, ok := tds[topic]; !ok {
			err = errors.New("not found")
		} else if err = td.Err; err == nil {
			return int32(len(td.Partitions)), nil
		}
	}
	return 0, fmt.Errorf("control topic %q: %w", topic, err)
}

// readKeys reads "key-id:hex-key" lines into a verifier that requires
// signatures, and v2 ones if requireV2.
func readKeys(path string, requireV2 bool) (*lagmonitor.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--hmac-keys: %w", err)
	}
	keys := map[string][]byte{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kid, hexKey, ok := strings.Cut(line, ":")
		key, err := hex.DecodeString(hexKey)
		if !ok || err != nil {
			return nil, fmt.Errorf("--hmac-keys %s line %d: want key-id:hex-key", path, i+1)
		}
		keys[kid] = key
	}
	var opts []lagmonitor.VerifierOpt
	if requireV2 {
		opts = append(opts, lagmonitor.VerifyRequireV2())
	}
	v, err := lagmonitor.NewVerifier(keys, true, opts...)
	if err != nil {
		return nil, fmt.Errorf("--hmac-keys: %w", err)
	}
	return v, nil
}
