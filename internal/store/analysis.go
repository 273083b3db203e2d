package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/scoring"
)

// AnalysisWriter stores what the analysis pipeline produces: signals into
// signals and detection versions into detections. Both are small next to
// conn, so rows are buffered and inserted together at most every
// FlushInterval (or sooner when FlushRows accumulate), off the caller's
// goroutine. When ClickHouse falls behind by more than maxBuffered rows, Add
// methods block: analysis slows down rather than growing memory.
//
// Methods are safe for concurrent use.
type AnalysisWriter struct {
	store  *Store
	cfg    WriterConfig
	logger *slog.Logger

	mu         sync.Mutex
	cond       *sync.Cond // signalled when buffers shrink or the writer closes
	signals    []features.Signal
	detections []scoring.Detection
	closed     bool

	kick     chan struct{}
	stop     chan struct{}
	finished chan struct{}
	startMu  sync.Once

	signalRows, detectionRows, failures atomic.Uint64
}

// AnalysisStats count rows stored and inserts given up.
type AnalysisStats struct {
	Signals, Detections, Failures uint64
}

// NewAnalysisWriter returns a writer; Start it before use.
func (s *Store) NewAnalysisWriter(cfg WriterConfig) (*AnalysisWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("analysis writer config: %w", err)
	}
	w := &AnalysisWriter{
		store: s, cfg: cfg, logger: s.logger.With("component", "analysis_writer"),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), finished: make(chan struct{}),
	}
	w.cond = sync.NewCond(&w.mu)
	return w, nil
}

func (w *AnalysisWriter) maxBuffered() int { return 10 * w.cfg.FlushRows }

// Start runs the flusher until Shutdown. ctx supplies values only.
func (w *AnalysisWriter) Start(ctx context.Context) {
	w.startMu.Do(func() {
		go w.run(context.WithoutCancel(ctx))
	})
}

func (w *AnalysisWriter) run(ctx context.Context) {
	defer close(w.finished)
	t := time.NewTicker(w.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-w.kick:
		case <-w.stop:
			w.flush(ctx)
			return
		}
		w.flush(ctx)
	}
}

// AddSignals buffers copies of sigs' rows.
func (w *AnalysisWriter) AddSignals(ctx context.Context, sigs []features.Signal) error {
	return w.add(ctx, func() { w.signals = append(w.signals, sigs...) }, len(sigs))
}

// AddDetection buffers one version of a detection.
func (w *AnalysisWriter) AddDetection(ctx context.Context, d scoring.Detection) error {
	return w.add(ctx, func() { w.detections = append(w.detections, d) }, 1)
}

