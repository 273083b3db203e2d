package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/client"
	"github.com/ndr-go/ndr/ingest/server"
	"github.com/ndr-go/ndr/internal/store"
)

// securityFlags are serve's flags for tokens and the per-sensor rate limit.
type securityFlags struct {
	tokens         string
	reload         time.Duration
	insecureTokens bool
}

func (f *securityFlags) register(fs *flag.FlagSet, scfg *server.Config) {
	fs.StringVar(&f.tokens, "tokens", "", "tokens file (lines of \"SENSOR_ID sha256:HEX\", see ndr token new); every call then needs a sensor's bearer token and may write only as that sensor")
	fs.DurationVar(&f.reload, "tokens-reload", 10*time.Second, "how often the tokens file is read again; a change applies once read the same twice (0: never)")
	fs.BoolVar(&f.insecureTokens, "insecure-tokens", false, "allow --tokens on a non-loopback listener without TLS (tokens then cross the network in clear)")
	fs.Float64Var(&scfg.RateLimit.EventsPerSecond, "rate-limit", scfg.RateLimit.EventsPerSecond, "events per second each sensor may send, sustained (0: no limit)")
	fs.IntVar(&scfg.RateLimit.Burst, "rate-burst", scfg.RateLimit.Burst, "events a sensor may send ahead of its rate (0: one second's worth, at least --max-events-per-batch)")
	fs.DurationVar(&scfg.RateLimit.MaxWait, "rate-max-wait", scfg.RateLimit.MaxWait, "how long a sensor over its rate is held back before it is refused with ResourceExhausted")
}

// authenticator loads the tokens file, if any, and starts reloading it in
// a goroutine that stop ends. It refuses tokens that would cross the
// network in clear.
func (f *securityFlags) authenticator(ctx context.Context, env *environment, addr string, tlsOn bool) (opts []server.Option, stop func(), err error) {
	if f.tokens == "" {
		return nil, func() {}, nil
	}
	if f.reload < 0 {
		return nil, nil, usageErr("--tokens-reload must not be negative")
	}
	if host, _, err := net.SplitHostPort(addr); !tlsOn && !f.insecureTokens && (err != nil || !isLoopback(host)) {
		return nil, nil, usageErr("--tokens on %s without TLS would send tokens in clear: add --tls-cert and --tls-key, listen on loopback, or pass --insecure-tokens", addr)
	}
	tf, auth, err := server.LoadTokenFile(f.tokens, env.log, time.Now)
	if err != nil {
		return nil, nil, err
	}
	t := auth.Tokens()
	if t.Len() == 0 {
		env.log.Warn("the tokens file holds no tokens: every sensor will be refused", "file", f.tokens)
	}
	env.log.Info("bearer tokens required", "file", f.tokens, "tokens", t.Len(), "sensors", len(t.Sensors()), "reload", f.reload)
	stop = func() {}
	if f.reload > 0 {
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		tick := time.NewTicker(f.reload)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); tf.Watch(wctx, tick.C) }()
		stop = func() { cancel(); wg.Wait(); tick.Stop() }
	}
	return []server.Option{server.WithAuthenticator(auth)}, stop, nil
}

// rejectSink adapts the store's RejectWriter to the server's RejectSink.
func rejectSink(w *store.RejectWriter) server.RejectSink {
	return server.RejectSinkFunc(func(ctx context.Context, rs []server.Rejected, done func(error)) error {
		rows := make([]store.Rejected, len(rs))
		for i, r := range rs {
			rows[i] = store.Rejected{
				ReceivedAt: r.ReceivedAt, Source: store.RejectedGRPC, Sensor: r.Sensor, Stream: r.Stream, Seq: r.Seq,
				Index: uint32(r.Index), Field: r.Field, Reason: r.Reason, Raw: r.Event, RawSize: uint64(r.Size), Peer: r.Peer,
			}
		}
		return w.Write(ctx, rows, done)
	})
}

// maxRejectedLine bounds the bytes of a refused file line kept in
// ndr.rejected, like server.Config.MaxRejectedBytes for events.
const maxRejectedLine = 16 << 10

// rejectedLine is the ndr.rejected row of a line a reader refused.
func rejectedLine(e *ingest.LineError, sensor string, at time.Time) store.Rejected {
	raw := e.Raw
	if len(raw) > maxRejectedLine {
		raw = raw[:maxRejectedLine]
	}
	reason := "rejected"
	if e.Err != nil {
		reason = e.Err.Error()
	}
	return store.Rejected{
		ReceivedAt: at.UTC(), Source: store.RejectedFile, Sensor: sensor, File: e.File, Line: uint64(e.Line), Elem: uint32(e.Elem),
		Field: ingest.FieldOf(e.Err), Reason: reason, Raw: raw, RawSize: uint64(len(e.Raw)),
	}
}

// tokenCredentials reads the sender's token from --token-file or
// NDR_TOKEN and returns the dial option that sends it. The token needs TLS
// unless addr is loopback.
func tokenCredentials(env *environment, file, addr string, tlsOn bool) ([]grpc.DialOption, bool, error) {
	token := ""
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, false, fmt.Errorf("read token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, false, fmt.Errorf("token file %s is empty", file)
		}
	} else {
		token = strings.TrimSpace(env.getenv("NDR_TOKEN"))
	}
	if token == "" {
		return nil, false, nil
	}
	host, _, err := net.SplitHostPort(addr)
	loopback := err == nil && isLoopback(host)
	if !tlsOn && !loopback {
		return nil, false, usageErr("a token for %s needs --tls (tokens are sent in clear otherwise)", addr)
	}
	return []grpc.DialOption{grpc.WithPerRPCCredentials(client.BearerToken(token, !loopback))}, true, nil
}

// rejectKeeper writes the lines a reader refuses to ndr.rejected. Its zero
// value keeps nothing (replay --no-store).
type rejectKeeper struct {
	w      *store.RejectWriter
	sensor string

	mu  sync.Mutex
	err error
}

// add is called from the reader's OnReject; it blocks while the writer is
// full, which slows reading down.
func (k *rejectKeeper) add(ctx context.Context, e *ingest.LineError) {
	if k.w == nil {
		return
	}
	if err := k.w.Write(ctx, []store.Rejected{rejectedLine(e, k.sensor, time.Now())}, k.done); err != nil {
		k.done(err)
	}
}

func (k *rejectKeeper) done(err error) {
	if err == nil {
		return
	}
	k.mu.Lock()
	if k.err == nil {
		k.err = fmt.Errorf("rejected lines not stored in ndr.rejected: %w", err)
	}
	k.mu.Unlock()
}

// shutdown flushes the writer and reports any line that was not stored.
func (k *rejectKeeper) shutdown(ctx context.Context) error {
	if k.w == nil {
		return nil
	}
	err := k.w.Shutdown(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	return errors.Join(k.err, err)
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) (set bool) {
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
