package beacon

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
)

// SignalType is the signal the Tracker emits: one scored internal ->
// external pair. Its Value is the score, Threshold Config.EmitAbove, and
// its Metrics the components (see Tracker.Advance).
const SignalType features.SignalType = "BEACON_SCORE"

// Errors of configuration.
var (
	// ErrConfig: a Config field has a bad value.
	ErrConfig = errors.New("beacon: invalid config")
)

// Config configures a Tracker. Start from DefaultConfig.
type Config struct {
	// LocalNetworks decide whether an address is internal when the sensor
	// did not say (Zeek's local_orig/local_resp win), as in Layer 1.
	LocalNetworks []netip.Prefix
	// Horizon is how far back a pair's history reaches (RITA: 24 h).
	// Pairs idle for longer are evicted.
	Horizon time.Duration
	// Every is the scoring cadence in event time: pairs with new
	// connections are scored at every multiple of Every since the epoch.
	Every time.Duration
	// MaxHistory caps the connections a pair keeps (time and size); older
	// ones are dropped in halves, and the pair's hourly activity bitmap
	// still covers the whole horizon.
	MaxHistory int
	// MaxPairs caps tracked pairs; new pairs beyond it are refused and
	// counted until idle ones are evicted.
	MaxPairs int
	// EmitAbove: a pair scoring at least this emits a BEACON_SCORE signal
	// (again after an hour, or sooner when its score rose by 0.05).
	EmitAbove float64
	// Params are the score's constants.
	Params Params
}

// DefaultConfig is RITA's 24-hour horizon scored every hour (as RITA
// re-aggregates; the permutation test is most of the cost, and scoring
// every 10 minutes cost six times as much for no recall on the
// benchmark), 256
// connections of history per pair and signals from 0.75 (the benchmark
// separates C2 at 0.85 and above from benign pairs below 0.72).
func DefaultConfig() Config {
	return Config{
		LocalNetworks: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("172.16.0.0/12"),
			netip.MustParsePrefix("192.168.0.0/16"),
			netip.MustParsePrefix("fc00::/7"),
		},
		Horizon:    24 * time.Hour,
		Every:      time.Hour,
		MaxHistory: 256,
		MaxPairs:   2_000_000,
		EmitAbove:  0.75,
		Params:     DefaultParams(),
	}
}

// Validate reports every bad field, joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...)))
	}
	// The hourly activity bitmap is 32 bits wide: a longer horizon would
	// make persistence and prevalence blind to its older hours.
	if c.Horizon < time.Hour || c.Horizon > 32*time.Hour || c.Horizon%time.Hour != 0 {
		bad("horizon %s: must be whole hours within [1h, 32h]", c.Horizon)
	}
	if c.Every < time.Minute || c.Every > c.Horizon || c.Every%time.Second != 0 {
		bad("every %s: must be whole seconds within [1m, horizon]", c.Every)
	}
	if c.MaxHistory < 8 || c.MaxHistory > 4096 {
		bad("max_history %d: must be within [8, 4096]", c.MaxHistory)
	}
	if c.MaxPairs < 1 || c.MaxPairs > 1<<30 {
		bad("max_pairs %d: must be within [1, 2^30]", c.MaxPairs)
	}
	if !(c.EmitAbove > 0 && c.EmitAbove <= 1) {
		bad("emit_above %v: must be within (0, 1]", c.EmitAbove)
	}
	p := c.Params
	if p.MinTimestamps < 4 {
		bad("params.min_timestamps %d: must be at least 4", p.MinTimestamps)
	}
	if p.Permutations < 1 || p.Permutations > 1000 {
		bad("params.permutations %d: must be within [1, 1000]", p.Permutations)
	}
	if p.PopularMin < 3 || !(p.PopularShare >= 0 && p.PopularShare <= 1) {
		bad("params: popular_min must be at least 3 and popular_share within [0, 1]")
	}
	if !(p.FullPersistenceHours >= 1) {
		bad("params.full_persistence_hours %v: must be at least 1", p.FullPersistenceHours)
	}
	for _, n := range c.LocalNetworks {
		if !n.IsValid() {
			bad("local network %v is not a valid prefix", n)
		}
	}
	return errors.Join(errs...)
}

