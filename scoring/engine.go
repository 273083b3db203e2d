package scoring

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"

	"github.com/ndr-go/ndr/features"
)

// Bounds on what one entity or detection may hold: signals are few, but
// a misbehaving Layer 1 or a hostile host must not grow state without
// limit.
const (
	// maxPerType is how many signals of one type an entity keeps pending
	// within a window (the most recent).
	maxPerType = 8
	// maxSignals bounds a detection's Signals and Evidence.Signals;
	// SignalCounts goes on counting.
	maxSignals = 64
	// maxDsts, maxPorts and maxServices bound a detection's unions.
	maxDsts     = 64
	maxPorts    = 64
	maxServices = 32
	// DefaultMaxEntities bounds the (rule, entity) states of an Engine.
	DefaultMaxEntities = 1 << 20
	// sweepEvery is how often, in event time, idle state is dropped.
	sweepEvery = int64(60e6)
)

var _ features.Emitter = (*Engine)(nil)

// ErrNoSink is returned by NewEngine without a sink.
var ErrNoSink = errors.New("scoring: engine needs a sink")

// Options configure an Engine.
type Options struct {
	// Logger receives warnings (state evicted at the bound) and debug
	// notes (late, invalid signals); nil discards.
	Logger *slog.Logger
	// MaxEntities bounds the (rule, entity) states kept; 0 means
	// DefaultMaxEntities. At the bound the least recently active states
	// are dropped, and counted in Stats.Evicted.
	MaxEntities int
}

// Stats count what an Engine has seen.
type Stats struct {
	Signals     uint64 // consumed
	Ignored     uint64 // of a type no rule requires
	Invalid     uint64 // without a source or with an inverted window
	Late        uint64 // WindowEnd at or before time already evaluated
	Duplicates  uint64 // a signal an entity already held
	Allowlisted uint64 // dropped by a rule's allowlist (per rule)
	Created     uint64
	Updated     uint64
	Merged      uint64 // matches added to another rule's open detection of the same type and entity (counted in Updated too)
	Evicted     uint64 // states dropped at MaxEntities
	Entities    int    // states held now
}

// Engine correlates signals into detections, per rule and entity, driven
// by the signals' event time (WindowEnd).
//
// Signals are evaluated in groups of equal WindowEnd, each group in a
// canonical order, once the event time has passed them: when a signal
// with a later WindowEnd arrives, on Advance, or on Flush. So the order in
// which signals of one window arrive does not change the result, and a
// replay gives what the live run gave.
//
// For every rule requiring a signal's type, the signal joins the pending
// set of its entity (the source host, or the host and destination for
// entity "pair") unless the rule's allowlist covers it. Pending signals
// older than the rule's window (by WindowEnd) are dropped. When the
// pending set covers the required types (or min_signals of them) the rule
// matches: the first match creates a Detection; matches within the
// suppression window after it update that detection; the first match
// after the window creates a new one.
//
// An Engine is not safe for concurrent use: one goroutine owns it.
type Engine struct {
	rules       []compiled
	byType      map[features.SignalType][]int
	sink        Sink
	log         *slog.Logger
	maxEntities int

	buf       []features.Signal // consumed, not yet evaluated
	maxSeen   int64             // greatest WindowEnd consumed
	now       int64             // greatest event time evaluated
	started   bool
	states    map[stateKey]*state
	incidents map[incidentKey]*incident
	lastSweep int64
	stats     Stats
}

// compiled is a validated rule with its allowlists parsed.
type compiled struct {
	Rule
	window, suppress int64
	min              int
	srcAllow         []netip.Prefix
	dstAllow         []dest
	yield            []int // rules this one yields to (Rule.YieldTo)
}

type stateKey struct {
	rule     int
	src, dst netip.Addr // dst is zero for entity "src"
}

func (k stateKey) compare(o stateKey) int {
	if c := cmp.Compare(k.rule, o.rule); c != 0 {
		return c
	}
	if c := k.src.Compare(o.src); c != 0 {
		return c
	}
	return k.dst.Compare(o.dst)
}

// state is one (rule, entity)'s pending signals and open detection.
type state struct {
	pending       map[features.SignalType][]features.Signal
	last          int64 // greatest WindowEnd pending
	open          *builder
	suppressUntil int64
}

