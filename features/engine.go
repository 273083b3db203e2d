package features

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/ndr-go/ndr/ingest"
)

// Emitter receives what each closed window produces. Scoring implements
// it; the engine calls it from the goroutine that calls Process or Flush.
type Emitter interface {
	// Emit hands over one WindowOutput.
	//
	// Ownership: out.Hosts and out.Pairs belong to the engine and are
	// released when Emit returns; a consumer that keeps them (or any
	// array or buffer inside them) past the call must Retain them and
	// Release them later. out itself is not reused, and out.Signals,
	// with everything it points to, belongs to the consumer.
	//
	// An error stops Process (or Flush), which returns it wrapped; the
	// output is not emitted again.
	Emit(ctx context.Context, out *WindowOutput) error
}

// EmitterFunc adapts a function to Emitter.
type EmitterFunc func(ctx context.Context, out *WindowOutput) error

// Emit calls f.
func (f EmitterFunc) Emit(ctx context.Context, out *WindowOutput) error { return f(ctx, out) }

// WindowOutput is everything that closed when the watermark passed End.
// Hopping and tumbling windows here all end at End; sessions ended in
// (End - pair pane, End]. Nothing is emitted for a tick with no row and no
// signal.
type WindowOutput struct {
	// End is the tick, µs since the epoch.
	End int64
	// Watermark is the engine's watermark when the output was produced
	// (at or past End).
	Watermark int64
	// Windows lists the windows that closed at End, whether or not they
	// have rows.
	Windows []WindowBounds
	// Hosts holds host_features rows (HostSchema), Pairs pair_features rows
	// (PairSchema). Both are non-nil and may have zero rows, unless the
	// engine was told nobody reads them (SkipRecords): then both are nil.
	// Rows are sorted by window length, then addresses and port.
	Hosts arrow.Record
	Pairs arrow.Record
	// Signals evaluated from those rows, sorted by type (declaration
	// order), source, destination, port and window start.
	Signals []Signal
}

// WindowBounds names one window that closed.
type WindowBounds struct {
	// Kind is "host" (rows in Hosts) or "pair" (rows in Pairs).
	Kind string
	// Name is the rows' "window" value: the window length ("1m0s") or
	// "session".
	Name string
	// Start and End bound the window, µs, [Start, End). For sessions,
	// whose bounds are per row, the output holds the sessions that ended
	// in (Start, End].
	Start, End int64
}

// Errors of NewEngine.
var (
	// ErrNilEmitter: NewEngine needs somewhere to send windows.
	ErrNilEmitter = errors.New("features: nil emitter")
)

// Stats are counters since NewEngine, and the current state size.
type Stats struct {
	// Events is every Conn given to Process.
	Events uint64
	// Invalid: unusable event time (outside the engine's range) or
	// originator address.
	Invalid uint64
	// External: the originator is not internal; such connections feed no
	// state (signals are about internal hosts).
	External uint64
	// LateHost and LatePair: events whose pane of that kind had already
	// closed when they arrived, ignored by that kind's windows. An event
	// is late for pairs (30 s panes by default) no sooner than for hosts.
	LateHost uint64
	LatePair uint64

	Windows  uint64 // WindowOutputs emitted
	HostRows uint64
	PairRows uint64
	Signals  uint64
	// SignalsSuppressed: repeats in overlapping windows, see
	// Output.SuppressRepeats.
	SignalsSuppressed uint64

	Hosts, Pairs, Addresses int // tracked now
	HostPanes, PairPanes    int

	HostsEvictedIdle, PairsEvictedIdle uint64
	HostsEvictedCap, PairsEvictedCap   uint64
	HostsRefused, PairsRefused         uint64
	// SetOverflows: distinct set elements refused at
	// Limits.MaxSetElements.
	SetOverflows uint64
	// AddressesRefused: the address table (2^24 ids) was full.
	AddressesRefused uint64

	// Watermark is the newest event time minus the allowed lateness
	// (math.MinInt64 before the first event).
	Watermark int64
}