// Options are a Tracker's collaborators.
type Options struct {
	// Logger receives warnings (pairs refused at the cap); nil discards.
	Logger *slog.Logger
	// Prevalence, when set, adds historical destination prevalence (the
	// baseline snapshot's): a destination's source count is the larger of
	// the Tracker's own and this.
	Prevalence Prevalence
	// OnScore, when set, sees every scored pair (benchmarks and the
	// quality report use it for ROC curves); at is the tick, µs.
	OnScore func(src, dst netip.Addr, port uint16, at int64, r *Result)
}

// Prevalence reports how many internal hosts contact a destination.
type Prevalence interface {
	// Sources returns the number of distinct internal sources of dst, and
	// whether dst is known at all.
	Sources(dst netip.Addr) (int, bool)
}

// Stats count what a Tracker did.
type Stats struct {
	Conns     uint64 // connections given to Add
	Tracked   uint64 // internal -> external connections recorded
	Refused   uint64 // connections of new pairs refused at MaxPairs
	Evicted   uint64 // pairs dropped after the horizon without connections
	Scored    uint64 // pair scorings
	Signals   uint64 // BEACON_SCORE signals emitted
	Pairs     int    // pairs tracked now
	Hosts     int    // internal sources with a tracked pair
	Dsts      int    // destinations with a tracked pair
	Bytes     int    // estimated state memory: slab, index, arena, maps
	History   int    // bytes of history in use
	Watermark int64  // event time scored up to, µs
}

// pair is one internal -> external pair's state: 40 bytes, no pointers.
// Its history is entry 0 (first, size0) and, in the arena, the later
// entries as (zigzag varint of t - the newest time before t was added,
// quantised size): arrival order, sorted when decoded. Times are whole
// seconds since the epoch, as RITA's.
type pair struct {
	key      uint64 // src << 32 | dst for IPv4 pairs; v6 ids otherwise
	first    uint32 // time of entry 0
	last     uint32 // newest connection time
	hours    uint32 // bit i: a connection in clock hour last/3600 - i
	blk      uint32 // arena handle of entries 1.., 0 none
	blen     uint16 // bytes used in blk
	n        uint16 // entries (with entry 0); 0 marks a free slot
	port     uint16 // destination port of the newest connection
	hourMin  uint16 // earliest second within hour last/3600 with a connection
	emitTick uint16 // time of the last signal in 10-minute units, mod 2^16
	cls      uint8  // arena class of blk
	flags    uint8
	size0    uint8 // quantised size of entry 0
	emitted  uint8 // last signal's score x 255
}

const (
	flagV6    = 1 << iota // the key holds interned IPv6 ids
	flagDirty             // connections since the last scoring
	flagEmitted
)

// Tracker keeps a compact, bounded history per internal -> external pair
// and scores pairs on an event-time schedule, emitting BEACON_SCORE
// signals. It is not safe for concurrent use: one goroutine owns it (the
// Analyzer's).
//
// Memory: a pair costs 40 bytes in the slab, about 5 in the index, and
// its history beyond the first connection at about 3 bytes a connection
// (up to MaxHistory), plus per destination and per source host a map
// entry for prevalence.
type Tracker struct {
	cfg      Config
	opts     Options
	log      *slog.Logger
	local    ingest.LocalNetworks
	every    int64 // seconds
	horizon  int64 // seconds
	hzHours  int
	slab     []pair
	freeSlot []uint32
	idx      *index
	idx6     map[[2]netip.Addr]uint32
	v6ids    map[netip.Addr]uint32
	v6addrs  []netip.Addr
	ar       arena
	dsts     map[uint64]uint32 // destination code -> pairs (distinct sources)
	srcs     map[uint64]uint32 // source code -> pairs
	scorer   *Scorer
	next     int64 // next tick, seconds; 0 before the first connection
	maxTS    int64 // newest connection time, seconds
	dirty    bool  // connections since the last tick
	stats    Stats
	lastWarn int64

	// scratch
	times []int64
	all   []entry
	sizes []float64
	sigs  []features.Signal
}