// incidentKey is one entity's incident of one detection type: every rule
// of that type matching the entity while the incident is open adds to the
// same detection instead of opening another.
type incidentKey struct {
	typ      string
	src, dst netip.Addr
}

// incident is an open detection and the rule that names it (the first of
// the matching rules in rule order).
type incident struct {
	b     *builder
	rule  int
	until int64
}

// NewEngine validates rules and returns an engine emitting to sink.
func NewEngine(rules []Rule, sink Sink, opts Options) (*Engine, error) {
	if sink == nil {
		return nil, ErrNoSink
	}
	var errs []error
	e := &Engine{
		byType: map[features.SignalType][]int{}, sink: sink, log: opts.Logger,
		maxEntities: opts.MaxEntities, states: map[stateKey]*state{}, incidents: map[incidentKey]*incident{},
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.maxEntities <= 0 {
		e.maxEntities = DefaultMaxEntities
	}
	if len(rules) == 0 {
		errs = append(errs, ErrNoRules)
	}
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		c := compiled{Rule: r, window: r.TimeWindowUS(), suppress: r.SuppressionUS(), min: r.minSignals()}
		c.Rule.RequiredSignals = slices.Clone(r.RequiredSignals)
		for _, s := range r.Allowlist.CIDRs {
			p, _ := parsePrefix(s)
			c.srcAllow = append(c.srcAllow, p)
		}
		for _, s := range r.Allowlist.Destinations {
			d, _ := parseDest(s)
			c.dstAllow = append(c.dstAllow, d)
		}
		for _, t := range r.RequiredSignals {
			e.byType[t] = append(e.byType[t], len(e.rules))
		}
		e.rules = append(e.rules, c)
	}
	for i := range e.rules {
		for _, id := range e.rules[i].YieldTo {
			if j := slices.IndexFunc(e.rules, func(c compiled) bool { return c.ID == id }); j >= 0 {
				e.rules[i].yield = append(e.rules[i].yield, j)
			}
		}
	}
	if err := checkUnique(rules); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new scoring engine: %w", err)
	}
	return e, nil
}

// Stats returns the counts so far.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Entities = len(e.states)
	return s
}

// Consume takes signals, in event-time order of WindowEnd as Layer 1 emits
// them, and evaluates those whose window the stream has passed. sigs stays
// the caller's: the engine copies what it keeps.
func (e *Engine) Consume(ctx context.Context, sigs []features.Signal) error {
	for i := range sigs {
		s := &sigs[i]
		e.stats.Signals++
		if !s.Src.IsValid() || s.WindowEnd < s.WindowStart {
			e.stats.Invalid++
			e.log.Debug("scoring: invalid signal", "type", s.Type, "src", s.Src, "window_start", s.WindowStart, "window_end", s.WindowEnd)
			continue
		}
		if len(e.byType[s.Type]) == 0 {
			e.stats.Ignored++
			continue
		}
		if e.started && s.WindowEnd <= e.now {
			// Correlated as if it arrived now, with what is still in the
			// window of now: a late signal cannot rewrite the past.
			e.stats.Late++
			e.log.Debug("scoring: late signal", "type", s.Type, "src", s.Src, "window_end", s.WindowEnd, "evaluated_to", e.now)
		}
		e.buf = append(e.buf, copySignal(s))
		e.maxSeen = max(e.maxSeen, s.WindowEnd)
	}
	// Signals of the latest window may still be arriving.
	return e.evaluate(ctx, e.maxSeen-1)
}

// Advance declares that every signal with WindowEnd <= wm has been
// consumed (Layer 1's watermark passed it): buffered signals up to wm are
// evaluated and idle state is dropped.
func (e *Engine) Advance(ctx context.Context, wm int64) error {
	if err := e.evaluate(ctx, wm); err != nil {
		return err
	}
	if !e.started || wm > e.now {
		e.now, e.started = wm, true
	}
	e.sweep(e.now)
	return nil
}

// Emit makes the Engine a features.Emitter, so that Layer 1 can feed it
// directly: it consumes the window's signals and advances to its End,
// since Layer 1 emits windows in order of End with every signal that
// closed by then. The Arrow records are not used; Layer 1 releases them
// when Emit returns.
func (e *Engine) Emit(ctx context.Context, out *features.WindowOutput) error {
	if err := e.Consume(ctx, out.Signals); err != nil {
		return err
	}
	return e.Advance(ctx, out.End)
}

