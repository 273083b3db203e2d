package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/ndr-go/ndr/ingest/client"
	"github.com/ndr-go/ndr/ingest/loadgen"
	"github.com/ndr-go/ndr/ingest/scenario"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

func runLoadgen(ctx context.Context, args []string, env *environment) error {
	fs := newFlagSet(env, "loadgen", "")
	def := client.DefaultConfig()
	var dial dialFlags
	dial.register(fs)
	sensor := fs.String("sensor", "loadgen", "sensor id sent with every batch")
	streams := fs.Int("streams", 4, "concurrent streams")
	copies := fs.Int("copies", 8, fmt.Sprintf("disjoint copies of the corpus (each its own internal network), %d at most", loadgen.MaxCopies))
	hosts := fs.Int("hosts", 2000, "workstations in the corpus (at most 2000); hosts in all = hosts x copies")
	corpusDur := fs.Duration("corpus-duration", time.Hour, "event time the corpus covers (the mixed preset: attacks, look-alikes, background) before it repeats")
	seed := fs.Uint64("seed", 1, "corpus seed")
	rate := fs.Float64("rate", 0, "target events/s over all streams (0: as fast as the server acknowledges)")
	duration := fs.Duration("duration", 30*time.Second, "how long to send")
	batchSize := fs.Int("batch-size", 2000, "events per batch (with --copies and --streams it sets the event time a batch spans: keep it well under serve's allowed lateness)")
	inflight := fs.Int("max-inflight", 8, "unacknowledged batches per stream")
	maxLead := fs.Duration("max-lead", 10*time.Second, "event time a stream may run ahead of the slowest (keep under serve's allowed lateness)")
	watch := fs.Bool("watch", true, "watch DetectionService and report event-to-detection latency")
	grace := fs.Duration("watch-grace", 3*time.Second, "after sending, how long to keep watching for detections")
	lateness := fs.Duration("lateness", 30*time.Second, "serve's allowed lateness (features config), to tell when a window could close")
	prof := registerCPUProfile(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stopProfile, err := prof.start()
	if err != nil {
		return err
	}
	defer stopProfile()
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments %q", fs.Args())
	}
	if *hosts <= 0 || *hosts > 2000 {
		return usageErr("--hosts must be within [1, 2000]")
	}
	dialOpts, withToken, err := dial.options(env)
	if err != nil {
		return err
	}
	if withToken && !flagSet(fs, "sensor") {
		*sensor = ""
	}

	// The corpus: a daytime stretch of the mixed preset, generated once.
	genStart := time.Now()
	spec, err := scenario.Preset("mixed", *seed, time.Date(2026, 2, 6, 10, 0, 0, 0, time.UTC), *corpusDur)
	if err != nil {
		return usageErr("%v", err)
	}
	spec.Background.Hosts = *hosts
	spec.Sensor = "loadgen"
	corpus, err := loadgen.NewCorpus(spec)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	// Event time starts a day back, so the run has two days of event time
	// before serve's one-day future limit.
	now := time.Now().UTC().Truncate(time.Second)
	plan := loadgen.Plan{
		Streams: *streams, Copies: *copies, Rate: *rate, Duration: *duration, MaxLead: *maxLead,
		Shift:          now.Add(-24 * time.Hour).Sub(corpus.Start()),
		EventTimeLimit: now.Add(23 * time.Hour),
	}
	if err := plan.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	fmt.Fprintf(env.stderr, "loadgen: corpus of %d connections over %s (%d hosts) in %s; %d copies over %d streams\n",
		corpus.Len(), corpus.Span(), *hosts, time.Since(genStart).Round(time.Millisecond), *copies, *streams)

	// One connection per stream: a single HTTP/2 connection serialises
	// every stream's frames on one writer.
	conns := make([]*grpc.ClientConn, *streams)
	for i := range conns {
		if conns[i], err = dial.dial(dialOpts); err != nil {
			return err
		}
		defer conns[i].Close()
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	run, err := loadgen.NewRun(runCtx, corpus, plan, time.Now)
	if err != nil {
		return err
	}

	var dets *detectionWatch
	if *watch {
		if dets, err = startDetectionWatch(runCtx, conns[0]); err != nil {
			return fmt.Errorf("watch detections: %w", err)
		}
	}

	var acks loadgen.Latencies
	senders := make([]*client.Sender, *streams)
	for i := range senders {
		cfg := def
		cfg.Sensor, cfg.BatchSize, cfg.MaxInFlight = *sensor, *batchSize, *inflight
		cfg.StreamID = fmt.Sprintf("loadgen-%d-%d", now.Unix(), i)
		cfg.OnAck = func(_ int, d time.Duration) { acks.Add(d) }
		if senders[i], err = client.New(conns[i], cfg, env.log); err != nil {
			return err
		}
	}
	run.Start()
	start := time.Now()
	errs := make([]error, len(senders))
	var wg sync.WaitGroup
	for i, snd := range senders {
		src := run.Sources()[i]
		wg.Go(func() { errs[i] = snd.Run(runCtx, src) })
	}
	wg.Wait()
	runErr := errors.Join(errs...)
	elapsed := time.Since(start)

	var st client.Stats
	for _, s := range senders {
		x := s.Stats()
		st.Events += x.Events
		st.Acked += x.Acked
		st.Accepted += x.Accepted
		st.Rejected += x.Rejected
		st.Reconnects += x.Reconnects
	}
	fmt.Fprintf(env.stdout, "loadgen: %d events in %s over %d streams: %.0f events/s acknowledged (target %s)\n",
		st.Acked, elapsed.Round(time.Millisecond), *streams, float64(st.Acked)/elapsed.Seconds(), rateText(*rate))
	fmt.Fprintf(env.stdout, "  stored %d, refused %d, reconnects %d; ack latency over %d batches p50 %s p90 %s p99 %s\n",
		st.Accepted, st.Rejected, st.Reconnects, acks.Len(), ms(acks.Percentile(50)), ms(acks.Percentile(90)), ms(acks.Percentile(99)))
	if run.BudgetExhausted() {
		fmt.Fprintf(env.stdout, "  stopped early: event time reached serve's future limit (use more --copies)\n")
	}
	var detLat, evLat, waited loadgen.Latencies
	ndet := 0
	if dets != nil {
		select {
		case <-time.After(*grace):
		case <-ctx.Done():
		}
		stopRun()
		ndet = dets.latencies(run, *lateness, &detLat, &evLat, &waited)
		fmt.Fprintf(env.stdout, "  detections %d (%d matched): event-to-detection p50 %s p99 %s (deciding event sent -> delivered by Watch)\n",
			ndet, detLat.Len(), ms(detLat.Percentile(50)), ms(detLat.Percentile(99)))
		fmt.Fprintf(env.stdout, "    from the last evidence: p50 %s p99 %s wall at this replay speed; event time the rules waited p50 %s p99 %s\n",
			ms(evLat.Percentile(50)), ms(evLat.Percentile(99)), waited.Percentile(50).Round(time.Second), waited.Percentile(99).Round(time.Second))
	}
	// One line for scripts.
	fmt.Fprintf(env.stdout, "result events=%d seconds=%.3f events_per_s=%.0f ack_p50_ms=%.1f ack_p90_ms=%.1f ack_p99_ms=%.1f detections=%d detect_matched=%d detect_p50_ms=%.1f detect_p99_ms=%.1f\n",
		st.Acked, elapsed.Seconds(), float64(st.Acked)/elapsed.Seconds(), msf(acks.Percentile(50)), msf(acks.Percentile(90)), msf(acks.Percentile(99)),
		ndet, detLat.Len(), msf(detLat.Percentile(50)), msf(detLat.Percentile(99)))
	if runErr != nil {
		return fmt.Errorf("%w (%d events not confirmed stored)", runErr, st.Events-st.Acked)
	}
	if st.Rejected > 0 {
		return errRejected
	}
	return nil
}

func rateText(r float64) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%.0f/s", r)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", msf(d)) }

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// detectionWatch records the first version of every detection Watch
// delivers, with the time it arrived.
type detectionWatch struct {
	mu   sync.Mutex
	seen map[string]watched
	done chan struct{}
}

