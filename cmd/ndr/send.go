package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/client"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

func runSend(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "send", "FILE|DIR|GLOB|- ...")
	def := client.DefaultConfig()
	var dial dialFlags
	dial.register(fs)
	sensor := fs.String("sensor", def.Sensor, "sensor id sent with every batch")
	streamID := fs.String("stream-id", "", "stream id for duplicate suppression (default: random per run)")
	batchSize := fs.Int("batch-size", def.BatchSize, "events per batch")
	inflight := fs.Int("max-inflight", def.MaxInFlight, "unacknowledged batches allowed")
	giveUp := fs.Duration("give-up-after", def.GiveUpAfter, "stop when the server has acknowledged nothing for this long")
	progressEvery := fs.Duration("progress", time.Second, "how often to print progress (0: only the summary)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErr("no files given")
	}
	dialOpts, withToken, err := dial.options(env)
	if err != nil {
		return err
	}
	if withToken && !flagSet(fs, "sensor") {
		*sensor = "" // the server records the token's sensor
	}
	rejects := newRejectLog(env.stderr, 20)
	src, err := newFileSource(fs.Args(), ingest.ReaderOptions{
		Sensor:   *sensor,
		OnReject: func(e *ingest.LineError) { rejects.add("%v", e) },
	}, env)
	if err != nil {
		return err
	}
	defer src.Close()

	conn, err := dial.dial(dialOpts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return err
	}
	defer conn.Close()

	cfg := def
	cfg.Sensor, cfg.StreamID, cfg.BatchSize, cfg.MaxInFlight, cfg.GiveUpAfter = *sensor, *streamID, *batchSize, *inflight, *giveUp
	cfg.OnReject = func(label string, seq uint64, r *ndrv1.Rejection) {
		rejects.add("%s: batch %d event %d: %s", label, seq, r.GetIndex(), r.GetReason())
	}
	snd, err := client.New(conn, cfg, env.log)
	if err != nil {
		return err
	}
	start := time.Now()
	stopProgress := progress(ctx, env, *progressEvery, start, snd.Stats)
	runErr := snd.Run(ctx, src)
	stopProgress()
	elapsed := time.Since(start)
	st := snd.Stats()
	rs := src.Stats()
	fmt.Fprintf(env.stdout, "sent %d events from %d files in %s: %.0f events/s\n", st.Events, len(src.Files()), elapsed.Round(time.Millisecond), float64(st.Acked)/elapsed.Seconds())
	fmt.Fprintf(env.stdout, "  stored %d, refused by server %d, bad lines %d, duplicates %d, resent batches %d, reconnects %d\n",
		st.Accepted, st.Rejected, rs.Rejected, st.Duplicates, st.Resent, st.Reconnects)
	if runErr != nil {
		return fmt.Errorf("%w (%d events not confirmed stored)", runErr, st.Events-st.Acked)
	}
	if st.Unsendable > 0 {
		fmt.Fprintf(env.stdout, "  not sent (invalid UTF-8) %d\n", st.Unsendable)
	}
	if st.Rejected > 0 || rs.Rejected > 0 || st.Unsendable > 0 {
		return errRejected
	}
	return nil
}

// progress prints the sender's counters every interval until stopped.
func progress(ctx context.Context, env *environment, every time.Duration, start time.Time, stats func() client.Stats) (stop func()) {
	if every <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		var last client.Stats
		lastAt := start
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				st := stats()
				rate := float64(st.Acked-last.Acked) / now.Sub(lastAt).Seconds()
				fmt.Fprintf(env.stderr, "progress: %d read, %d stored, %d refused, %.0f events/s, %d reconnects\n",
					st.Events, st.Accepted, st.Rejected, rate, st.Reconnects)
				last, lastAt = st, now
			}
		}
	}()
	return func() { close(done); <-finished }
}

func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA %s: no certificates found", caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