// timeBase is 2000-01-01T00:00:00Z: pane indices are int32 counts of panes
// from it, which covers ±68 years even for one-second panes.
const timeBase = 946684800 * int64(time.Second/time.Microsecond)

// Engine is Layer 1: it turns connections into window rows and signals.
//
// An Engine is owned by one goroutine: Process, Flush, Stats and Memory
// must not be called concurrently (it is not goroutine-safe, like a
// Prometheus Appender). Time is event time only: windows close when the
// watermark (the newest event time seen minus the allowed lateness)
// passes their end, so a replayed file and a live stream of the same
// events, in any order within the lateness, give the same outputs.
type Engine struct {
	cfg       Config
	emit      Emitter
	log       *slog.Logger
	alloc     memory.Allocator
	baselines Baselines

	g             geometry
	geo           setGeom
	lateness      int64
	endTime       bool
	local         ingest.LocalNetworks
	privPorts     portSet
	privService   [maxPorts]uint64
	stagingPorts  portSet
	hostBase      int64 // pane index of timeBase, host kind
	pairBase      int64
	hostKeepPanes int64
	pairKeepPanes int64
	minT, maxT    int64
	maxSpecSize   int64

	hostShapes   []hostShape
	pairShapes   []pairShape
	hostSpecs    []hostSpec
	pairSpecs    []pairSpec
	hostClasses  []specClass
	pairClasses  []specClass
	sessionSpecs uint16 // bit of the COMMAND_EXCHANGE spec in pairSpecs
	// evalMin: the fewest connections any pair signal or row needs;
	// queueMin: pairs with fewer retained connections are never
	// evaluated (evalMin, or 1 when exhaustive).
	evalMin, queueMin uint32
	// exhaustive turns every gate off (tests: gates must not change the
	// output).
	exhaustive bool
	// skipRecords: no consumer reads the feature rows (SkipRecords), so
	// they are counted but neither sorted nor built into Arrow records.
	skipRecords bool

	maxTS    int64
	wm       int64
	nextTick int64
	lastTick int64

	addrs addrTable

	hosts          []host
	hostFree       []int32
	nHosts         int
	hpanes         slab[hostPane]
	hpFree         int32
	nHostPanes     int
	paneHosts      []paneList[hostRef] // ring: the hosts with a pane there
	hostClassLists [][]hostRef
	hostRowLists   [][]hostRef // per shape: hosts owing a row at the next tiling end
	hostVisits     []int32

	pairs          slab[pair]
	pairFree       []int32
	nPairs         int
	pairIDs        map[uint64]int32
	ppanes         slab[pairPane]
	ppFree         int32
	nPairPanes     int
	plog           []pairLogSlot // ring of pair panes
	pairClassLists [][]hotRef
	pairRowLists   [][]hotRef
	sessionChecks  []paneList[hotRef] // ring of pair ticks: sessions that may end there
	pairVisits     []int32

	hostRows      []hostRow
	closed        []WindowBounds
	hostOrder     []rowKey
	pairOrder     []rowKey
	pairRows      []pairRow
	signals       []Signal
	metricBlock   []Metric
	addrBlock     []netip.Addr
	portBlock     []uint16
	lastSignals   int // signals of the last output, to size the next slice
	supp          map[suppKey]suppState
	nextSuppSweep int64

	hostRB, pairRB *array.RecordBuilder

	// scratch, reused
	spikes        [maxHostSpecs]spikeEval
	shapeMasks    [][]uint64
	scratchMask   []uint64
	scratchAggs   []hostAgg
	scratchGroups []int
	portHosts     [][]uint32
	portTouched   [][]uint16
	scratchTS     []int64
	// evictDry is the sealed bound at which a cap eviction last left no
	// candidate; until the watermark seals another pane none can appear
	// (new pairs start at or after the watermark), so the scan is skipped.
	evictDry     int64
	evictDryOK   bool
	scratchLog   []pairLogEntry
	scratchPanes []*pairPane
	scratchSrc   []uint32
	scratchEl    []uint64
	sessionName  []byte

	stats       Stats
	overflowLog eventLimiter
	lateLog     eventLimiter
}

