package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floodgate-kafka/floodgate/dlq"
	"github.com/floodgate-kafka/floodgate/retrytopics"
)

// dlqCommand dispatches "floodgate dlq <inspect|replay>".
func dlqCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		dlqUsage(stderr)
		return 2
	}
	switch args[0] {
	case "inspect":
		return dlqInspectCommand(ctx, args[1:], stdout, stderr)
	case "replay":
		return dlqReplayCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		dlqUsage(stderr)
		return 0
	default:
		fmt.Fprintf(stderr, "floodgate dlq: unknown subcommand %q\n\n", args[0])
		dlqUsage(stderr)
		return 2
	}
}

func dlqUsage(w io.Writer) {
	fmt.Fprint(w, "usage: floodgate dlq <subcommand> [flags]\n\n"+
		"Inspects and replays the quarantine lane: the dead-letter topic where\n"+
		"records end once their retries are spent.\n\n"+
		"subcommands:\n"+
		"  inspect    list the entries of the dead-letter topic, filtered\n"+
		"  replay     produce chosen entries back to their original topics\n\n"+
		"Run 'floodgate dlq <subcommand> -h' for its flags.\n")
}

// dlqFlags are the flags inspect and replay share: where the dead-letter
// topic is, and the filter.
type dlqFlags struct {
	brokers       string
	topic         string
	reasons       reasonsFlag
	from, to      string
	key           string
	originalTopic string
}

func (d *dlqFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.brokers, "brokers", "", "comma-separated seed brokers (required)")
	fs.StringVar(&d.topic, "topic", "", "the dead-letter topic (required)")
	fs.Var(&d.reasons, "reason", "keep entries quarantined for this reason; repeatable or comma-separated: "+reasonList())
	fs.StringVar(&d.from, "from", "", "keep entries quarantined at or after this time (RFC3339)")
	fs.StringVar(&d.to, "to", "", "keep entries quarantined before this time (RFC3339)")
	fs.StringVar(&d.key, "key", "", "keep entries with exactly this key")
	fs.StringVar(&d.originalTopic, "original-topic", "", "keep entries first consumed from this topic (excludes undecodable entries)")
}

// parse checks the shared flags and returns the seed brokers and the
// filter. fs must have been parsed.
func (d *dlqFlags) parse(fs *flag.FlagSet) (brokers []string, f dlq.Filter, err error) {
	if brokers = seedList(d.brokers); len(brokers) == 0 {
		return nil, f, errors.New("--brokers is required")
	}
	if d.topic == "" {
		return nil, f, errors.New("--topic is required")
	}
	f.Reasons = d.reasons
	if f.From, err = parseTime("--from", d.from); err != nil {
		return nil, f, err
	}
	if f.To, err = parseTime("--to", d.to); err != nil {
		return nil, f, err
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return nil, f, fmt.Errorf("--from %s is not before --to %s", d.from, d.to)
	}
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "key" {
			f.Key = []byte(d.key)
		}
	})
	f.OriginalTopic = d.originalTopic
	return brokers, f, nil
}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %q is not an RFC3339 time such as 2006-01-02T15:04:05Z", name, s)
	}
	return t, nil
}

var knownReasons = []retrytopics.Reason{
	retrytopics.ReasonHandlerError,
	retrytopics.ReasonPermanent,
	retrytopics.ReasonAttemptsExhausted,
	retrytopics.ReasonBudgetExhausted,
	retrytopics.ReasonUndecodable,
}

func reasonList() string {
	s := make([]string, len(knownReasons))
	for i, r := range knownReasons {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// reasonsFlag is a repeatable, comma-separated --reason.
type reasonsFlag []retrytopics.Reason

func (r *reasonsFlag) String() string {
	if r == nil {
		return ""
	}
	s := make([]string, len(*r))
	for i, x := range *r {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}

func (r *reasonsFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		reason := retrytopics.Reason(s)
		if !slices.Contains(knownReasons, reason) {
			return fmt.Errorf("unknown reason %q (want %s)", s, reasonList())
		}
		if !slices.Contains(*r, reason) {
			*r = append(*r, reason)
		}
	}
	return nil
}

// seedList splits a --brokers value: host:port,... with blanks around
// and empty entries ignored.
func seedList(s string) []string {
	var seeds []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			seeds = append(seeds, b)
		}
	}
	return seeds
}

