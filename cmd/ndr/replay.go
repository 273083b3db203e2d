package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ndr-go/ndr/ingest"
)

func runReplay(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "replay", "FILE|DIR|GLOB|- ...")
	var sf storageFlags
	sf.register(fs)
	noStore := fs.Bool("no-store", false, "run without ClickHouse")
	sensor := fs.String("sensor", "replay", "sensor id recorded on every event")
	batchSize := fs.Int("batch-size", 8192, "events per batch")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErr("no files given")
	}
	if *batchSize <= 0 {
		return usageErr("--batch-size must be positive")
	}
	rejects := newRejectLog(env.stderr, 20)
	src, err := newFileSource(fs.Args(), ingest.ReaderOptions{
		Sensor: *sensor, OnReject: func(e *ingest.LineError) { rejects.add("%v", e) },
	}, env)
	if err != nil {
		return err
	}
	defer src.Close()

	var (
		st    *storage
		write func(context.Context, *ingest.Batch, func(error)) error
		flush func(context.Context) error
	)
	if !*noStore {
		st, err = sf.open(ctx, env)
		if err != nil {
			return err
		}
		defer st.close(ctx, env)
		w, err := st.NewConnWriter(st.Config().Writer)
		if err != nil {
			return err
		}
		w.Start(ctx)
		write, flush = w.Write, w.Shutdown
	}

	start := time.Now()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		storeErr error
		seq      uint64
		events   int
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
			if write != nil {
				wg.Add(1)
				if err = write(ctx, b, func(err error) {
					if err != nil {
						mu.Lock()
						storeErr = errors.Join(storeErr, err)
						mu.Unlock()
					}
					wg.Done()
				}); err != nil {
					wg.Done()
					break
				}
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
	}
	if flush != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		if ferr := flush(sctx); ferr != nil {
			err = errors.Join(err, fmt.Errorf("flush: %w", ferr))
		}
		cancel()
		wg.Wait()
	}
	elapsed := time.Since(start)
	rs := src.Stats()
	fmt.Fprintf(env.stdout, "replayed %d events from %d files in %s: %.0f events/s; %d bad lines\n",
		events, len(src.Files()), elapsed.Round(time.Millisecond), float64(events)/elapsed.Seconds(), rs.Rejected)
	if st != nil && storeErr == nil && err == nil {
		fmt.Fprintf(env.stdout, "  stored in ClickHouse table %s.conn\n", st.Database())
	}
	if err = errors.Join(err, storeErr); err != nil {
		return err
	}
	if rs.Rejected > 0 {
		return errRejected
	}
	return nil
}
