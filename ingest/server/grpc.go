package server

import (
	"crypto/tls"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// GRPCConfig configures the gRPC listener's transport.
type GRPCConfig struct {
	// MaxRecvMsgBytes bounds one message (one EventBatch).
	MaxRecvMsgBytes int
	// TLS, when set, is required of every client (set ClientAuth for mTLS).
	TLS *tls.Config
	// Options are appended last. When the Server has an Authenticator,
	// NewGRPCServer installs its tap handle (gRPC allows one) and its
	// interceptors first in the chains.
	Options []grpc.ServerOption
}

// DefaultGRPCConfig allows 64 MiB messages, enough for 50,000 events.
func DefaultGRPCConfig() GRPCConfig { return GRPCConfig{MaxRecvMsgBytes: 64 << 20} }

// NewGRPCServer returns a grpc.Server with the ingest service, the standard
// health service (reporting SERVING for ndr.v1.IngestService and overall)
// and server reflection, so grpcurl can list and call it. Health and
// reflection need no token even when the ingest service does.
func NewGRPCServer(cfg GRPCConfig, ing *Server) (*grpc.Server, *health.Server) {
	opts := []grpc.ServerOption{
		// Batches decode with wire.Frame, every other message as before.
		grpc.ForceServerCodecV2(newCodec()),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	if a := ing.auth; a != nil {
		opts = append(opts, grpc.InTapHandle(a.TapHandle()),
			grpc.ChainUnaryInterceptor(a.UnaryInterceptor()), grpc.ChainStreamInterceptor(a.StreamInterceptor()))
	}
	opts = append(opts, cfg.Options...)
	g := grpc.NewServer(opts...)
	g.RegisterService(&ingestServiceDesc, ing)
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus(ndrv1.IngestService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, h)
	reflection.Register(g)
	return g, h
}