type watched struct {
	src      netip.Addr
	lastSeen time.Time
	closed   time.Time // end of the last window among its signals
	at       time.Time
}

// windowsEnd is the latest window end among a detection's signals (its
// JSON form), zero when it has none.
func windowsEnd(js string) time.Time {
	var d struct {
		Signals []struct {
			Window struct {
				End time.Time `json:"end"`
			} `json:"window"`
		} `json:"signals"`
	}
	var end time.Time
	if json.Unmarshal([]byte(js), &d) == nil {
		for _, s := range d.Signals {
			if s.Window.End.After(end) {
				end = s.Window.End
			}
		}
	}
	return end
}

func startDetectionWatch(ctx context.Context, conn grpc.ClientConnInterface) (*detectionWatch, error) {
	stream, err := ndrv1.NewDetectionServiceClient(conn).Watch(ctx, &ndrv1.WatchDetectionsRequest{})
	if err != nil {
		return nil, err
	}
	// The server sends headers once the watch is registered: after this,
	// no detection is missed.
	if _, err := stream.Header(); err != nil {
		return nil, err
	}
	w := &detectionWatch{seen: make(map[string]watched), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			d, err := stream.Recv()
			if err != nil {
				return
			}
			at := time.Now()
			src, _ := netip.AddrFromSlice(d.GetSrc())
			w.mu.Lock()
			if _, ok := w.seen[d.GetDetectionId()]; !ok {
				w.seen[d.GetDetectionId()] = watched{src: src.Unmap(), lastSeen: time.UnixMicro(d.GetLastSeenUs()), closed: windowsEnd(d.GetJson()), at: at}
			}
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// latencies waits for the watch to end (its ctx cancelled) and measures,
// for every detection whose host belongs to the run:
//
//   - detect: the wall time from the handover of the first event that let
//     the pipeline decide (the first event time past the end of the
//     detection's last signal window plus the allowed lateness, or the
//     newest event handed over if the detection came earlier) to its
//     delivery by Watch: the pipeline's own delay;
//   - evidence: the wall time from the handover of its last contributing
//     event (last_seen) to its delivery, which adds the event time the
//     rules wait for windows to close, compressed by the replay's speed;
//   - waited: that event time (the newest event time handed over at
//     delivery minus last_seen): what a real-time sensor would wait.
func (w *detectionWatch) latencies(run *loadgen.Run, lateness time.Duration, detect, evidence, waited *loadgen.Latencies) int {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.seen {
		newest, ok := run.EventTimeAt(d.src, d.at)
		if !ok {
			continue
		}
		waited.Add(newest.Sub(d.lastSeen))
		if sent, ok := run.SentAt(d.src, d.lastSeen); ok {
			evidence.Add(d.at.Sub(sent))
		}
		trigger := newest
		if !d.closed.IsZero() && d.closed.Add(lateness).Before(newest) {
			trigger = d.closed.Add(lateness)
		}
		if sent, ok := run.SentAt(d.src, trigger); ok {
			detect.Add(d.at.Sub(sent))
		}
	}
	return len(w.seen)
}
