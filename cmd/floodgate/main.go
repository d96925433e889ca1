package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand. Each lives in a file of its own and is listed
// in commands.
type command struct {
	name    string
	summary string
	// run parses args (the arguments after the command name) and runs the
	// command until it finishes or ctx ends; it returns the exit status.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order usage shows them.
var commands = []command{
	{name: "demo", summary: "produce a burst into a slow consumer and watch the backpressure", run: demoCommand},
	{name: "deferred", summary: "relay the deferred lane's records once the pressure has passed; its backlog", run: deferredCommand},
	{name: "dlq", summary: "inspect and replay the quarantine lane (dead-letter topic)", run: dlqCommand},
	{name: "lag", summary: "a consumer group's lag, offsets and time, seen from outside", run: lagCommand},
	{name: "pressure", summary: "follow the pressure signals on the control topic", run: pressureCommand},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one gets the default behaviour and
	// kills the process: an escape hatch if a graceful stop hangs.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches args[0] to its command and returns the exit status:
// the command's own, 0 for help, 2 for a missing or unknown command.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch name := args[0]; name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c, ok := lookup(args[1]); ok {
				return c.run(ctx, []string{"-h"}, stdout, stdout)
			}
			fmt.Fprintf(stderr, "floodgate: unknown command %q\n\n", args[1])
			usage(stderr)
			return 2
		}
		usage(stdout)
		return 0
	default:
		c, ok := lookup(name)
		if !ok {
			fmt.Fprintf(stderr, "floodgate: unknown command %q\n\n", name)
			usage(stderr)
			return 2
		}
		return c.run(ctx, args[1:], stdout, stderr)
	}
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: floodgate <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'floodgate help <command>' or 'floodgate <command> -h' for a command's flags.\n")
}