// parseFlags parses args into fs and returns -1 to go on, or the exit
// status for help (0) and bad flags (2).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments: %s\n", fs.Name(), strings.Join(fs.Args(), " "))
		return 2
	}
	return -1
}

// errLimit stops an inspection once --limit entries were listed.
var errLimit = errors.New("limit reached")

func dlqInspectCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var d dlqFlags
	fs := flag.NewFlagSet("floodgate dlq inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d.register(fs)
	limit := fs.Int("limit", 0, "list at most this many entries (0: no limit)")
	asJSON := fs.Bool("json", false, "print one JSON object per entry and line instead of text")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: floodgate dlq inspect --brokers host:port --topic dlq-topic [flags]\n\n"+
			"Lists the entries of the dead-letter topic that the filter flags select, from\n"+
			"its start to its end as of when the command starts, partition by partition.\n"+
			"It joins no consumer group and commits nothing. Entries whose floodgate\n"+
			"headers do not decode are listed with the decoding error (they count as\n"+
			"reason undecodable). With --json, each line is an object with topic,\n"+
			"partition, offset, timestamp (the quarantine time), key, value, headers\n"+
			"(the original ones; all of them for an undecodable entry), meta (the\n"+
			"decoded floodgate metadata, null if undecodable) and decode_error. Keys,\n"+
			"values and header values are strings when they are UTF-8, else base64\n"+
			"with key_encoding, value_encoding or encoding set to \"base64\".\n\n"+
			"An entry trimmed when it was quarantined (the original was too large for\n"+
			"the dead-letter topic, so its value, or more, was dropped) shows TRIMMED=\n"+
			"with what was dropped and original-size= (JSON: trimmed, original_size).\n"+
			"dlq replay skips such entries.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	brokers, filter, err := d.parse(fs)
	if err == nil && *limit < 0 {
		err = fmt.Errorf("--limit must be >= 0, got %d", *limit)
	}
	if err != nil {
		fmt.Fprintf(stderr, "floodgate dlq inspect: %v\n", err)
		return 2
	}

	out := bufio.NewWriter(stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	n := 0
	err = dlq.Inspect(ctx, brokers, d.topic, filter, func(e dlq.Entry) error {
		if *asJSON {
			if err := enc.Encode(entryJSON(e)); err != nil {
				return err
			}
		} else {
			out.WriteString(entryLine(e))
			out.WriteByte('\n')
		}
		n++
		if *limit > 0 && n >= *limit {
			return errLimit
		}
		return nil
	})
	if ferr := out.Flush(); err == nil || errors.Is(err, errLimit) {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(stderr, "floodgate dlq inspect: %v\n", err)
		return 1
	}
	more := ""
	if *limit > 0 && n >= *limit {
		more = " (--limit reached)"
	}
	fmt.Fprintf(stderr, "floodgate dlq inspect: %s%s\n", entries(n), more)
	return 0
}

// entryLine renders an entry as one line of text.
func entryLine(e dlq.Entry) string {
	r := e.Record
	var b strings.Builder
	fmt.Fprintf(&b, "%s[%d]@%d %s", r.Topic, r.Partition, r.Offset, r.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	trimmed := ""
	if dropped, size, ok := e.Trimmed(); ok {
		trimmed = " TRIMMED=" + dropped // "value", "value,key,headers"
		if dropped == "" || strings.Trim(dropped, "abcdefghijklmnopqrstuvwxyz,") != "" {
			trimmed = " TRIMMED=" + strconv.Quote(clip(dropped, 100))
		}
		if size >= 0 {
			trimmed += fmt.Sprintf(" original-size=%dB", size)
		}
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " UNDECODABLE key=%s value=%dB%s decode-error=%q", textBytes(r.Key), len(r.Value), trimmed, clip(e.Err.Error(), 200))
		return b.String()
	}
	m := e.Meta
	reason := string(m.Reason)
	if reason == "" {
		reason = "-"
	}
	fmt.Fprintf(&b, " %s %s[%d]@%d attempt=%d replays=%d key=%s value=%dB%s",
		reason, m.OriginalTopic, m.OriginalPartition, m.OriginalOffset, m.Attempt, m.ReplayCount, textBytes(r.Key), len(r.Value), trimmed)
	if m.Error != "" {
		fmt.Fprintf(&b, " error=%q", clip(m.Error, 200))
	}
	return b.String()
}

// textBytes quotes b if it is UTF-8, else shows it as base64.
func textBytes(b []byte) string {
	switch {
	case b == nil:
		return "null"
	case utf8.Valid(b):
		return strconv.Quote(clip(string(b), 100))
	default:
		return "base64:" + base64.StdEncoding.EncodeToString(b)
	}
}

// clip cuts s to at most n runes.
func clip(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "…"
		}
		i++
	}
	return s
}