// Flush evaluates every buffered signal: the end of a replay.
func (e *Engine) Flush(ctx context.Context) error {
	if len(e.buf) == 0 {
		return nil
	}
	return e.evaluate(ctx, e.maxSeen)
}

// compareSignals is the canonical order of evaluation: by event time, then
// by every identifying field, so that arrival order within a window does
// not matter.
func compareSignals(a, b *features.Signal) int {
	if c := cmp.Compare(a.WindowEnd, b.WindowEnd); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	if c := a.Src.Compare(b.Src); c != 0 {
		return c
	}
	if c := a.Dst.Compare(b.Dst); c != 0 {
		return c
	}
	if c := cmp.Compare(a.DstPort, b.DstPort); c != 0 {
		return c
	}
	if c := cmp.Compare(a.WindowStart, b.WindowStart); c != 0 {
		return c
	}
	if c := cmp.Compare(a.FirstSeen, b.FirstSeen); c != 0 {
		return c
	}
	if c := cmp.Compare(a.LastSeen, b.LastSeen); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Severity, b.Severity); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Value, b.Value); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Threshold, b.Threshold); c != 0 {
		return c
	}
	return slices.CompareFunc(a.Metrics, b.Metrics, func(x, y features.Metric) int {
		if c := cmp.Compare(x.Name, y.Name); c != 0 {
			return c
		}
		return cmp.Compare(x.Value, y.Value)
	})
}

// evaluate processes buffered signals with WindowEnd <= limit, one group
// of equal WindowEnd at a time.
func (e *Engine) evaluate(ctx context.Context, limit int64) error {
	if len(e.buf) == 0 {
		return nil
	}
	slices.SortStableFunc(e.buf, func(a, b features.Signal) int { return compareSignals(&a, &b) })
	n := 0
	for n < len(e.buf) && e.buf[n].WindowEnd <= limit {
		n++
	}
	if n == 0 {
		return nil
	}
	done := 0
	var err error
	for done < n && err == nil {
		g := done + 1
		for g < n && e.buf[g].WindowEnd == e.buf[done].WindowEnd {
			g++
		}
		t := e.buf[done].WindowEnd
		if e.started {
			t = max(t, e.now)
		}
		e.now, e.started = t, true
		err = e.group(ctx, t, e.buf[done:g])
		// A group is consumed even when the sink failed in it:
		// re-running it would emit its earlier events twice. Later
		// groups stay for the next call.
		done = g
	}
	rest := copy(e.buf, e.buf[done:])
	clear(e.buf[rest:])
	e.buf = e.buf[:rest]
	return err
}

// group evaluates the signals of one event time t.
func (e *Engine) group(ctx context.Context, t int64, sigs []features.Signal) error {
	var touched []stateKey
	isTouched := map[stateKey]bool{}
	for i := range sigs {
		s := &sigs[i]
		for _, ri := range e.byType[s.Type] {
			r := &e.rules[ri]
			kept, ok := r.admit(s)
			if !ok {
				e.stats.Allowlisted++
				continue
			}
			key := stateKey{rule: ri, src: s.Src}
			if r.Entity == EntityPair {
				if !s.Dst.IsValid() {
					continue // a host-level signal says nothing about a pair
				}
				key.dst = s.Dst
			}
			st := e.states[key]
			if st == nil {
				st = &state{pending: map[features.SignalType][]features.Signal{}}
				e.states[key] = st
			}
			if !st.add(kept) {
				e.stats.Duplicates++
				continue
			}
			if !isTouched[key] {
				isTouched[key] = true
				touched = append(touched, key)
			}
		}
	}
	slices.SortFunc(touched, stateKey.compare)
	for _, key := range touched {
		if err := e.match(ctx, t, key); err != nil {
			return err
		}
	}
	if len(e.states) > e.maxEntities {
		e.evictOldest()
	}
	e.sweep(t)
	return nil
}

