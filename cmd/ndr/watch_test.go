package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ndr-go/ndr/internal/chtest"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
)

// TestServeWatchAndList follows `ndr serve` live: a Watch opened before
// traffic arrives receives the lateral-movement detection within a second
// of serve handing it to storage, and List then finds it stored.
func TestServeWatchAndList(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "lateral.log")
	// An hour of traffic: the sweep 10 minutes in, then enough event time
	// for its windows to close while serve runs.
	if code, _, errOut := runCmd(t.Context(), "gen", "--preset", "lateral", "--hosts", "5", "--out", log); code != exitOK {
		t.Fatalf("gen: %s", errOut)
	}
	dsn := chtest.NewDatabase(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var sOut, sErr syncBuffer
	served := make(chan int, 1)
	go func() {
		served <- run(ctx, []string{"serve", "--grpc-addr", "127.0.0.1:0", "--clickhouse", dsn, "--flush-interval", "200ms", "--checkpoint-every", "200ms", "--data-dir", t.TempDir()},
			strings.NewReader(""), &sOut, &sErr, env(nil))
	}()
	addr := waitForAddr(t, &sOut, served)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: ndrv1.DetectionService_ServiceDesc.ServiceName})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of DetectionService: %v %v", hc, err)
	}
	client := ndrv1.NewDetectionServiceClient(conn)
	wctx, wcancel := context.WithCancel(t.Context())
	defer wcancel()
	stream, err := client.Watch(wctx, &ndrv1.WatchDetectionsRequest{Filter: &ndrv1.DetectionFilter{Types: []string{"LATERAL_MOVEMENT"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}

	sent := make(chan int, 1)
	go func() {
		code, _, errOut := runCmd(t.Context(), "send", "--addr", addr, "--progress", "0", "--batch-size", "500", log)
		if code != exitOK {
			t.Errorf("send exit %d: %s", code, errOut)
		}
		sent <- code
	}()
	d, err := stream.Recv()
	received := time.Now()
	if err != nil {
		t.Fatalf("watch: %v\nserve: %s", err, sErr.String())
	}
	latency := received.Sub(time.UnixMicro(d.DetectedAtUs))
	t.Logf("Watch delivered %s v%d %v after serve handed it to storage", d.DetectionId, d.Version, latency)
	if d.Type != "LATERAL_MOVEMENT" || latency > time.Second || latency < 0 {
		t.Errorf("got %s %s after %v, want LATERAL_MOVEMENT within 1 s", d.DetectionId, d.Type, latency)
	}
	<-sent

	// The store has it once the analysis writer flushed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.List(t.Context(), &ndrv1.ListDetectionsRequest{Filter: &ndrv1.DetectionFilter{Types: []string{"LATERAL_MOVEMENT"}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Detections) > 0 && resp.Detections[0].DetectionId == d.DetectionId {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("List does not show %s: %v", d.DetectionId, resp.Detections)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Stopping serve ends the watch instead of waiting for it.
	stopped := time.Now()
	cancel()
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}
	if code := <-served; code != exitOK {
		t.Fatalf("serve exit %d\n%s", code, sErr.String())
	}
	if took := time.Since(stopped); took > 20*time.Second {
		t.Errorf("serve took %v to stop with a watcher connected", took)
	}
}
