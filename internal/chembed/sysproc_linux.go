package chembed

import "syscall"

// childSysProcAttr puts the child in its own process group (so Shutdown can
// signal everything it started) and kills it if the parent dies first.
// Pdeathsig fires when the thread that forked exits; the Go runtime keeps
// its threads unless a goroutine exits while locked to one, and Start does
// not lock.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