// admit applies the rule's allowlist to a signal. It returns the signal
// with allowlisted destinations removed from Dsts, and false when the
// signal must not count: its source is allowlisted, its destination is,
// or every destination it lists is.
func (r *compiled) admit(s *features.Signal) (features.Signal, bool) {
	for _, p := range r.srcAllow {
		if p.Contains(s.Src) {
			return features.Signal{}, false
		}
	}
	if len(r.dstAllow) == 0 {
		return *s, true
	}
	if s.Dst.IsValid() && r.dstAllowed(s.Dst, s.DstPort) {
		return features.Signal{}, false
	}
	if len(s.Dsts) == 0 {
		return *s, true
	}
	out := *s
	out.Dsts = nil
	for _, d := range s.Dsts {
		if !r.dstAllowed(d, s.DstPort) {
			out.Dsts = append(out.Dsts, d)
		}
	}
	if len(out.Dsts) == 0 {
		return features.Signal{}, false
	}
	return out, true
}

func (r *compiled) dstAllowed(a netip.Addr, port uint16) bool {
	for _, d := range r.dstAllow {
		if d.p.Contains(a) && (d.port == 0 || d.port == port) {
			return true
		}
	}
	return false
}

// sigKey identifies a signal: the same finding re-sent (a replay after a
// restart) is not new evidence.
type sigKey struct {
	typ                    features.SignalType
	src, dst               netip.Addr
	port                   uint16
	windowStart, windowEnd int64
}

func keyOf(s *features.Signal) sigKey {
	return sigKey{s.Type, s.Src, s.Dst, s.DstPort, s.WindowStart, s.WindowEnd}
}

// add puts s in the pending set, keeping the most recent maxPerType of its
// type; it reports false for a duplicate.
func (st *state) add(s features.Signal) bool {
	k := keyOf(&s)
	list := st.pending[s.Type]
	for i := range list {
		if keyOf(&list[i]) == k {
			return false
		}
	}
	if len(list) == maxPerType {
		list = append(list[:0], list[1:]...)
	}
	st.pending[s.Type] = append(list, s)
	st.last = max(st.last, s.WindowEnd)
	return true
}

// evict drops pending signals older than from.
func (st *state) evict(from int64) {
	for t, list := range st.pending {
		i := 0
		for i < len(list) && list[i].WindowEnd < from {
			i++
		}
		switch {
		case i == len(list):
			delete(st.pending, t)
		case i > 0:
			st.pending[t] = append(list[:0], list[i:]...)
		}
	}
}

// match checks the (rule, entity) at time t and emits a detection event
// when the rule matches.
func (e *Engine) match(ctx context.Context, t int64, key stateKey) error {
	r := &e.rules[key.rule]
	st := e.states[key]
	st.evict(t - r.window)
	present := 0
	for _, req := range r.RequiredSignals {
		if len(st.pending[req]) > 0 {
			present++
		}
	}
	if present < r.min {
		return nil
	}
	for _, yi := range r.yield {
		// Another rule already reports this entity: no second detection.
		// Rules are evaluated in order within a group, so a rule listed
		// earlier that matches at the same time is seen here.
		yk := stateKey{rule: yi, src: key.src, dst: key.dst}
		if ys := e.states[yk]; ys != nil && ys.open != nil && t < ys.suppressUntil {
			return nil
		}
	}
	var sigs []features.Signal
	for _, req := range r.RequiredSignals {
		sigs = append(sigs, st.pending[req]...)
	}
	slices.SortFunc(sigs, func(a, b features.Signal) int { return compareSignals(&a, &b) })

	kind := Updated
	ik := incidentKey{typ: r.DetectionType, src: key.src, dst: key.dst}
	inc := e.incidents[ik]
	if inc != nil && t >= inc.until {
		delete(e.incidents, ik)
		inc = nil
	}
	switch {
	case (st.open == nil || t >= st.suppressUntil) && inc != nil:
		// Another rule of the same type reports this entity already: this
		// match is more evidence for that detection, not a second one.
		st.open, st.suppressUntil = inc.b, inc.until
		st.open.d.Count++
		st.open.d.Version++
		e.stats.Updated++
		e.stats.Merged++
		if key.rule < inc.rule {
			inc.rule = key.rule
			st.open.rename(r)
		}
	case st.open == nil || t >= st.suppressUntil:
		kind = Created
		st.open = newBuilder(r, key, sigs)
		st.suppressUntil = t + r.suppress
		e.incidents[ik] = &incident{b: st.open, rule: key.rule, until: st.suppressUntil}
		e.stats.Created++
	default:
		st.open.d.Count++
		st.open.d.Version++
		e.stats.Updated++
	}
	for i := range sigs {
		st.open.add(&sigs[i])
	}
	// Severity and confidence come from the matching rule's assessment;
	// the detection keeps the identity of the rule that names it.
	st.open.finish(r)
	if inc := e.incidents[ik]; inc != nil && inc.b == st.open && inc.rule != key.rule {
		st.open.rename(&e.rules[inc.rule])
	}
	if err := e.sink.Emit(ctx, Event{Kind: kind, Detection: st.open.d.clone()}); err != nil {
		return fmt.Errorf("emit detection %s: %w", st.open.d.ID, err)
	}
	return nil
}

