// Command ndr is the network detection and response service: one binary
// whose subcommands ingest, store and score connection records.
//
// This package is wiring only: it reads flags, environment and config
// files, builds the components of ingest, features, scoring and internal,
// and runs them. Every behaviour lives in those packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ndr-go/ndr/internal/chembed"
)

// Exit codes. 3 means the command finished but refused some input.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitRejected = 3
)

// errRejected makes a command exit with exitRejected after its summary.
var errRejected = errors.New("some input was rejected")

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, env *environment) error
}

func commands() []command {
	return []command{
		{"serve", "receive events over gRPC, store and score them", runServe},
		{"send", "stream Zeek logs or event files to an ndr server", runSend},
		{"loadgen", "drive an ndr server with synthetic traffic; report events/s and latencies", runLoadgen},
		{"replay", "run files through the pipeline in one process (no gRPC)", runReplay},
		{"retrain", "fit per-host baselines from ClickHouse's aggregates and store a new version", runRetrain},
		{"gen", "generate labelled Zeek conn logs of attacks and benign look-alikes", runGen},
		{"quality", "measure detection quality on the seeded labelled benchmark (no ClickHouse)", runQuality},
		{"hunt", "run a query of the hunting library (notebooks/queries) against ClickHouse", runHunt},
		{"detections", "list stored detections, filtered by time, type, severity and host", runDetections},
		{"token", "make per-sensor bearer tokens for serve --tokens (new, hash)", runToken},
		{"clickhouse", "serve an embedded ClickHouse on loopback", runClickHouse},
		{"version", "print the version", runVersion},
	}
}

// environment is what main hands to commands: the process's streams, its
// environment variables and logger. Commands read nothing global.
type environment struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	getenv         func(string) string
	log            *slog.Logger
	logLevel       *slog.LevelVar
}

func main() {
	// A test or a parent may start this binary as an embedded ClickHouse child.
	if code, ok := chembed.RunChildIfRequested(context.Background()); ok {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(strings.ToUpper(orDefault(getenv("NDR_LOG_LEVEL"), "info")))); err != nil {
		fmt.Fprintf(stderr, "ndr: NDR_LOG_LEVEL: %v\n", err)
		return exitUsage
	}
	env := &environment{
		stdout: stdout, stderr: stderr, stdin: stdin, getenv: getenv, logLevel: level,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], env)
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "ndr %s: %v\n", c.name, err)
			return exitUsage
		case errors.Is(err, errRejected):
			return exitRejected
		case errors.As(err, new(*codedError)):
			var ce *codedError
			errors.As(err, &ce)
			fmt.Fprintf(stderr, "ndr %s: %v\n", c.name, ce.err)
			return ce.code
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			fmt.Fprintf(stderr, "ndr %s: interrupted\n", c.name)
			return exitError
		}
		fmt.Fprintf(stderr, "ndr %s: %v\n", c.name, err)
		return exitError
	}
	fmt.Fprintf(stderr, "ndr: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ndr: network detection and response for Zeek connection logs")
	fmt.Fprintln(w, "\nUsage: ndr COMMAND [flags] [args]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'ndr COMMAND -h' for a command's flags. NDR_LOG_LEVEL=debug|info|warn|error sets logging.")
}

// codedError makes a command exit with a specific status, for parents that
// read it (chembed.Start tells a locked data dir from other failures).
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// errUsage marks errors in how a command was invoked.
var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(env *environment, name, argsHelp string) *flag.FlagSet {
	fs := flag.NewFlagSet("ndr "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: ndr %s [flags] %s\n\nFlags:\n", name, argsHelp)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func runVersion(_ context.Context, _ []string, env *environment) error {
	fmt.Fprintf(env.stdout, "ndr %s\n", version)
	return nil
}