func (w *AnalysisWriter) add(ctx context.Context, appendFn func(), n int) error {
	if n == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.closed && len(w.signals)+len(w.detections) >= w.maxBuffered() {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.cond.Wait()
	}
	if w.closed {
		return ErrWriterClosed
	}
	appendFn()
	if len(w.signals)+len(w.detections) >= w.cfg.FlushRows {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Flush inserts everything buffered now and returns the first error.
func (w *AnalysisWriter) Flush(ctx context.Context) error { return w.flush(ctx) }

func (w *AnalysisWriter) flush(ctx context.Context) error {
	w.mu.Lock()
	sigs, dets := w.signals, w.detections
	w.signals, w.detections = nil, nil
	w.cond.Broadcast()
	w.mu.Unlock()
	var errs []error
	if len(sigs) > 0 {
		if err := w.retry(ctx, "signals", func() error { return w.insertSignals(ctx, sigs) }); err != nil {
			errs = append(errs, err)
		} else {
			w.signalRows.Add(uint64(len(sigs)))
		}
	}
	if len(dets) > 0 {
		if err := w.retry(ctx, "detections", func() error { return w.insertDetections(ctx, dets) }); err != nil {
			errs = append(errs, err)
		} else {
			w.detectionRows.Add(uint64(len(dets)))
		}
	}
	return errors.Join(errs...)
}

// retry repeats transient failures; a permanent one is counted and logged,
// since the rows are derived and the connection data they came from is
// stored.
func (w *AnalysisWriter) retry(ctx context.Context, table string, insert func() error) error {
	for attempt := 1; ; attempt++ {
		err := insert()
		if err == nil {
			return nil
		}
		if !Retryable(err) || attempt >= w.cfg.MaxAttempts {
			w.failures.Add(1)
			w.logger.Error("insert analysis rows", "table", table, "attempt", attempt, "err", err)
			return fmt.Errorf("insert %s: %w", table, err)
		}
		select {
		case <-time.After(backoff(attempt, w.cfg.RetryBackoff, w.cfg.MaxRetryBackoff)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Shutdown flushes and stops the writer; later Adds fail. Safe to repeat.
func (w *AnalysisWriter) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	already := w.closed
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	w.startMu.Do(func() { close(w.finished) }) // never started: nothing runs
	if !already {
		close(w.stop)
	}
	select {
	case <-w.finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the counters so far.
func (w *AnalysisWriter) Stats() AnalysisStats {
	return AnalysisStats{Signals: w.signalRows.Load(), Detections: w.detectionRows.Load(), Failures: w.failures.Load()}
}

func v6(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return netip.IPv6Unspecified()
	}
	return netip.AddrFrom16(a.As16())
}

func v6s(as []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, len(as))
	for i, a := range as {
		out[i] = v6(a)
	}
	return out
}

func usTime(us int64) time.Time { return time.UnixMicro(us).UTC() }

func (w *AnalysisWriter) insertSignals(ctx context.Context, sigs []features.Signal) error {
	b, err := w.store.conn.PrepareBatch(ctx, "INSERT INTO "+quoteIdent(w.store.db)+".signals (signal_type, src, dst, dst_port, "+
		"window_start, window_end, first_seen, last_seen, severity, value, threshold, metrics, dsts, ports, services)")
	if err != nil {
		return err
	}
	defer b.Abort()
	for i := range sigs {
		s := &sigs[i]
		metrics := make(map[string]float64, len(s.Metrics))
		for _, m := range s.Metrics {
			metrics[m.Name] = m.Value
		}
		ports := s.Ports
		if ports == nil {
			ports = []uint16{}
		}
		services := s.Services
		if services == nil {
			services = []string{}
		}
		if err := b.Append(string(s.Type), v6(s.Src), v6(s.Dst), s.DstPort,
			usTime(s.WindowStart), usTime(s.WindowEnd), usTime(s.FirstSeen), usTime(s.LastSeen),
			s.Severity.String(), s.Value, s.Threshold, metrics, v6s(s.Dsts), ports, services); err != nil {
			return fmt.Errorf("signal %s %s: %w", s.Type, s.Src, err)
		}
	}
	return b.Send()
}

// detectionJSON picks the JSON-valued columns out of the same encoding
// `ndr replay --out` writes, so the table and the JSON lines agree.
type detectionJSON struct {
	Signals  json.RawMessage `json:"signals"`
	Evidence json.RawMessage `json:"evidence"`
	MITRE    json.RawMessage `json:"mitre"`
}

func (w *AnalysisWriter) insertDetections(ctx context.Context, dets []scoring.Detection) error {
	b, err := w.store.conn.PrepareBatch(ctx, "INSERT INTO "+quoteIdent(w.store.db)+".detections (detection_id, version, rule_id, type, "+
		"src, dst_ips, first_seen, last_seen, severity, confidence, score, count, signal_types, signals, evidence, mitre, recommended_actions)")
	if err != nil {
		return err
	}
	defer b.Abort()
	for i := range dets {
		d := &dets[i]
		raw, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("detection %s: %w", d.ID, err)
		}
		var j detectionJSON
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("detection %s: %w", d.ID, err)
		}
		types := make([]string, 0, len(d.Signals))
		seen := map[features.SignalType]bool{}
		for _, s := range d.Signals {
			if !seen[s.Type] {
				seen[s.Type] = true
				types = append(types, string(s.Type))
			}
		}
		actions := d.RecommendedActions
		if actions == nil {
			actions = []string{}
		}
		score := min(max(d.Score, 0), 100)
		if err := b.Append(d.ID, d.Version, d.RuleID, d.Type, v6(d.Src), v6s(d.Dsts), usTime(d.FirstSeen), usTime(d.LastSeen),
			d.Severity.String(), d.Confidence, uint8(score), uint32(max(d.Count, 0)), types,
			string(j.Signals), string(j.Evidence), string(j.MITRE), actions); err != nil {
			return fmt.Errorf("detection %s: %w", d.ID, err)
		}
	}
	return b.Send()
}