// sweep drops state that can neither match nor be updated any more, at
// most once per sweepEvery of event time.
func (e *Engine) sweep(t int64) {
	if t-e.lastSweep < sweepEvery {
		return
	}
	e.lastSweep = t
	for k, inc := range e.incidents {
		if t >= inc.until {
			delete(e.incidents, k)
		}
	}
	for k, st := range e.states {
		r := &e.rules[k.rule]
		if st.open != nil && t >= st.suppressUntil {
			st.open = nil
		}
		if st.open == nil && st.last < t-r.window {
			delete(e.states, k)
		}
	}
}

// evictOldest drops the least recently active states down to seven
// eighths of the bound, so that the sort is paid once per many new
// entities: losing old partial evidence is better than running out of
// memory.
func (e *Engine) evictOldest() {
	type aged struct {
		k    stateKey
		last int64
	}
	all := make([]aged, 0, len(e.states))
	for k, st := range e.states {
		all = append(all, aged{k, st.last})
	}
	slices.SortFunc(all, func(a, b aged) int {
		if c := cmp.Compare(a.last, b.last); c != 0 {
			return c
		}
		return a.k.compare(b.k)
	})
	n := min(len(all), len(all)-e.maxEntities+e.maxEntities/8)
	for _, a := range all[:n] {
		delete(e.states, a.k)
	}
	e.stats.Evicted += uint64(n)
	e.log.Warn("scoring: correlation state at its bound, dropped the least recently active entities",
		"dropped", n, "bound", e.maxEntities)
}

// copySignal deep-copies a signal so that the caller may reuse its slices.
func copySignal(s *features.Signal) features.Signal {
	c := *s
	c.Metrics = cloneSlice(s.Metrics)
	c.Dsts = cloneSlice(s.Dsts)
	c.Ports = cloneSlice(s.Ports)
	c.Services = cloneSlice(s.Services)
	return c
}

// Correlate runs signals through a fresh engine and returns the final
// state of every detection, in order of creation: the batch form of the
// engine for replays and tests. The signals may be in any order.
func Correlate(ctx context.Context, rules []Rule, sigs []features.Signal, opts Options) ([]Detection, error) {
	var c Collector
	e, err := NewEngine(rules, &c, opts)
	if err != nil {
		return nil, err
	}
	sorted := slices.Clone(sigs)
	slices.SortStableFunc(sorted, func(a, b features.Signal) int { return compareSignals(&a, &b) })
	if err := e.Consume(ctx, sorted); err != nil {
		return nil, err
	}
	if err := e.Flush(ctx); err != nil {
		return nil, err
	}
	return c.Detections(), nil
}

// builder accumulates a detection from its contributing signals.
type builder struct {
	d        Detection
	seen     map[sigKey]bool
	best     map[features.SignalType]features.Severity
	strength map[features.SignalType]float64 // best evidence strength per type
	dsts     map[netip.Addr]bool
	ports    map[uint16]bool
	services map[string]bool
	uniqDst  int // most destinations one signal reported
	uniqPort int // most ports one signal reported
}

// Metric names the summary reads, as the reference's signals spell them.
const (
	metricConnections   = "connection_count"
	metricUniquePorts   = "unique_ports"
	metricUniqueDsts    = "unique_destinations"
	metricUniqueHosts   = "unique_hosts" // distinct destination hosts (scan, spike, privileged access)
	metricStaged        = "total_bytes_staged"
	metricUploaded      = "bytes_uploaded"
	metricDownloaded    = "bytes_downloaded"
	metricBytesSent     = "total_bytes_sent"
	metricBytesReceived = "total_bytes_received"
	metricSent          = "total_sent"
	metricReceived      = "total_received"
)

