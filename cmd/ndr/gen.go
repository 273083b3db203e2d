package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ndr-go/ndr/ingest/scenario"
)

func runGen(_ context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "gen", "")
	preset := fs.String("preset", "mixed", "scenario: "+strings.Join(scenario.Presets(), ", "))
	seed := fs.Uint64("seed", 1, "random seed; the same seed gives the same bytes")
	start := fs.String("start", "", "first connection time, RFC 3339 or 'now' (default: the preset's fixed date, for reproducibility)")
	duration := fs.Duration("duration", 0, "length of the generated traffic (default: the preset's)")
	format := fs.String("format", "tsv", "tsv (Zeek conn.log) or json (Zeek JSON lines)")
	out := fs.String("out", "-", "output file, - for stdout")
	labels := fs.String("labels", "", "write the ground-truth labels (JSON) to this file")
	hosts := fs.Int("hosts", 0, "workstations generating background traffic (default: the preset's)")
	rate := fs.Float64("sessions-per-hour", 0, "each workstation's daytime browsing rate (default: the preset's)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	f, err := scenario.ParseFormat(*format)
	if err != nil {
		return usageErr("%v", err)
	}
	var t0 time.Time
	switch *start {
	case "":
	case "now":
		t0 = time.Now().UTC().Truncate(time.Second)
		if *duration > 0 {
			t0 = t0.Add(-*duration) // end now, so a validator's clock accepts every record
		}
	default:
		if t0, err = time.Parse(time.RFC3339, *start); err != nil {
			return usageErr("--start: %v", err)
		}
	}
	spec, err := scenario.Preset(*preset, *seed, t0, *duration)
	if err != nil {
		return usageErr("%v", err)
	}
	if *hosts > 0 {
		spec.Background.Hosts = *hosts
	}
	if *rate > 0 {
		spec.Background.SessionsPerHour = *rate
	}
	if err := spec.Validate(); err != nil {
		return usageErr("%v", err)
	}
	w := env.stdout
	var file *os.File
	if *out != "-" {
		if file, err = os.Create(*out); err != nil {
			return err
		}
		defer file.Close()
		w = file
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	ls, err := scenario.WriteLog(bw, f, spec)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if file != nil {
		if err := file.Close(); err != nil {
			return err
		}
	}
	if *labels != "" {
		if err := writeFileWith(*labels, func(w io.Writer) error { return scenario.WriteLabels(w, ls) }); err != nil {
			return fmt.Errorf("write labels: %w", err)
		}
	}
	return nil
}

func writeFileWith(name string, fn func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
