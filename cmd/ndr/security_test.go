package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/ndr-go/ndr/features"
	"github.com/ndr-go/ndr/ingest"
	"github.com/ndr-go/ndr/ingest/client"
	"github.com/ndr-go/ndr/ingest/server"
	"github.com/ndr-go/ndr/ingest/wire"
	"github.com/ndr-go/ndr/internal/chtest"
	"github.com/ndr-go/ndr/internal/pipeline"
	"github.com/ndr-go/ndr/internal/store"
	ndrv1 "github.com/ndr-go/ndr/proto/ndr/v1"
	"github.com/ndr-go/ndr/scoring"
)

// runCmdEnv runs an ndr command in-process with environment variables and
// stdin.
func runCmdEnv(ctx context.Context, vars map[string]string, stdin string, args ...string) (int, string, string) {
	var out, errOut syncBuffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut, env(vars))
	return code, out.String(), errOut.String()
}

// serveProc is an in-process `ndr serve`.
type serveProc struct {
	addr   string
	cancel context.CancelFunc
	code   chan int
	stderr *syncBuffer
}

func startServe(t *testing.T, dsn string, extra ...string) *serveProc {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	p := &serveProc{cancel: cancel, code: make(chan int, 1), stderr: &syncBuffer{}}
	var out syncBuffer
	args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--clickhouse", dsn, "--flush-interval", "100ms",
		"--checkpoint-every", "200ms", "--data-dir", t.TempDir()}, extra...)
	go func() { p.code <- run(ctx, args, strings.NewReader(""), &out, p.stderr, env(nil)) }()
	p.addr = waitForAddr(t, &out, p.code)
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends serve (draining the spool into ClickHouse) and checks it
// exited cleanly; safe to repeat.
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case code := <-p.code:
		if code != exitOK {
			t.Errorf("serve exit %d\n%s", code, p.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Error("serve did not stop")
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newToken runs `ndr token new` and returns the token and its tokens-file
// line.
func newToken(t *testing.T, sensor string) (token, line string) {
	t.Helper()
	code, out, errOut := runCmd(t.Context(), "token", "new", "--sensor", sensor)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 2 {
		t.Fatalf("token new: exit %d\n%s\n%s", code, out, errOut)
	}
	return lines[0], lines[1]
}

func TestTokenCommand(t *testing.T) {
	tok, line := newToken(t, "zeek-a")
	if !strings.HasPrefix(tok, "ndr_") || line != "zeek-a "+server.HashToken(tok) {
		t.Fatalf("token %q line %q", tok, line)
	}
	code, out, _ := runCmdEnv(t.Context(), nil, tok+"\n", "token", "hash", "--sensor", "zeek-a")
	if code != exitOK || strings.TrimSpace(out) != line {
		t.Fatalf("token hash: exit %d %q, want %q", code, out, line)
	}
	for _, args := range [][]string{{"token"}, {"token", "new"}, {"token", "new", "--sensor", "has space"}, {"token", "nope"}} {
		if code, _, _ := runCmd(t.Context(), args...); code != exitUsage {
			t.Errorf("ndr %v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// TestServeTokens is the issue's check: a client without a valid token is
// refused, a token cannot write as another sensor, and what a valid token
// sends is stored with its sensor on every row. Refused events land in
// ndr.rejected with their reasons; IPv6 and link-local addresses go through
// the whole gRPC -> ClickHouse path intact.
func TestServeTokens(t *testing.T) {
	tokA, lineA := newToken(t, "zeek-a")
	_, lineB := newToken(t, "zeek-b")
	tokens := writeFile(t, "tokens", "# sensors\n"+lineA+"\n"+lineB+"\n")
	tokFile := writeFile(t, "token-a", tokA+"\n")
	dsn := chtest.NewDatabase(t)
	srv := startServe(t, dsn, "--tokens", tokens)
	log, _ := writeConnLog(t, 500, nil)
	send := func(vars map[string]string, args ...string) (int, string) {
		t.Helper()
		args = append([]string{"send", "--addr", srv.addr, "--progress", "0", "--give-up-after", "5s"}, args...)
		code, out, errOut := runCmdEnv(t.Context(), vars, "", append(args, log)...)
		return code, out + errOut
	}

	if code, out := send(nil); code != exitError || !strings.Contains(out, "Unauthenticated") {
		t.Errorf("no token: exit %d, want %d with Unauthenticated\n%s", code, exitError, out)
	}
	if code, out := send(map[string]string{"NDR_TOKEN": server.NewToken()}); code != exitError || !strings.Contains(out, "Unauthenticated") {
		t.Errorf("wrong token: exit %d, want %d with Unauthenticated\n%s", code, exitError, out)
	}
	if code, out := send(nil, "--token-file", tokFile, "--sensor", "zeek-b"); code != exitError || !strings.Contains(out, "PermissionDenied") {
		t.Errorf("zeek-a's token sending as zeek-b: exit %d, want %d with PermissionDenied\n%s", code, exitError, out)
	}
	if code, out := send(nil, "--token-file", tokFile); code != exitOK || !strings.Contains(out, "stored 500") {
		t.Fatalf("valid token: exit %d\n%s", code, out)
	}

	// Health needs no token.
	cc, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if h, err := healthpb.NewHealthClient(cc).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a token: %v %v", h, err)
	}

	// A batch straight over gRPC with zeek-a's token: addresses of every
	// kind, hostile values, and an event claiming zeek-b.
	acc, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(client.BearerToken(tokA, false)))
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	base := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC).UnixMicro()
	mk := func(uid, orig, resp string) ingest.Conn {
		return ingest.Conn{TS: base, UID: uid, OrigH: netip.MustParseAddr(orig), RespH: netip.MustParseAddr(resp),
			OrigP: 50000, RespP: 443, Proto: ingest.TCP, ConnState: ingest.SF, OrigBytes: 10}
	}
	b := ingest.Batch{Stream: "direct", Seq: 1, Conns: []ingest.Conn{
		mk("Cv6", "2001:db8::10", "2001:db8:1::443"),
		mk("Clinklocal", "fe80::1", "fe80::aa:bbff:fecc:ddee"),
		mk("Cmapped", "10.9.8.7", "::ffff:192.0.2.1"),
		mk("Cfuture", "10.0.0.1", "10.0.0.2"),
		mk("Cctl", "10.0.0.1", "10.0.0.2"),
		mk("Cother", "10.0.0.1", "10.0.0.2"),
	}}
	msg := wire.EncodeBatch(&b)
	msg.Events[3].TsUs = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	msg.Events[4].History = "S\x1b[31m"
	msg.Events[5].SensorId = "zeek-b"
	ack, err := ndrv1.NewIngestServiceClient(acc).Push(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if ack.GetAccepted() != 3 || len(ack.GetRejections()) != 3 {
		t.Fatalf("ack %v, want 3 accepted, 3 rejected", ack)
	}
	srv.stop(t) // drains the spool into ClickHouse

	st := openTestStore(t, dsn)
	var rows, sensors uint64
	var sensor string
	if err := st.QueryRow(t.Context(), "SELECT count(), uniqExact(sensor), any(sensor) FROM conn").Scan(&rows, &sensors, &sensor); err != nil {
		t.Fatal(err)
	}
	if rows != 503 || sensors != 1 || sensor != "zeek-a" {
		t.Fatalf("conn holds %d rows of %d sensors (%s), want 503, all zeek-a", rows, sensors, sensor)
	}
	for uid, want := range map[string]string{"Cv6": "2001:db8::10 2001:db8:1::443", "Clinklocal": "fe80::1 fe80::aa:bbff:fecc:ddee", "Cmapped": "10.9.8.7 192.0.2.1"} {
		var orig, resp string
		qctx := store.WithParams(t.Context(), store.Params{"uid": uid})
		if err := st.QueryRow(qctx, "SELECT orig_ip, resp_ip FROM conn WHERE uid = {uid:String}").Scan(&orig, &resp); err != nil {
			t.Fatalf("%s: %v", uid, err)
		}
		if orig+" "+resp != want {
			t.Errorf("%s stored as %s %s, want %s", uid, orig, resp, want)
		}
	}

	q, err := st.Query(t.Context(), "SELECT event_index, field, reason, sensor, stream, seq, source, raw, raw_size, peer FROM rejected ORDER BY event_index")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var got []string
	for q.Next() {
		var idx uint32
		var field, reason, sensor, stream, source, raw, peer string
		var seq, size uint64
		if err := q.Scan(&idx, &field, &reason, &sensor, &stream, &seq, &source, &raw, &size, &peer); err != nil {
			t.Fatal(err)
		}
		var ev ndrv1.ConnEvent
		if err := proto.Unmarshal([]byte(raw), &ev); err != nil || !proto.Equal(&ev, msg.Events[idx]) || int(size) != len(raw) {
			t.Errorf("rejected event %d not kept as sent: %v", idx, err)
		}
		if sensor != "zeek-a" || stream != "direct" || seq != 1 || source != "grpc" || !strings.HasPrefix(peer, "127.0.0.1:") || !strings.HasPrefix(reason, field+": ") {
			t.Errorf("rejected row %d: sensor %s stream %s seq %d source %s peer %s reason %q", idx, sensor, stream, seq, source, peer, reason)
		}
		got = append(got, fmt.Sprintf("%d:%s", idx, field))
	}
	if strings.Join(got, " ") != "3:ts 4:history 5:sensor_id" {
		t.Fatalf("ndr.rejected holds %v, want 3:ts 4:history 5:sensor_id", got)
	}
}

func TestServeRefusesTokensInClear(t *testing.T) {
	_, line := newToken(t, "zeek-a")
	tokens := writeFile(t, "tokens", line+"\n")
	code, _, errOut := runCmd(t.Context(), "serve", "--grpc-addr", "0.0.0.0:0", "--tokens", tokens, "--clickhouse", "clickhouse://127.0.0.1:1/ndr")
	if code != exitUsage || !strings.Contains(errOut, "in clear") {
		t.Fatalf("tokens on 0.0.0.0 without TLS: exit %d, want %d\n%s", code, exitUsage, errOut)
	}
	code, _, errOut = runCmd(t.Context(), "send", "--addr", "192.0.2.1:50051", "--token-file", writeFile(t, "tok", "ndr_x\n"), "f.log")
	if code != exitUsage || !strings.Contains(errOut, "--tls") {
		t.Fatalf("a token to a remote address without TLS: exit %d, want %d\n%s", code, exitUsage, errOut)
	}
	code, _, errOut = runCmd(t.Context(), "serve", "--tokens", filepath.Join(t.TempDir(), "missing"), "--clickhouse", "clickhouse://127.0.0.1:1/ndr")
	if code != exitError || !strings.Contains(errOut, "tokens file") {
		t.Fatalf("missing tokens file: exit %d\n%s", code, errOut)
	}
}

// testPKI is a temporary CA with a server certificate for 127.0.0.1 and
// a client certificate, plus an unrelated CA with a client certificate of
// its own.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	otherCA, otherClientCert, otherClientKey         string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, block *pem.Block) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	serial := int64(1)
	issue := func(name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.Subject = pkix.Name{CommonName: name}
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		kder, _ := x509.MarshalECPrivateKey(key)
		return cert, key, write(name+".pem", &pem.Block{Type: "CERTIFICATE", Bytes: der}), write(name+".key", &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	caTmpl := func() *x509.Certificate {
		return &x509.Certificate{IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	}
	leaf := func(usage x509.ExtKeyUsage) *x509.Certificate {
		return &x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
	}
	var p testPKI
	ca, caKey, caFile, _ := issue("ca", caTmpl(), nil, nil)
	p.ca = caFile
	_, _, p.serverCert, p.serverKey = issue("server", leaf(x509.ExtKeyUsageServerAuth), ca, caKey)
	_, _, p.clientCert, p.clientKey = issue("client", leaf(x509.ExtKeyUsageClientAuth), ca, caKey)
	other, otherKey, otherFile, _ := issue("other-ca", caTmpl(), nil, nil)
	p.otherCA = otherFile
	_, _, p.otherClientCert, p.otherClientKey = issue("other-client", leaf(x509.ExtKeyUsageClientAuth), other, otherKey)
	return p
}

// TestServeTLSAndMTLS runs serve and send through real TLS listeners with
// certificates from a temporary CA.
func TestServeTLSAndMTLS(t *testing.T) {
	pki := newTestPKI(t)
	dsn := chtest.NewDatabase(t)
	log, _ := writeConnLog(t, 200, nil)
	send := func(addr string, args ...string) (int, string) {
		t.Helper()
		args = append([]string{"send", "--addr", addr, "--progress", "0", "--give-up-after", "1s"}, args...)
		code, out, errOut := runCmd(t.Context(), append(args, log)...)
		return code, out + errOut
	}

	t.Run("TLS", func(t *testing.T) {
		tokA, lineA := newToken(t, "zeek-tls")
		srv := startServe(t, dsn, "--tls-cert", pki.serverCert, "--tls-key", pki.serverKey, "--tokens", writeFile(t, "tokens", lineA+"\n"))
		if code, out := send(srv.addr, "--ca", pki.ca, "--token-file", writeFile(t, "tok", tokA)); code != exitOK || !strings.Contains(out, "stored 200") {
			t.Fatalf("right CA: exit %d\n%s", code, out)
		}
		for name, args := range map[string][]string{
			"wrong CA":  {"--ca", pki.otherCA},
			"plaintext": nil,
		} {
			if code, out := send(srv.addr, args...); code != exitError {
				t.Errorf("%s: exit %d, want %d\n%s", name, code, exitError, out)
			} else if name == "wrong CA" && !strings.Contains(out, "certificate") {
				t.Errorf("%s: the error does not mention the certificate:\n%s", name, out)
			}
		}
	})
	t.Run("mTLS", func(t *testing.T) {
		srv := startServe(t, dsn, "--tls-cert", pki.serverCert, "--tls-key", pki.serverKey, "--tls-client-ca", pki.ca)
		if code, out := send(srv.addr, "--ca", pki.ca, "--cert", pki.clientCert, "--key", pki.clientKey); code != exitOK || !strings.Contains(out, "stored 200") {
			t.Fatalf("right client certificate: exit %d\n%s", code, out)
		}
		for name, args := range map[string][]string{
			"no client certificate":           {"--ca", pki.ca},
			"client certificate of other CA":  {"--ca", pki.ca, "--cert", pki.otherClientCert, "--key", pki.otherClientKey},
			"server's CA unknown to client":   {"--ca", pki.otherCA, "--cert", pki.clientCert, "--key", pki.clientKey},
			"right client cert, no server CA": {"--cert", pki.clientCert, "--key", pki.clientKey},
		} {
			if code, out := send(srv.addr, args...); code != exitError {
				t.Errorf("%s: exit %d, want %d\n%s", name, code, exitError, out)
			}
		}
		// The TLS handshake itself refuses a client without a certificate.
		tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: certPool(t, pki.ca)}
		cc, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			t.Fatal("health over TLS without a client certificate succeeded under mTLS")
		}
	})
	var n uint64
	st := openTestStore(t, dsn)
	if err := st.QueryRow(t.Context(), "SELECT count() FROM conn").Scan(&n); err != nil || n != 400 {
		t.Fatalf("conn holds %d rows (%v), want 400: each successful send once", n, err)
	}
}

func certPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b)
	return p
}

// TestReplayKeepsBadLines: replay with a store writes every line it
// refuses to ndr.rejected, byte for byte, with file, line and reason.
func TestReplayKeepsBadLines(t *testing.T) {
	path, badLines := writeConnLog(t, 2000, badRows)
	dsn := chtest.NewDatabase(t)
	code, out, errOut := runCmd(t.Context(), "replay", "--clickhouse", dsn, "--sensor", "archive", path)
	if code != exitRejected {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exitRejected, out, errOut)
	}
	st := openTestStore(t, dsn)
	q, err := st.Query(t.Context(), "SELECT file, line, field, reason, raw, raw_size, sensor, source FROM rejected ORDER BY line")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	i := 0
	for ; q.Next(); i++ {
		var file, field, reason, raw, sensor, source string
		var line, size uint64
		if err := q.Scan(&file, &line, &field, &reason, &raw, &size, &sensor, &source); err != nil {
			t.Fatal(err)
		}
		if i >= len(badRows) {
			continue
		}
		if file != path || int(line) != badLines[i] || raw != badRows[i] || int(size) != len(badRows[i]) || sensor != "archive" || source != "file" || field == "" || !strings.Contains(reason, field) {
			t.Errorf("row %d: %s:%d field %q reason %q raw %q (%d) sensor %s source %s; want line %d raw %q", i, file, line, field, reason, raw, size, sensor, source, badLines[i], badRows[i])
		}
	}
	if i != len(badRows) {
		t.Fatalf("%d rejected rows, want %d", i, len(badRows))
	}
}

// TestManyDistinctPortsStayBounded sends one internal host's scan of a
// million distinct (destination, port) pairs through the gRPC server into
// analysis and checks that the features engine's caps hold: the tracked
// pairs and each host's port set stay at their limits and the heap does
// not grow with the input.
func TestManyDistinctPortsStayBounded(t *testing.T) {
	events, batchSize := 1_000_000, 50_000
	if testing.Short() {
		events = 200_000
	}
	rules, err := scoring.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	cfg := pipeline.Config{Features: features.DefaultConfig(), Rules: rules}
	cfg.Features.Limits.MaxPairs = 100_000
	an, err := pipeline.NewAnalyzer(cfg, pipeline.Outputs{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	tee := pipeline.NewTee(nil, an, 4, slog.New(slog.DiscardHandler))
	tee.Start(t.Context())
	scfg := server.DefaultConfig()
	now := func() time.Time { return time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC) }
	srv, err := server.New(scfg, tee, slog.New(slog.DiscardHandler), now)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := server.NewGRPCServer(server.DefaultGRPCConfig(), srv)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cli := ndrv1.NewIngestServiceClient(cc)

	var heap []uint64
	base := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC).UnixMicro()
	b := ingest.Batch{Sensor: "scanner", Stream: "scan", Conns: make([]ingest.Conn, batchSize)}
	for i := 0; i < events; i += batchSize {
		b.Seq++
		for j := range b.Conns {
			k := i + j
			b.Conns[j] = ingest.Conn{
				TS: base + int64(k)*500, UID: "Cscan", OrigH: netip.MustParseAddr("10.66.6.6"),
				RespH: netip.AddrFrom4([4]byte{20, byte(k >> 16), byte(k >> 8), byte(k)}), OrigP: 40000, RespP: uint16(k%65535 + 1),
				Proto: ingest.TCP, ConnState: ingest.S0, History: "S",
			}
		}
		a, err := cli.Push(t.Context(), wire.EncodeBatch(&b))
		if err != nil || int(a.GetAccepted()) != batchSize {
			t.Fatalf("batch %d: %v %v", b.Seq, a, err)
		}
		if b.Seq%5 == 0 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heap = append(heap, ms.HeapAlloc)
		}
	}
	if err := tee.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	fs, _ := an.Stats()
	if fs.Events != uint64(events) {
		t.Fatalf("analysed %d events, want %d", fs.Events, events)
	}
	if fs.Pairs > cfg.Features.Limits.MaxPairs || fs.Hosts > cfg.Features.Limits.MaxHosts {
		t.Fatalf("tracking %d pairs and %d hosts, caps %d and %d", fs.Pairs, fs.Hosts, cfg.Features.Limits.MaxPairs, cfg.Features.Limits.MaxHosts)
	}
	if fs.SetOverflows == 0 {
		t.Fatalf("65535 distinct ports from one host never reached the set cap of %d", cfg.Features.Limits.MaxSetElements)
	}
	// After the first samples the heap must level off: the last sample may
	// not exceed the first by more than a margin for GC noise.
	if len(heap) >= 2 && heap[len(heap)-1] > heap[0]+heap[0]/2+64<<20 {
		t.Fatalf("heap grew with the input: %v", heap)
	}
	t.Logf("stats: %d pairs, %d evicted at cap, %d refused, %d set overflows; heap samples %v", fs.Pairs, fs.PairsEvictedCap, fs.PairsRefused, fs.SetOverflows, heap)
}