// newBuilder starts a detection for key from the signals of its first
// match; its id hashes the rule, the entity and their earliest window.
func newBuilder(r *compiled, key stateKey, sigs []features.Signal) *builder {
	entity := key.src.String()
	if key.dst.IsValid() {
		entity += ">" + key.dst.String()
	}
	first := sigs[0].WindowStart
	lo, hi := sigs[0].WindowEnd, sigs[0].WindowEnd
	for i := range sigs {
		first = min(first, sigs[i].WindowStart)
		lo, hi = min(lo, sigs[i].WindowEnd), max(hi, sigs[i].WindowEnd)
	}
	h := sha256.Sum256([]byte(r.ID + "\x00" + entity + "\x00" + strconv.FormatInt(first, 10)))
	b := &builder{
		seen: map[sigKey]bool{}, best: map[features.SignalType]features.Severity{}, strength: map[features.SignalType]float64{},
		dsts: map[netip.Addr]bool{}, ports: map[uint16]bool{}, services: map[string]bool{},
	}
	b.d = Detection{
		ID:     r.ID + "-" + hex.EncodeToString(h[:6]),
		RuleID: r.ID, Type: r.DetectionType, Src: key.src,
		FirstSeen: firstSeen(&sigs[0]), LastSeen: lastSeen(&sigs[0]),
		MITRE:              r.MITRE,
		RecommendedActions: r.RecommendedActions,
		Count:              1,
		Version:            1,
	}
	b.d.Evidence.Summary.RequiredSignals = len(r.RequiredSignals)
	b.d.Evidence.Summary.SignalCounts = map[features.SignalType]int{}
	b.d.Evidence.Summary.SpanSeconds = float64(hi-lo) / 1e6
	return b
}

// rename makes r the rule that names the detection (its rule id, MITRE
// mapping, recommended actions and required signals); the detection id
// stays the one it was created with, so that it remains one row.
func (b *builder) rename(r *compiled) {
	b.d.RuleID = r.ID
	b.d.MITRE = r.MITRE
	b.d.RecommendedActions = r.RecommendedActions
	sm := &b.d.Evidence.Summary
	sm.RequiredSignals = len(r.RequiredSignals)
	sm.MatchedSignals = 0
	for _, t := range r.RequiredSignals {
		if _, ok := b.best[t]; ok {
			sm.MatchedSignals++
		}
	}
}

func firstSeen(s *features.Signal) int64 {
	if s.FirstSeen != 0 {
		return s.FirstSeen
	}
	return s.WindowStart
}

func lastSeen(s *features.Signal) int64 {
	if s.LastSeen != 0 {
		return s.LastSeen
	}
	return s.WindowEnd
}

// add folds one signal into the detection unless it is already in.
func (b *builder) add(s *features.Signal) {
	k := keyOf(s)
	if b.seen[k] {
		return
	}
	// The identity set is bounded with the lists: past it a re-sent
	// signal may count twice, which only inflates SignalCounts.
	if len(b.seen) < 4*maxSignals {
		b.seen[k] = true
	}
	d := &b.d
	sm := &d.Evidence.Summary
	sm.SignalCounts[s.Type]++
	if s.Severity > b.best[s.Type] {
		b.best[s.Type] = s.Severity
	}
	b.strength[s.Type] = max(b.strength[s.Type], strength(s))
	if dev, ok := deviationOf(s); ok {
		d.Evidence.Deviations = addDeviation(d.Evidence.Deviations, dev)
	}
	d.FirstSeen = min(d.FirstSeen, firstSeen(s))
	d.LastSeen = max(d.LastSeen, lastSeen(s))
	if len(d.Signals) < maxSignals {
		d.Signals = append(d.Signals, SignalRef{
			Type: s.Type, Severity: s.Severity, WindowStart: s.WindowStart, WindowEnd: s.WindowEnd,
			Dst: s.Dst, DstPort: s.DstPort, Value: s.Value, Threshold: s.Threshold,
		})
		d.Evidence.Signals = append(d.Evidence.Signals, SignalEvidence{
			Type: s.Type, WindowEnd: s.WindowEnd, Dst: s.Dst, DstPort: s.DstPort,
			Metrics: cloneSlice(s.Metrics), Dsts: cloneSlice(s.Dsts), Ports: cloneSlice(s.Ports), Services: cloneSlice(s.Services),
		})
	}
	addBounded(b.dsts, maxDsts, s.Dst)
	for _, a := range s.Dsts {
		addBounded(b.dsts, maxDsts, a)
	}
	if s.DstPort != 0 {
		addBounded(b.ports, maxPorts, s.DstPort)
	}
	for _, p := range s.Ports {
		addBounded(b.ports, maxPorts, p)
	}
	b.uniqDst = max(b.uniqDst, distinctAddrs(s))
	b.uniqPort = max(b.uniqPort, distinctPorts(s))
	for _, sv := range s.Services {
		addBounded(b.services, maxServices, sv)
	}
	for _, m := range s.Metrics {
		v := finite(m.Value)
		if v < 0 {
			continue
		}
		u := uint64(min(v, 1<<62))
		switch m.Name {
		case metricConnections:
			sm.Connections = max(sm.Connections, u)
		case metricUniquePorts:
			b.uniqPort = max(b.uniqPort, int(min(v, 1<<31)))
		case metricUniqueDsts, metricUniqueHosts:
			b.uniqDst = max(b.uniqDst, int(min(v, 1<<31)))
		case metricStaged:
			sm.BytesStaged = max(sm.BytesStaged, u)
		case metricUploaded, metricBytesSent, metricSent:
			sm.BytesOut = max(sm.BytesOut, u)
		case metricDownloaded, metricBytesReceived, metricReceived:
			sm.BytesIn = max(sm.BytesIn, u)
		}
	}
}

