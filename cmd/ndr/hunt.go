package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/ndr-go/ndr/internal/hunt"
	"github.com/ndr-go/ndr/internal/store"
	"github.com/ndr-go/ndr/notebooks"
)

// demoDSN is where `make demo` leaves its ClickHouse. The reading commands
// (hunt, detections) need data, so without --clickhouse or
// NDR_CLICKHOUSE_DSN they connect there rather than start an empty
// embedded server.
const demoDSN = "clickhouse://127.0.0.1:19000/ndr"

// analystFlags connect the reading commands to the ClickHouse that serve
// or replay filled.
type analystFlags struct {
	dsn, caFile, certFile, keyFile string
	skipVerify                     bool
	retentionDays                  int
}

func (f *analystFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dsn, "clickhouse", "", "ClickHouse DSN, e.g. clickhouse://user@host:9000/ndr?secure=true\n(default: env NDR_CLICKHOUSE_DSN, else the demo's "+demoDSN+")")
	fs.StringVar(&f.caFile, "clickhouse-ca", "", "CA bundle for a TLS (secure=true) ClickHouse")
	fs.StringVar(&f.certFile, "clickhouse-cert", "", "client certificate for ClickHouse mTLS")
	fs.StringVar(&f.keyFile, "clickhouse-key", "", "client key for ClickHouse mTLS")
	fs.BoolVar(&f.skipVerify, "clickhouse-insecure-skip-verify", false, "do not verify ClickHouse's certificate (testing only)")
	fs.IntVar(&f.retentionDays, "retention-days", store.Default().RetentionDays, "retention the store keeps, as for serve and replay\n(opening the store applies it; give the value your deployment uses)")
}

// open connects like serve and replay do (same environment variables),
// without ever starting an embedded server. Unless NDR_LOG_LEVEL asks for
// more, it logs only warnings: the answer is the output.
func (f *analystFlags) open(ctx context.Context, env *environment) (*storage, error) {
	if env.getenv("NDR_LOG_LEVEL") == "" {
		env.logLevel.Set(slog.LevelWarn)
	}
	def := store.Default()
	sf := storageFlags{
		dsn:    orDefault(orDefault(f.dsn, env.getenv("NDR_CLICKHOUSE_DSN")), demoDSN),
		caFile: f.caFile, certFile: f.certFile, keyFile: f.keyFile, skipVerify: f.skipVerify,
		retentionDays: f.retentionDays, flushRows: def.Writer.FlushRows, flushInterval: def.Writer.FlushInterval,
	}
	st, err := sf.open(ctx, env)
	if err != nil && sf.dsn == demoDSN {
		return nil, fmt.Errorf("%w\n(no --clickhouse or NDR_CLICKHOUSE_DSN, so this tried the demo's ClickHouse: start it with `make demo`)", err)
	}
	return st, err
}

// paramFlag collects repeated --param NAME=VALUE.
type paramFlag map[string]string

func (p paramFlag) String() string { return "" }

func (p paramFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want NAME=VALUE, got %q", s)
	}
	if _, dup := p[k]; dup {
		return fmt.Errorf("%s given twice", k)
	}
	p[k] = v
	return nil
}

// outputFormat is --format: table, csv or json.
type outputFormat string

func (f *outputFormat) String() string { return string(*f) }

func (f *outputFormat) Set(s string) error {
	switch s {
	case "table", "csv", "json":
		*f = outputFormat(s)
		return nil
	}
	return fmt.Errorf("want table, csv or json, got %q", s)
}

func (f outputFormat) write(w io.Writer, r *hunt.Result) error {
	switch f {
	case "csv":
		return r.WriteCSV(w)
	case "json":
		return r.WriteJSON(w)
	}
	return r.WriteTable(w)
}

func runHunt(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "hunt", "NAME [--param NAME=VALUE ...] | --list")
	var af analystFlags
	af.register(fs)
	params := paramFlag{}
	fs.Var(params, "param", "a query parameter, NAME=VALUE (repeatable); times are RFC 3339 or '2006-01-02 15:04:05' UTC")
	format := outputFormat("table")
	fs.Var(&format, "format", "output: table, csv or json (JSON lines)")
	list := fs.Bool("list", false, "list the library's queries, what each finds and its parameters")
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: ndr hunt NAME [--param NAME=VALUE ...] [--format table|csv|json]\n       ndr hunt --list\n\n"+
			"Runs a query of the hunting library (notebooks/queries) against ClickHouse.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Flags may come before or after NAME.
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var name string
	if fs.NArg() > 0 {
		name = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usageErr("unexpected arguments %q (parameters go as --param NAME=VALUE)", fs.Args())
		}
	}
	lib, err := hunt.Load(notebooks.Queries(), "queries")
	if err != nil {
		return err
	}
	if *list {
		if name != "" {
			q, err := lib.Get(name)
			if err != nil {
				return usageErr("%v", err)
			}
			describe(env.stdout, q)
			return nil
		}
		for _, n := range lib.Names() {
			q, _ := lib.Get(n)
			describe(env.stdout, q)
		}
		return nil
	}
	if name == "" {
		return usageErr("name a query (ndr hunt --list shows them)")
	}
	q, err := lib.Get(name)
	if err != nil {
		return usageErr("%v", err)
	}
	bound, err := hunt.Bind(q, params)
	if err != nil {
		return usageErr("%v", err)
	}
	st, err := af.open(ctx, env)
	if err != nil {
		return err
	}
	defer st.close(ctx, env)
	res, err := hunt.Run(ctx, st, q, bound)
	if err != nil {
		return err
	}
	if err := format.write(env.stdout, res); err != nil {
		return err
	}
	if format == "table" {
		fmt.Fprintf(env.stderr, "%d rows\n", len(res.Rows))
	}
	return nil
}

// describe prints a query's name, what it finds and its parameters.
func describe(w io.Writer, q *hunt.Query) {
	fmt.Fprintf(w, "%s\n", q.Name)
	for _, line := range wrap(q.Finds, 76) {
		fmt.Fprintf(w, "    %s\n", line)
	}
	if len(q.Params) > 0 {
		ps := append([]hunt.Param(nil), q.Params...)
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].Required && !ps[j].Required })
		fmt.Fprintln(w, "  params:")
		for _, p := range ps {
			def := "required"
			if !p.Required {
				def = "default " + p.Default
			}
			fmt.Fprintf(w, "    %s %s (%s): %s\n", p.Name, p.Type, def, p.Meaning)
		}
	}
	fmt.Fprintln(w)
}

func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
