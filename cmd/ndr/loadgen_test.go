package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ndr-go/ndr/internal/chtest"
)

var loadgenResultRE = regexp.MustCompile(`result events=(\d+) seconds=([\d.]+) .* ack_p50_ms=([\d.]+) .* ack_p99_ms=([\d.]+) detections=(\d+)`)

// TestLoadgenOverServe drives a real serve (gRPC, spool, ClickHouse) with
// loadgen at a target rate: it reports what it sent and the ack latency,
// every acknowledged event is stored in ndr.conn once serve stops, and the
// events span many hosts of several disjoint copies.
func TestLoadgenOverServe(t *testing.T) {
	dsn := chtest.NewDatabase(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var sOut, sErr syncBuffer
	served := make(chan int, 1)
	go func() {
		served <- run(ctx, []string{"serve", "--grpc-addr", "127.0.0.1:0", "--clickhouse", dsn, "--flush-interval", "200ms", "--data-dir", t.TempDir()},
			strings.NewReader(""), &sOut, &sErr, env(nil))
	}()
	addr := waitForAddr(t, &sOut, served)

	code, out, errOut := runCmd(t.Context(), "loadgen", "--addr", addr, "--streams", "2", "--copies", "4", "--hosts", "50",
		"--corpus-duration", "20m", "--rate", "20000", "--duration", "2s", "--batch-size", "1000", "--watch-grace", "100ms")
	if code != exitOK {
		t.Fatalf("loadgen exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	m := loadgenResultRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no result line:\n%s", out)
	}
	events, _ := strconv.ParseUint(m[1], 10, 64)
	secs, _ := strconv.ParseFloat(m[2], 64)
	p50, _ := strconv.ParseFloat(m[3], 64)
	p99, _ := strconv.ParseFloat(m[4], 64)
	// 2 s at 20,000/s: never faster than the target (one batch per stream
	// of slack); slower only on a machine too loaded to keep up.
	if events < 5_000 || float64(events) > 20_000*secs+2*1000 {
		t.Errorf("sent %d events in %.2f s at 20,000/s", events, secs)
	}
	if p50 <= 0 || p99 < p50 {
		t.Errorf("ack latency p50 %v p99 %v", p50, p99)
	}

	cancel()
	select {
	case code := <-served:
		if code != exitOK {
			t.Fatalf("serve exit %d\n%s", code, sErr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop")
	}
	st := openTestStore(t, dsn)
	var all, hosts uint64
	if err := st.QueryRow(t.Context(), "SELECT count(), uniqExact(orig_h) FROM conn").Scan(&all, &hosts); err != nil {
		t.Fatal(err)
	}
	if all != events {
		t.Errorf("ndr.conn holds %d rows, loadgen had %d acknowledged", all, events)
	}
	if hosts <= 100 {
		t.Errorf("%d distinct originators, want more than 100 (4 copies of 50 workstations and servers)", hosts)
	}
}

func TestLoadgenUsage(t *testing.T) {
	for _, args := range [][]string{
		{"loadgen", "--hosts", "5000"},
		{"loadgen", "--streams", "8", "--copies", "4"},
		{"loadgen", "extra"},
	} {
		if code, _, errOut := runCmd(t.Context(), args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, exitUsage, errOut)
		}
	}
}
