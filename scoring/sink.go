package scoring

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// EventKind says whether an Event creates or updates a detection.
type EventKind uint8

// Event kinds.
const (
	Created EventKind = iota + 1
	Updated
)

func (k EventKind) String() string {
	switch k {
	case Created:
		return "created"
	case Updated:
		return "updated"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is a detection as it stands after a match: new (Version 1) or
// updated (a higher Version of the same ID). A store upserts by ID and
// keeps the highest Version.
type Event struct {
	Kind      EventKind
	Detection Detection
}

// Sink receives the Engine's events, in order, synchronously from
// Consume, Advance and Flush. The Event is the sink's to keep: it shares
// no memory with the engine. An error stops the engine's call and is
// returned from it; the engine does not retry, and the detection's state
// already includes the event (a retrying sink must do so itself).
type Sink interface {
	Emit(ctx context.Context, ev Event) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, ev Event) error

// Emit calls f.
func (f SinkFunc) Emit(ctx context.Context, ev Event) error { return f(ctx, ev) }

// JSONLines is a Sink that writes every event as one JSON line: the live
// stream of `ndr serve`, where a detection's updates follow its creation
// (same detection_id, higher count). Each line is written with one Write
// call and no buffering, so a reader of a pipe sees whole lines at once.
// It is safe for concurrent use.
type JSONLines struct {
	mu sync.Mutex
	w  io.Writer
}

// NewJSONLines returns a sink writing to w.
func NewJSONLines(w io.Writer) *JSONLines { return &JSONLines{w: w} }

// Emit writes ev's detection.
func (j *JSONLines) Emit(_ context.Context, ev Event) error {
	b, err := ev.Detection.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode detection %s: %w", ev.Detection.ID, err)
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.w.Write(b); err != nil {
		return fmt.Errorf("write detection %s: %w", ev.Detection.ID, err)
	}
	return nil
}

// Collector is a Sink that keeps the latest version of every detection,
// in order of creation: what `ndr replay --out` writes at the end, one
// line per detection. It is safe for concurrent use.
type Collector struct {
	mu    sync.Mutex
	index map[string]int
	ds    []Detection
}

// Emit records ev.
func (c *Collector) Emit(_ context.Context, ev Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.index == nil {
		c.index = map[string]int{}
	}
	if i, ok := c.index[ev.Detection.ID]; ok {
		if ev.Detection.Version >= c.ds[i].Version {
			c.ds[i] = ev.Detection
		}
		return nil
	}
	c.index[ev.Detection.ID] = len(c.ds)
	c.ds = append(c.ds, ev.Detection)
	return nil
}

// Detections returns the detections so far; the slice is the caller's.
func (c *Collector) Detections() []Detection {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Detection, len(c.ds))
	for i := range c.ds {
		out[i] = c.ds[i].clone()
	}
	return out
}
