package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// TokenFile keeps an Authenticator in step with a tokens file (see
// ParseTokens). It polls: every tick it reads the file, and once it has
// read the same new content on two ticks in a row it parses it and swaps
// the token set in. Waiting for the content to settle keeps a file caught
// half-written by an editor (empty, or missing its last lines) from
// revoking tokens for a moment. Polling the content rather than waiting for
// a signal also follows the atomic symlink swaps with which Kubernetes and
// Vault agents update mounted secrets.
//
// A file that fails to parse leaves the previous tokens in force (the
// error is logged), so a bad edit cannot lock every sensor out.
type TokenFile struct {
	path    string
	auth    *Authenticator
	log     *slog.Logger
	sum     [32]byte // of the content in force
	pending [32]byte // of new content read once, waiting to be read again
}

// LoadTokenFile reads path and returns an Authenticator holding its tokens
// and the TokenFile that reloads them.
func LoadTokenFile(path string, log *slog.Logger, now func() time.Time) (*TokenFile, *Authenticator, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read tokens file: %w", err)
	}
	t, err := ParseTokens(bytes.NewReader(b), path)
	if err != nil {
		return nil, nil, err
	}
	a := NewAuthenticator(t, log, now)
	return &TokenFile{path: path, auth: a, log: log, sum: sha256.Sum256(b)}, a, nil
}

// Reload reads the file again and swaps the tokens in if the content
// changed and is the same as at the previous Reload. changed is false when
// nothing was swapped in; err says why new content was refused.
func (f *TokenFile) Reload() (changed bool, err error) {
	b, err := os.ReadFile(f.path)
	if err != nil {
		return false, fmt.Errorf("read tokens file: %w", err)
	}
	sum := sha256.Sum256(b)
	if sum == f.sum {
		f.pending = [32]byte{}
		return false, nil
	}
	if sum != f.pending {
		f.pending = sum // settle first
		return false, nil
	}
	t, err := ParseTokens(bytes.NewReader(b), f.path)
	if err != nil {
		return false, err
	}
	f.auth.SetTokens(t)
	f.sum, f.pending = sum, [32]byte{}
	return true, nil
}

// Watch reloads the file on every tick until ctx ends. It is meant to run
// in its own goroutine, owned by the caller, with a time.Ticker's channel
// (or a test's).
func (f *TokenFile) Watch(ctx context.Context, ticks <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		changed, err := f.Reload()
		switch {
		case err != nil:
			f.log.Error("tokens file not reloaded; the previous tokens stay in force", "file", f.path, "err", err)
		case changed:
			t := f.auth.Tokens()
			f.log.Info("tokens file reloaded", "file", f.path, "tokens", t.Len(), "sensors", len(t.Sensors()))
		}
	}
}