type entry struct {
	t int64
	q uint8
}

// NewTracker validates cfg and returns an empty Tracker.
func NewTracker(cfg Config, opts Options) (*Tracker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tracker{
		cfg: cfg, opts: opts, log: opts.Logger,
		every: int64(cfg.Every / time.Second), horizon: int64(cfg.Horizon / time.Second),
		hzHours: int(cfg.Horizon / time.Hour),
		idx6:    map[[2]netip.Addr]uint32{}, v6ids: map[netip.Addr]uint32{},
		dsts: map[uint64]uint32{}, srcs: map[uint64]uint32{},
		scorer: NewScorer(cfg.Params),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	seed := maphash.Comparable(maphash.MakeSeed(), uint64(0))
	t.idx = newIndex(seed)
	t.local = ingest.NewLocalNetworks(cfg.LocalNetworks)
	return t, nil
}

// internal is Layer 1's decision: the sensor's word, else the networks.
func (t *Tracker) internal(a netip.Addr, local ingest.Tristate) bool {
	return t.local.Internal(a, local)
}

func (t *Tracker) keyOf(pos uint32) uint64 { return t.slab[pos].key }

// Add records connections: internal sources to external destinations
// only. It only updates state; Advance scores. conns stays the caller's.
func (t *Tracker) Add(conns []ingest.Conn) {
	for i := range conns {
		c := &conns[i]
		t.stats.Conns++
		if c.TS < 0 || c.TS/1e6 >= math.MaxUint32 || !c.OrigH.IsValid() || !c.RespH.IsValid() {
			continue
		}
		if !t.internal(c.OrigH, c.LocalOrig) || t.internal(c.RespH, c.LocalResp) {
			continue
		}
		t.add(c)
	}
}

func (t *Tracker) add(c *ingest.Conn) {
	src, dst := c.OrigH.Unmap(), c.RespH.Unmap()
	sec := uint32(c.TS / 1e6)
	size := c.OrigIPBytes
	if size == 0 {
		size = c.OrigBytes
	}
	q := quantize(size)
	pos := -1
	var key uint64
	v6 := !src.Is4() || !dst.Is4()
	if !v6 {
		key = uint64(be32(src))<<32 | uint64(be32(dst))
		pos = t.idx.find(key, t.keyOf)
	} else if p, ok := t.idx6[[2]netip.Addr{src, dst}]; ok {
		pos = int(p)
	}
	if pos < 0 {
		if len(t.slab)-len(t.freeSlot) >= t.cfg.MaxPairs {
			t.stats.Refused++
			if ts := int64(sec); ts-t.lastWarn >= 3600 {
				t.lastWarn = ts
				t.log.Warn("beacon: pair state at its cap, new pairs refused until idle ones expire", "cap", t.cfg.MaxPairs)
			}
			return
		}
		pos = t.newPair(src, dst, v6, key)
		p := &t.slab[pos]
		p.first, p.last, p.size0, p.n, p.hours = sec, sec, q, 1, 1
		p.hourMin = uint16(sec % 3600)
	} else {
		t.appendEntry(&t.slab[pos], sec, q)
	}
	p := &t.slab[pos]
	p.port = c.RespP
	p.flags |= flagDirty
	t.track(sec)
}

func (t *Tracker) track(sec uint32) {
	t.stats.Tracked++
	t.dirty = true
	if int64(sec) > t.maxTS {
		t.maxTS = int64(sec)
	}
	if t.next == 0 {
		t.next = (int64(sec)/t.every + 1) * t.every
	}
}

func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// code identifies an address in the prevalence maps.
func (t *Tracker) code(a netip.Addr) uint64 {
	if a.Is4() {
		return uint64(be32(a))
	}
	return 1<<32 | uint64(t.v6id(a))
}

func (t *Tracker) v6id(a netip.Addr) uint32 {
	if id, ok := t.v6ids[a]; ok {
		return id
	}
	id := uint32(len(t.v6addrs))
	t.v6ids[a] = id
	t.v6addrs = append(t.v6addrs, a)
	return id
}

func (t *Tracker) newPair(src, dst netip.Addr, v6 bool, key uint64) int {
	var pos uint32
	if n := len(t.freeSlot); n > 0 {
		pos = t.freeSlot[n-1]
		t.freeSlot = t.freeSlot[:n-1]
	} else {
		pos = uint32(len(t.slab))
		t.slab = append(t.slab, pair{})
	}
	p := &t.slab[pos]
	*p = pair{}
	if v6 {
		p.key = uint64(t.v6id(src))<<32 | uint64(t.v6id(dst))
		p.flags = flagV6
		t.idx6[[2]netip.Addr{src, dst}] = pos
	} else {
		p.key = key
		t.idx.insert(key, pos, t.keyOf)
	}
	return int(pos)
}

// addrs returns the pair's source and destination.
func (t *Tracker) addrs(p *pair) (netip.Addr, netip.Addr) {
	if p.flags&flagV6 != 0 {
		return t.v6addrs[p.key>>32], t.v6addrs[uint32(p.key)]
	}
	var s, d [4]byte
	binary.BigEndian.PutUint32(s[:], uint32(p.key>>32))
	binary.BigEndian.PutUint32(d[:], uint32(p.key))
	return netip.AddrFrom4(s), netip.AddrFrom4(d)
}

func (t *Tracker) dropPair(pos uint32) {
	p := &t.slab[pos]
	if p.flags&flagV6 != 0 {
		src, dst := t.addrs(p)
		delete(t.idx6, [2]netip.Addr{src, dst})
	} else {
		t.idx.remove(p.key, t.keyOf)
	}
	t.ar.release(p.blk, p.cls)
	*p = pair{}
	t.freeSlot = append(t.freeSlot, pos)
	t.stats.Evicted++
}

// appendEntry adds a connection at sec to p's history and hour bitmap.
func (t *Tracker) appendEntry(p *pair, sec uint32, q uint8) {
	if int64(sec) > int64(p.last)+t.horizon {
		// Idle for longer than the horizon: start afresh, as if the pair
		// had been evicted (it would have been, had a tick run between).
		t.ar.release(p.blk, p.cls)
		*p = pair{key: p.key, flags: p.flags & flagV6, first: sec, last: sec, size0: q, n: 1, hours: 1, hourMin: uint16(sec % 3600)}
		return
	}
	hNew, hLast := sec/3600, p.last/3600
	switch {
	case hNew > hLast:
		if d := hNew - hLast; d < 32 {
			p.hours = p.hours<<d | 1
		} else {
			p.hours = 1
		}
		p.hourMin = uint16(sec % 3600)
	case hNew == hLast:
		p.hourMin = min(p.hourMin, uint16(sec%3600))
	default:
		if d := hLast - hNew; d < 32 {
			p.hours |= 1 << d
		}
	}
	var buf [binary.MaxVarintLen64 + 1]byte
	k := binary.PutUvarint(buf[:], zigzag(int64(sec)-int64(p.last)))
	buf[k] = q
	k++
	if int(p.n) >= hardCap*t.cfg.MaxHistory {
		// More than hardCap x MaxHistory connections between two ticks
		// (over a connection a second at the defaults): drop the oldest
		// half now. Only such pairs depend on batching.
		t.trim(p, -1, 0, int(p.n)/2)
	}
	// trim re-encodes into the smallest block that holds what is left, so
	// room for the new entry is checked after it; when even the largest
	// class cannot hold the history, halve it until it fits.
	for int(p.blen)+k > t.blockCap(p) && !t.growBlock(p, int(p.blen)+k) {
		t.trim(p, -1, 0, int(p.n)/2)
	}
	copy(t.ar.bytes(p.blk, p.cls)[p.blen:], buf[:k])
	p.blen += uint16(k)
	p.n++
	if sec > p.last {
		p.last = sec
	}
}

// hardCap bounds a pair's history between ticks, in MaxHistory units; the
// arena's largest class must hold it.
const hardCap = 4

func (t *Tracker) blockCap(p *pair) int {
	if p.blk == 0 {
		return 0
	}
	return classSize(p.cls)
}

// growBlock moves p's history to a block of at least need bytes; false
// when no class is that large.
func (t *Tracker) growBlock(p *pair, need int) bool {
	// Grow by half again so that appends amortise.
	c, ok := classFor(max(need, need+need/2))
	if !ok {
		if c, ok = classFor(need); !ok {
			return false
		}
	}
	h := t.ar.alloc(c)
	if p.blk != 0 {
		copy(t.ar.bytes(h, c), t.ar.bytes(p.blk, p.cls)[:p.blen])
		t.ar.release(p.blk, p.cls)
	}
	p.blk, p.cls = h, c
	return true
}

// decode appends p's entries to dst in arrival order.
func (t *Tracker) decode(p *pair, dst []entry) []entry {
	dst = append(dst, entry{int64(p.first), p.size0})
	if p.blk == 0 {
		return dst
	}
	b := t.ar.bytes(p.blk, p.cls)[:p.blen]
	ref := int64(p.first)
	for len(b) > 0 {
		u, k := binary.Uvarint(b)
		ts := ref + unzigzag(u)
		dst = append(dst, entry{ts, b[k]})
		b = b[k+1:]
		ref = max(ref, ts)
	}
	return dst
}

// trim drops p's entries before lo and, of those before T, all but the
// newest keep; entries at or after T stay. It re-encodes what is left in
// time order and returns false when nothing is left. Both bounds depend
// only on connections before T, which are complete when tick T runs, so
// the result does not depend on batching or arrival order.
func (t *Tracker) trim(p *pair, lo, T int64, keep int) bool {
	all := t.decode(p, t.all[:0])
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.t, b.t) })
	t.all = all
	i, _ := slices.BinarySearchFunc(all, lo, func(e entry, v int64) int { return cmp.Compare(e.t, v) })
	j := len(all)
	if T > 0 {
		j, _ = slices.BinarySearchFunc(all, T, func(e entry, v int64) int { return cmp.Compare(e.t, v) })
	}
	if j-i > keep {
		i = j - keep
	}
	if i == len(all) {
		return false
	}
	if i > 0 {
		t.encode(p, all[i:])
	}
	return true
}

