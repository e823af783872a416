package engine

import (
	"syscall"
	"time"
)

// threadCPU is the CPU time of the calling thread (Linux's RUSAGE_THREAD,
// which package syscall does not name); the caller locks its goroutine to it.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