// NewEngine validates cfg and returns an engine that sends closed windows
// to emit. logger may be nil (discard); alloc may be nil
// (memory.DefaultAllocator). Call SetBaselines before the first Process
// to use per-host baselines.
func NewEngine(cfg Config, emit Emitter, logger *slog.Logger, alloc memory.Allocator) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if emit == nil {
		return nil, ErrNilEmitter
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if alloc == nil {
		alloc = memory.DefaultAllocator
	}
	e := &Engine{
		cfg: cfg, emit: emit, log: logger.With("component", "features"), alloc: alloc,
		g:        cfg.geometry(),
		lateness: cfg.AllowedLateness.micros(),
		endTime:  cfg.EventTime == EventTimeEnd,
		maxTS:    math.MinInt64, wm: math.MinInt64, nextTick: math.MinInt64,
		hpFree: -1, ppFree: -1,
		pairIDs:     make(map[uint64]int32),
		supp:        make(map[suppKey]suppState),
		overflowLog: eventLimiter{every: int64(time.Minute / time.Microsecond)},
		lateLog:     eventLimiter{every: int64(time.Minute / time.Microsecond)},
	}
	// Host panes come in smaller chunks: a chunk is a fixed overhead of
	// any engine that tracks a host, and hosts are far fewer than pairs.
	e.hpanes.setChunk(12)
	e.cfg.LocalNetworks = slices.Clone(cfg.LocalNetworks)
	e.local = ingest.NewLocalNetworks(cfg.LocalNetworks)
	s := &cfg.Signals
	e.privPorts = newPortSet(s.PrivilegedAccess.Ports)
	names := map[string]int{}
	for i, p := range e.privPorts.ports {
		n := serviceName(p)
		if _, ok := names[n]; !ok {
			names[n] = len(names)
		}
		e.privService[i] = 1 << uint(names[n])
	}
	e.stagingPorts = newPortSet(s.DataStaging.Ports)
	e.addrs = newAddrTable(maxAddrs)

	// Shapes, specs and classes.
	classOf := func(classes *[]specClass, hop int64, spec int) int {
		c := slices.IndexFunc(*classes, func(x specClass) bool { return x.hop == hop })
		if c < 0 {
			*classes = append(*classes, specClass{hop: hop})
			c = len(*classes) - 1
		}
		(*classes)[c].specs |= 1 << uint(spec)
		return c
	}
	addHost := func(on bool, typ SignalType, w Window) {
		if !on {
			return
		}
		size, hop := w.Size.micros(), w.Hop.micros()
		if !slices.ContainsFunc(e.hostShapes, func(h hostShape) bool { return h.size == size }) {
			e.hostShapes = append(e.hostShapes, hostShape{size: size, panes: size / e.g.hostPane, name: time.Duration(w.Size).String()})
		}
		e.hostSpecs = append(e.hostSpecs, hostSpec{typ: typ, size: size, hop: hop})
		e.maxSpecSize = max(e.maxSpecSize, size)
	}
	addHost(s.PortScan.Enabled, PortScan, s.PortScan.Window)
	addHost(s.ConnectionSpike.Enabled, ConnectionSpike, s.ConnectionSpike.Window)
	addHost(s.PrivilegedAccess.Enabled, PrivilegedAccess, s.PrivilegedAccess.Window)
	addHost(s.HostSweep.Enabled, HostSweep, s.HostSweep.Window)
	addHost(s.FailedConnections.Enabled, FailedConnections, s.FailedConnections.Window)
	addHost(s.DataStaging.Enabled, DataStaging, s.DataStaging.Window)
	addHost(s.OutboundSpike.Enabled, OutboundSpike, s.OutboundSpike.Window)
	addHost(s.DestinationDiversity.Enabled, DestinationDiversity, s.DestinationDiversity.Window)
	// Shapes ascending by size, so that rows come out in that order.
	slices.SortFunc(e.hostShapes, func(a, b hostShape) int { return cmp.Compare(a.size, b.size) })
	for i := range e.hostSpecs {
		sp := &e.hostSpecs[i]
		sp.shape = slices.IndexFunc(e.hostShapes, func(h hostShape) bool { return h.size == sp.size })
		sp.class = classOf(&e.hostClasses, sp.hop, i)
	}

	addPair := func(on bool, typ SignalType, w Window) {
		if !on {
			return
		}
		size, hop := w.Size.micros(), w.Hop.micros()
		k := slices.IndexFunc(e.pairShapes, func(p pairShape) bool { return p.size == size })
		if k < 0 {
			e.pairShapes = append(e.pairShapes, pairShape{size: size, panes: size / e.g.pairPane, name: time.Duration(w.Size).String()})
			k = len(e.pairShapes) - 1
		}
		e.pairSpecs = append(e.pairSpecs, pairSpec{typ: typ, shape: k, size: size, hop: hop})
		e.pairSpecs[len(e.pairSpecs)-1].class = classOf(&e.pairClasses, hop, len(e.pairSpecs)-1)
		e.maxSpecSize = max(e.maxSpecSize, size)
	}
	addPair(s.PeriodicBeacon.Enabled, PeriodicBeacon, s.PeriodicBeacon.Window)
	addPair(s.PersistentDestination.Enabled, PersistentDestination, s.PersistentDestination.Window)
	hotMin := cfg.Output.PairRowMinConnections
	if s.PeriodicBeacon.Enabled {
		hotMin = min(hotMin, s.PeriodicBeacon.MinConnections)
	}
	if s.PersistentDestination.Enabled {
		hotMin = min(hotMin, s.PersistentDestination.MinConnections)
	}
	if s.CommandExchange.Enabled {
		e.sessionSpecs = 1 << uint(len(e.pairSpecs))
		e.pairSpecs = append(e.pairSpecs, pairSpec{typ: CommandExchange, shape: len(e.pairShapes), class: -1})
		hotMin = min(hotMin, s.CommandExchange.MinExchanges)
	}
	e.evalMin = uint32(max(hotMin, 1))
	e.queueMin = e.evalMin
	for i := range e.hostShapes {
		e.hostShapes[i].nameB = []byte(e.hostShapes[i].name)
	}
	for i := range e.pairShapes {
		e.pairShapes[i].nameB = []byte(e.pairShapes[i].name)
	}
	e.sessionName = []byte(SessionWindowName)
	e.hostClassLists = make([][]hostRef, len(e.hostClasses))
	e.hostRowLists = make([][]hostRef, len(e.hostShapes))
	e.pairClassLists = make([][]hotRef, len(e.pairClasses))
	e.pairRowLists = make([][]hotRef, len(e.pairShapes))

	// Pane geometry.
	minPaneUS := int64(math.MaxInt64)
	if p := e.g.hostPane; p > 0 {
		e.hostBase = floorDiv(timeBase, p)
		e.hostKeepPanes = e.g.hostKeep / p
		late := (e.lateness + p - 1) / p
		// Set bits lie in a ring of panes from the last cleaning up: a
		// cleaning at a tick leaves the keep panes of the windows ending
		// there, and events land at most late panes past the tick, so
		// keep + late panes never alias (see cleanHost).
		words := 1
		for int64(64*words) < e.hostKeepPanes+late {
			words *= 2
		}
		e.geo = setGeom{words: words, ring: uint32(64 * words), stride: 1 + words, cap: uint32(cfg.Limits.MaxSetElements)}
		minPaneUS = min(minPaneUS, p)
		for range e.hostShapes {
			e.shapeMasks = append(e.shapeMasks, make([]uint64, words))
			e.portHosts = append(e.portHosts, make([]uint32, 1<<16))
			e.portTouched = append(e.portTouched, nil)
		}
		e.scratchMask = make([]uint64, words)
		e.scratchAggs = make([]hostAgg, len(e.hostShapes))
		// Per-pane host lists live from the pane's first event (up to
		// late + 1 panes ahead of the tick) until it leaves every window
		// (keep + 1 panes behind).
		e.paneHosts = make([]paneList[hostRef], ringSize(e.hostKeepPanes+late+4))
		for i := range e.paneHosts {
			e.paneHosts[i].idx = math.MinInt64
		}
	}
	if p := e.g.pairPane; p > 0 {
		e.pairBase = floorDiv(timeBase, p)
		e.pairKeepPanes = (e.g.pairKeep + p - 1) / p
		late := (e.lateness + p - 1) / p
		e.plog = make([]pairLogSlot, ringSize(e.pairKeepPanes+late+4))
		for i := range e.plog {
			e.plog[i].idx = math.MinInt64
		}
		gap := cfg.Signals.CommandExchange.Session.Gap.micros()
		e.sessionChecks = make([]paneList[hotRef], ringSize((gap+p-1)/p+4))
		for i := range e.sessionChecks {
			e.sessionChecks[i].idx = math.MinInt64
		}
		minPaneUS = min(minPaneUS, p)
	}
	// Event times whose pane index fits an int32, with room for the
	// offsets the engine adds (lateness, windows).
	span := (int64(math.MaxInt32) - 1<<24) * minPaneUS
	e.minT, e.maxT = timeBase-span, timeBase+span
	return e, nil
}

