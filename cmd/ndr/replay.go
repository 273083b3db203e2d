package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/internal/pipeline"
	"github.com/ndr-go/ndr/scoring"
)

func runReplay(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "replay", "FILE|DIR|GLOB|- ...")
	var sf storageFlags
	sf.register(fs)
	var af analysisFlags
	af.register(fs)
	var lf learnFlags
	lf.register(fs)
	noStore := fs.Bool("no-store", false, "run without ClickHouse")
	sensor := fs.String("sensor", "replay", "sensor id recorded on every event")
	batchSize := fs.Int("batch-size", 8192, "events per batch")
	out := fs.String("out", "", "write detections as JSON lines to this file (- for stdout)")
	prof := registerCPUProfile(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stopProfile, err := prof.start()
	if err != nil {
		return err
	}
	defer stopProfile()
	if fs.NArg() == 0 {
		return usageErr("no files given")
	}
	if *batchSize <= 0 {
		return usageErr("--batch-size must be positive")
	}
	acfg, err := af.config()
	if err != nil {
		return err
	}
	if err := lf.apply(&acfg); err != nil {
		return err
	}
	report := env.stdout
	if *out == "-" {
		report = env.stderr // stdout carries the JSON lines
	}
	rejects := newRejectLog(env.stderr, 20)
	var keep rejectKeeper // refused lines go to ndr.rejected when there is a store
	src, err := newFileSource(fs.Args(), ingest.ReaderOptions{
		Sensor: *sensor, OnReject: func(e *ingest.LineError) { rejects.add("%v", e); keep.add(ctx, e) },
	}, env)
	if err != nil {
		return err
	}
	defer src.Close()

	collector := &scoring.Collector{}
	outs := pipeline.Outputs{Detections: []scoring.Sink{collector}}
	var (
		sink    pipeline.Storage
		st      *storage
		flushes []func(context.Context) error // in order, after analysis
	)
	if !*noStore {
		st, err = sf.open(ctx, env)
		if err != nil {
			return err
		}
		defer st.close(ctx, env)
		cw, err := st.NewConnWriter(st.Config().Writer)
		if err != nil {
			return err
		}
		cw.Start(ctx)
		aw, err := st.NewAnalysisWriter(st.Config().Writer)
		if err != nil {
			return err
		}
		aw.Start(ctx)
		rw, err := st.NewRejectWriter(st.Config().Writer)
		if err != nil {
			return err
		}
		rw.Start(ctx)
		keep = rejectKeeper{w: rw, sensor: *sensor}
		defer rw.Shutdown(context.WithoutCancel(ctx))
		sink = cw
		outs.Signals, outs.Features = aw, aw
		outs.Detections = append(outs.Detections, detectionStore(aw))
		flushes = append(flushes, aw.Shutdown, cw.Shutdown, keep.shutdown)
		defer cw.Shutdown(context.WithoutCancel(ctx))
		defer aw.Shutdown(context.WithoutCancel(ctx))
	}
	an, err := pipeline.NewAnalyzer(acfg, outs, env.log, nil)
	if err != nil {
		return err
	}
	tee := pipeline.NewTee(sink, an, 16, env.log)
	tee.Start(ctx)

	start := time.Now()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		failErr error
		seq     uint64
		events  int
	)
	for {
		b := &ingest.Batch{Sensor: *sensor, Stream: "replay", Conns: make([]ingest.Conn, 0, *batchSize)}
		_, rerr := src.Next(b, *batchSize)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			err = rerr
			break
		}
		if len(b.Conns) > 0 {
			seq++
			b.Seq = seq
			events += len(b.Conns)
			wg.Add(1)
			if err = tee.Write(ctx, b, func(err error) {
				if err != nil {
					mu.Lock()
					failErr = errors.Join(failErr, err)
					mu.Unlock()
				}
				wg.Done()
			}); err != nil {
				wg.Done()
				break
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
	}
	// Drain: the store's buffered rows, then analysis (which closes every
	// window), then the analysis outputs.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if st != nil {
		if ferr := storageFlush(sctx, sink); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}
	wg.Wait()
	if terr := tee.Shutdown(sctx); terr != nil {
		err = errors.Join(err, fmt.Errorf("analysis: %w", terr))
	}
	for _, f := range flushes {
		if ferr := f(sctx); ferr != nil {
			err = errors.Join(err, fmt.Errorf("flush: %w", ferr))
		}
	}
	elapsed := time.Since(start)
	rs := src.Stats()
	fstats, _ := an.Stats()
	dets := collector.Detections()
	fmt.Fprintf(report, "replayed %d events from %d files in %s: %.0f events/s; %d bad lines\n",
		events, len(src.Files()), elapsed.Round(time.Millisecond), float64(events)/elapsed.Seconds(), rs.Rejected)
	fmt.Fprintf(report, "  %d host feature rows, %d pair feature rows, %d signals, %d detections; %d late events\n",
		fstats.HostRows, fstats.PairRows, fstats.Signals, len(dets), fstats.LateHost)
	lf.report(report, an)
	for _, d := range dets {
		fmt.Fprintf(report, "  %-18s %-16s %-8s %s (%s)\n", d.Type, d.Src, d.Severity, d.ID, time.UnixMicro(d.FirstSeen).UTC().Format(time.RFC3339))
	}
	if st != nil && failErr == nil && err == nil {
		fmt.Fprintf(report, "  stored in ClickHouse database %s (conn, signals, detections)\n", st.Database())
	}
	if *out != "" {
		if werr := writeDetections(*out, env, dets); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if err = errors.Join(err, failErr); err != nil {
		return err
	}
	if rs.Rejected > 0 {
		return errRejected
	}
	return nil
}

// storageFlush pushes the conn writer's buffer out now rather than at the
// next interval, so that replay's acks (and so analysis) finish promptly.
func storageFlush(ctx context.Context, s pipeline.Storage) error {
	if f, ok := s.(interface{ Flush(context.Context) error }); ok {
		return f.Flush(ctx)
	}
	return nil
}

func writeDetections(name string, env *environment, dets []scoring.Detection) error {
	if name == "-" {
		return scoring.WriteJSONLines(env.stdout, dets)
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := scoring.WriteJSONLines(f, dets); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
