package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/internal/hunt"
	"github.com/ndr-go/ndr/scoring"
)

func runDetections(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "detections", "")
	var af analystFlags
	af.register(fs)
	from := fs.String("from", "", "detections active at or after this time: RFC 3339, '2006-01-02 15:04:05' (UTC), a date, or a duration back from now (24h)")
	to := fs.String("to", "", "detections that began before this time (same forms as --from)")
	types := fs.String("type", "", "detection types, comma-separated (C2_BEACONING, LATERAL_MOVEMENT, DATA_EXFILTRATION, ...)")
	minSev := fs.String("min-severity", "", "LOW, MEDIUM, HIGH or CRITICAL")
	host := fs.String("host", "", "detections whose source or a destination is this address")
	limit := fs.Int("limit", 100, "most detections shown, newest first (0: all)")
	format := outputFormat("table")
	fs.Var(&format, "format", "output: table, csv, or json (the detection JSON lines `ndr replay --out` writes)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	now := time.Now()
	var f hunt.DetectionFilter
	var err error
	if f.From, err = parseWhen(*from, now); err != nil {
		return usageErr("--from: %v", err)
	}
	if f.To, err = parseWhen(*to, now); err != nil {
		return usageErr("--to: %v", err)
	}
	for _, t := range strings.Split(*types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			f.Types = append(f.Types, strings.ToUpper(t))
		}
	}
	if *minSev != "" {
		if f.MinSeverity, err = features.ParseSeverity(*minSev); err != nil {
			return usageErr("--min-severity: want LOW, MEDIUM, HIGH or CRITICAL")
		}
	}
	if *host != "" {
		if f.Host, err = netip.ParseAddr(*host); err != nil {
			return usageErr("--host: %v", err)
		}
	}
	if *limit < 0 {
		return usageErr("--limit must be 0 or more")
	}
	if err := f.Validate(); err != nil {
		return usageErr("%v", err)
	}
	st, err := af.open(ctx, env)
	if err != nil {
		return err
	}
	defer st.close(ctx, env)
	var ds []hunt.StoredDetection
	for {
		f.Limit = hunt.MaxLimit
		if *limit > 0 {
			f.Limit = min(hunt.MaxLimit, *limit-len(ds))
		}
		page, next, err := hunt.ListDetections(ctx, st, f)
		if err != nil {
			return err
		}
		ds = append(ds, page...)
		if next == "" || (*limit > 0 && len(ds) >= *limit) {
			break
		}
		f.PageToken = next
	}
	if format == "json" {
		plain := make([]scoring.Detection, len(ds))
		for i := range ds {
			plain[i] = ds[i].Detection
		}
		return scoring.WriteJSONLines(env.stdout, plain)
	}
	if err := format.write(env.stdout, detectionTable(ds)); err != nil {
		return err
	}
	if format == "table" {
		fmt.Fprintf(env.stderr, "%d detections\n", len(ds))
	}
	return nil
}

// parseWhen reads a --from/--to value: empty is unbounded, a Go duration
// is that long before now, anything else a time as hunt.ParseTime reads.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d).UTC(), nil
	}
	return hunt.ParseTime(s)
}

// detectionTable is the readable listing: one detection per row.
func detectionTable(ds []hunt.StoredDetection) *hunt.Result {
	r := &hunt.Result{Columns: []string{"first_seen", "last_seen", "type", "severity", "score", "src", "dsts", "count", "detection_id"}}
	for _, d := range ds {
		dsts := make([]string, 0, 3)
		for i, a := range d.Dsts {
			if i == 3 {
				dsts = append(dsts, fmt.Sprintf("+%d", len(d.Dsts)-3))
				break
			}
			dsts = append(dsts, a.String())
		}
		r.Rows = append(r.Rows, []any{
			time.UnixMicro(d.FirstSeen).UTC().Format(time.DateTime), time.UnixMicro(d.LastSeen).UTC().Format(time.DateTime),
			d.Type, d.Severity.String(), int64(d.Score), d.Src.String(), strings.Join(dsts, " "), int64(d.Count), d.ID,
		})
	}
	return r
}
