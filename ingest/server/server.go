// Package server is ndr's gRPC edge: the IngestService that sensors and
// `ndr send` stream connection records to.
//
// It owns the wire-level protocol (batch sequencing, acknowledgements,
// per-event rejections, duplicate suppression for resent batches, limits
// and back-pressure) and nothing after it: accepted records go to a Sink,
// which decides what "durably stored" means. A batch is acknowledged only
// after the Sink says it is durable.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/wire"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// Sink stores accepted batches. Write may block while the sink is full
// (that is how back-pressure reaches the sender); it returns an error only
// if the batch was not taken, in which case done is never called. Once Write
// returns nil, done is called exactly once: with nil when the batch is
// durably stored, or with the reason it cannot be. The sink owns b from the
// call until done runs; the caller must not modify it before then.
type Sink interface {
	Write(ctx context.Context, b *ingest.Batch, done func(error)) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, b *ingest.Batch, done func(error)) error

// Write calls f.
func (f SinkFunc) Write(ctx context.Context, b *ingest.Batch, done func(error)) error {
	return f(ctx, b, done)
}

// Config bounds what one server accepts.
type Config struct {
	// MaxEventsPerBatch: a larger batch ends the stream with InvalidArgument.
	MaxEventsPerBatch int
	// MaxInFlight is how many unacknowledged batches one stream may have.
	// When reached, the server stops reading that stream.
	MaxInFlight int
	// MaxStreams is how many Stream and Push calls may run at once; more are
	// refused with ResourceExhausted.
	MaxStreams int
	// BackpressureTimeout is how long a batch may wait for room in the sink
	// before the stream ends with ResourceExhausted and a retry delay.
	BackpressureTimeout time.Duration
	// RetryDelay is the delay suggested to senders refused for overload.
	RetryDelay time.Duration
	// TrackedStreams bounds the streams remembered for duplicate suppression.
	TrackedStreams int
	// DefaultSensor names the sensor of batches that carry no sensor id.
	DefaultSensor string
	// Limits bound every event.
	Limits ingest.Limits
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		MaxEventsPerBatch:   50_000,
		MaxInFlight:         256,
		MaxStreams:          256,
		BackpressureTimeout: 30 * time.Second,
		RetryDelay:          time.Second,
		TrackedStreams:      10_000,
		DefaultSensor:       "default",
		Limits:              ingest.DefaultLimits(),
	}
}

// Validate reports every problem, joined.
func (c Config) Validate() error {
	var errs []error
	if c.MaxEventsPerBatch <= 0 {
		errs = append(errs, errors.New("server: max events per batch must be positive"))
	}
	if c.MaxInFlight <= 0 {
		errs = append(errs, errors.New("server: max in-flight batches must be positive"))
	}
	if c.MaxStreams <= 0 {
		errs = append(errs, errors.New("server: max streams must be positive"))
	}
	if c.BackpressureTimeout <= 0 {
		errs = append(errs, errors.New("server: back-pressure timeout must be positive"))
	}
	if c.TrackedStreams <= 0 {
		errs = append(errs, errors.New("server: tracked streams must be positive"))
	}
	if c.DefaultSensor == "" {
		errs = append(errs, errors.New("server: default sensor must not be empty"))
	}
	errs = append(errs, c.Limits.Validate())
	return errors.Join(errs...)
}

// Stats are cumulative counters.
type Stats struct {
	Batches    uint64 // batches acknowledged, duplicates included
	Accepted   uint64 // events stored
	Rejected   uint64 // events refused
	Duplicates uint64 // resent batches acknowledged without storing again
	Refused    uint64 // calls ended for overload
}

// Server implements ndrv1.IngestServiceServer.
type Server struct {
	ndrv1.UnimplementedIngestServiceServer

	cfg      Config
	sink     Sink
	log      *slog.Logger
	validate *ingest.Validator
	reg      *registry
	slots    chan struct{}

	batches, accepted, rejected, duplicates, refused atomic.Uint64
}