// ringSize is the smallest power of two of at least n (and 4).
func ringSize(n int64) int {
	r := 4
	for int64(r) < n {
		r *= 2
	}
	return r
}

// SetBaselines installs per-host baselines for the spike signals; nil
// means priors only. Not goroutine-safe: call it between Process calls.
func (e *Engine) SetBaselines(b Baselines) { e.baselines = b }

// SkipRecords tells the engine that no consumer reads WindowOutput.Hosts
// and Pairs: they are nil from now on. Rows are still evaluated and
// counted, signals are unchanged, and outputs are emitted at the same
// ticks as before (a tick with rows but no signal is still emitted, so
// whoever advances on outputs sees the same ends). `ndr replay
// --no-store` uses it: building the records was a tenth of its CPU.
// Not goroutine-safe: call it between Process calls.
func (e *Engine) SkipRecords() { e.skipRecords = true }

func (e *Engine) hostIdx(t int64) int64       { return floorDiv(t, e.g.hostPane) - e.hostBase }
func (e *Engine) hostStart(idx int32) int64   { return (int64(idx) + e.hostBase) * e.g.hostPane }
func (e *Engine) pairIdx(t int64) int32       { return int32(floorDiv(t, e.g.pairPane) - e.pairBase) }
func (e *Engine) pairIdxCeil(t int64) int32   { return int32(-floorDiv(-t, e.g.pairPane) - e.pairBase) }
func (e *Engine) pairStart(idx int32) int64   { return (int64(idx) + e.pairBase) * e.g.pairPane }
func (e *Engine) paneEnd(t, pane int64) int64 { return (floorDiv(t, pane) + 1) * pane }

