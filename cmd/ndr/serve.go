package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ndr-go/ndr/ingest/server"
)

func runServe(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "serve", "")
	var sf storageFlags
	sf.register(fs)
	scfg := server.DefaultConfig()
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:50051", "gRPC listen address")
	fs.IntVar(&scfg.MaxEventsPerBatch, "max-events-per-batch", scfg.MaxEventsPerBatch, "largest batch accepted")
	fs.IntVar(&scfg.MaxInFlight, "max-inflight", scfg.MaxInFlight, "unacknowledged batches per stream before the server stops reading it")
	fs.IntVar(&scfg.MaxStreams, "max-streams", scfg.MaxStreams, "concurrent streams accepted")
	fs.DurationVar(&scfg.BackpressureTimeout, "backpressure-timeout", scfg.BackpressureTimeout, "how long a batch may wait for storage before the stream is refused with ResourceExhausted")
	gcfg := server.DefaultGRPCConfig()
	fs.IntVar(&gcfg.MaxRecvMsgBytes, "max-message-bytes", gcfg.MaxRecvMsgBytes, "largest gRPC message accepted")
	tlsCert := fs.String("tls-cert", "", "server certificate (PEM); with --tls-key turns on TLS")
	tlsKey := fs.String("tls-key", "", "server key (PEM)")
	clientCA := fs.String("tls-client-ca", "", "CA bundle for client certificates; turns on mTLS")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on shutdown, how long to wait for streams to finish")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	if err := scfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
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
	writer, err := st.NewConnWriter(st.Config().Writer)
	if err != nil {
		return err
	}
	writer.Start(ctx)

	srv, err := server.New(scfg, writer, env.log, time.Now)
	if err != nil {
		return err
	}
	g, health := server.NewGRPCServer(gcfg, srv)
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
	gracefulStop(g, *drain)
	// Flush what the stopped streams handed over; acks for it are lost,
	// and senders resend, which the store's deduplication absorbs.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *drain)
	defer cancel()
	if err := writer.Shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("flush: %w", err))
	}
	s := srv.Stats()
	ws := writer.Stats()
	fmt.Fprintf(env.stdout, "ndr serve: stopped; %d batches, %d events stored, %d rejected, %d duplicate batches; %d rows in %d inserts\n",
		s.Batches, s.Accepted, s.Rejected, s.Duplicates, ws.Rows, ws.Inserts)
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

var _ = healthpb.HealthCheckResponse_SERVING