// encode replaces p's history with sorted entries.
func (t *Tracker) encode(p *pair, es []entry) {
	var buf [binary.MaxVarintLen64 + 1]byte
	need := 0
	for i := 1; i < len(es); i++ {
		need += binary.PutUvarint(buf[:], zigzag(es[i].t-es[i-1].t)) + 1
	}
	p.first, p.size0, p.n, p.blen = uint32(es[0].t), es[0].q, uint16(len(es)), 0
	if need == 0 {
		t.ar.release(p.blk, p.cls)
		p.blk, p.cls = 0, 0
		return
	}
	if c, _ := classFor(need); p.blk == 0 || c != p.cls {
		t.ar.release(p.blk, p.cls)
		p.blk, p.cls = t.ar.alloc(c), c
	}
	b := t.ar.bytes(p.blk, p.cls)
	for i := 1; i < len(es); i++ {
		k := binary.PutUvarint(b[p.blen:], zigzag(es[i].t-es[i-1].t))
		b[int(p.blen)+k] = es[i].q
		p.blen += uint16(k + 1)
	}
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// quantize maps a byte count to a byte on a log scale, eight steps an
// octave (9 % apart) up to 4 GiB: enough for MAD/median of sizes.
func quantize(b uint64) uint8 {
	q := math.Round(8 * math.Log2(1+float64(b)))
	return uint8(min(q, 255))
}

func dequantize(q uint8) float64 { return math.Exp2(float64(q)/8) - 1 }

// Advance scores every tick (a multiple of Config.Every) at or before the
// watermark wm (µs): Layer 1's watermark, so that every connection
// before a tick has been added when it is scored. It returns the
// signals, sorted by source and destination; they are the caller's.
func (t *Tracker) Advance(ctx context.Context, wm int64) ([]features.Signal, error) {
	t.sigs = nil
	for t.next != 0 && t.next*1e6 <= wm {
		if err := t.tick(ctx, t.next); err != nil {
			return t.sigs, err
		}
		if !t.dirty {
			// Nothing new: jump over empty ticks.
			t.next = max(t.next+t.every, (wm/1e6/t.every+1)*t.every)
			continue
		}
		t.next += t.every
	}
	return t.sigs, nil
}

// Flush scores what is left at the end of input, at the second after
// the newest connection.
func (t *Tracker) Flush(ctx context.Context) ([]features.Signal, error) {
	t.sigs = nil
	if t.next == 0 || !t.dirty {
		return nil, nil
	}
	err := t.tick(ctx, t.maxTS+1)
	return t.sigs, err
}

// tick scores the pairs with new connections before T (seconds). First
// it evicts pairs idle for the horizon and recounts destination
// prevalence, so that what a tick sees does not depend on how far past T
// the connections already added reach (batching) nor on slab order.
func (t *Tracker) tick(ctx context.Context, T int64) error {
	t.dirty = false
	t.stats.Watermark = T * 1e6
	lo := T - t.horizon
	hT := T / 3600
	clear(t.dsts)
	clear(t.srcs)
	for pos := range t.slab {
		p := &t.slab[pos]
		if p.n == 0 {
			continue
		}
		if int64(p.last) < lo {
			t.dropPair(uint32(pos))
			continue
		}
		// Prevalence: pairs with a connection in the horizon before T. The
		// bitmap tells for the complete clock hours before T's hour, and
		// hourMin for T's own hour; connections at or after T cannot
		// change either (unless already added ones reach a later hour).
		if t.pastHours(p, hT) != 0 || t.inHourBefore(p, T) {
			src, dst := t.addrs(p)
			t.dsts[t.code(dst)]++
			t.srcs[t.code(src)]++
		}
	}
	for pos := range t.slab {
		if pos&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		p := &t.slab[pos]
		if p.n == 0 || p.flags&flagDirty == 0 {
			continue
		}
		if int(p.n) >= t.cfg.Params.MinTimestamps && t.keepHorizon(p, lo, T) {
			t.score(p, T)
		}
		if int64(p.last) < T {
			p.flags &^= flagDirty
		} else {
			t.dirty = true // connections at or after T: score at a later tick
		}
	}
	slices.SortFunc(t.sigs, func(a, b features.Signal) int {
		if c := a.Src.Compare(b.Src); c != 0 {
			return c
		}
		return a.Dst.Compare(b.Dst)
	})
	return nil
}

// keepHorizon drops p's entries before lo and all but MaxHistory of
// those before T; false when none is left.
func (t *Tracker) keepHorizon(p *pair, lo, T int64) bool {
	if int64(p.first) >= lo && int(p.n) <= t.cfg.MaxHistory {
		return true
	}
	return t.trim(p, lo, T, t.cfg.MaxHistory)
}

// inHourBefore reports whether p has a connection in [T's hour, T).
func (t *Tracker) inHourBefore(p *pair, T int64) bool {
	hT, hLast := T/3600, int64(p.last/3600)
	switch {
	case hLast == hT:
		return int64(p.hourMin) < T%3600
	case hLast > hT && hLast-hT < 32:
		// Connections already added reach a later hour: the bitmap says
		// whether T's hour had one, not whether it was before T.
		return p.hours&(1<<(hLast-hT)) != 0
	}
	return false
}

// pastHours returns p's hour bitmap restricted to the horizon's complete
// clock hours before hour hT: bit i stands for hour hT - 1 - i.
func (t *Tracker) pastHours(p *pair, hT int64) uint32 {
	// Bit j of p.hours is hour hLast - j, so hour hT-1-i is bit
	// i + 1 - (hT - hLast).
	d := hT - int64(p.last/3600)
	var m uint64
	switch {
	case d >= 1 && d < 33:
		m = uint64(p.hours) << (d - 1)
	case d < 1 && 1-d < 33:
		m = uint64(p.hours) >> (1 - d)
	}
	if t.hzHours < 33 {
		m &= 1<<(t.hzHours-1) - 1 // hT itself is one of the horizon's hours
	}
	return uint32(m)
}

// score rates p at tick T and emits a signal when it qualifies.
func (t *Tracker) score(p *pair, T int64) {
	if int64(p.last) < T {
		p.flags &^= flagDirty
	}
	src, dst := t.addrs(p)
	sources := int(t.dsts[t.code(dst)])
	if t.opts.Prevalence != nil {
		if n, ok := t.opts.Prevalence.Sources(dst); ok {
			sources = max(sources, n)
		}
	}
	hosts := len(t.srcs)
	// The funnel: popular destinations score 0 whatever their timing.
	if t.cfg.Params.Rarity(sources, hosts) == 0 {
		return
	}
	all := t.decode(p, t.all[:0])
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.t, b.t) })
	t.all = all
	times, sizes := t.times[:0], t.sizes[:0]
	firstT, lastT := int64(-1), int64(-1)
	for _, e := range all {
		if e.t >= T || e.t < T-t.horizon {
			continue
		}
		if firstT < 0 {
			firstT = e.t
		}
		lastT = e.t
		sizes = append(sizes, dequantize(e.q))
		if n := len(times); n == 0 || times[n-1] != e.t {
			times = append(times, e.t)
		}
	}
	t.times, t.sizes = times, sizes
	if len(times) < t.cfg.Params.MinTimestamps {
		return
	}
	active, observed := t.hourStats(p, T, lastT)
	// The history may be capped: the hourly bitmap bounds the pair's
	// span from below by the whole hours between its first and last
	// active clock hours.
	span := 0.0
	if past := t.pastHours(p, T/3600); past != 0 {
		firstHour := T/3600 - 1 - int64(31-bits.LeadingZeros32(past))
		span = float64(max(0, lastT/3600-firstHour-1) * 3600)
	}
	in := Series{
		Span:  span,
		Times: times, Sizes: sizes, Conns: len(sizes),
		ActiveHours: active, ObservedHours: observed,
		Sources: sources, Hosts: hosts,
		Seed: p.key ^ uint64(T),
	}
	r := t.scorer.Score(&in)
	t.stats.Scored++
	if t.opts.OnScore != nil {
		t.opts.OnScore(src, dst, p.port, T*1e6, &r)
	}
	if r.Score < t.cfg.EmitAbove {
		return
	}
	tick := uint16(T / 600)
	q := uint8(math.Round(r.Score * 255))
	if p.flags&flagEmitted != 0 && tick-p.emitTick < 6 && int(q) < int(p.emitted)+13 {
		return
	}
	p.flags |= flagEmitted
	p.emitTick, p.emitted = tick, q
	t.stats.Signals++
	t.sigs = append(t.sigs, t.signal(src, dst, p, T, firstT, lastT, &r, &in))
}

