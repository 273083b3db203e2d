package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

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
	hosts      *arrowTable // host_features rows not yet inserted
	pairs      *arrowTable // pair_features rows not yet inserted
	closed     bool

	kick     chan struct{}
	stop     chan struct{}
	finished chan struct{}
	startMu  sync.Once

	signalRows, detectionRows, hostRows, pairRows, failures atomic.Uint64
}

// AnalysisStats count rows stored and inserts given up.
type AnalysisStats struct {
	Signals, Detections, HostRows, PairRows, Failures uint64
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
	var err error
	if w.hosts, err = newArrowTable("host_features", features.HostSchema()); err != nil {
		return nil, err
	}
	if w.pairs, err = newArrowTable("pair_features", features.PairSchema()); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *AnalysisWriter) buffered() int {
	return len(w.signals) + len(w.detections) + w.hosts.rows + w.pairs.rows
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
	for !w.closed && w.buffered() >= w.maxBuffered() {
		if err := ctx.Err(); err != nil {
			return err
		}
		w.cond.Wait()
	}
	if w.closed {
		return ErrWriterClosed
	}
	appendFn()
	if w.buffered() >= w.cfg.FlushRows {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// AddFeatures buffers the rows of out's feature records that tile time:
// hopping windows whose start is a multiple of their length, and sessions
// (see migration 0003). The records may be released when it returns.
func (w *AnalysisWriter) AddFeatures(ctx context.Context, out *features.WindowOutput) error {
	var err error
	n := int(out.Hosts.NumRows() + out.Pairs.NumRows())
	addErr := w.add(ctx, func() {
		err = errors.Join(w.hosts.add(out.Hosts, tiling(out.Hosts)), w.pairs.add(out.Pairs, tiling(out.Pairs)))
	}, n)
	return errors.Join(addErr, err)
}

// tiling keeps rows whose window starts at a multiple of its length, and
// session rows. Both schemas start with window_start, window_end, window.
func tiling(rec arrow.Record) func(int) bool {
	if rec.NumCols() < 3 {
		return func(int) bool { return false }
	}
	start, end := rec.Column(0).(*array.Timestamp), rec.Column(1).(*array.Timestamp)
	win := rec.Column(2).(*array.Dictionary)
	names := win.Dictionary().(*array.String)
	return func(r int) bool {
		if names.Value(win.GetValueIndex(r)) == features.SessionWindowName {
			return true
		}
		s, e := int64(start.Value(r)), int64(end.Value(r))
		return e > s && s%(e-s) == 0
	}
}

// Flush inserts everything buffered now and returns the first error.
func (w *AnalysisWriter) Flush(ctx context.Context) error { return w.flush(ctx) }

func (w *AnalysisWriter) flush(ctx context.Context) error {
	w.mu.Lock()
	sigs, dets := w.signals, w.detections
	w.signals, w.detections = nil, nil
	// Full tables leave with the flush and fresh ones take their place;
	// an empty one stays, untouched here, since adds may continue on it.
	var hosts, pairs *arrowTable
	if w.hosts.rows > 0 {
		hosts, w.hosts = w.hosts, w.hosts.fresh()
	}
	if w.pairs.rows > 0 {
		pairs, w.pairs = w.pairs, w.pairs.fresh()
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	var errs []error
	for _, t := range []struct {
		tab     *arrowTable
		counter *atomic.Uint64
	}{{hosts, &w.hostRows}, {pairs, &w.pairRows}} {
		if t.tab == nil {
			continue
		}
		if err := w.retry(ctx, t.tab.name, func() error { return w.insertArrow(ctx, t.tab) }); err != nil {
			errs = append(errs, err)
		} else {
			t.counter.Add(uint64(t.tab.rows))
		}
	}
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
	return AnalysisStats{Signals: w.signalRows.Load(), Detections: w.detectionRows.Load(),
		HostRows: w.hostRows.Load(), PairRows: w.pairRows.Load(), Failures: w.failures.Load()}
}

func (w *AnalysisWriter) insertArrow(ctx context.Context, t *arrowTable) error {
	b, err := w.store.conn.PrepareBatch(ctx, "INSERT INTO "+quoteIdent(w.store.db)+"."+t.name+" ("+strings.Join(t.names, ", ")+")")
	if err != nil {
		return err
	}
	defer b.Abort()
	for i, c := range t.cols {
		if err := b.Column(i).Append(c.values()); err != nil {
			return fmt.Errorf("%s.%s: %w", t.name, t.names[i], err)
		}
	}
	return b.Send()
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
