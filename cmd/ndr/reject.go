package main

import (
	"fmt"
	"io"
	"sync"
)

// rejectLog prints the first rejections in full and counts the rest, so a
// file with a million bad lines does not flood the terminal.
type rejectLog struct {
	mu    sync.Mutex
	w     io.Writer
	limit int
	n     int
}

func newRejectLog(w io.Writer, limit int) *rejectLog { return &rejectLog{w: w, limit: limit} }

func (r *rejectLog) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if r.n <= r.limit {
		fmt.Fprintf(r.w, "rejected: "+format+"\n", args...)
	} else if r.n == r.limit+1 {
		fmt.Fprintf(r.w, "rejected: more than %d; counting the rest\n", r.limit)
	}
}

func (r *rejectLog) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
