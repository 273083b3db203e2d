package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"
)

// Authentication errors. The service maps them to gRPC codes in statusOf.
var (
	// ErrNoToken: a call without "authorization: Bearer <token>" metadata
	// on a server that requires tokens.
	ErrNoToken = errors.New("server: missing bearer token")
	// ErrBadToken: the token is not in the tokens file.
	ErrBadToken = errors.New("server: invalid bearer token")
	// ErrTokenRevoked: the token of a running stream was removed from the
	// tokens file since the stream started.
	ErrTokenRevoked = errors.New("server: bearer token revoked")
	// ErrWrongSensor: a batch names a sensor other than its token's.
	ErrWrongSensor = errors.New("server: token may not write as another sensor")
)

// tokenPrefix starts every token NewToken makes, so that a leaked token is
// recognisable to secret scanners.
const tokenPrefix = "ndr_"

// maxTokenLen bounds what a caller may present; longer is refused unhashed.
const maxTokenLen = 512

// NewToken returns a fresh random token: "ndr_" and 256 random bits in
// base64url. Only its hash (HashToken) belongs in a tokens file.
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// HashToken returns the form a token takes in a tokens file: "sha256:" and
// the hex SHA-256 of the token. Tokens carry 256 random bits, so a plain
// hash is enough: nobody can search that space from a leaked file.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Tokens is an immutable set of per-sensor bearer tokens, kept only as
// SHA-256 hashes. A sensor may have several tokens (to rotate one without
// downtime); a token belongs to exactly one sensor.
type Tokens struct {
	entries []tokenEntry
	byHash  map[[32]byte]string // for revocation checks of running streams
}

type tokenEntry struct {
	sensor string
	hash   [32]byte
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// Sensors returns the distinct sensor ids, in file order.
func (t *Tokens) Sensors() []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range t.entries {
		if !seen[e.sensor] {
			seen[e.sensor] = true
			out = append(out, e.sensor)
		}
	}
	return out
}

// ParseTokens reads a tokens file. Each line is a sensor id and the hash
// of one of its tokens, separated by spaces or tabs:
//
//	# comments and blank lines are ignored
//	zeek-dc1    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// Sensor ids are at most 256 bytes of printable text without spaces. It
// reports every bad line, joined; name is used in the messages.
func ParseTokens(r io.Reader, name string) (*Tokens, error) {
	t := &Tokens{byHash: map[[32]byte]string{}}
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s:%d: %s", name, n, fmt.Sprintf(format, args...)))
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			bad("want \"SENSOR_ID sha256:HEX\", got %d fields", len(f))
			continue
		}
		sensor, h := f[0], f[1]
		if len(sensor) > 256 || !utf8.ValidString(sensor) || strings.ContainsFunc(sensor, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }) {
			bad("sensor id must be at most 256 bytes of printable text")
			continue
		}
		hexSum, ok := strings.CutPrefix(h, "sha256:")
		if !ok {
			bad("token hash must start with sha256: (store hashes, never tokens; see ndr token new)")
			continue
		}
		raw, err := hex.DecodeString(hexSum)
		if err != nil || len(raw) != sha256.Size {
			bad("token hash must be 64 hex digits")
			continue
		}
		sum := [32]byte(raw)
		if prev, dup := t.byHash[sum]; dup {
			bad("the same token hash is listed again (first for sensor %q)", prev)
			continue
		}
		t.byHash[sum] = sensor
		t.entries = append(t.entries, tokenEntry{sensor: sensor, hash: sum})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read %s: %w", name, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// lookup returns the sensor of token. It hashes the token and compares the
// hash with every entry in constant time, without stopping at a match, so
// the time taken says nothing about which entry (if any) matched.
func (t *Tokens) lookup(token string) (Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	match := -1
	for i := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], t.entries[i].hash[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return Principal{}, false
	}
	return Principal{Sensor: t.entries[match].sensor, hash: sum}, true
}

// Principal is an authenticated caller: the sensor its token belongs to.
type Principal struct {
	Sensor string
	hash   [32]byte // the token's hash: a stream is cut off when it is revoked
}

type principalKey struct{}

