package main

import (
	"context"
	"errors"
	"flag"

	"github.com/ndr-go/ndr/ingest/scenario"
	"github.com/ndr-go/ndr/internal/quality"
)

// runQuality generates the labelled benchmark corpus, runs the pipeline
// over it without ClickHouse and prints precision, recall, the false
// positive rate, the beacon ROC and the RITA comparison.
func runQuality(ctx context.Context, args []string, env *environment) error {
	fs := flag.NewFlagSet("quality", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	d := scenario.DefaultBenchmarkOptions()
	seed := fs.Uint64("seed", d.Seed, "corpus seed")
	hosts := fs.Int("hosts", d.Hosts, "internal workstations")
	days := fs.Int("days", d.Days, "days of traffic")
	noLearn := fs.Bool("no-learn", false, "do not fit baselines in event time")
	check := fs.Bool("check", false, "exit 1 when a target of issue 4 is missed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	if fs.NArg() > 0 || *hosts < 10 || *days < 1 {
		return usageErr("want no arguments, --hosts >= 10 and --days >= 1")
	}
	o := quality.Options{NoLearn: *noLearn, Logger: env.log}
	o.Corpus = d
	o.Corpus.Seed, o.Corpus.Hosts, o.Corpus.Days = *seed, *hosts, *days
	rep, err := quality.Run(ctx, o)
	if err != nil {
		return err
	}
	if err := rep.Write(env.stdout); err != nil {
		return err
	}
	if *check {
		return rep.Check()
	}
	return nil
}
