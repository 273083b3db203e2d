package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ndr-go/ndr/baseline"
	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/internal/pipeline"
	"github.com/ndr-go/ndr/internal/store"
)

// retrainFlags configure the retraining job, for `ndr retrain` and
// `ndr serve --retrain-every`.
type retrainFlags struct {
	window daysDuration
	keep   int
}

func (f *retrainFlags) register(fs *flag.FlagSet, prefix string) {
	f.window = daysDuration(30 * 24 * time.Hour)
	fs.Var(&f.window, prefix+"window", "history the baselines learn from, in whole hours (e.g. 30d, 14d, 72h)")
	fs.IntVar(&f.keep, prefix+"keep", 10, "baseline versions kept in ClickHouse (older ones are deleted after a retrain)")
}

// job is one retrain against st: fit, save, prune.
func (f *retrainFlags) job(st *store.Store, nets []netip.Prefix, env *environment) func(ctx context.Context) (baseline.RetrainStats, error) {
	return func(ctx context.Context) (baseline.RetrainStats, error) {
		cfg := baseline.RetrainConfig{Params: baseline.DefaultParams(), Window: time.Duration(f.window), LocalNetworks: nets, Now: time.Now}
		_, stats, err := baseline.Retrain(ctx, st, st, cfg, env.log)
		if err != nil {
			return stats, err
		}
		if err := st.PruneBaselines(ctx, f.keep); err != nil {
			env.log.Warn("prune baselines", "err", err)
		}
		return stats, nil
	}
}

func (f *retrainFlags) validate() error {
	if time.Duration(f.window) < time.Hour {
		return usageErr("--window %s: want at least 1h", time.Duration(f.window))
	}
	if f.keep < 1 {
		return usageErr("--keep %d: want at least 1", f.keep)
	}
	return nil
}

func runRetrain(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "retrain", "")
	var sf storageFlags
	sf.register(fs)
	var rf retrainFlags
	rf.register(fs, "")
	localNets := fs.String("local-nets", "", "comma-separated internal networks (default: RFC 1918 and IPv6 ULA; a sensor's local_orig wins)")
	backfill := fs.Bool("backfill", false, "first aggregate conn rows stored before the aggregates existed (once per database)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	if err := rf.validate(); err != nil {
		return err
	}
	nets := features.DefaultConfig().LocalNetworks
	if *localNets != "" {
		var err error
		if nets, err = parseNets(*localNets); err != nil {
			return err
		}
	}
	st, err := sf.open(ctx, env)
	if err != nil {
		return err
	}
	defer st.close(ctx, env)
	if *backfill {
		start := time.Now()
		bs, err := st.BackfillHostAggregates(ctx, nets)
		if err != nil {
			return err
		}
		if bs.Skipped {
			fmt.Fprintln(env.stdout, "ndr retrain: backfill already done for this database; skipped")
		} else {
			fmt.Fprintf(env.stdout, "ndr retrain: backfilled %d conn rows stored before %s in %s\n",
				bs.ConnRows, bs.Before.Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
		}
	}
	stats, err := rf.job(st.Store, nets, env)(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "ndr retrain: version %d, %d hosts fitted (%d internal hosts seen, %d destinations) from %s to %s in %.2fs (save %.2fs)\n",
		stats.Version, stats.Hosts, stats.InternalHosts, stats.Destinations,
		stats.From.Format(time.RFC3339), stats.To.Format(time.RFC3339), stats.Total.Seconds(), stats.Save.Seconds())
	return nil
}

// parseNets parses comma-separated CIDRs.
func parseNets(s string) ([]netip.Prefix, error) {
	var nets []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return nil, usageErr("--local-nets: %v", err)
		}
		nets = append(nets, p.Masked())
	}
	return nets, nil
}

// daysDuration is a flag duration that also takes whole days ("30d").
type daysDuration time.Duration

func (d *daysDuration) String() string {
	v := time.Duration(*d)
	if v > 0 && v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d *daysDuration) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 3650 {
			return fmt.Errorf("%q: want whole days 0 to 3650, or a Go duration", s)
		}
		*d = daysDuration(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = daysDuration(v)
	return nil
}

