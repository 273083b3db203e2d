// Package loadgen makes the traffic `ndr loadgen` drives a server with:
// realistic synthetic connections at a target or maximum rate over several
// concurrent streams, for throughput and latency benchmarks.
//
// It sits at the edge beside the readers and feeds ingest/client Senders:
// each stream is a client.Source. The traffic is a corpus generated once by
// ingest/scenario (background browsing, DNS, periodic and bursty benign
// jobs, beacons, exfiltration, lateral movement, with realistic sizes),
// held in memory and replayed in copies. Copy k renumbers every internal
// 10.0.0.0/8 address into its own range, so copies are disjoint networks
// and hosts and pairs scale with the number of copies without the cost of
// generating them. When the corpus ends it starts again one corpus span
// later in event time, so event time only moves forward.
//
// Event time runs faster than the wall clock (the corpus is replayed as
// fast as the rate allows), and a server's windows accept events only
// within an allowed lateness of the newest one. Streams therefore keep
// step in event time: no stream fills a batch that starts more than
// Plan.MaxLead ahead of the slowest stream still running.
//
// Nothing here reads a global; the wall clock is used only to pace the
// rate and to record when each batch was handed over, for latency
// measurements.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/scenario"
)

// Errors.
var (
	// ErrAddressPlan means the corpus has internal addresses that copies
	// cannot renumber (second octet >= 32 or third octet >= 8 within
	// 10.0.0.0/8; scenario's plan with up to 2,000 hosts fits).
	ErrAddressPlan = errors.New("loadgen: corpus addresses do not fit the copy plan")
	// ErrEventTimeBudget ends a stream whose event time would pass the
	// Plan's EventTimeLimit (servers refuse events too far in the future).
	ErrEventTimeBudget = errors.New("loadgen: event-time budget used up")
)

// MaxCopies is how many disjoint copies of a corpus the address plan holds.
const MaxCopies = 256

// Corpus is a generated run held in memory, in event-time order.
type Corpus struct {
	conns []ingest.Conn
	start int64 // µs, the Spec's start
	span  int64 // µs, the Spec's duration
}

