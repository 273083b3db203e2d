// Package client is the sending side of ndr's ingest protocol, used by
// `ndr send` and `ndr loadgen` and meant as the reference for sensor
// integrations.
//
// A Sender reads batches from a Source, streams them over one
// IngestService.Stream with a bounded window of unacknowledged batches, and
// keeps every batch until the server acknowledges it. When the connection
// breaks it reconnects with backoff and resends the unacknowledged batches,
// unchanged and in order, under the same stream id; the server stores each
// batch once. A full window stops the Source from being read, so a slow
// server slows the sender instead of filling its memory.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/wire"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// Source yields batches of Conns. Next fills b.Conns (reusing its capacity)
// with up to max records and returns a label naming where they came from
// (a file name, say) for rejection reports. It returns io.EOF when done;
// a batch returned together with io.EOF is still sent.
type Source interface {
	Next(b *ingest.Batch, max int) (label string, err error)
}

// Config configures a Sender.
type Config struct {
	// Sensor is the sensor id sent with every batch.
	Sensor string
	// StreamID names the stream for the server's duplicate suppression. Empty:
	// a random id per Sender.
	StreamID string
	// BatchSize is the number of events per batch.
	BatchSize int
	// MaxInFlight is the number of unacknowledged batches allowed.
	MaxInFlight int
	// ReconnectMin and ReconnectMax bound the backoff between attempts.
	ReconnectMin, ReconnectMax time.Duration
	// GiveUpAfter ends Run when no batch has been acknowledged for this long
	// while reconnecting.
	GiveUpAfter time.Duration
	// OnReject is called for every event the server refused (optional).
	OnReject func(label string, seq uint64, r *ndrv1.Rejection)
	// OnAck is called once per acknowledged batch with its event count and
	// the time from its first send to its acknowledgement (optional; a
	// load generator's ack latency). It runs on the receiving goroutine:
	// keep it short.
	OnAck func(events int, latency time.Duration)
}

// DefaultConfig returns the settings `ndr send` uses.
func DefaultConfig() Config {
	return Config{
		Sensor: "ndr-send", BatchSize: 5000, MaxInFlight: 64,
		ReconnectMin: 100 * time.Millisecond, ReconnectMax: 10 * time.Second, GiveUpAfter: 5 * time.Minute,
	}
}

// Validate reports every problem, joined.
func (c Config) Validate() error {
	var errs []error
	if c.BatchSize <= 0 {
		errs = append(errs, errors.New("client: batch size must be positive"))
	}
	if c.MaxInFlight <= 0 {
		errs = append(errs, errors.New("client: max in-flight batches must be positive"))
	}
	if c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin {
		errs = append(errs, errors.New("client: reconnect backoff must be positive with max >= min"))
	}
	if c.GiveUpAfter <= 0 {
		errs = append(errs, errors.New("client: give-up time must be positive"))
	}
	return errors.Join(errs...)
}

// Stats are the Sender's counters; events are counted once, resends aside.
type Stats struct {
	Batches    uint64 // batches read from the source
	Events     uint64 // events read from the source
	Acked      uint64 // events in acknowledged batches
	Accepted   uint64 // events the server stored
	Rejected   uint64 // events the server refused
	Duplicates uint64 // batches the server had already stored
	Resent     uint64 // batches sent again after a reconnect
	Reconnects uint64
	// Unsendable counts records dropped before sending because protobuf
	// cannot encode them (invalid UTF-8); they are not in Events.
	Unsendable uint64
}

// Sender streams batches to one server. It is used once.
type Sender struct {
	cfg    Config
	client ndrv1.IngestServiceClient
	log    *slog.Logger

	mu       sync.Mutex
	pending  map[uint64]*outBatch // sent or queued, not yet acknowledged
	changed  chan struct{}        // closed and replaced whenever pending shrinks
	lastAck  time.Time
	srcDone  bool
	window   chan struct{}
	sessions int

	batches, events, acked, accepted, rejected, duplicates, resent, reconnects, unsendable atomic.Uint64
}