// serveBaselineFlags configure baselines in `ndr serve`: polling
// ClickHouse for new versions and, optionally, retraining in-process.
type serveBaselineFlags struct {
	retrain retrainFlags
	every   time.Duration
	poll    time.Duration
}

func (f *serveBaselineFlags) register(fs *flag.FlagSet) {
	f.retrain.register(fs, "retrain-")
	fs.DurationVar(&f.every, "retrain-every", 0, "retrain per-host baselines in-process this often, e.g. 24h (0: never; run `ndr retrain` from cron instead)")
	fs.DurationVar(&f.poll, "baseline-poll", time.Minute, "how often to look in ClickHouse for a newer baseline version")
}

// servingBaselines are serve's baseline goroutines.
type servingBaselines struct {
	poller *baseline.Poller
	sched  *baseline.Scheduler
}

// start installs the newest stored snapshot in a registry that acfg's
// analysis reads, then polls for newer ones and schedules retrains.
func (f *serveBaselineFlags) start(ctx context.Context, env *environment, st *store.Store, acfg *pipeline.Config) (*servingBaselines, error) {
	if f.poll <= 0 {
		return nil, usageErr("--baseline-poll %s: want > 0", f.poll)
	}
	if f.every < 0 {
		return nil, usageErr("--retrain-every %s: want >= 0", f.every)
	}
	if err := f.retrain.validate(); err != nil {
		return nil, err
	}
	reg := &baseline.Registry{}
	acfg.Baselines = reg
	p, err := baseline.NewPoller(reg, st, f.poll, env.log)
	if err != nil {
		return nil, err
	}
	if _, err := p.Poll(ctx); err != nil {
		env.log.Warn("no baseline loaded; spike signals use their priors", "err", err)
	}
	b := &servingBaselines{poller: p}
	p.Start(ctx)
	if f.every > 0 {
		job := f.retrain.job(st, acfg.Features.LocalNetworks, env)
		b.sched, err = baseline.NewScheduler(f.every, func(ctx context.Context) error {
			if _, err := job(ctx); err != nil {
				return err
			}
			_, err := p.Poll(ctx) // install it now rather than at the next poll
			return err
		}, env.log)
		if err != nil {
			p.Shutdown(ctx)
			return nil, err
		}
		b.sched.Start(ctx)
	}
	return b, nil
}

// shutdown stops a retrain in progress and the poller.
func (b *servingBaselines) shutdown(ctx context.Context, env *environment) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if b.sched != nil {
		if err := b.sched.Shutdown(sctx); err != nil {
			env.log.Warn("stop retrain scheduler", "err", err)
		}
	}
	if err := b.poller.Shutdown(sctx); err != nil {
		env.log.Warn("stop baseline poller", "err", err)
	}
}

// learnFlags configure event-time baselines in `ndr replay`.
type learnFlags struct {
	on         bool
	refitEvery time.Duration
	after      time.Duration
}

func (f *learnFlags) register(fs *flag.FlagSet) {
	def := baseline.DefaultLearnerConfig()
	fs.BoolVar(&f.on, "learn-baselines", true, "fit per-host baselines in event time as the replay goes, so later days are scored against what earlier days taught")
	fs.DurationVar(&f.refitEvery, "refit-every", def.RefitEvery, "event time between baseline fits")
	fs.DurationVar(&f.after, "learn-after", def.MinHistory, "event time seen before the first baseline fit")
}

// apply gives acfg an event-time learner and the registry it fills.
func (f *learnFlags) apply(acfg *pipeline.Config) error {
	if !f.on {
		return nil
	}
	lc := baseline.DefaultLearnerConfig()
	lc.RefitEvery, lc.MinHistory = f.refitEvery, f.after
	lc.LocalNetworks = acfg.Features.LocalNetworks
	if err := lc.Validate(); err != nil {
		return usageErr("%v", err)
	}
	acfg.Baselines, acfg.Learn = &baseline.Registry{}, &lc
	return nil
}

// report prints what the learner did, when it fitted anything.
func (f *learnFlags) report(w io.Writer, an *pipeline.Analyzer) {
	if st := an.LearnerStats(); st.Fits > 0 {
		fmt.Fprintf(w, "  baselines: %d event-time fits, %d hosts tracked\n", st.Fits, st.Hosts)
	}
}
