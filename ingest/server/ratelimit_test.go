package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// fakeClock is a Clock that moves only when told. Every Sleep announces
// itself on slept, so a test knows a sleeper is waiting without polling.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	sleepers []fakeSleeper
	slept    chan time.Duration
}

type fakeSleeper struct {
	until time.Time
	wake  chan struct{}
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), slept: make(chan time.Duration, 64)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	wake := make(chan struct{})
	c.mu.Lock()
	c.sleepers = append(c.sleepers, fakeSleeper{until: c.now.Add(d), wake: wake})
	c.mu.Unlock()
	c.slept <- d
	select {
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.sleepers[:0]
	for _, s := range c.sleepers {
		if s.until.After(c.now) {
			kept = append(kept, s)
		} else {
			close(s.wake)
		}
	}
	c.sleepers = kept
}

func TestLimiterBucket(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter(RateLimit{EventsPerSecond: 100, Burst: 200, MaxWait: 2 * time.Second, MaxSensors: 2}, 50, clk)
	f := func(sensor string, n int, want time.Duration, wantErr time.Duration) {
		t.Helper()
		got, err := l.reserve(sensor, n)
		var rl *rateLimited
		switch {
		case wantErr > 0:
			if !errors.As(err, &rl) || rl.retry != wantErr {
				t.Fatalf("reserve(%s, %d) = %v, %v; want refusal with retry %v", sensor, n, got, err, wantErr)
			}
		case err != nil || got != want:
			t.Fatalf("reserve(%s, %d) = %v, %v; want wait %v", sensor, n, got, err, want)
		}
	}
	f("a", 200, 0, 0)                     // the whole burst
	f("a", 50, 500*time.Millisecond, 0)   // debt of 50 at 100/s
	f("a", 200, 0, 2500*time.Millisecond) // would owe 250: refused, nothing taken
	f("b", 200, 0, 0)                     // another sensor has its own bucket
	clk.Advance(time.Second)              // a: -50 + 100 = 50
	f("a", 50, 0, 0)                      //
	f("a", 100, time.Second, 0)           // -100
	l.giveBack("a", 100)                  // a waiter went away
	f("a", 1, 10*time.Millisecond, 0)     // back to 0, then -1
	clk.Advance(time.Hour)                // refills to the burst, not beyond
	f("a", 200, 0, 0)                     //
	f("a", 1, 10*time.Millisecond, 0)     //
	f("c", 1, 0, 0)                       // a third sensor: evicts the full bucket (b)
	if _, ok := l.buckets["b"]; ok || len(l.buckets) != 2 {
		t.Fatalf("buckets %v: want b evicted", l.buckets)
	}
}

func TestRateLimitConfig(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.RateLimit.EventsPerSecond != 0 || newLimiter(cfg.RateLimit, cfg.MaxEventsPerBatch, wallClock{}) != nil {
		t.Fatal("the rate limit is on by default")
	}
	cfg.RateLimit.EventsPerSecond = 1000
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if l := newLimiter(cfg.RateLimit, cfg.MaxEventsPerBatch, wallClock{}); l.burst != float64(cfg.MaxEventsPerBatch) {
		t.Fatalf("default burst %v, want the max batch %d", l.burst, cfg.MaxEventsPerBatch)
	}
	cfg.RateLimit.Burst = 10
	cfg.RateLimit.MaxWait = 0
	if err := cfg.Validate(); err == nil {
		t.Fatal("a burst below the max batch and no max wait accepted")
	}
}

// TestRateLimitHoldsThenRefuses: a sensor over its rate has its stream held
// (the next batch is not stored until the bucket refills), and a batch
// that would wait longer than MaxWait is refused at once with
// ResourceExhausted and a RetryInfo saying when it would pass.
func TestRateLimitHoldsThenRefuses(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEventsPerBatch = 10
	cfg.RateLimit = RateLimit{EventsPerSecond: 10, Burst: 10, MaxWait: time.Second, MaxSensors: 10}
	clk := newFakeClock()
	sink := &memSink{}
	cli, _, srv := startWith(t, cfg, sink, WithClock(clk))

	st, err := cli.Stream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	recv := make(chan *ndrv1.BatchAck, 4)
	go func() {
		for {
			a, err := st.Recv()
			if err != nil {
				close(recv)
				return
			}
			recv <- a
		}
	}()
	if err := st.Send(batch(1, 10)); err != nil { // the burst
		t.Fatal(err)
	}
	if a := <-recv; a.GetSeq() != 1 {
		t.Fatalf("ack %v", a)
	}
	if err := st.Send(batch(2, 10)); err != nil { // one second early
		t.Fatal(err)
	}
	if d := <-clk.slept; d != time.Second {
		t.Fatalf("held for %v, want 1s", d)
	}
	// While held, batch 2 is neither stored nor acknowledged.
	if n := sink.stored(); n != 10 {
		t.Fatalf("stored %d while the stream is held, want 10", n)
	}

	// Another stream of the same sensor now owes 2 s: refused at once.
	_, err = cli.Push(t.Context(), batch(1, 10))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("push over the rate: %v, want ResourceExhausted", err)
	}
	var delay time.Duration
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	if delay != 2*time.Second {
		t.Fatalf("retry delay %v, want 2s", delay)
	}

	clk.Advance(time.Second)
	if a := <-recv; a.GetSeq() != 2 {
		t.Fatalf("ack %v, want batch 2 after the bucket refilled", a)
	}
	if n := sink.stored(); n != 20 {
		t.Fatalf("stored %d, want 20", n)
	}
	// Other sensors are not held back by this one.
	other := batch(1, 10)
	other.SensorId = "zeek-2"
	if _, err := cli.Push(t.Context(), other); err != nil {
		t.Fatalf("another sensor: %v", err)
	}
	if s := srv.Stats(); s.RateDelayed != 1 || s.RateLimited != 1 || s.Refused != 1 {
		t.Fatalf("stats %+v, want 1 delayed, 1 limited", s)
	}
}

// TestRateLimitUsesTokenSensor: with tokens, the bucket is the token's
// sensor's, whatever ids the batches leave out.
func TestRateLimitUsesTokenSensor(t *testing.T) {
	toks, set := testTokens(t, "zeek-a")
	cfg := DefaultConfig()
	cfg.MaxEventsPerBatch = 10
	cfg.RateLimit = RateLimit{EventsPerSecond: 1, Burst: 10, MaxWait: time.Second, MaxSensors: 10}
	cli, _, _ := startWith(t, cfg, &memSink{}, WithClock(newFakeClock()),
		WithAuthenticator(NewAuthenticator(set, nil, nil)))
	ctx := withToken(t.Context(), toks["zeek-a"])
	b := batch(1, 10)
	b.SensorId = ""
	if _, err := cli.Push(ctx, b); err != nil {
		t.Fatal(err)
	}
	b = batch(2, 10)
	b.SensorId = "" // a new stream id would not help either
	b.StreamId = "other"
	if _, err := cli.Push(ctx, b); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second batch: %v, want ResourceExhausted", err)
	}
}