// connView is what the engine needs of one connection.
type connView struct {
	t           int64
	dst         uint32
	dstOK       bool
	dstInternal bool
	port        uint16
	out, in     uint64
	state       ingest.ConnState
	failed      bool
}

// Process feeds connections, in any order, to the windows. Windows that
// close as the watermark advances are emitted before Process returns. An
// emitter error stops Process at the connection whose arrival closed the
// window; the connections after it are not processed.
//
// Late connections (their pane already closed) are counted in Stats and
// otherwise ignored here: storing them is the caller's business.
func (e *Engine) Process(ctx context.Context, conns []ingest.Conn) error {
	for i := range conns {
		c := &conns[i]
		e.stats.Events++
		t := c.TS
		if e.endTime {
			t += int64(c.Duration / time.Microsecond)
		}
		if t < e.minT || t > e.maxT || !c.OrigH.IsValid() || !c.RespH.IsValid() {
			e.stats.Invalid++
			continue
		}
		if t > e.maxTS {
			e.maxTS = t
			if w := t - e.lateness; w > e.wm {
				e.wm = w
				if w >= e.nextTick {
					if err := e.advance(ctx); err != nil {
						return err
					}
				}
			}
		}
		e.add(c, t)
	}
	return nil
}

// internal decides whether a is internal: the sensor's word when it gave
// one (Zeek local_orig/local_resp), else the configured networks.
func (e *Engine) internal(a netip.Addr, local ingest.Tristate) bool {
	return e.local.Internal(a, local)
}

