package policy

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Watch reloads the policy file when it changes (checked every interval)
// or on SIGHUP, and hands each policy that loads to set. A file that does
// not load is reported through onError and set is not called, so the
// previous policy stays in force. It returns when ctx ends.
func Watch(ctx context.Context, path string, interval time.Duration, set func(*Policy), onError func(error)) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	last := stamp(path)
	t := time.NewTicker(interval)
	defer t.Stop()
	reload := func() {
		last = stamp(path)
		p, err := Load(path)
		if err != nil {
			if onError != nil {
				onError(err)
			}
			return
		}
		set(p)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload()
		case <-t.C:
			if st := stamp(path); st != last {
				reload()
			}
		}
	}
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

func stamp(path string) fileStamp {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: st.ModTime(), size: st.Size(), ok: true}
}