// hourStats returns the clock hours of the horizon before T with a
// connection (the bitmap for complete hours, lastT for T's own hour) and
// the hours observed since the oldest of them, T's hour included.
func (t *Tracker) hourStats(p *pair, T, lastT int64) (active, observed int) {
	hT := T / 3600
	past := t.pastHours(p, hT)
	active = bits.OnesCount32(past)
	observed = 1
	if past != 0 {
		observed = 32 - bits.LeadingZeros32(past) + 1
	}
	if lastT/3600 == hT {
		active++
	}
	return active, observed
}

// severity of a BEACON_SCORE signal by score.
func severity(s float64) features.Severity {
	switch {
	case s >= 0.9:
		return features.Critical
	case s >= 0.8:
		return features.High
	case s >= 0.7:
		return features.Medium
	}
	return features.Low
}

func (t *Tracker) signal(src, dst netip.Addr, p *pair, T, firstT, lastT int64, r *Result, in *Series) features.Signal {
	return features.Signal{
		Type: SignalType, Src: src, Dst: dst, DstPort: p.port,
		WindowStart: max(firstT, T-t.horizon) * 1e6, WindowEnd: T * 1e6,
		FirstSeen: firstT * 1e6, LastSeen: lastT * 1e6,
		Severity: severity(r.Score), Value: r.Score, Threshold: t.cfg.EmitAbove,
		Dsts: []netip.Addr{dst}, Ports: []uint16{p.port},
		Metrics: []features.Metric{
			{Name: "beacon_score", Value: r.Score},
			// Correlation's evidence strength: 0 at a score of 0.5, 1 at 1.
			{Name: "evidence_strength", Value: ramp(r.Score, 0.5, 1)},
			{Name: "timing", Value: r.Timing},
			{Name: "interval_dispersion", Value: r.Dispersion},
			{Name: "spectral", Value: r.Spectral},
			{Name: "size_regularity", Value: r.Size},
			{Name: "persistence", Value: r.Persistence},
			{Name: "rarity", Value: r.Rarity},
			{Name: "period_seconds", Value: r.Period},
			{Name: "median_interval_seconds", Value: r.MedianGap},
			{Name: "interval_mad_seconds", Value: r.MADGap},
			{Name: "bowley_skew", Value: r.Bowley},
			{Name: "low_tail_ratio", Value: r.LowTail},
			{Name: "size_mad_ratio", Value: r.SizeMAD},
			{Name: "spectral_power_ratio", Value: r.PowerRatio},
			{Name: "spectral_acf", Value: r.ACF},
			{Name: "timestamps", Value: float64(r.Timestamps)},
			{Name: "connection_count", Value: float64(in.Conns)},
			{Name: "active_hours", Value: float64(in.ActiveHours)},
			{Name: "observed_hours", Value: float64(in.ObservedHours)},
			{Name: "dst_internal_hosts", Value: float64(in.Sources)},
			{Name: "internal_hosts", Value: float64(in.Hosts)},
		},
	}
}