func (e *Engine) add(c *ingest.Conn, t int64) {
	if !e.internal(c.OrigH, c.LocalOrig) {
		e.stats.External++
		return
	}
	lateHost := e.g.hostPane == 0 || e.paneEnd(t, e.g.hostPane) <= e.wm
	latePair := e.g.pairPane == 0 || e.paneEnd(t, e.g.pairPane) <= e.wm
	if lateHost && e.g.hostPane > 0 {
		e.stats.LateHost++
	}
	if latePair && e.g.pairPane > 0 {
		e.stats.LatePair++
	}
	if lateHost && latePair {
		if n, ok := e.lateLog.allow(e.maxTS); ok {
			e.log.Debug("late event ignored by windows", "event_time", time.UnixMicro(t).UTC(),
				"watermark", time.UnixMicro(e.wm).UTC(), "late_since_last_log", n)
		}
		return
	}
	respIn := e.internal(c.RespH, c.LocalResp)
	v := connView{
		t: t, dstInternal: respIn, port: c.RespP, out: c.OrigBytes, in: c.RespBytes,
		state: c.ConnState, failed: c.ConnState.Failed(),
	}
	src, ok := e.addrs.get(keyOf(c.OrigH))
	if !ok {
		e.stats.AddressesRefused++
		return
	}
	// Hold both ids while this connection is applied: evictions it
	// triggers must not recycle them.
	e.addrs.ref(src)
	v.dst, v.dstOK = e.addrs.get(keyOf(c.RespH))
	if v.dstOK {
		e.addrs.ref(v.dst)
	} else {
		e.stats.AddressesRefused++
	}
	if !lateHost {
		hid := e.addrs.meta[src].host
		if hid < 0 {
			hid = e.newHost(src, t)
		}
		if hid >= 0 {
			e.addHost(hid, &v)
		}
	}
	if !latePair && v.dstOK && (!respIn || e.cfg.Limits.TrackInternalPairs) {
		e.addPair(src, &v)
	}
	if v.dstOK {
		e.addrs.unref(v.dst)
	}
	e.addrs.unref(src)
}

// advance closes, in order, every tick the watermark has passed.
func (e *Engine) advance(ctx context.Context) error {
	for e.nextTick <= e.wm {
		if e.nHosts == 0 && e.nPairs == 0 {
			// Nothing can close: jump to the watermark.
			e.lastTick = floorDiv(e.wm, e.g.tick) * e.g.tick
			e.nextTick = e.lastTick + e.g.tick
			return nil
		}
		T := e.nextTick
		e.nextTick += e.g.tick
		if err := e.tick(ctx, T); err != nil {
			return err
		}
	}
	return nil
}

// tick closes everything that ends at T and emits it.
func (e *Engine) tick(ctx context.Context, T int64) error {
	e.lastTick = T
	e.closed = e.closed[:0]
	if e.g.hostPane > 0 && floorMod(T, e.g.hostPane) == 0 {
		e.hostTick(T)
	}
	if e.g.pairPane > 0 && floorMod(T, e.g.pairPane) == 0 {
		e.pairTick(T)
	}
	e.sweepSuppression(T)
	if len(e.hostRows) == 0 && len(e.pairRows) == 0 && len(e.signals) == 0 {
		return nil
	}
	return e.flushTick(ctx, T)
}

