package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/server"
	"github.com/ndr-go/ndr/ingest/spool"
	"github.com/ndr-go/ndr/internal/pipeline"
	"github.com/ndr-go/ndr/internal/store"
)

// durable wires serve's spool: the gRPC server writes into it (an ack
// means on disk), it drains into ClickHouse, and it feeds analysis. On
// start it tells the server which batches it holds (so resends are
// recognised) and replays them through analysis to rebuild windows and
// pending correlations, muted up to the last checkpoint so nothing is
// written twice. Every few seconds it checkpoints: the outputs of every
// batch analysed so far are flushed to ClickHouse and the spool records it.
type durable struct {
	sp        *spool.Spool
	tee       *pipeline.Tee
	aw        *store.AnalysisWriter
	env       *environment
	processed atomic.Uint64 // LSN of the last batch analysis finished
	stop      context.CancelFunc
	wg        sync.WaitGroup
}

// openDurable opens the spool and rebuilds analysis from it. The server
// is made by newServer once the spool exists, since the spool is its sink.
func openDurable(ctx context.Context, env *environment, opts spool.Options, an *pipeline.Analyzer, mute *pipeline.Mute,
	aw *store.AnalysisWriter, newServer func(server.Sink) (*server.Server, error)) (*durable, *server.Server, error) {
	sp, err := spool.Open(opts, env.log, nil)
	if err != nil {
		return nil, nil, err
	}
	srv, err := newServer(sp)
	if err != nil {
		sp.Shutdown(ctx)
		return nil, nil, err
	}
	for k, held := range sp.Streams() {
		batches := make([]server.StoredBatch, len(held))
		for i, h := range held {
			batches[i] = server.StoredBatch{Seq: h.Seq, Accepted: h.Rows}
		}
		srv.MarkStored(k[0], k[1], batches)
	}
	d := &durable{sp: sp, aw: aw, env: env}
	start := time.Now()
	var replayed, muted int
	err = sp.Replay(ctx, func(ctx context.Context, lsn uint64, b *ingest.Batch, m bool) error {
		mute.Set(m)
		replayed++
		if m {
			muted++
		}
		d.processed.Store(lsn)
		return an.Process(ctx, b.Conns)
	})
	mute.Set(false)
	if err != nil {
		sp.Shutdown(ctx)
		return nil, nil, fmt.Errorf("rebuild analysis from the spool: %w", err)
	}
	if replayed > 0 {
		env.log.Info("rebuilt analysis state from the spool", "batches", replayed, "already_reported", muted, "took", time.Since(start).Round(time.Millisecond))
	}
	d.tee = pipeline.NewTee(nil, an, 256, env.log)
	return d, srv, nil
}

// start runs the spool (drain into writer, feed analysis) and the
// checkpoint loop.
func (d *durable) start(ctx context.Context, writer spool.Inserter, every time.Duration) {
	d.tee.Start(ctx)
	d.sp.Start(ctx, writer, func(ctx context.Context, lsn uint64, b *ingest.Batch) error {
		return d.tee.Write(ctx, b, func(error) { d.processed.Store(lsn) })
	})
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.stop = cancel
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				d.checkpoint(cctx)
			case <-cctx.Done():
				return
			}
		}
	}()
}

// checkpoint stores the outputs of what analysis has finished and records
// how far that is.
func (d *durable) checkpoint(ctx context.Context) {
	lsn := d.processed.Load()
	if lsn == 0 {
		return
	}
	if err := d.aw.Flush(ctx); err != nil {
		d.env.log.Warn("checkpoint: analysis outputs not stored yet", "err", err)
		return
	}
	d.sp.MarkAnalysed(lsn)
}

// shutdown runs after the listener stopped: every accepted batch is
// written and analysed, analysis is flushed (as at the end of input), its
// outputs stored and checkpointed, and the spool drains into ClickHouse
// until ctx ends; what is left is drained on the next start.
func (d *durable) shutdown(ctx context.Context) error {
	if d.stop != nil {
		d.stop()
		d.wg.Wait()
	}
	var errs []error
	if _, err := d.sp.Sync(ctx); err != nil {
		errs = append(errs, fmt.Errorf("spool: %w", err))
	}
	if err := d.tee.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("analysis: %w", err))
	}
	if err := d.aw.Flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("analysis outputs: %w", err))
	} else if lsn := d.processed.Load(); lsn > 0 {
		d.sp.MarkAnalysed(lsn)
	}
	if err := d.sp.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		errs = append(errs, fmt.Errorf("spool: %w", err))
	} else if err != nil {
		st := d.sp.Stats()
		d.env.log.Warn("stopped before ClickHouse took everything; the rest is drained on the next start", "undrained_batches", st.UndrainedBatches)
	}
	return errors.Join(errs...)
}
