// Package startheap postpones a moat process's first garbage collection.
//
// Initialising moat's dependencies allocates about 5 MB before main runs,
// and a short command (verify, sign, check) a few MB more. With the
// runtime's initial 4 MB heap goal, two or three collections run before
// such a process exits, and they cost more CPU than the command's own
// work. Like the Go compiler does for itself, moat raises GOGC at start so
// that the first collection waits until the heap reaches StartingHeap,
// then restores the previous GOGC once that first collection has run:
// long-running processes (serve, agent) collect as before after it.
//
// The adjustment is made in this package's init, which runs before most
// of the dependencies' package initialisation (it depends on the standard
// library only), so importing it from package main is all it takes. It
// does nothing when GOGC or GOMEMLIMIT is set in the environment.
package startheap

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync/atomic"
)

// StartingHeap is the heap size at which the first collection runs.
const StartingHeap = 16 << 20

// defaultHeapGoal is the runtime's initial heap goal at GOGC=100.
const defaultHeapGoal = 4 << 20

var restored atomic.Bool

func init() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		restored.Store(true)
		return
	}
	prev := debug.SetGCPercent(100 * StartingHeap / defaultHeapGoal)
	if prev <= 0 {
		// Collection was already off or at GOGC=0: leave it so.
		debug.SetGCPercent(prev)
		restored.Store(true)
		return
	}
	// The cleanup runs once the first collection has found the sentinel
	// unreachable. The sentinel holds a pointer so that it is never batched
	// with other tiny objects (whose cleanups may not run).
	sentinel := &struct{ p *byte }{}
	runtime.AddCleanup(sentinel, func(gogc int) {
		debug.SetGCPercent(gogc)
		restored.Store(true)
	}, prev)
}

// Restored reports whether the process collects with its normal GOGC again
// (or was never adjusted).
func Restored() bool { return restored.Load() }
