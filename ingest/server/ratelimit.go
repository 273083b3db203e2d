package server

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// RateLimit bounds the events per second of each sensor with a token
// bucket. It is off (EventsPerSecond 0) by default: one sensor replaying an
// archive may rightly send as fast as storage takes it, and storage
// back-pressure already protects the server's memory. Turn it on to keep
// one sensor from taking the whole ingest capacity from the others.
//
// The sensor is the token's when tokens are required; otherwise it is the
// id the batch claims, which a sender can vary at will, so the limit is
// only a fairness device then, not a defence.
type RateLimit struct {
	// EventsPerSecond is each sensor's sustained rate; 0 turns the limit off.
	EventsPerSecond float64
	// Burst is the bucket size in events: how far a sensor may run ahead of
	// its rate. 0 means one second's worth, and at least MaxEventsPerBatch;
	// a set value must be at least MaxEventsPerBatch, or a full batch could
	// never pass.
	Burst int
	// MaxWait is how long the server holds a batch back (not reading that
	// stream further) waiting for the sensor's bucket to refill. A batch
	// that would have to wait longer is refused at once with
	// ResourceExhausted and a RetryInfo delay saying when it would pass.
	MaxWait time.Duration
	// MaxSensors bounds the buckets kept; when more sensors are seen, the
	// fullest buckets are forgotten (a full bucket is the same as none).
	MaxSensors int
}

// DefaultRateLimit is off, with the other settings ready for when a rate
// is set.
func DefaultRateLimit() RateLimit {
	return RateLimit{MaxWait: 10 * time.Second, MaxSensors: 10_000}
}

func (r RateLimit) validate(maxBatch int) []error {
	var errs []error
	if r.EventsPerSecond < 0 || math.IsNaN(r.EventsPerSecond) || math.IsInf(r.EventsPerSecond, 0) {
		errs = append(errs, errors.New("server: rate limit must be a finite number of events per second, 0 for none"))
	}
	if r.EventsPerSecond == 0 {
		return errs
	}
	if r.Burst != 0 && r.Burst < maxBatch {
		errs = append(errs, errors.New("server: rate burst must be at least max events per batch"))
	}
	if r.MaxWait <= 0 {
		errs = append(errs, errors.New("server: rate limit max wait must be positive"))
	}
	if r.MaxSensors <= 0 {
		errs = append(errs, errors.New("server: rate limit max sensors must be positive"))
	}
	return errs
}

// Clock is the time source of the rate limiter. Tests substitute a fake.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx ends, returning ctx's error then.
	Sleep(ctx context.Context, d time.Duration) error
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rateLimited is the error of a batch that would wait longer than MaxWait.
type rateLimited struct {
	sensor string
	retry  time.Duration
}

func (e *rateLimited) Error() string {
	return "sensor " + quoteTrunc(e.sensor) + " is over its event rate; retry in " + e.retry.String()
}

// limiter holds one token bucket per sensor. Buckets may go into debt: a
// batch takes all its events at once and waits until the debt is repaid,
// so a batch larger than what is left never starves behind smaller ones.
type limiter struct {
	rate    float64 // events per second
	burst   float64
	maxWait time.Duration
	max     int
	clock   Clock

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64 // may be negative: debt
	last   time.Time
}

func newLimiter(r RateLimit, maxBatch int, clock Clock) *limiter {
	if r.EventsPerSecond == 0 {
		return nil
	}
	burst := float64(r.Burst)
	if burst == 0 {
		burst = max(math.Ceil(r.EventsPerSecond), float64(maxBatch))
	}
	return &limiter{rate: r.EventsPerSecond, burst: burst, maxWait: r.MaxWait, max: r.MaxSensors, clock: clock, buckets: map[string]*bucket{}}
}

// reserve takes n events from sensor's bucket and returns how long the
// caller must wait before going on. When that would exceed maxWait it takes
// nothing and returns a *rateLimited error carrying the wait.
func (l *limiter) reserve(sensor string, n int) (time.Duration, error) {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[sensor]
	if b == nil {
		l.evictLocked(now)
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[sensor] = b
	}
	l.refill(b, now)
	left := b.tokens - float64(n)
	if left >= 0 {
		b.tokens = left
		return 0, nil
	}
	wait := time.Duration(math.Ceil(-left / l.rate * float64(time.Second)))
	if wait > l.maxWait {
		return 0, &rateLimited{sensor: sensor, retry: wait}
	}
	b.tokens = left
	return wait, nil
}

// giveBack returns n events to sensor's bucket: a reservation that was not
// used because its caller went away while waiting.
func (l *limiter) giveBack(sensor string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[sensor]; b != nil {
		b.tokens = min(l.burst, b.tokens+float64(n))
	}
}

func (l *limiter) refill(b *bucket, now time.Time) {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt.Seconds()*l.rate)
		b.last = now
	}
}

// evictLocked makes room for one more bucket: first it drops buckets that
// have refilled (they hold no state), then, if still full, arbitrary ones.
func (l *limiter) evictLocked(now time.Time) {
	if len(l.buckets) < l.max {
		return
	}
	for s, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, s)
		}
	}
	for s := range l.buckets {
		if len(l.buckets) < l.max {
			break
		}
		delete(l.buckets, s)
	}
}

// wait applies the limit to n events of sensor: it returns at once, after
// sleeping while the bucket refills (delayed; the stream is not read
// meanwhile, so HTTP/2 flow control holds the sender back), or with a
// *rateLimited error, or ctx's.
func (l *limiter) wait(ctx context.Context, sensor string, n int) (delayed bool, err error) {
	if l == nil {
		return false, nil
	}
	d, err := l.reserve(sensor, n)
	if err != nil || d == 0 {
		return false, err
	}
	if err := l.clock.Sleep(ctx, d); err != nil {
		l.giveBack(sensor, n)
		return true, err
	}
	return true, nil
}