type outBatch struct {
	msg     *ndrv1.EventBatch
	label   string
	events  int
	session int       // the session that last sent it
	sentAt  time.Time // first send; guarded by Sender.mu
}

// New returns a Sender using conn.
func New(conn grpc.ClientConnInterface, cfg Config, log *slog.Logger) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StreamID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		cfg.StreamID = hex.EncodeToString(b[:])
	}
	return &Sender{
		cfg: cfg, client: ndrv1.NewIngestServiceClient(conn), log: log,
		pending: make(map[uint64]*outBatch), changed: make(chan struct{}),
		window: make(chan struct{}, cfg.MaxInFlight),
	}, nil
}

// Stats returns the counters so far.
func (s *Sender) Stats() Stats {
	return Stats{
		Batches: s.batches.Load(), Events: s.events.Load(), Acked: s.acked.Load(), Accepted: s.accepted.Load(),
		Rejected: s.rejected.Load(), Duplicates: s.duplicates.Load(), Resent: s.resent.Load(), Reconnects: s.reconnects.Load(),
		Unsendable: s.unsendable.Load(),
	}
}

// ErrGaveUp means the server stayed unreachable for Config.GiveUpAfter.
var ErrGaveUp = errors.New("client: gave up reconnecting")

// Run sends everything src yields and returns when all of it is
// acknowledged, or with the error that stopped it. Unacknowledged batches at
// that point were not confirmed stored.
func (s *Sender) Run(ctx context.Context, src Source) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan *outBatch)
	prodErr := make(chan error, 1)
	go func() { prodErr <- s.produce(ctx, src, queue) }()

	s.mu.Lock()
	s.lastAck = time.Now()
	s.mu.Unlock()
	backoff := s.cfg.ReconnectMin
	for {
		done, err := s.session(ctx, queue)
		if done {
			return <-prodErr
		}
		if ctx.Err() != nil {
			if perr := context.Cause(ctx); perr != nil && !errors.Is(perr, context.Canceled) {
				return perr
			}
			return ctx.Err()
		}
		if permanent(err) {
			cancel(err)
			<-prodErr
			return err
		}
		s.mu.Lock()
		stalled := time.Since(s.lastAck)
		s.mu.Unlock()
		if stalled > s.cfg.GiveUpAfter {
			cancel(err)
			<-prodErr
			return fmt.Errorf("%w after %s without an acknowledgement: %v", ErrGaveUp, stalled.Round(time.Second), err)
		}
		delay := backoff
		if d, ok := retryDelay(err); ok && d > delay {
			delay = d
		}
		s.log.Warn("stream broken; reconnecting", "err", err, "in", delay, "unacked", s.unacked())
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			continue
		}
		backoff = min(2*backoff, s.cfg.ReconnectMax)
		s.reconnects.Add(1)
	}
}