func (e *Engine) flushTick(ctx context.Context, T int64) error {
	out := &WindowOutput{End: T, Watermark: e.wm, Windows: slices.Clone(e.closed)}
	if !e.skipRecords {
		e.buildRecords(out)
	}
	slices.SortFunc(e.signals, compareSignals)
	out.Signals = e.signals
	e.stats.Windows++
	e.stats.HostRows += uint64(len(e.hostRows))
	e.stats.PairRows += uint64(len(e.pairRows))
	e.stats.Signals += uint64(len(e.signals))
	e.hostRows = e.hostRows[:0]
	e.pairRows = e.pairRows[:0]
	// The consumer owns the signals: start a fresh slice.
	e.lastSignals = len(e.signals)
	e.signals = make([]Signal, 0, e.lastSignals)
	err := e.emit.Emit(ctx, out)
	if out.Hosts != nil {
		out.Hosts.Release()
		out.Pairs.Release()
	}
	if err != nil {
		return fmt.Errorf("features: emit window ending %s: %w", time.UnixMicro(T).UTC().Format(time.RFC3339), err)
	}
	return nil
}

// buildRecords sorts the tick's rows and builds out's Arrow records.
func (e *Engine) buildRecords(out *WindowOutput) {
	// Rows are sorted so that the output does not depend on arrival
	// order or on internal ids: keys are copied next to the row index,
	// so the sort touches no row.
	e.hostOrder = e.hostOrder[:0]
	for i := range e.hostRows {
		r := &e.hostRows[i]
		hi, lo := r.host.halves()
		e.hostOrder = append(e.hostOrder, rowKey{k0: uint64(r.shape), k1: hi, k2: lo, idx: int32(i)})
	}
	slices.SortFunc(e.hostOrder, compareRowKeys)
	e.pairOrder = e.pairOrder[:0]
	for i := range e.pairRows {
		r := &e.pairRows[i]
		e.pairOrder = append(e.pairOrder, rowKey{
			k0: uint64(r.shape), k1: r.srcHi, k2: r.srcLo, k3: r.dstHi, k4: r.dstLo,
			k5: uint64(r.port), k6: uint64(r.start) ^ 1<<63, idx: int32(i),
		})
	}
	slices.SortFunc(e.pairOrder, compareRowKeys)

	if e.hostRB == nil {
		e.hostRB = array.NewRecordBuilder(e.alloc, HostSchema())
		e.pairRB = array.NewRecordBuilder(e.alloc, PairSchema())
	}
	e.appendHostRows(e.hostRB, e.hostRows, e.hostOrder)
	e.appendPairRows(e.pairRB, e.pairRows, e.pairOrder)
	out.Hosts = e.hostRB.NewRecord()
	out.Pairs = e.pairRB.NewRecord()
}

// rowKey is a row's sort key, compared field by field, and its index.
type rowKey struct {
	k0, k1, k2, k3, k4, k5, k6 uint64
	idx                        int32
}

func compareRowKeys(a, b rowKey) int {
	switch {
	case a.k0 != b.k0:
		return cmp.Compare(a.k0, b.k0)
	case a.k1 != b.k1:
		return cmp.Compare(a.k1, b.k1)
	case a.k2 != b.k2:
		return cmp.Compare(a.k2, b.k2)
	case a.k3 != b.k3:
		return cmp.Compare(a.k3, b.k3)
	case a.k4 != b.k4:
		return cmp.Compare(a.k4, b.k4)
	case a.k5 != b.k5:
		return cmp.Compare(a.k5, b.k5)
	}
	return cmp.Compare(a.k6, b.k6)
}

