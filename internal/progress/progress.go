// Package progress draws a one-line progress display on a terminal and
// stays silent otherwise.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/term"
)

// Line rewrites one status line on a terminal.
type Line struct {
	mu      sync.Mutex
	w       io.Writer
	enabled bool
	last    int
}

// New returns a Line writing to f when f is a terminal; otherwise every
// call is a no-op.
func New(f *os.File) *Line {
	return &Line{w: f, enabled: f != nil && term.IsTerminal(int(f.Fd()))}
}

// Enabled reports whether anything will be drawn.
func (l *Line) Enabled() bool { return l != nil && l.enabled }

// Printf replaces the line.
func (l *Line) Printf(format string, args ...any) {
	if !l.Enabled() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := fmt.Sprintf(format, args...)
	pad := l.last - len(s)
	if pad < 0 {
		pad = 0
	}
	fmt.Fprintf(l.w, "\r%s%*s", s, pad, "")
	l.last = len(s)
}

// Done clears the line.
func (l *Line) Done() {
	if !l.Enabled() || l.last == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "\r%*s\r", l.last, "")
	l.last = 0
}

// Bytes formats a byte count for people.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
