package guard

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestPublishDeliversForeignEvents: events raised by the fleet view go to
// the same signed webhooks and the same event list as the guard's own.
func TestPublishDeliversForeignEvents(t *testing.T) {
	secret := "fleet-secret"
	got := make(chan string, 4)
	var once sync.Once
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !VerifySignature([]byte(secret), b, r.Header.Get(SignatureHeader)) {
			w.WriteHeader(400)
			return
		}
		once.Do(func() { got <- r.Header.Get("X-Moat-Event") })
	}))
	defer hook.Close()
	e := start(t, t.TempDir(), func(o *Options) { o.Webhooks = []string{hook.URL}; o.WebhookSecret = secret })
	ctx := context.Background()
	e.g.Publish(ctx, "fleet.noisy-neighbour", "", "sha256:abc", map[string]string{"host": "h1", "container": "burner"})
	select {
	case typ := <-got:
		if typ != "fleet.noisy-neighbour" {
			t.Fatalf("webhook got event type %q", typ)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the published event was not delivered")
	}
	evs, err := e.g.Events(ctx, 0, 10, "fleet.noisy-neighbour")
	if err != nil || len(evs) != 1 || evs[0].Digest != "sha256:abc" {
		t.Fatalf("events %+v, %v", evs, err)
	}
}