// New returns a Server writing to sink. now is the clock used to judge
// event timestamps (nil: time.Now).
func New(cfg Config, sink Sink, log *slog.Logger, now func() time.Time) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{
		cfg:      cfg,
		sink:     sink,
		log:      log,
		validate: ingest.NewValidator(cfg.Limits, now),
		reg:      newRegistry(cfg.TrackedStreams),
		slots:    make(chan struct{}, cfg.MaxStreams),
	}, nil
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{
		Batches: s.batches.Load(), Accepted: s.accepted.Load(), Rejected: s.rejected.Load(),
		Duplicates: s.duplicates.Load(), Refused: s.refused.Load(),
	}
}

func (s *Server) acquire() error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
		s.refused.Add(1)
		return overloaded(s.cfg.RetryDelay, "too many concurrent streams (limit %d)", s.cfg.MaxStreams)
	}
}

func (s *Server) release() { <-s.slots }

// Stream implements the bidirectional ingest stream. The handler goroutine
// is the only one that calls Send; a second goroutine reads batches and
// hands them to the sink, stopping (and so letting HTTP/2 flow control push
// back on the sender) while MaxInFlight batches await their ack.
func (s *Server) Stream(st ndrv1.IngestService_StreamServer) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()

	ctx, cancel := context.WithCancelCause(st.Context())
	defer cancel(nil)
	// Every batch holds an inflight slot until its ack is sent or it fails,
	// so acks (same capacity) never blocks a sink's done callback.
	acks := make(chan *ndrv1.BatchAck, s.cfg.MaxInFlight)
	inflight := make(chan struct{}, s.cfg.MaxInFlight)
	recvDone := make(chan error, 1)
	anon := anonymousStream()
	// Joined by gRPC: once this handler returns, Recv and the sink's ctx fail
	// and the loop ends.
	go func() { recvDone <- s.recvLoop(ctx, st, anon, acks, inflight, cancel) }()

	finished := false
	for {
		if finished && len(inflight) == 0 {
			return nil
		}
		select {
		case a := <-acks:
			if err := st.Send(a); err != nil {
				return err
			}
			<-inflight
		case err := <-recvDone:
			if err != nil {
				return err
			}
			finished = true
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func (s *Server) recvLoop(ctx context.Context, st ndrv1.IngestService_StreamServer, anon string,
	acks chan<- *ndrv1.BatchAck, inflight chan struct{}, cancel context.CancelCauseFunc) error {
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		ackFn := func(a *ndrv1.BatchAck, err error) {
			if err != nil {
				// Not stored: end the stream so the sender resends it.
				cancel(status.Errorf(codes.Unavailable, "batch %d not stored: %v", a.GetSeq(), err))
				<-inflight
				return
			}
			acks <- a
		}
		if err := s.handle(ctx, msg, anon, ackFn); err != nil {
			<-inflight
			return err
		}
	}
}

// Push stores one batch and returns once it is durable.
func (s *Server) Push(ctx context.Context, msg *ndrv1.EventBatch) (*ndrv1.BatchAck, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	type result struct {
		ack *ndrv1.BatchAck
		err error
	}
	ch := make(chan result, 1)
	if err := s.handle(ctx, msg, anonymousStream(), func(a *ndrv1.BatchAck, err error) { ch <- result{a, err} }); err != nil {
		return nil, err
	}
	r := <-ch
	if r.err != nil {
		return nil, status.Errorf(codes.Unavailable, "batch not stored: %v", r.err)
	}
	return r.ack, nil
}

// handle validates msg and hands its events to the sink. It returns a gRPC
// status error when the batch as a whole is unacceptable or the sink is
// overloaded; otherwise ack is called exactly once, possibly later.
func (s *Server) handle(ctx context.Context, msg *ndrv1.EventBatch, anon string, ack func(*ndrv1.BatchAck, error)) error {
	if n := len(msg.GetEvents()); n > s.cfg.MaxEventsPerBatch {
		return status.Errorf(codes.InvalidArgument, "batch %d has %d events, more than the limit of %d", msg.GetSeq(), n, s.cfg.MaxEventsPerBatch)
	}
	if msg.GetSeq() == 0 {
		return status.Error(codes.InvalidArgument, "batch seq must start at 1")
	}
	if n := len(msg.GetStreamId()); n > s.cfg.Limits.MaxStringLen {
		return status.Errorf(codes.InvalidArgument, "stream_id of %d bytes exceeds the limit of %d", n, s.cfg.Limits.MaxStringLen)
	}
	if n := len(msg.GetSensorId()); n > s.cfg.Limits.MaxStringLen {
		return status.Errorf(codes.InvalidArgument, "sensor_id of %d bytes exceeds the limit of %d", n, s.cfg.Limits.MaxStringLen)
	}
	b := &ingest.Batch{}
	rej := wire.DecodeBatch(msg, s.validate, b, nil)
	if b.Sensor == "" {
		b.Sensor = s.cfg.DefaultSensor
		for i := range b.Conns {
			if b.Conns[i].Sensor == "" {
				b.Conns[i].Sensor = b.Sensor
			}
		}
	}
	if b.Stream == "" {
		b.Stream = anon
	}
	result := &ndrv1.BatchAck{Seq: b.Seq, Accepted: uint32(len(b.Conns))}
	for _, r := range rej {
		result.Rejections = append(result.Rejections, &ndrv1.Rejection{
			Index: uint32(r.Index), Field: ingest.FieldOf(r.Err), Reason: r.Err.Error(),
		})
	}

	key := streamKey{sensor: b.Sensor, stream: b.Stream}
	first, prior := s.reg.claim(key, b.Seq, func(a *ndrv1.BatchAck, err error) {
		if err == nil {
			dup := cloneAck(a)
			dup.Duplicate = true
			s.duplicates.Add(1)
			s.batches.Add(1)
			a = dup
		}
		ack(a, err)
	})
	if !first {
		if prior != nil { // already stored: answer at once
			dup := cloneAck(prior)
			dup.Duplicate = true
			s.duplicates.Add(1)
			s.batches.Add(1)
			ack(dup, nil)
		}
		return nil // else: the in-flight original will answer through the waiter
	}

	finish := func(err error) {
		if err == nil {
			s.accepted.Add(uint64(result.Accepted))
			s.rejected.Add(uint64(len(result.Rejections)))
			s.batches.Add(1)
		}
		s.reg.complete(key, b.Seq, result, err)
		ack(result, err)
	}
	if len(rej) > 0 {
		s.log.Debug("events rejected", "sensor", b.Sensor, "stream", b.Stream, "seq", b.Seq,
			"rejected", len(rej), "first", rej[0].Err, "index", rej[0].Index)
	}
	if len(b.Conns) == 0 {
		finish(nil)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.BackpressureTimeout)
	defer cancel()
	if err := s.sink.Write(wctx, b, finish); err != nil {
		s.reg.complete(key, b.Seq, &ndrv1.BatchAck{Seq: b.Seq}, err)
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			s.refused.Add(1)
			return overloaded(s.cfg.RetryDelay, "storage is behind: batch %d waited %s for room", b.Seq, s.cfg.BackpressureTimeout)
		}
		return status.Errorf(codes.Unavailable, "batch %d not accepted: %v", b.Seq, err)
	}
	return nil
}

func cloneAck(a *ndrv1.BatchAck) *ndrv1.BatchAck {
	return &ndrv1.BatchAck{Seq: a.GetSeq(), Accepted: a.GetAccepted(), Rejections: a.GetRejections()}
}

// overloaded builds a ResourceExhausted status carrying a RetryInfo delay,
// which `ndr send` honours before reconnecting.
func overloaded(delay time.Duration, format string, args ...any) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(format, args...))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)}); err == nil {
		st = d
	}
	return st.Err()
}

func anonymousStream() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return "anon-" + hex.EncodeToString(b[:])
}
