//go:build unix

package baseline

import "syscall"

// cpuTime is the process's user and system CPU time so far, ns: steadier
// than wall time on a shared benchmark machine.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