// PrincipalFrom returns the caller authenticated for ctx, if tokens are
// required and the call presented a valid one.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Authenticator checks the bearer token of each call against a Tokens set
// that can be replaced while the server runs (see TokenFile). It is safe
// for concurrent use.
//
// Health and reflection are not authenticated: load balancers and
// grpcurl need them, and they reveal only that the service is up and its
// (public) schema.
type Authenticator struct {
	tokens atomic.Pointer[Tokens]
	log    *slog.Logger
	now    func() time.Time

	refused atomic.Uint64
	logMu   sync.Mutex
	lastLog time.Time
	unlog   uint64 // refusals since the last log line
}

// NewAuthenticator returns an Authenticator for t; now (nil: time.Now) only
// paces the log lines about refused calls (log may be nil).
func NewAuthenticator(t *Tokens, log *slog.Logger, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{log: log, now: now}
	a.tokens.Store(t)
	return a
}

// SetTokens replaces the token set. Calls already running keep their
// principal until their next batch, which is refused if their token is gone.
func (a *Authenticator) SetTokens(t *Tokens) { a.tokens.Store(t) }

// Tokens returns the current token set.
func (a *Authenticator) Tokens() *Tokens { return a.tokens.Load() }

// Refused counts calls refused for a missing or invalid token.
func (a *Authenticator) Refused() uint64 { return a.refused.Load() }

// exempt reports the methods reachable without a token: gRPC health and
// server reflection.
func exempt(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1.ServerReflection/") ||
		strings.HasPrefix(method, "/grpc.reflection.v1alpha.ServerReflection/")
}

// authenticate returns ctx carrying the caller's Principal, or an error
// (ErrNoToken, ErrBadToken) for a call that must be refused.
func (a *Authenticator) authenticate(ctx context.Context, method string, md metadata.MD) (context.Context, error) {
	if exempt(method) {
		return ctx, nil
	}
	if _, ok := PrincipalFrom(ctx); ok { // the tap handle did it already
		return ctx, nil
	}
	token, err := bearer(md)
	if err == nil {
		p, ok := a.tokens.Load().lookup(token)
		if ok {
			return context.WithValue(ctx, principalKey{}, p), nil
		}
		err = ErrBadToken
	}
	a.noteRefusal(ctx, method, err)
	return ctx, err
}

// check reports whether p's token is still in the current set.
func (a *Authenticator) check(p Principal) error {
	if s, ok := a.tokens.Load().byHash[p.hash]; ok && s == p.Sensor {
		return nil
	}
	return ErrTokenRevoked
}

func bearer(md metadata.MD) (string, error) {
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return "", ErrNoToken
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", ErrNoToken
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", ErrNoToken
	}
	if len(token) > maxTokenLen {
		return "", ErrBadToken
	}
	return token, nil
}

// noteRefusal counts a refused call and logs at most one line every ten
// seconds, so that a flood of bad calls cannot flood the log.
func (a *Authenticator) noteRefusal(ctx context.Context, method string, err error) {
	a.refused.Add(1)
	a.logMu.Lock()
	now := a.now()
	a.unlog++
	if now.Sub(a.lastLog) < 10*time.Second {
		a.logMu.Unlock()
		return
	}
	n := a.unlog
	a.unlog, a.lastLog = 0, now
	a.logMu.Unlock()
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	a.log.Warn("refused unauthenticated call", "peer", addr, "method", method, "reason", err, "refused_since_last_log", n)
}

// TapHandle refuses a call without a valid token as soon as its headers
// arrive, before its message is read: a Push is otherwise decoded (up to
// the message size limit) before any interceptor runs.
func (a *Authenticator) TapHandle() tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		ctx, err := a.authenticate(ctx, info.FullMethodName, info.Header)
		if err != nil {
			return ctx, statusOf(err)
		}
		return ctx, nil
	}
}

// UnaryInterceptor requires a valid token of every unary call except health
// and reflection, and binds the call to the token's sensor.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		ctx, err := a.authenticate(ctx, info.FullMethod, md)
		if err != nil {
			return nil, statusOf(err)
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor is UnaryInterceptor for streams.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		ctx, err := a.authenticate(ss.Context(), info.FullMethod, md)
		if err != nil {
			return statusOf(err)
		}
		return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }

// quoteTrunc quotes a caller-supplied string for an error message, cut to
// 64 bytes so that a hostile value cannot bloat acks, logs or ndr.rejected.
func quoteTrunc(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q...", s[:64])
	}
	return fmt.Sprintf("%q", s)
}