func compareSignals(a, b Signal) int {
	if c := cmp.Compare(signalOrder(a.Type), signalOrder(b.Type)); c != 0 {
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
	return cmp.Compare(a.WindowStart, b.WindowStart)
}

func signalOrder(t SignalType) int {
	switch t {
	case PortScan:
		return 0
	case ConnectionSpike:
		return 1
	case PrivilegedAccess:
		return 2
	case HostSweep:
		return 3
	case FailedConnections:
		return 4
	case PeriodicBeacon:
		return 5
	case PersistentDestination:
		return 6
	case CommandExchange:
		return 7
	case DataStaging:
		return 8
	case OutboundSpike:
		return 9
	case DestinationDiversity:
		return 10
	}
	return 11
}

// Flush closes every open window, in event-time order, as if the
// watermark went to +infinity, emits them and releases all state,
// including the Arrow builders (so a checked allocator is back to zero).
// Events given to Process after Flush are late.
func (e *Engine) Flush(ctx context.Context) error {
	if e.maxTS == math.MinInt64 {
		e.releaseBuilders()
		return nil
	}
	// Past the end of every retained pane and of the idle sweep.
	horizon := max(e.g.hostKeep, e.g.pairKeep) + 8*max(e.g.hostPane, e.g.pairPane) + e.g.tick
	target := e.maxTS + horizon
	if target > e.wm {
		e.wm = target
	}
	if err := e.advance(ctx); err != nil {
		return err
	}
	if e.nHosts != 0 || e.nPairs != 0 {
		// Unreachable unless eviction is broken; say so rather than hang.
		return fmt.Errorf("features: flush left %d hosts and %d pairs", e.nHosts, e.nPairs)
	}
	clear(e.supp)
	e.releaseBuilders()
	return nil
}

func (e *Engine) releaseBuilders() {
	if e.hostRB != nil {
		e.hostRB.Release()
		e.pairRB.Release()
		e.hostRB, e.pairRB = nil, nil
	}
}

// Stats returns the counters and the current state size.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Hosts, s.Pairs, s.Addresses = e.nHosts, e.nPairs, e.addrs.len()
	s.HostPanes, s.PairPanes = e.nHostPanes, e.nPairPanes
	s.Watermark = e.wm
	return s
}

// eventLimiter rate-limits a log line by event time (no wall clock in
// features): at most one line per `every` µs of event time, saying how
// many were suppressed.
type eventLimiter struct {
	every      int64
	next       int64
	suppressed int
	primed     bool
}

// allow reports whether to log now, and how many calls it refused since
// the last line.
func (l *eventLimiter) allow(now int64) (int, bool) {
	if l.primed && now < l.next {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.primed, l.next, l.suppressed = true, now+l.every, 0
	return n, true
}

// overflow logs a state-cap event, rate limited. Callers check allow
// first so that a suppressed line costs no allocation.
func (e *Engine) overflow(n int, msg string, args ...any) {
	e.log.Warn(msg, append(args, "suppressed_since_last_log", n)...)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m != 0 && ((m < 0) != (b < 0)) {
		m += b
	}
	return m
}

// halves splits an address into two big-endian integers, whose order is
// the address order.
func (k addrKey) halves() (hi, lo uint64) {
	return binary.BigEndian.Uint64(k[:8]), binary.BigEndian.Uint64(k[8:])
}

func compareKeys(a, b addrKey) int {
	if c := cmp.Compare(binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])); c != 0 {
		return c
	}
	return cmp.Compare(binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:]))
}

func cmpU64(a, b uint64) int { return cmp.Compare(a, b) }

func popcount(x uint64) int { return bits.OnesCount64(x) }

// nthSmallest returns the k-th smallest (0-based) of v, reordering v.
func nthSmallest(v []int64, k int) int64 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		p := v[lo+(hi-lo)/2]
		i, j := lo, hi
		for i <= j {
			for v[i] < p {
				i++
			}
			for v[j] > p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k]
		}
	}
	return v[k]
}
