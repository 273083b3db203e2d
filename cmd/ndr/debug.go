package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	rpprof "runtime/pprof"
	"time"
)

// cpuProfile is a command's --cpuprofile flag.
type cpuProfile struct{ file *string }

// registerCPUProfile adds --cpuprofile to fs.
func registerCPUProfile(fs *flag.FlagSet) cpuProfile {
	return cpuProfile{fs.String("cpuprofile", "", "write a Go CPU profile of the run to this file (go tool pprof)")}
}

// start profiles the process into the flag's file, if one was given,
// until stop is called (a no-op without a file).
func (p cpuProfile) start() (stop func(), err error) {
	if *p.file == "" {
		return func() {}, nil
	}
	f, err := os.Create(*p.file)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := rpprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { rpprof.StopCPUProfile(); f.Close() }, nil
}

// startDebug serves Go's profiling endpoints on addr (loopback only, by
// intent: profiles expose memory contents). It stops when ctx ends.
func startDebug(ctx context.Context, env *environment, addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageErr("--pprof-addr: %v", err)
	}
	if !isLoopback(host) {
		return usageErr("--pprof-addr must be a loopback address, got %s", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			env.log.Warn("pprof listener", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	env.log.Info("profiling endpoints", "url", "http://"+lis.Addr().String()+"/debug/pprof/")
	return nil
}