// NewCorpus generates spec into memory.
func NewCorpus(spec scenario.Spec) (*Corpus, error) {
	c := &Corpus{start: spec.Start.UnixMicro(), span: spec.Duration.Microseconds()}
	_, err := scenario.Stream(spec, func(x *ingest.Conn) error {
		if !fits(x.OrigH) || !fits(x.RespH) {
			return fmt.Errorf("%w: %v -> %v", ErrAddressPlan, x.OrigH, x.RespH)
		}
		c.conns = append(c.conns, *x)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(c.conns) == 0 {
		return nil, errors.New("loadgen: the corpus is empty")
	}
	return c, nil
}

// Len is the number of connections in one copy of the corpus.
func (c *Corpus) Len() int { return len(c.conns) }

// Span is the corpus's length in event time.
func (c *Corpus) Span() time.Duration { return time.Duration(c.span) * time.Microsecond }

// Start is the corpus's first event time.
func (c *Corpus) Start() time.Time { return time.UnixMicro(c.start).UTC() }

func internal(a netip.Addr) bool { return a.Is4() && a.As4()[0] == 10 }

// fits reports whether copies can renumber a without collisions.
func fits(a netip.Addr) bool {
	if !internal(a) {
		return true
	}
	b := a.As4()
	return b[1] < 32 && b[2] < 8
}

// Remap returns a as it appears in copy k: internal 10.b.c.d becomes
// 10.(b^(k%8)<<5).(c^(k/8)<<3).d; other addresses are shared by all
// copies (the internet is the same for every network).
func Remap(a netip.Addr, k int) netip.Addr {
	if k == 0 || !internal(a) {
		return a
	}
	b := a.As4()
	b[1] ^= byte(k&7) << 5
	b[2] ^= byte(k>>3) << 3
	return netip.AddrFrom4(b)
}

// CopyOf is the copy an internal address belongs to (the inverse of Remap),
// and false for other addresses.
func CopyOf(a netip.Addr) (int, bool) {
	if !internal(a) {
		return 0, false
	}
	b := a.As4()
	return int(b[1]>>5) | int(b[2]>>3)<<3, true
}

// Plan says how to replay a corpus.
type Plan struct {
	Streams int // concurrent streams; stream s carries copies s, s+Streams, ...
	Copies  int // disjoint copies of the corpus, at least Streams
	// Rate is the total target in events/s; 0 sends as fast as the
	// server acknowledges.
	Rate float64
	// Duration bounds the run in wall time.
	Duration time.Duration
	// Shift is added to every event time of the first pass of the corpus.
	Shift time.Duration
	// EventTimeLimit ends a stream before it sends an event later than
	// this (zero: no limit).
	EventTimeLimit time.Time
	// MaxLead is how far in event time a stream may run ahead of the
	// slowest running stream. Keep it well under the server's allowed
	// lateness.
	MaxLead time.Duration
}

// Validate reports every problem, joined.
func (p Plan) Validate() error {
	var errs []error
	if p.Streams <= 0 {
		errs = append(errs, errors.New("loadgen: streams must be positive"))
	}
	if p.Copies < p.Streams || p.Copies > MaxCopies {
		errs = append(errs, fmt.Errorf("loadgen: copies must be within [streams, %d]", MaxCopies))
	}
	if p.Rate < 0 {
		errs = append(errs, errors.New("loadgen: rate must not be negative"))
	}
	if p.Duration <= 0 {
		errs = append(errs, errors.New("loadgen: duration must be positive"))
	}
	if p.MaxLead <= 0 {
		errs = append(errs, errors.New("loadgen: max lead must be positive"))
	}
	return errors.Join(errs...)
}

// Run is one replay: its Sources, their shared event-time step and the
// log of what was handed over when.
type Run struct {
	corpus *Corpus
	plan   Plan
	now    func() time.Time
	start  time.Time

	mu      sync.Mutex
	cond    *sync.Cond
	at      []int64 // event time each stream reached (µs)
	running []bool
	stopped bool
	budget  bool // some stream hit EventTimeLimit

	sources []*Source
}

// NewRun prepares a replay of c. now is the wall clock (pacing and the
// handover log). The Run's Sources stop when ctx ends.
func NewRun(ctx context.Context, c *Corpus, p Plan, now func() time.Time) (*Run, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	r := &Run{corpus: c, plan: p, now: now, at: make([]int64, p.Streams), running: make([]bool, p.Streams)}
	r.cond = sync.NewCond(&r.mu)
	first := c.start + p.Shift.Microseconds()
	for s := range p.Streams {
		r.at[s], r.running[s] = first, true
		var copies []int
		for k := s; k < p.Copies; k += p.Streams {
			copies = append(copies, k)
		}
		r.sources = append(r.sources, &Source{run: r, id: s, copies: copies})
	}
	go func() {
		<-ctx.Done()
		r.mu.Lock()
		r.stopped = true
		r.cond.Broadcast()
		r.mu.Unlock()
	}()
	return r, nil
}

// Start fixes the wall time the run's pacing and duration count from; call
// it just before the senders start.
func (r *Run) Start() { r.start = r.now() }

// Sources are the streams' sources, one per stream.
func (r *Run) Sources() []*Source { return r.sources }

// BudgetExhausted reports whether a stream stopped at the event-time limit
// before the duration ended.
func (r *Run) BudgetExhausted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.budget
}

// SentAt is when the batch holding the first event of host's stream at or
// after event time ts was handed to its sender: the moment the server
// could first have seen it. ok is false for hosts outside the copies or
// times not sent yet.
func (r *Run) SentAt(host netip.Addr, ts time.Time) (time.Time, bool) {
	k, ok := CopyOf(host)
	if !ok || k >= r.plan.Copies {
		return time.Time{}, false
	}
	return r.sources[k%r.plan.Streams].sentAt(ts.UnixMicro())
}

// EventTimeAt is the newest event time host's stream had handed over at
// wall time at.
func (r *Run) EventTimeAt(host netip.Addr, at time.Time) (time.Time, bool) {
	k, ok := CopyOf(host)
	if !ok || k >= r.plan.Copies {
		return time.Time{}, false
	}
	s := r.sources[k%r.plan.Streams]
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.log), func(i int) bool { return s.log[i].at.After(at) })
	if i == 0 {
		return time.Time{}, false
	}
	return time.UnixMicro(s.log[i-1].last), true
}

