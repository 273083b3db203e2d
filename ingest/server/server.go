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
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
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

// Rejected is an event the server refused, kept whole so that nothing a
// sensor sent is lost: Event is the event's wire encoding
// (ndr.v1.ConnEvent), unknown fields included.
type Rejected struct {
	ReceivedAt time.Time
	Sensor     string // the token's sensor, else the batch's (DefaultSensor if none)
	Stream     string
	Seq        uint64
	Index      int    // position of the event in its batch
	Field      string // the field at fault, "" if none is to blame
	Reason     string
	Event      []byte // at most Config.MaxRejectedBytes of the encoding
	Size       int    // length of the whole encoding; > len(Event) when cut
	Peer       string // the sender's address
}

// RejectSink keeps refused events. Its contract is Sink's: WriteRejected may
// block while the sink is full; it returns an error only if it did not take
// rs, and otherwise calls done exactly once, with nil when rs is durably
// stored. A batch is acknowledged only after its accepted events and its
// rejected ones are both stored. The sink owns rs until done runs.
type RejectSink interface {
	WriteRejected(ctx context.Context, rs []Rejected, done func(error)) error
}

// RejectSinkFunc adapts a function to RejectSink.
type RejectSinkFunc func(ctx context.Context, rs []Rejected, done func(error)) error

// WriteRejected calls f.
func (f RejectSinkFunc) WriteRejected(ctx context.Context, rs []Rejected, done func(error)) error {
	return f(ctx, rs, done)
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
	// RateLimit bounds each sensor's events per second (off by default).
	RateLimit RateLimit
	// MaxRejectedBytes bounds how much of each refused event's encoding
	// goes to the RejectSink: an event is rejected for being oversized, and
	// must not become an oversized row instead.
	MaxRejectedBytes int
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
		RateLimit:           DefaultRateLimit(),
		MaxRejectedBytes:    16 << 10,
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
	if c.MaxRejectedBytes <= 0 {
		errs = append(errs, errors.New("server: max rejected bytes must be positive"))
	}
	errs = append(errs, c.RateLimit.validate(c.MaxEventsPerBatch)...)
	errs = append(errs, c.Limits.Validate())
	return errors.Join(errs...)
}

// Stats are cumulative counters.
type Stats struct {
	Batches    uint64 // batches acknowledged, duplicates included
	Accepted   uint64 // events stored
	Rejected   uint64 // events refused
	Duplicates uint64 // resent batches acknowledged without storing again
	Refused    uint64 // calls ended for overload (rate limit included)
	// Unauthenticated counts calls refused for a missing, invalid or
	// revoked token; Denied, calls whose batch named another sensor than
	// its token's.
	Unauthenticated uint64
	Denied          uint64
	// RateDelayed counts batches held back by their sensor's rate limit;
	// RateLimited, calls refused by it.
	RateDelayed uint64
	RateLimited uint64
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
	now      func() time.Time
	auth     *Authenticator // nil: no tokens required
	rejects  RejectSink     // nil: refused events are only reported to the sender
	limit    *limiter       // nil: no rate limit

	batches, accepted, rejected, duplicates, refused atomic.Uint64
	revoked, denied, rateDelayed, rateLimited        atomic.Uint64
}

// Option configures a Server beyond its Config.
type Option func(*options)

type options struct {
	auth    *Authenticator
	rejects RejectSink
	clock   Clock
}

// WithAuthenticator requires a bearer token of every call (health and
// reflection aside) and binds each call to its token's sensor: batches and
// events naming another sensor are refused. NewGRPCServer installs the
// Authenticator's tap handle and interceptors.
func WithAuthenticator(a *Authenticator) Option { return func(o *options) { o.auth = a } }

// WithRejectSink sends every refused event to rs (see Rejected).
func WithRejectSink(rs RejectSink) Option { return func(o *options) { o.rejects = rs } }

