package audit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/store"
)

// TestRecorderWritesEverything records events from many goroutines into a
// real SQLite store and checks Flush and Close lose none.
func TestRecorderWritesEverything(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := audit.NewRecorder(st, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				r.Record(audit.Event{Actor: fmt.Sprintf("u%d", g), Action: audit.ActionPull, Repository: "p/r", Allowed: true})
			}
		}(g)
	}
	wg.Wait()
	r.Flush()
	evs, _ := st.ListEvents(context.Background(), store.EventFilter{})
	if len(evs) != 4000 {
		t.Fatalf("after Flush: %d events, want 4000", len(evs))
	}
	if evs[0].ActorKind != "user" || evs[0].Time.IsZero() {
		t.Fatalf("defaults not filled: %+v", evs[0])
	}
	r.Record(audit.Event{Action: audit.ActionLogin})
	r.Close()
	evs, _ = st.ListEvents(context.Background(), store.EventFilter{Action: audit.ActionLogin})
	if len(evs) != 1 || evs[0].ActorKind != "anonymous" {
		t.Fatalf("after Close: %+v", evs)
	}
}