// wait blocks stream s until its next batch, starting at event time ts,
// is within MaxLead of the slowest running stream.
func (r *Run) wait(s int, ts int64) bool {
	lead := r.plan.MaxLead.Microseconds()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at[s] = ts
	r.cond.Broadcast()
	for !r.stopped {
		slowest := ts
		for i, t := range r.at {
			if r.running[i] && t < slowest {
				slowest = t
			}
		}
		if ts-slowest <= lead {
			return true
		}
		r.cond.Wait()
	}
	return false
}

func (r *Run) finish(s int, budget bool) {
	r.mu.Lock()
	r.running[s] = false
	r.budget = r.budget || budget
	r.cond.Broadcast()
	r.mu.Unlock()
}

// Source is one stream's traffic: a client.Source.
type Source struct {
	run    *Run
	id     int
	copies []int
	i      int          // next corpus index
	j      int          // next copy within copies
	pass   int64        // passes over the corpus completed
	sent   atomic.Int64 // events handed over
	done   bool

	mu  sync.Mutex
	log []handover
}

type handover struct {
	last int64 // event time of the batch's last event (µs)
	at   time.Time
}

// eventTime is the shifted event time of corpus index i in the current pass.
func (s *Source) eventTime(i int) int64 {
	c := s.run.corpus
	return c.conns[i].TS + s.run.plan.Shift.Microseconds() + s.pass*c.span
}

// Next fills b with up to max events, paced to the stream's share of the
// rate, and returns io.EOF when the duration is over.
func (s *Source) Next(b *ingest.Batch, max int) (string, error) {
	r := s.run
	label := fmt.Sprintf("loadgen stream %d", s.id)
	if s.done {
		return label, io.EOF
	}
	now := r.now()
	if now.Sub(r.start) >= r.plan.Duration {
		return label, s.end(false)
	}
	if r.plan.Rate > 0 {
		// The stream's share of the rate: it may have handed over
		// elapsed*rate/streams events by now.
		due := r.start.Add(time.Duration(float64(s.sent.Load()+int64(max)) / (r.plan.Rate / float64(r.plan.Streams)) * float64(time.Second)))
		if d := due.Sub(now); d > 0 {
			time.Sleep(d)
		}
	}
	if !r.wait(s.id, s.eventTime(s.i)) {
		return label, s.end(false)
	}
	c := r.corpus
	limit := int64(0)
	if !r.plan.EventTimeLimit.IsZero() {
		limit = r.plan.EventTimeLimit.UnixMicro()
	}
	var last int64
	for len(b.Conns) < max {
		ts := s.eventTime(s.i)
		if limit > 0 && ts > limit {
			break
		}
		x := c.conns[s.i]
		k := s.copies[s.j]
		x.TS = ts
		x.OrigH, x.RespH = Remap(x.OrigH, k), Remap(x.RespH, k)
		b.Conns = append(b.Conns, x)
		last = ts
		if s.j++; s.j == len(s.copies) {
			s.j = 0
			if s.i++; s.i == len(c.conns) {
				s.i = 0
				s.pass++
			}
		}
	}
	s.sent.Add(int64(len(b.Conns)))
	if len(b.Conns) > 0 {
		s.mu.Lock()
		s.log = append(s.log, handover{last: last, at: r.now()})
		s.mu.Unlock()
	}
	if len(b.Conns) < max { // stopped at the event-time limit
		return label, s.end(true)
	}
	return label, nil
}

func (s *Source) end(budget bool) error {
	if !s.done {
		s.done = true
		s.run.finish(s.id, budget)
	}
	return io.EOF
}

// Events is the number of events handed over so far.
func (s *Source) Events() int64 { return s.sent.Load() }

func (s *Source) sentAt(ts int64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.log), func(i int) bool { return s.log[i].last >= ts })
	if i == len(s.log) {
		return time.Time{}, false
	}
	return s.log[i].at, true
}
