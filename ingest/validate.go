package ingest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// FieldError says which field of a record is unacceptable and why. Readers
// and the gRPC service wrap it with the record's position (file:line or the
// event's index in its batch).
type FieldError struct {
	Field  string // Zeek field name, e.g. "id.orig_h"
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// FieldOf returns the field named by the first FieldError in err's chain, or "".
func FieldOf(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Limits bound what a single record may contain. They exist because every
// input is hostile until checked: a timestamp in year 9999 would create a
// ClickHouse partition of its own, a 10 MB uid would sit in memory in every
// window that sees it.
type Limits struct {
	// MinTime is the earliest accepted connection start.
	MinTime time.Time
	// MaxFutureSkew is how far past the validator's clock a start may be.
	MaxFutureSkew time.Duration
	// MaxDuration bounds a connection's duration.
	MaxDuration time.Duration
	// MaxBytes bounds every byte counter of one connection.
	MaxBytes uint64
	// MaxPkts bounds every packet counter of one connection.
	MaxPkts uint64
	// MaxStringLen bounds uid, service, history and sensor id, in bytes.
	MaxStringLen int
}

// DefaultLimits are generous for real traffic and tight enough to stop
// abuse: 1 PiB per connection, 2^40 packets, 30-day connections, 256-byte
// strings, starts from 1990 to one day past the clock.
func DefaultLimits() Limits {
	return Limits{
		MinTime:       time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC),
		MaxFutureSkew: 24 * time.Hour,
		MaxDuration:   30 * 24 * time.Hour,
		MaxBytes:      1 << 50,
		MaxPkts:       1 << 40,
		MaxStringLen:  256,
	}
}

// Validate reports every problem with the limits, joined.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxFutureSkew < 0 {
		errs = append(errs, errors.New("ingest limits: max future skew must not be negative"))
	}
	if l.MaxDuration <= 0 {
		errs = append(errs, errors.New("ingest limits: max duration must be positive"))
	}
	if l.MaxBytes == 0 || l.MaxPkts == 0 {
		errs = append(errs, errors.New("ingest limits: max bytes and max packets must be positive"))
	}
	if l.MaxStringLen <= 0 {
		errs = append(errs, errors.New("ingest limits: max string length must be positive"))
	}
	return errors.Join(errs...)
}

// Validator checks Conns against Limits. The clock is injected so that tests
// and replays of old captures decide the same way every time.
type Validator struct {
	lim   Limits
	now   func() time.Time
	minUS int64
	// maxUS caches the latest start accepted so far by the clock: the
	// clock only moves forward, so a start at or before it needs no new
	// reading (one reading per batch instead of one per event).
	maxUS atomic.Int64
}

// NewValidator returns a Validator; now defaults to time.Now.
func NewValidator(lim Limits, now func() time.Time) *Validator {
	if now == nil {
		now = time.Now
	}
	return &Validator{lim: lim, now: now, minUS: lim.MinTime.UnixMicro()}
}

// Check returns a *FieldError for the first unacceptable field of c, or nil.
func (v *Validator) Check(c *Conn) error {
	if c.TS < v.minUS {
		return fieldErr("ts", "%s is before the earliest accepted time %s", fmtMicros(c.TS), v.lim.MinTime.Format(time.RFC3339))
	}
	if c.TS > v.maxUS.Load() {
		maxUS := v.now().Add(v.lim.MaxFutureSkew).UnixMicro()
		if c.TS > maxUS {
			return fieldErr("ts", "%s is more than %s in the future", fmtMicros(c.TS), v.lim.MaxFutureSkew)
		}
		v.maxUS.Store(maxUS)
	}
	if !c.OrigH.IsValid() {
		return fieldErr("id.orig_h", "missing")
	}
	if !c.RespH.IsValid() {
		return fieldErr("id.resp_h", "missing")
	}
	if c.OrigH.Zone() != "" {
		return fieldErr("id.orig_h", "address zone %q is not accepted", c.OrigH.Zone())
	}
	if c.RespH.Zone() != "" {
		return fieldErr("id.resp_h", "address zone %q is not accepted", c.RespH.Zone())
	}
	if c.Duration < 0 {
		return fieldErr("duration", "negative (%s)", c.Duration)
	}
	if c.Duration > v.lim.MaxDuration {
		return fieldErr("duration", "%s exceeds the limit of %s", c.Duration, v.lim.MaxDuration)
	}
	for _, f := range [...]struct {
		name string
		v    uint64
	}{{"orig_bytes", c.OrigBytes}, {"resp_bytes", c.RespBytes}, {"missed_bytes", c.MissedBytes}, {"orig_ip_bytes", c.OrigIPBytes}, {"resp_ip_bytes", c.RespIPBytes}} {
		if f.v > v.lim.MaxBytes {
			return fieldErr(f.name, "%d exceeds the limit of %d", f.v, v.lim.MaxBytes)
		}
	}
	if c.OrigPkts > v.lim.MaxPkts {
		return fieldErr("orig_pkts", "%d exceeds the limit of %d", c.OrigPkts, v.lim.MaxPkts)
	}
	if c.RespPkts > v.lim.MaxPkts {
		return fieldErr("resp_pkts", "%d exceeds the limit of %d", c.RespPkts, v.lim.MaxPkts)
	}
	for _, f := range [...]struct{ name, v string }{{"uid", c.UID}, {"service", c.Service}, {"history", c.History}, {"sensor_id", c.Sensor}} {
		if len(f.v) > v.lim.MaxStringLen {
			return fieldErr(f.name, "%d bytes exceeds the limit of %d", len(f.v), v.lim.MaxStringLen)
		}
		if reason := unprintable(f.v); reason != "" {
			return fieldErr(f.name, "%s", reason)
		}
	}
	if c.Proto > ICMP {
		return fieldErr("proto", "unknown transport %d", c.Proto)
	}
	if c.ConnState > OTH {
		return fieldErr("conn_state", "unknown state %d", c.ConnState)
	}
	if c.LocalOrig > True || c.LocalResp > True {
		return fieldErr("local_orig", "invalid boolean")
	}
	return nil
}

func fmtMicros(us int64) string {
	return time.UnixMicro(us).UTC().Format(time.RFC3339Nano)
}

// unprintable returns why s is not printable text (invalid UTF-8, or a C0,
// DEL or C1 control character), or "" when it is. The file readers refuse
// such strings while parsing; this check makes records that arrive over
// gRPC, or from any other source, answer the same way. Control characters
// are refused because stored strings end up in analysts' terminals and
// notebooks, where escape sequences are an attack.
func unprintable(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f { // ASCII fast path
		i++
	}
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return fmt.Sprintf("invalid UTF-8 at byte %d", i)
		case r < 0x20 || (r >= 0x7f && r < 0xa0):
			return fmt.Sprintf("control character %U at byte %d", r, i)
		}
		i += n
	}
	return ""
}
