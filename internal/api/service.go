package api

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ndr-go/ndr/internal/hunt"
	"github.com/ndr-go/ndr/internal/store"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// DetectionService implements ndr.v1.DetectionService: List over the
// store, Watch over a Broadcaster.
type DetectionService struct {
	ndrv1.UnimplementedDetectionServiceServer
	db  hunt.Querier
	bc  *Broadcaster
	log *slog.Logger
}

// NewDetectionService serves List from db and Watch from bc; either may be
// nil, and its method then answers Unavailable.
func NewDetectionService(db hunt.Querier, bc *Broadcaster, log *slog.Logger) *DetectionService {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DetectionService{db: db, bc: bc, log: log}
}

// Register adds the service to g and, when h is not nil, reports it
// SERVING in the standard health service.
func (s *DetectionService) Register(g grpc.ServiceRegistrar, h *health.Server) {
	ndrv1.RegisterDetectionServiceServer(g, s)
	if h != nil {
		h.SetServingStatus(ndrv1.DetectionService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
}

// List returns a page of stored detections.
func (s *DetectionService) List(ctx context.Context, req *ndrv1.ListDetectionsRequest) (*ndrv1.ListDetectionsResponse, error) {
	if s.db == nil {
		return nil, grpcError(ErrNoStore)
	}
	f, err := FilterFromProto(req.GetFilter())
	if err != nil {
		return nil, grpcError(err)
	}
	f.Limit, f.PageToken = int(min(req.GetLimit(), hunt.MaxLimit)), req.GetPageToken() // larger pages are cut to the maximum
	ds, next, err := hunt.ListDetections(ctx, s.db, f)
	if err != nil {
		if !errors.Is(err, hunt.ErrUsage) {
			s.log.Warn("list detections", "err", err)
		}
		return nil, grpcError(err)
	}
	resp := &ndrv1.ListDetectionsResponse{NextPageToken: next, Detections: make([]*ndrv1.Detection, len(ds))}
	for i := range ds {
		resp.Detections[i] = DetectionToProto(&ds[i].Detection, ds[i].DetectedAt)
	}
	return resp, nil
}

// Watch streams new detection versions matching the filter until the
// client goes away, falls behind, or the server stops. The response
// headers are sent once the watch is registered.
func (s *DetectionService) Watch(req *ndrv1.WatchDetectionsRequest, stream grpc.ServerStreamingServer[ndrv1.Detection]) error {
	if s.bc == nil {
		return grpcError(ErrClosed)
	}
	f, err := FilterFromProto(req.GetFilter())
	if err != nil {
		return grpcError(err)
	}
	w, err := s.bc.Watch(f)
	if err != nil {
		return grpcError(err)
	}
	defer w.Close()
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		select {
		case d := <-w.C():
			if err := stream.Send(d); err != nil {
				return err
			}
		case <-w.Done():
			return grpcError(w.Err())
		case <-ctx.Done():
			return grpcError(ctx.Err())
		}
	}
}

// grpcError maps errors to gRPC codes, in one place: what the caller got
// wrong is InvalidArgument, overload ResourceExhausted, a stopping server
// or an unreachable store Unavailable, never Unknown.
func grpcError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hunt.ErrUsage):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrSlowWatcher):
		return status.Error(codes.ResourceExhausted, err.Error()+"; List catches up, then Watch again")
	case errors.Is(err, ErrTooManyWatchers):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrClosed), errors.Is(err, ErrNoStore):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case store.Retryable(err):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