// distinctAddrs is how many destinations one signal names.
func distinctAddrs(s *features.Signal) int {
	n := len(s.Dsts)
	if s.Dst.IsValid() && !slices.Contains(s.Dsts, s.Dst) {
		n++
	}
	if len(s.Dsts) > 1 {
		sorted := slices.Clone(s.Dsts)
		slices.SortFunc(sorted, netip.Addr.Compare)
		n -= len(sorted) - len(slices.Compact(sorted))
	}
	return n
}

// distinctPorts is how many destination ports one signal names.
func distinctPorts(s *features.Signal) int {
	ps := slices.Clone(s.Ports)
	if s.DstPort != 0 {
		ps = append(ps, s.DstPort)
	}
	slices.Sort(ps)
	return len(slices.Compact(ps))
}

func addBounded[K comparable](m map[K]bool, limit int, k K) {
	var zero K
	if k == zero || m[k] {
		return
	}
	if len(m) < limit {
		m[k] = true
	}
}

// finish recomputes the derived fields after signals were added.
func (b *builder) finish(r *compiled) {
	d := &b.d
	sm := &d.Evidence.Summary
	d.Dsts = sortedKeys(b.dsts, netip.Addr.Compare)
	sm.Ports = sortedKeys(b.ports, cmp.Compare[uint16])
	sm.Services = sortedKeys(b.services, cmp.Compare[string])
	sm.DistinctDestinations = b.uniqDst
	sm.DistinctPorts = b.uniqPort
	sm.MatchedSignals = 0
	for _, t := range r.RequiredSignals {
		if _, ok := b.best[t]; ok {
			sm.MatchedSignals++
		}
	}
	order := func(a, b SignalRef) int {
		if c := cmp.Compare(a.WindowEnd, b.WindowEnd); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		if c := a.Dst.Compare(b.Dst); c != 0 {
			return c
		}
		if c := cmp.Compare(a.DstPort, b.DstPort); c != 0 {
			return c
		}
		return cmp.Compare(a.WindowStart, b.WindowStart)
	}
	// Keep Signals and Evidence.Signals in the same order.
	idx := make([]int, len(d.Signals))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(i, j int) int { return order(d.Signals[i], d.Signals[j]) })
	sigs := make([]SignalRef, len(idx))
	ev := make([]SignalEvidence, len(idx))
	for n, i := range idx {
		sigs[n], ev[n] = d.Signals[i], d.Evidence.Signals[i]
	}
	d.Signals, d.Evidence.Signals = sigs, ev
	a := assess(&r.Rule, b.best, b.strength)
	// A later, fuller match may raise severity and confidence; nothing
	// lowers what was already reported.
	d.Severity = max(d.Severity, a.severity)
	d.Confidence = max(d.Confidence, a.confidence)
	d.Score = score(d.Severity, d.Confidence)
}

func sortedKeys[K comparable](m map[K]bool, c func(a, b K) int) []K {
	if len(m) == 0 {
		return nil
	}
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, c)
	return out
}