// produce reads src into batches, registers them as pending and queues
// them. A full window blocks it: that is the back-pressure on reading.
func (s *Sender) produce(ctx context.Context, src Source, queue chan<- *outBatch) error {
	defer close(queue)
	var seq uint64
	var b ingest.Batch
	for {
		select {
		case s.window <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		b.Conns = b.Conns[:0]
		label, err := src.Next(&b, s.cfg.BatchSize)
		if err != nil && !errors.Is(err, io.EOF) {
			<-s.window
			err = fmt.Errorf("read %s: %w", label, err)
			s.finishSource()
			return err
		}
		if n := dropUnencodable(&b, seq+1, label, s.cfg.OnReject); n > 0 {
			s.unsendable.Add(uint64(n))
		}
		if len(b.Conns) > 0 {
			seq++
			b.Sensor, b.Stream, b.Seq = s.cfg.Sensor, s.cfg.StreamID, seq
			ob := &outBatch{msg: wire.EncodeBatch(&b), label: label, events: len(b.Conns)}
			s.batches.Add(1)
			s.events.Add(uint64(len(b.Conns)))
			s.mu.Lock()
			s.pending[seq] = ob
			s.mu.Unlock()
			select {
			case queue <- ob:
			case <-ctx.Done():
				return nil
			}
		} else {
			<-s.window
		}
		if errors.Is(err, io.EOF) {
			s.finishSource()
			return nil
		}
	}
}

func (s *Sender) finishSource() {
	s.mu.Lock()
	s.srcDone = true
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Sender) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Sender) unacked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// session runs one stream: it resends what is pending, then sends new
// batches, until everything is acknowledged (done) or the stream fails.
func (s *Sender) session(ctx context.Context, queue <-chan *outBatch) (done bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := s.client.Stream(sctx)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.sessions++
	id := s.sessions
	resend := make([]*outBatch, 0, len(s.pending))
	for _, ob := range s.pending {
		resend = append(resend, ob)
	}
	s.mu.Unlock()
	slices.SortFunc(resend, func(a, b *outBatch) int { return compareSeq(a.msg.Seq, b.msg.Seq) })

	recvErr := make(chan error, 1)
	go func() { recvErr <- s.receive(st) }()

	send := func(ob *outBatch) error {
		var again bool
		s.mu.Lock()
		_, unacked := s.pending[ob.msg.Seq]
		if ob.session == id || !unacked { // sent in this session already, or acknowledged
			s.mu.Unlock()
			return nil
		}
		again = ob.session != 0 // sent before, in a broken session
		ob.session = id
		if !again && s.cfg.OnAck != nil {
			ob.sentAt = time.Now()
		}
		s.mu.Unlock()
		if again {
			s.resent.Add(1)
		}
		return st.Send(ob.msg)
	}
	for _, ob := range resend {
		if err := send(ob); err != nil {
			return false, s.streamError(err, recvErr)
		}
	}
	q := queue
	for {
		s.mu.Lock()
		finished := s.srcDone && q == nil && len(s.pending) == 0
		changed := s.changed
		s.mu.Unlock()
		if finished {
			if err := st.CloseSend(); err != nil {
				return false, err
			}
			if err := <-recvErr; err != nil && !errors.Is(err, io.EOF) {
				return false, err
			}
			return true, nil
		}
		select {
		case ob, ok := <-q:
			if !ok {
				q = nil
				continue
			}
			if err := send(ob); err != nil {
				return false, s.streamError(err, recvErr)
			}
		case <-changed:
		case err := <-recvErr:
			if err == nil || errors.Is(err, io.EOF) {
				err = errors.New("server closed the stream before acknowledging every batch")
			}
			return false, err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// streamError prefers the status the server ended the stream with over the
// io.EOF that Send reports.
func (s *Sender) streamError(sendErr error, recvErr <-chan error) error {
	if errors.Is(sendErr, io.EOF) {
		if err := <-recvErr; err != nil {
			return err
		}
	}
	return sendErr
}

func (s *Sender) receive(st ndrv1.IngestService_StreamClient) error {
	for {
		ack, err := st.Recv()
		if err != nil {
			return err
		}
		s.mu.Lock()
		ob, ok := s.pending[ack.GetSeq()]
		var sentAt time.Time
		if ok {
			delete(s.pending, ack.GetSeq())
			s.lastAck = time.Now()
			sentAt = ob.sentAt
			s.notifyLocked()
		}
		s.mu.Unlock()
		if !ok {
			continue // a second ack for a batch sent twice
		}
		<-s.window
		if s.cfg.OnAck != nil {
			s.cfg.OnAck(ob.events, time.Since(sentAt))
		}
		s.acked.Add(uint64(ob.events))
		if ack.GetDuplicate() {
			s.duplicates.Add(1)
		}
		s.accepted.Add(uint64(ack.GetAccepted()))
		s.rejected.Add(uint64(len(ack.GetRejections())))
		if s.cfg.OnReject != nil {
			for _, r := range ack.GetRejections() {
				s.cfg.OnReject(ob.label, ack.GetSeq(), r)
			}
		}
	}
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// permanent reports errors that a reconnect cannot fix.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented, codes.FailedPrecondition:
		return true
	}
	return false
}

func retryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
