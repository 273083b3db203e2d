//go:build faults

package main

// The fault suite (`make faults`): the real binary, as separate processes,
// killed and restarted while `ndr send` streams. Every scenario must end
// with every sent event stored exactly once. It prints, per scenario, the
// events sent, acknowledged and stored.
//
//	go test -tags faults -run TestFaults -v -timeout 60m ./cmd/ndr
//	NDR_FAULTS_EVENTS=1000000 (default 300000) sets the size of each run.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	return p
}

// kill sends SIGKILL to the process group: kill -9, no cleanup.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("%s exited with %v:\n%s", p.name, err, tail(p.out.String(), 3000))
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("%s did not stop:\n%s", p.name, tail(p.out.String(), 3000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type faultEnv struct {
	t         *testing.T
	bin       string
	dir       string
	chTCP     int
	chHTTP    int
	grpc      int
	ch, serve *proc
}

func newFaultEnv(t *testing.T, bin string) *faultEnv {
	f := &faultEnv{t: t, bin: bin, dir: t.TempDir(), chTCP: freePort(t), chHTTP: freePort(t), grpc: freePort(t)}
	f.startClickHouse()
	return f
}

func (f *faultEnv) startClickHouse() {
	f.ch = startProc(f.t, "clickhouse", f.bin, "clickhouse", "--data-dir", filepath.Join(f.dir, "ch"),
		"--tcp-port", strconv.Itoa(f.chTCP), "--http-port", strconv.Itoa(f.chHTTP))
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", f.chHTTP)); err == nil {
			r.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Fatalf("clickhouse did not start:\n%s", f.ch.out.String())
}

func (f *faultEnv) dsn() string { return fmt.Sprintf("clickhouse://127.0.0.1:%d/ndr", f.chTCP) }

func (f *faultEnv) startServe() {
	f.serve = startProc(f.t, "serve", f.bin, "serve", "--grpc-addr", fmt.Sprintf("127.0.0.1:%d", f.grpc),
		"--clickhouse", f.dsn(), "--data-dir", filepath.Join(f.dir, "serve"), "--drain-timeout", "5m")
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if strings.Contains(f.serve.out.String(), "gRPC on") {
			return
		}
		select {
		case err := <-f.serve.done:
			f.t.Fatalf("serve exited: %v\n%s", err, f.serve.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	f.t.Fatalf("serve did not start:\n%s", f.serve.out.String())
}

func (f *faultEnv) sql(q string) string {
	f.t.Helper()
	r, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/", f.chHTTP), "text/plain", strings.NewReader(q))
	if err != nil {
		f.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 {
		f.t.Fatalf("%s: %s", q, b)
	}
	return strings.TrimSpace(string(b))
}

// send runs `ndr send` on files and returns its process; onProgress sees
// each progress line's stored count.
func (f *faultEnv) send(stream string, files ...string) *proc {
	args := append([]string{"send", "--addr", fmt.Sprintf("127.0.0.1:%d", f.grpc), "--progress", "200ms",
		"--stream-id", stream, "--give-up-after", "10m"}, files...)
	return startProc(f.t, "send "+stream, f.bin, args...)
}

var storedRE = regexp.MustCompile(`progress: (\d+) read, (\d+) stored`)

// waitProgress waits until a sender reports at least n events stored.
func waitProgress(t *testing.T, p *proc, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		ms := storedRE.FindAllStringSubmatch(p.out.String(), -1)
		if len(ms) > 0 {
			if v, _ := strconv.Atoi(ms[len(ms)-1][2]); v >= n {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not reach %d stored:\n%s", p.name, n, tail(p.out.String(), 2000))
}

var summaryRE = regexp.MustCompile(`sent (\d+) events .*\n\s+stored (\d+), refused by server (\d+)`)

func waitSend(t *testing.T, p *proc) (sent, acked int) {
	t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("%s failed: %v\n%s", p.name, err, tail(p.out.String(), 3000))
		}
	case <-time.After(20 * time.Minute):
		t.Fatalf("%s did not finish:\n%s", p.name, tail(p.out.String(), 3000))
	}
	m := summaryRE.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("%s: no summary:\n%s", p.name, tail(p.out.String(), 2000))
	}
	sent, _ = strconv.Atoi(m[1])
	acked, _ = strconv.Atoi(m[2])
	return sent, acked
}

// writeLog writes n Zeek conn rows with unique uids to a file.
func writeLog(t *testing.T, dir, name string, n int) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(zeekHeader)
	for i := range n {
		fmt.Fprintf(w, "%d.%06d\tC%s%09d\t10.1.%d.%d\t%d\t203.0.113.%d\t443\ttcp\tssl\t0.5\t%d\t%d\tSF\tT\tF\t0\tShADadFf\t5\t600\t6\t9000\t(empty)\n",
			1772442000+i/100, i%100*10000, name[:1], i, i/250%250, i%250+1, 40000+i%20000, i%200+1, 100+i%1000, 8000+i%5000)
	}
	w.WriteString("#close\t2026-03-02-10-00-00\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

type faultRow struct {
	name                string
	sent, acked, stored int
}

func TestFaults(t *testing.T) {
	n := 300_000
	if v, err := strconv.Atoi(os.Getenv("NDR_FAULTS_EVENTS")); err == nil && v > 0 {
		n = v
	}
	bin := filepath.Join(t.TempDir(), "ndr")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var (
		mu   sync.Mutex
		rows []faultRow
	)
	report := func(r faultRow) {
		mu.Lock()
		rows = append(rows, r)
		mu.Unlock()
	}
	t.Cleanup(func() {
		fmt.Printf("\n%-34s %10s %10s %10s\n", "scenario", "sent", "acked", "stored")
		for _, r := range rows {
			verdict := "ok"
			if r.sent != r.stored || r.acked != r.sent {
				verdict = "LOST OR DUPLICATED"
			}
			fmt.Printf("%-34s %10d %10d %10d  %s\n", r.name, r.sent, r.acked, r.stored, verdict)
		}
	})

	t.Run("kill -9 serve mid-stream", func(t *testing.T) {
		f := newFaultEnv(t, bin)
		log := writeLog(t, f.dir, "a.log", n)
		f.startServe()
		snd := f.send("kill-serve", log)
		for _, at := range []int{n / 4, n / 2} {
			waitProgress(t, snd, at)
			f.serve.kill()
			time.Sleep(500 * time.Millisecond)
			f.startServe()
		}
		sent, acked := waitSend(t, snd)
		f.serve.stop(t)
		stored, _ := strconv.Atoi(f.sql("SELECT count() FROM ndr.conn"))
		uniq, _ := strconv.Atoi(f.sql("SELECT uniqExact(uid) FROM ndr.conn"))
		report(faultRow{"kill -9 serve (twice)", sent, acked, stored})
		if stored != n || uniq != n || sent != n {
			t.Fatalf("sent %d, stored %d rows (%d distinct), want %d exactly once", sent, stored, uniq, n)
		}
	})

	t.Run("kill -9 clickhouse mid-stream", func(t *testing.T) {
		f := newFaultEnv(t, bin)
		log := writeLog(t, f.dir, "b.log", n)
		f.startServe()
		snd := f.send("kill-ch", log)
		waitProgress(t, snd, n/3)
		f.ch.kill()
		time.Sleep(3 * time.Second) // serve keeps acknowledging into its spool meanwhile
		f.startClickHouse()
		sent, acked := waitSend(t, snd)
		f.serve.stop(t)
		stored, _ := strconv.Atoi(f.sql("SELECT count() FROM ndr.conn"))
		uniq, _ := strconv.Atoi(f.sql("SELECT uniqExact(uid) FROM ndr.conn"))
		report(faultRow{"kill -9 clickhouse", sent, acked, stored})
		if stored != n || uniq != n || sent != n {
			t.Fatalf("sent %d, stored %d rows (%d distinct), want %d exactly once", sent, stored, uniq, n)
		}
	})

	t.Run("reconnect storm", func(t *testing.T) {
		f := newFaultEnv(t, bin)
		const senders = 8
		per := n / senders
		f.startServe()
		var snds []*proc
		for i := range senders {
			log := writeLog(t, f.dir, fmt.Sprintf("%c.log", 'c'+i), per)
			snds = append(snds, f.send(fmt.Sprintf("storm-%d", i), log))
		}
		for range 3 {
			waitProgress(t, snds[0], per/5)
			f.serve.kill()
			f.startServe()
			time.Sleep(300 * time.Millisecond)
		}
		var sent, acked int
		for _, s := range snds {
			a, b := waitSend(t, s)
			sent, acked = sent+a, acked+b
		}
		f.serve.stop(t)
		stored, _ := strconv.Atoi(f.sql("SELECT count() FROM ndr.conn"))
		uniq, _ := strconv.Atoi(f.sql("SELECT uniqExact(uid) FROM ndr.conn"))
		report(faultRow{fmt.Sprintf("%d senders, serve killed 3x", senders), sent, acked, stored})
		if stored != senders*per || uniq != senders*per {
			t.Fatalf("stored %d rows (%d distinct), want %d exactly once", stored, uniq, senders*per)
		}
	})

	t.Run("attack spans a kill -9", func(t *testing.T) {
		f := newFaultEnv(t, bin)
		lat := filepath.Join(f.dir, "lateral.log")
		if out, err := exec.Command(bin, "gen", "--preset", "lateral", "--out", lat).CombinedOutput(); err != nil {
			t.Fatalf("gen: %v\n%s", err, out)
		}
		first, second := splitLog(t, lat, "10.20.1.", 20) // the sweep's first 20 probes before the kill
		f.startServe()
		s1 := f.send("attack", first)
		waitSend(t, s1)
		time.Sleep(6 * time.Second) // past a checkpoint: outputs so far are stored
		f.serve.kill()
		f.startServe()
		s2 := f.send("attack-2", second)
		sent, acked := waitSend(t, s2)
		f.serve.stop(t)
		got := f.sql("SELECT count() FROM ndr.detections_latest WHERE type = 'LATERAL_MOVEMENT'")
		report(faultRow{"lateral movement across kill -9", sent, acked, acked})
		if got != "1" {
			t.Fatalf("%s LATERAL_MOVEMENT detections after the restart, want 1\n%s", got, tail(f.serve.out.String(), 3000))
		}
	})
}

// splitLog cuts a generated log in two just after the k-th connection of
// the lateral sweep (a destination in prefix on a sweep port), keeping the
// header in both halves.
func splitLog(t *testing.T, path, prefix string, k int) (string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var header, body []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.HasPrefix(l, "#") {
			if !strings.HasPrefix(l, "#close") {
				header = append(header, l)
			}
			continue
		}
		body = append(body, l)
	}
	cut, seen := len(body)/2, 0
	for i, l := range body {
		f := strings.Split(l, "\t")
		if len(f) > 5 && strings.HasPrefix(f[4], prefix) {
			seen++
			if seen == k {
				cut = i + 1
				break
			}
		}
	}
	write := func(name string, lines []string) string {
		p := filepath.Join(filepath.Dir(path), name)
		all := append(append([]string{}, header...), lines...)
		if err := os.WriteFile(p, []byte(strings.Join(all, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("first.log", body[:cut]), write("second.log", body[cut:])
}
