package chembed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// tryLock takes an exclusive flock on path without waiting. held reports
// that another open file description (this process or another) has it.
// flock locks die with the process, so a crash never leaves a stale lock.
func tryLock(path string) (f *os.File, held bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("flock %s: %w", path, err)
	}
	return f, false, nil
}

// waitLock polls tryLock until it gets the lock or ctx ends; onWait runs
// once, the first time it has to wait.
func waitLock(ctx context.Context, path string, onWait func()) (*os.File, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for waited := false; ; waited = true {
		f, held, err := tryLock(path)
		if err != nil || !held {
			return f, err
		}
		if !waited && onWait != nil {
			onWait()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

const dataDirLockName = "chembed.lock"

// lockDataDir takes the data directory's lock for the life of a server and
// writes the holder's pid into it for the error message of the next one.
func lockDataDir(dir string) (*os.File, error) {
	path := dir + string(os.PathSeparator) + dataDirLockName
	f, held, err := tryLock(path)
	if err != nil {
		return nil, err
	}
	if held {
		return nil, dataDirInUse(dir, path)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// checkDataDir reports ErrDataDirInUse if a server holds dir now.
func checkDataDir(dir string) error {
	path := dir + string(os.PathSeparator) + dataDirLockName
	f, held, err := tryLock(path)
	if err != nil {
		return err
	}
	if held {
		return dataDirInUse(dir, path)
	}
	return f.Close()
}

func dataDirInUse(dir, lockPath string) error {
	pid := "unknown"
	if b, err := os.ReadFile(lockPath); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		pid = strings.TrimSpace(string(b))
	}
	return fmt.Errorf("%w: %s (held by pid %s)", ErrDataDirInUse, dir, pid)
}