// Sources is the Tracker's destination prevalence: how many internal
// hosts have a tracked pair with dst (contacted it within the horizon).
func (t *Tracker) Sources(dst netip.Addr) (int, bool) {
	dst = dst.Unmap()
	if !dst.Is4() {
		id, ok := t.v6ids[dst]
		if !ok {
			return 0, false
		}
		n, ok := t.dsts[1<<32|uint64(id)]
		return int(n), ok
	}
	n, ok := t.dsts[uint64(be32(dst))]
	return int(n), ok
}

// Hosts is how many internal hosts have a tracked pair.
func (t *Tracker) Hosts() int { return len(t.srcs) }

// Stats returns the counters and a memory estimate.
func (t *Tracker) Stats() Stats {
	s := t.stats
	s.Pairs = len(t.slab) - len(t.freeSlot)
	s.Hosts, s.Dsts = len(t.srcs), len(t.dsts)
	s.History = t.ar.used
	// Go maps: about 40 bytes an entry with their control words and
	// growth slack.
	s.Bytes = cap(t.slab)*40 + len(t.idx.slots)*4 + cap(t.freeSlot)*4 + t.ar.footprint() +
		40*(len(t.dsts)+len(t.srcs)) + 80*len(t.idx6) + 48*len(t.v6ids)
	return s
}
