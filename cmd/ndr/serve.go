package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/ndr-go/ndr/ingest/server"
	"github.com/ndr-go/ndr/ingest/spool"
	"github.com/ndr-go/ndr/internal/api"
	"github.com/ndr-go/ndr/internal/pipeline"
	"github.com/ndr-go/ndr/scoring"
)

func runServe(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "serve", "")
	var sf storageFlags
	sf.register(fs)
	var af analysisFlags
	af.register(fs)
	var bf serveBaselineFlags
	bf.register(fs)
	out := fs.String("out", "", "also append every detection event (created and updated) as a JSON line to this file")
	scfg := server.DefaultConfig()
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:50051", "gRPC listen address")
	fs.IntVar(&scfg.MaxEventsPerBatch, "max-events-per-batch", scfg.MaxEventsPerBatch, "largest batch accepted")
	fs.IntVar(&scfg.MaxInFlight, "max-inflight", scfg.MaxInFlight, "unacknowledged batches per stream before the server stops reading it")
	fs.IntVar(&scfg.MaxStreams, "max-streams", scfg.MaxStreams, "concurrent streams accepted")
	fs.DurationVar(&scfg.BackpressureTimeout, "backpressure-timeout", scfg.BackpressureTimeout, "how long a batch may wait for storage before the stream is refused with ResourceExhausted")
	var sec securityFlags
	sec.register(fs, &scfg)
	gcfg := server.DefaultGRPCConfig()
	fs.IntVar(&gcfg.MaxRecvMsgBytes, "max-message-bytes", gcfg.MaxRecvMsgBytes, "largest gRPC message accepted")
	tlsCert := fs.String("tls-cert", "", "server certificate (PEM); with --tls-key turns on TLS")
	tlsKey := fs.String("tls-key", "", "server key (PEM)")
	clientCA := fs.String("tls-client-ca", "", "CA bundle for client certificates; turns on mTLS")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on shutdown, how long to wait for streams to finish")
	spoolDir := fs.String("spool-dir", "", "directory of the durable spool (default: DATA-DIR/spool)")
	spoolMax := fs.Int64("spool-max-bytes", spool.Defaults().MaxBytes, "disk the spool may use; when full, senders are pushed back")
	spoolRetain := fs.Int64("spool-retain-bytes", spool.Defaults().RetainBytes, "drained data kept to rebuild analysis after a restart and recognise resent batches")
	checkpointEvery := fs.Duration("checkpoint-every", 5*time.Second, "how often analysis outputs are stored and checkpointed in the spool")
	pprofAddr := fs.String("pprof-addr", "", "serve Go profiling endpoints on this loopback address (e.g. 127.0.0.1:6060)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	if err := scfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	acfg, err := af.config()
	if err != nil {
		return err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usageErr("--tls-cert and --tls-key go together")
	}
	if *clientCA != "" && *tlsCert == "" {
		return usageErr("--tls-client-ca needs --tls-cert and --tls-key")
	}
	if *tlsCert != "" {
		tc, err := serverTLS(*tlsCert, *tlsKey, *clientCA)
		if err != nil {
			return err
		}
		gcfg.TLS = tc
	} else if host, _, err := net.SplitHostPort(*grpcAddr); err == nil && !isLoopback(host) {
		env.log.Warn("gRPC listener is not on loopback and has no TLS: anyone who can reach it can write events", "addr", *grpcAddr)
	}
	authOpts, stopAuth, err := sec.authenticator(ctx, env, *grpcAddr, gcfg.TLS != nil)
	if err != nil {
		return err
	}
	defer stopAuth()

	if err := startDebug(ctx, env, *pprofAddr); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer lis.Close()

	st, err := sf.open(ctx, env)
	if err != nil {
		return err
	}
	defer st.close(ctx, env)
	baselines, err := bf.start(ctx, env, st.Store, &acfg)
	if err != nil {
		return err
	}
	defer baselines.shutdown(ctx, env)
	writer, err := st.NewConnWriter(st.Config().Writer)
	if err != nil {
		return err
	}
	writer.Start(ctx)
	aw, err := st.NewAnalysisWriter(st.Config().Writer)
	if err != nil {
		return err
	}
	aw.Start(ctx)
	rw, err := st.NewRejectWriter(st.Config().Writer) // refused events, into ndr.rejected
	if err != nil {
		return err
	}
	rw.Start(ctx)
	// Watchers of DetectionService see each detection as it is handed to the store.
	watchers := api.NewBroadcaster(api.DefaultBroadcasterConfig(), time.Now)
	outs := pipeline.Outputs{Signals: aw, Features: aw, Detections: []scoring.Sink{detectionStore(aw), watchers}}
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		outs.Detections = append(outs.Detections, scoring.NewJSONLines(f))
	}
	mute := &pipeline.Mute{}
	an, err := pipeline.NewAnalyzer(acfg, mute.Muted(outs), env.log, nil)
	if err != nil {
		return err
	}
	sopts := spool.Defaults()
	sopts.Dir = orDefault(*spoolDir, filepath.Join(sf.dataDir, "spool"))
	sopts.MaxBytes, sopts.RetainBytes = *spoolMax, *spoolRetain
	sopts.ChunkRows, sopts.ChunkAge = st.Config().Writer.FlushRows, st.Config().Writer.FlushInterval
	dur, srv, err := openDurable(ctx, env, sopts, an, mute, aw, func(sink server.Sink) (*server.Server, error) {
		return server.New(scfg, sink, env.log, time.Now, append(authOpts, server.WithRejectSink(rejectSink(rw)))...)
	})
	if err != nil {
		return err
	}
	dur.start(ctx, writer, *checkpointEvery)
	g, health := server.NewGRPCServer(gcfg, srv)
	api.NewDetectionService(st.Store, watchers, env.log).Register(g, health)
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	fmt.Fprintf(env.stdout, "ndr serve: gRPC on %s, storing in ClickHouse database %s\n", lis.Addr(), st.Database())
	if st.embedded != nil {
		fmt.Fprintf(env.stdout, "  embedded ClickHouse: native %s, http://%s\n", st.embedded.TCPAddr(), st.embedded.HTTPAddr())
	}

	var runErr error
	select {
	case <-ctx.Done():
		env.log.Info("shutting down: draining streams", "timeout", *drain)
	case err := <-serveErr:
		runErr = fmt.Errorf("grpc serve: %w", err)
	}
	health.Shutdown()
	watchers.Shutdown(ctx) // Watch streams never end by themselves; graceful stop would wait for them
	gracefulStop(g, *drain)
	// Every acknowledged batch is in the spool. Write and analyse what the
	// stopped streams handed over, close every window (as at the end of
	// input), store the outputs, drain the spool into ClickHouse.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *drain)
	defer cancel()
	if err := dur.shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, err)
	}
	for _, stop := range []func(context.Context) error{aw.Shutdown, rw.Shutdown, writer.Shutdown} {
		if err := stop(sctx); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("flush: %w", err))
		}
	}
	s := srv.Stats()
	ws := writer.Stats()
	as := aw.Stats()
	fmt.Fprintf(env.stdout, "ndr serve: stopped; %d batches, %d events stored, %d rejected, %d duplicate batches; %d rows in %d inserts; %d signals, %d detection versions\n",
		s.Batches, s.Accepted, s.Rejected, s.Duplicates, ws.Rows, ws.Inserts, as.Signals, as.Detections)
	return runErr
}

func gracefulStop(g *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		g.Stop()
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read client CA %s: no certificates found", clientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