type jsonEntry struct {
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Timestamp     time.Time    `json:"timestamp"`
	Key           *string      `json:"key"`
	KeyEncoding   string       `json:"key_encoding,omitempty"`
	Value         *string      `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Headers       []jsonHeader `json:"headers"`
	Meta          *jsonMeta    `json:"meta"`
	DecodeError   string       `json:"decode_error,omitempty"`
	Trimmed       *string      `json:"trimmed,omitempty"`       // what was dropped, if the entry was trimmed when quarantined
	OriginalSize  *int64       `json:"original_size,omitempty"` // of a trimmed entry's original, in bytes, if known
}

type jsonHeader struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Encoding string `json:"encoding,omitempty"`
}

type jsonMeta struct {
	OriginalTopic     string     `json:"original_topic"`
	OriginalPartition int32      `json:"original_partition"`
	OriginalOffset    int64      `json:"original_offset"`
	OriginalTimestamp *time.Time `json:"original_timestamp,omitempty"`
	Attempt           int        `json:"attempt"`
	FirstFailure      *time.Time `json:"first_failure,omitempty"`
	Error             string     `json:"error,omitempty"`
	Due               *time.Time `json:"due,omitempty"`
	Reason            string     `json:"reason,omitempty"`
	ReplayCount       int        `json:"replay_count"`
}

// jsonBytes returns b as a string and "" if it is UTF-8, else as base64 and
// "base64"; nil for nil.
func jsonBytes(b []byte) (*string, string) {
	if b == nil {
		return nil, ""
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, ""
	}
	s := base64.StdEncoding.EncodeToString(b)
	return &s, "base64"
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func entryJSON(e dlq.Entry) jsonEntry {
	r := e.Record
	j := jsonEntry{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(), Headers: []jsonHeader{}}
	j.Key, j.KeyEncoding = jsonBytes(r.Key)
	j.Value, j.ValueEncoding = jsonBytes(r.Value)
	if dropped, size, ok := e.Trimmed(); ok {
		j.Trimmed = &dropped
		if size >= 0 {
			j.OriginalSize = &size
		}
	}
	for _, h := range r.Headers {
		if e.Err == nil && retrytopics.IsMetaHeader(h.Key) {
			continue // shown decoded in meta
		}
		v, enc := jsonBytes(h.Value)
		jh := jsonHeader{Key: h.Key, Encoding: enc}
		if v != nil {
			jh.Value = *v
		}
		j.Headers = append(j.Headers, jh)
	}
	if e.Err != nil {
		j.DecodeError = e.Err.Error()
		return j
	}
	m := e.Meta
	j.Meta = &jsonMeta{
		OriginalTopic:     m.OriginalTopic,
		OriginalPartition: m.OriginalPartition,
		OriginalOffset:    m.OriginalOffset,
		OriginalTimestamp: optTime(m.OriginalTimestamp),
		Attempt:           m.Attempt,
		FirstFailure:      optTime(m.FirstFailure),
		Error:             m.Error,
		Due:               optTime(m.Due),
		Reason:            string(m.Reason),
		ReplayCount:       m.ReplayCount,
	}
	return j
}

func dlqReplayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var d dlqFlags
	fs := flag.NewFlagSet("floodgate dlq replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d.register(fs)
	resumeID := fs.String("resume-id", "", "consumer group that records how far replays got in --topic, whatever the other flags (default floodgate-dlq-replay.<topic>)")
	toTopic := fs.String("to-topic", "", "replay to this topic instead of each entry's original topic")
	rate := fs.Float64("rate", 100, "replay at most this many records per second")
	maxReplays := fs.Int("max-replays", 3, "loop guard: do not replay entries already replayed this many times")
	dryRun := fs.Bool("dry-run", false, "read and count, but produce and commit nothing")
	undecodableToo := fs.Bool("undecodable", false, "also replay entries whose floodgate headers do not decode (needs --to-topic)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: floodgate dlq replay --brokers host:port --topic dlq-topic [flags]\n\n"+
			"Produces the entries of the dead-letter topic that the filter flags select\n"+
			"back to their original topics (or --to-topic): same key, value and original\n"+
			"headers, with floodgate-replay-count one more than the entry's and no other\n"+
			"floodgate header, so each is a fresh first attempt. It reads up to the end\n"+
			"of the topic as of when it starts.\n\n"+
			"Resuming: a run records how far it got in the topic as the offsets of a\n"+
			"consumer group, the resume id: floodgate-dlq-replay.<topic>, or --resume-id.\n"+
			"The next run with the same resume id starts there, whatever its filter\n"+
			"flags, --to-topic or --undecodable: an interrupted run goes on where it\n"+
			"stopped (re-sending at most the last 100 records, 200 if the process was\n"+
			"killed), a finished one replays only entries quarantined since, and no run\n"+
			"re-sends what an earlier one replayed. Entries a run passed over (not\n"+
			"selected by the filter flags, loop guarded, undecodable, skipped) are\n"+
			"behind that position too: to replay them later, use a new --resume-id (it\n"+
			"starts at the beginning of the topic) with filter flags that select only\n"+
			"them.\n\n"+
			"Entries that cannot be replayed (trimmed when quarantined, target topic\n"+
			"missing, or rejected by the broker for good) are skipped with a warning on\n"+
			"stderr naming each. Stats are printed at the end.\n\n"+
			"Exit status: 0 done; 1 an error stopped the run (run again, it goes on);\n"+
			"2 bad flags; 3 done, but some entries could not be replayed and were\n"+
			"skipped (with --dry-run: would be).\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	brokers, filter, err := d.parse(fs)
	switch {
	case err != nil:
	case !(*rate > 0):
		err = fmt.Errorf("--rate must be > 0, got %v", *rate)
	case *maxReplays < 1:
		err = fmt.Errorf("--max-replays must be >= 1, got %d", *maxReplays)
	case *undecodableToo && *toTopic == "":
		err = errors.New("--undecodable needs --to-topic: an undecodable entry has no known original topic")
	}
	if err != nil {
		fmt.Fprintf(stderr, "floodgate dlq replay: %v\n", err)
		return 2
	}
	cfg := dlq.ReplayConfig{
		Topic:       d.topic,
		ResumeGroup: *resumeID,
		Filter:      filter,
		Rate:        *rate,
		MaxReplays:  *maxReplays,
		DryRun:      *dryRun,
	}
	if to := *toTopic; to != "" {
		undec := *undecodableToo
		cfg.Target = func(e dlq.Entry) (string, bool) { return to, e.Err == nil || undec }
	}
	derived := ""
	if cfg.ResumeGroup == "" {
		cfg.ResumeGroup = resumeGroupFor(d.topic)
		derived = " (the topic's default)"
	}
	target := "their original topics"
	if *toTopic != "" {
		target = strconv.Quote(*toTopic)
	}
	dry := ""
	if *dryRun {
		dry = "dry run: "
	}
	if *toTopic != "" {
		// Every entry would be skipped as unreplayable, and committed
		// past: a typo must not consume the whole lane.
		if err := checkTopic(ctx, brokers, *toTopic); err != nil {
			fmt.Fprintf(stderr, "floodgate dlq replay: --to-topic %q %v\n", *toTopic, err)
			return 1
		}
	}
	skip := "skipped"
	if *dryRun {
		skip = "would skip"
	}
	cfg.OnUnreplayable = func(e dlq.Entry, why error) {
		fmt.Fprintf(stderr, "floodgate dlq replay: %s %s: %v\n", skip, entryAt(e), why)
	}
	fmt.Fprintf(stdout, "%sreplaying %q to %s at %v/s, max replays %d, resume id %s%s\n",
		dry, d.topic, target, *rate, *maxReplays, cfg.ResumeGroup, derived)

	start := time.Now()
	st, err := dlq.Replay(ctx, brokers, cfg)
	if err == nil || st != (dlq.ReplayStats{}) { // no line of zeros before an error
		printReplayStats(stdout, st, time.Since(start), *dryRun, cfg.ResumeGroup)
	}
	switch {
	case err == nil && st.Unreplayable == 0:
		return 0
	case err == nil && *dryRun:
		fmt.Fprintf(stderr, "floodgate dlq replay: a run would skip %s that cannot be replayed (listed above)\n", entries(st.Unreplayable))
		return exitSkipped
	case err == nil:
		fmt.Fprintf(stderr, "floodgate dlq replay: skipped %s that cannot be replayed (listed above); later runs with resume id %s do not retry them\n",
			entries(st.Unreplayable), cfg.ResumeGroup)
		return exitSkipped
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		fmt.Fprintf(stderr, "floodgate dlq replay: interrupted; run it again with resume id %s to go on\n", cfg.ResumeGroup)
	case errors.Is(err, dlq.ErrResumeGroupActive):
		fmt.Fprintf(stderr, "floodgate dlq replay: %v; pick another --resume-id\n", err)
	default:
		fmt.Fprintf(stderr, "floodgate dlq replay: %v\n", err)
	}
	return 1
}

// printReplayStats prints the stats line of a replay run, and a note when
// the filter passed entries over.
func printReplayStats(w io.Writer, st dlq.ReplayStats, elapsed time.Duration, dryRun bool, resumeID string) {
	fmt.Fprintf(w, "floodgate dlq replay: scanned=%d not-selected=%d matched=%d replayed=%d loop-guarded=%d undecodable=%d no-target=%d unreplayable=%d elapsed=%.1fs",
		st.Scanned, st.NotSelected, st.Matched, st.Replayed, st.LoopGuarded, st.Undecodable, st.NoTarget, st.Unreplayable, elapsed.Seconds())
	if dryRun {
		fmt.Fprint(w, " (dry run: replayed counts what would be; nothing produced or committed)")
	}
	fmt.Fprintln(w)
	if st.NotSelected > 0 && !dryRun {
		fmt.Fprintf(w, "floodgate dlq replay: %s not selected by the filter flags were passed over; later runs with resume id %s start after them\n",
			entries(st.NotSelected), resumeID)
	}
}

// exitSkipped is the exit status of a replay that went through the lane
// but skipped entries that cannot be replayed.
const exitSkipped = 3

// entries returns "1 entry" or "n entries".
func entries(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return strconv.Itoa(n) + " entries"
}

// entryAt names an entry by where it is, and where it came from if known:
// "dlq[0]@12 (orders[3]@4711)".
func entryAt(e dlq.Entry) string {
	r := e.Record
	s := fmt.Sprintf("%s[%d]@%d", r.Topic, r.Partition, r.Offset)
	if e.Err == nil && e.Meta.OriginalTopic != "" {
		s += fmt.Sprintf(" (%s[%d]@%d)", e.Meta.OriginalTopic, e.Meta.OriginalPartition, e.Meta.OriginalOffset)
	}
	return s
}

// checkTopic returns an error saying why topic cannot be written to, as
// far as metadata tells: "does not exist", or the error.
func checkTopic(ctx context.Context, brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	tds, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("could not be looked up: %w", err)
	}
	switch td, ok := tds[topic]; {
	case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
		return errors.New("does not exist")
	case td.Err != nil:
		return fmt.Errorf("could not be looked up: %w", td.Err)
	}
	return nil
}

// resumeGroupFor returns the default resume group of the dead-letter topic
// topic. It depends on nothing else: one position per topic, so that a run
// with other filter flags or another target goes on where the last one
// stopped and never re-sends what it replayed.
func resumeGroupFor(topic string) string {
	return "floodgate-dlq-replay." + topic
}
