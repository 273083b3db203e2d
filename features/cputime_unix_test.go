//go:build unix

package features

import "syscall"

// cpuTime is the process's user and system CPU time so far, ns. The
// shared benchmark machine is noisy in wall-clock time; CPU time per
// event is steadier and is what an optimisation of the engine cuts.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