// WithClock sets the clock of the rate limiter (default: the wall clock).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// New returns a Server writing to sink. now is the clock used to judge
// event timestamps and to stamp rejections (nil: time.Now).
func New(cfg Config, sink Sink, log *slog.Logger, now func() time.Time, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	o := options{clock: wallClock{}}
	for _, opt := range opts {
		opt(&o)
	}
	return &Server{
		cfg:      cfg,
		sink:     sink,
		log:      log,
		validate: ingest.NewValidator(cfg.Limits, now),
		reg:      newRegistry(cfg.TrackedStreams),
		slots:    make(chan struct{}, cfg.MaxStreams),
		now:      now,
		auth:     o.auth,
		rejects:  o.rejects,
		limit:    newLimiter(cfg.RateLimit, cfg.MaxEventsPerBatch, o.clock),
	}, nil
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	st := Stats{
		Batches: s.batches.Load(), Accepted: s.accepted.Load(), Rejected: s.rejected.Load(),
		Duplicates: s.duplicates.Load(), Refused: s.refused.Load(),
		Unauthenticated: s.revoked.Load(), Denied: s.denied.Load(),
		RateDelayed: s.rateDelayed.Load(), RateLimited: s.rateLimited.Load(),
	}
	if s.auth != nil {
		st.Unauthenticated += s.auth.Refused()
	}
	return st
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
//
// gRPC calls it through ingestServiceDesc, which decodes batches with
// wire.Frame; called directly, each message is encoded and decoded again.
func (s *Server) Stream(st ndrv1.IngestService_StreamServer) error {
	return s.stream(st.Context(), func(b *inBatch) error {
		msg, err := st.Recv()
		if err != nil {
			return err
		}
		return b.fromMessage(msg)
	}, st.Send)
}

// stream runs one Stream call. recv fills its argument with the next batch
// (io.EOF after the last); send sends an ack. Only the recv loop calls
// recv, and only this goroutine calls send.
func (s *Server) stream(sctx context.Context, recv func(*inBatch) error, send func(*ndrv1.BatchAck) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.release()

	ctx, cancel := context.WithCancelCause(sctx)
	defer cancel(nil)
	// Every batch holds an inflight slot until its ack is sent or it fails,
	// so acks (same capacity) never blocks a sink's done callback.
	acks := make(chan *ndrv1.BatchAck, s.cfg.MaxInFlight)
	inflight := make(chan struct{}, s.cfg.MaxInFlight)
	recvDone := make(chan error, 1)
	anon := anonymousStream()
	// Joined by gRPC: once this handler returns, Recv and the sink's ctx fail
	// and the loop ends.
	go func() { recvDone <- s.recvLoop(ctx, recv, anon, acks, inflight, cancel) }()

	finished := false
	for {
		if finished && len(inflight) == 0 {
			return nil
		}
		select {
		case a := <-acks:
			if err := send(a); err != nil {
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

func (s *Server) recvLoop(ctx context.Context, recv func(*inBatch) error, anon string,
	acks chan<- *ndrv1.BatchAck, inflight chan struct{}, cancel context.CancelCauseFunc) error {
	// One inBatch for the stream: handle is done with it when it returns.
	in := new(inBatch)
	defer in.release()
	for {
		err := recv(in)
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
		if err := s.handle(ctx, in, anon, ackFn); err != nil {
			<-inflight
			return err
		}
	}
}

// Push stores one batch and returns once it is durable. gRPC calls it
// through ingestServiceDesc (see Stream).
func (s *Server) Push(ctx context.Context, msg *ndrv1.EventBatch) (*ndrv1.BatchAck, error) {
	in := new(inBatch)
	if err := in.fromMessage(msg); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "batch: %v", err)
	}
	return s.push(ctx, in)
}

func (s *Server) push(ctx context.Context, in *inBatch) (*ndrv1.BatchAck, error) {
	defer in.release()
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.release()
	type result struct {
		ack *ndrv1.BatchAck
		err error
	}
	ch := make(chan result, 1)
	if err := s.handle(ctx, in, anonymousStream(), func(a *ndrv1.BatchAck, err error) { ch <- result{a, err} }); err != nil {
		return nil, err
	}
	r := <-ch
	if r.err != nil {
		return nil, status.Errorf(codes.Unavailable, "batch not stored: %v", r.err)
	}
	return r.ack, nil
}

// handle validates msg and hands its events to the sink, and its refused
// events to the reject sink. It returns a gRPC status error when the batch
// as a whole is unacceptable or the server is overloaded; otherwise ack is
// called exactly once, possibly later.
//
// msg is only read until handle returns: its conns go to the sink, and
// refused events are copied.
func (s *Server) handle(ctx context.Context, msg *inBatch, anon string, ack func(*ndrv1.BatchAck, error)) error {
	if n := msg.Len(); n > s.cfg.MaxEventsPerBatch {
		return status.Errorf(codes.InvalidArgument, "batch %d has %d events, more than the limit of %d", msg.Seq, n, s.cfg.MaxEventsPerBatch)
	}
	if msg.Seq == 0 {
		return status.Error(codes.InvalidArgument, "batch seq must start at 1")
	}
	if n := len(msg.StreamID); n > s.cfg.Limits.MaxStringLen {
		return status.Errorf(codes.InvalidArgument, "stream_id of %d bytes exceeds the limit of %d", n, s.cfg.Limits.MaxStringLen)
	}
	if n := len(msg.SensorID); n > s.cfg.Limits.MaxStringLen {
		return status.Errorf(codes.InvalidArgument, "sensor_id of %d bytes exceeds the limit of %d", n, s.cfg.Limits.MaxStringLen)
	}
	sensor, authed, err := s.sensorOf(ctx, msg.SensorID)
	if err != nil {
		return statusOf(err)
	}
	if delayed, err := s.limit.wait(ctx, sensor, msg.Len()); err != nil {
		if ctx.Err() == nil {
			s.refused.Add(1)
			s.rateLimited.Add(1)
		}
		return statusOf(err)
	} else if delayed {
		s.rateDelayed.Add(1)
	}

	var foreign []wire.Rejection
	if authed {
		foreign = foreignEvents(&msg.Frame, sensor)
	}
	b := &ingest.Batch{}
	rej := wire.DecodeFrame(&msg.Frame, s.validate, b, foreign)
	if b.Sensor == "" {
		b.Sensor = sensor
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
	var recs []Rejected
	if len(rej) > 0 {
		s.log.Debug("events rejected", "sensor", b.Sensor, "stream", b.Stream, "seq", b.Seq,
			"rejected", len(rej), "first", rej[0].Err, "index", rej[0].Index)
		if s.rejects != nil {
			recs = s.rejectedRecords(ctx, b, msg, rej)
		}
	}
	if len(b.Conns) == 0 && len(recs) == 0 {
		finish(nil)
		return nil
	}
	// The batch is done when both its parts are: accepted events in the
	// sink, refused ones in the reject sink.
	j := &join{left: 1, finish: finish} // 1: held until both writes are issued
	wctx, cancel := context.WithTimeout(ctx, s.cfg.BackpressureTimeout)
	defer cancel()
	if len(recs) > 0 {
		j.add()
		if err := s.rejects.WriteRejected(wctx, recs, j.done); err != nil {
			j.abandon()
			return s.notTaken(ctx, key, b.Seq, err)
		}
	}
	if len(b.Conns) > 0 {
		j.add()
		if err := s.sink.Write(wctx, b, j.done); err != nil {
			j.abandon()
			return s.notTaken(ctx, key, b.Seq, err)
		}
	}
	j.done(nil)
	return nil
}

// notTaken answers a batch that a sink refused to take.
func (s *Server) notTaken(ctx context.Context, key streamKey, seq uint64, err error) error {
	s.reg.complete(key, seq, &ndrv1.BatchAck{Seq: seq}, err)
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		s.refused.Add(1)
		return overloaded(s.cfg.RetryDelay, "storage is behind: batch %d waited %s for room", seq, s.cfg.BackpressureTimeout)
	}
	return status.Errorf(codes.Unavailable, "batch %d not accepted: %v", seq, err)
}

// join calls finish once every part added has called done, with their
// errors joined; after abandon, never.
type join struct {
	mu        sync.Mutex
	left      int
	err       error
	abandoned bool
	finish    func(error)
}

func (j *join) add() {
	j.mu.Lock()
	j.left++
	j.mu.Unlock()
}

func (j *join) done(err error) {
	j.mu.Lock()
	j.err = errors.Join(j.err, err)
	j.left--
	last := j.left == 0 && !j.abandoned
	err = j.err
	j.mu.Unlock()
	if last {
		j.finish(err)
	}
}

// abandon is for a part that was not taken: the caller answers the batch
// itself, and parts already taken finish without answering it again.
func (j *join) abandon() {
	j.mu.Lock()
	j.abandoned = true
	j.mu.Unlock()
	j.done(nil)
}

// sensorOf returns the sensor a batch is written as and charged to: its
// token's when tokens are required (a batch naming another is refused),
// else the one it names, else DefaultSensor.
func (s *Server) sensorOf(ctx context.Context, batchSensor string) (sensor string, authed bool, err error) {
	if s.auth == nil {
		if id := batchSensor; id != "" {
			return id, false, nil
		}
		return s.cfg.DefaultSensor, false, nil
	}
	p, ok := PrincipalFrom(ctx)
	if !ok { // the interceptors are not installed: refuse rather than trust
		s.revoked.Add(1)
		return "", false, ErrNoToken
	}
	if err := s.auth.check(p); err != nil {
		s.revoked.Add(1)
		return "", false, err
	}
	if id := batchSensor; id != "" && id != p.Sensor {
		s.denied.Add(1)
		return "", false, fmt.Errorf("%w: the token of sensor %s sent a batch of sensor %s", ErrWrongSensor, quoteTrunc(p.Sensor), quoteTrunc(id))
	}
	return p.Sensor, true, nil
}

// foreignEvents refuses the events of f that name a sensor other than the
// caller's, in order of index.
func foreignEvents(f *wire.Frame, sensor string) []wire.Rejection {
	var foreign []wire.Rejection
	for i := range f.Conns {
		if id := f.Conns[i].Sensor; id != "" && id != sensor {
			foreign = append(foreign, wire.Rejection{Index: i, Err: &ingest.FieldError{
				Field:  "sensor_id",
				Reason: fmt.Sprintf("the token of sensor %s may not write events of sensor %s", quoteTrunc(sensor), quoteTrunc(id)),
			}})
		}
	}
	return foreign
}

// rejectedRecords builds the RejectSink's records of rej.
func (s *Server) rejectedRecords(ctx context.Context, b *ingest.Batch, msg *inBatch, rej []wire.Rejection) []Rejected {
	now := s.now().UTC()
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	out := make([]Rejected, len(rej))
	for i, r := range rej {
		reason := r.Err.Error()
		// The bytes the sender sent; msg's buffer goes back to gRPC's pool
		// when handle returns, so they are copied.
		raw := msg.Event(r.Index)
		size := len(raw)
		raw = bytes.Clone(raw[:min(len(raw), s.cfg.MaxRejectedBytes)])
		out[i] = Rejected{
			ReceivedAt: now, Sensor: b.Sensor, Stream: b.Stream, Seq: b.Seq, Index: r.Index,
			Field: ingest.FieldOf(r.Err), Reason: reason, Event: raw, Size: size, Peer: addr,
		}
	}
	return out
}

// statusOf maps the service's errors to gRPC statuses. Errors that already
// carry a status pass through; anything unexpected is Unavailable (the
// sender may retry), never Unknown.
func statusOf(err error) error {
	var rl *rateLimited
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoToken), errors.Is(err, ErrBadToken), errors.Is(err, ErrTokenRevoked):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrWrongSensor):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.As(err, &rl):
		return overloaded(rl.retry, "%s", rl.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	return status.Error(codes.Unavailable, err.Error())
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
