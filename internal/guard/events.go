package guard

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Event is something guard reports: "new-finding" (a finding newly
// appeared for an image already in the registry), "scan-completed",
// "scan-failed".
type Event struct {
	ID         int64           `json:"id"`
	Time       time.Time       `json:"time"`
	Type       string          `json:"type"`
	Repository string          `json:"repository,omitempty"`
	Digest     string          `json:"digest,omitempty"`
	Data       json.RawMessage `json:"data"`
	// Deliveries is the webhook delivery log of the event.
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// Delivery is the state of one event's delivery to one webhook.
type Delivery struct {
	URL      string    `json:"url"`
	State    string    `json:"state"` // pending, delivered, failed
	Attempts int       `json:"attempts"`
	Status   int       `json:"status,omitempty"`
	Error    string    `json:"error,omitempty"`
	Updated  time.Time `json:"updated"`
}

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" keyed
// with the webhook secret.
const SignatureHeader = "X-Moat-Signature"

// Sign returns the X-Moat-Signature value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks an X-Moat-Signature value in constant time.
func VerifySignature(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

type httpDoer interface {
	Do(*http.Request) (*http.Response, error)
}

func defaultHTTP() httpDoer { return &http.Client{Timeout: 15 * time.Second} }

// maxDeliveryAttempts bounds webhook retries (backoff doubles from 2s).
const maxDeliveryAttempts = 8

// emit records an event and queues its delivery to every webhook in one
// transaction.
func (g *Guard) emit(ctx context.Context, typ, repo, digest string, data any) {
	raw, err := json.Marshal(data)
	if err != nil {
		return
	}
	now := nowMs()
	tx, err := g.rw.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		g.o.Log.Error("guard: recording event failed", "error", err.Error())
		return
	}
	defer tx.Rollback()
	var id int64
	if err := tx.QueryRow(`INSERT INTO events(at, type, repo, digest, data) VALUES (?,?,?,?,?) RETURNING id`, now, typ, repo, digest, string(raw)).Scan(&id); err != nil {
		g.o.Log.Error("guard: recording event failed", "error", err.Error())
		return
	}
	for _, u := range g.o.Webhooks {
		if _, err := tx.Exec(`INSERT INTO deliveries(event_id, url, state, next_at, updated_at) VALUES (?,?,'pending',?,?)`, id, u, now, now); err != nil {
			return
		}
	}
	if tx.Commit() == nil && len(g.o.Webhooks) > 0 {
		select {
		case g.wakeHooks <- struct{}{}:
		default:
		}
	}
}

// Publish records an event raised elsewhere in moat (the fleet view's
// runtime events: a non-compliant container started, a noisy neighbour, a
// running container newly exposed) and delivers it to the webhooks exactly
// like the guard's own events, so every event has one delivery path.
func (g *Guard) Publish(ctx context.Context, typ, repo, digest string, data any) {
	g.emit(ctx, typ, repo, digest, data)
}

// body is the JSON a webhook receives: the same bytes on every attempt.
func eventBody(e *Event) []byte {
	b, _ := json.Marshal(struct {
		ID         int64           `json:"id"`
		Type       string          `json:"type"`
		Time       string          `json:"time"`
		Repository string          `json:"repository,omitempty"`
		Digest     string          `json:"digest,omitempty"`
		Data       json.RawMessage `json:"data"`
	}{e.ID, e.Type, e.Time.Format(time.RFC3339Nano), e.Repository, e.Digest, e.Data})
	return b
}

func (g *Guard) deliverLoop(ctx context.Context) {
	for {
		n := g.deliverDue(ctx)
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-g.wakeHooks:
		case <-time.After(time.Second):
		}
	}
}

// deliverDue sends the deliveries that are due; it returns how many.
func (g *Guard) deliverDue(ctx context.Context) int {
	rows, err := g.ro.QueryContext(ctx, `SELECT d.event_id, d.url, d.attempts, e.at, e.type, e.repo, e.digest, e.data
		FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.state = 'pending' AND d.next_at <= ? ORDER BY d.next_at LIMIT 50`, nowMs())
	if err != nil {
		return 0
	}
	type item struct {
		e        Event
		url      string
		attempts int
	}
	var items []item
	for rows.Next() {
		var it item
		var at int64
		var data string
		if rows.Scan(&it.e.ID, &it.url, &it.attempts, &at, &it.e.Type, &it.e.Repository, &it.e.Digest, &data) == nil {
			it.e.Time, it.e.Data = fromMs(at), json.RawMessage(data)
			items = append(items, it)
		}
	}
	rows.Close()
	for _, it := range items {
		if ctx.Err() != nil {
			return 0
		}
		status, derr := g.post(ctx, it.url, &it.e)
		attempts := it.attempts + 1
		now := nowMs()
		switch {
		case derr == nil:
			g.rw.ExecContext(ctx, `UPDATE deliveries SET state = 'delivered', attempts = ?, status = ?, error = '', updated_at = ? WHERE event_id = ? AND url = ?`, attempts, status, now, it.e.ID, it.url)
		case attempts >= maxDeliveryAttempts:
			g.rw.ExecContext(ctx, `UPDATE deliveries SET state = 'failed', attempts = ?, status = ?, error = ?, updated_at = ? WHERE event_id = ? AND url = ?`, attempts, status, derr.Error(), now, it.e.ID, it.url)
		default:
			next := now + (2 * time.Second << (attempts - 1)).Milliseconds()
			g.rw.ExecContext(ctx, `UPDATE deliveries SET attempts = ?, status = ?, error = ?, next_at = ?, updated_at = ? WHERE event_id = ? AND url = ?`, attempts, status, derr.Error(), next, now, it.e.ID, it.url)
		}
	}
	return len(items)
}

func (g *Guard) post(ctx context.Context, url string, e *Event) (int, error) {
	body := eventBody(e)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Moat-Event", e.Type)
	req.Header.Set("X-Moat-Delivery", fmt.Sprint(e.ID))
	req.Header.Set(SignatureHeader, Sign([]byte(g.o.WebhookSecret), body))
	resp, err := g.http.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("webhook answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// Events lists events after id (oldest first), with their delivery log.
func (g *Guard) Events(ctx context.Context, after int64, limit int, typ string) ([]Event, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	q := `SELECT id, at, type, repo, digest, data FROM events WHERE id > ?`
	args := []any{after}
	if typ != "" {
		q += ` AND type = ?`
		args = append(args, typ)
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit)
	rows, err := g.ro.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		var data string
		if err := rows.Scan(&e.ID, &at, &e.Type, &e.Repository, &e.Digest, &data); err != nil {
			rows.Close()
			return nil, err
		}
		e.Time, e.Data = fromMs(at), json.RawMessage(data)
		out = append(out, e)
	}
	rows.Close()
	for i := range out {
		drows, err := g.ro.QueryContext(ctx, `SELECT url, state, attempts, status, error, updated_at FROM deliveries WHERE event_id = ? ORDER BY url`, out[i].ID)
		if err != nil {
			return nil, err
		}
		for drows.Next() {
			var d Delivery
			var up int64
			if drows.Scan(&d.URL, &d.State, &d.Attempts, &d.Status, &d.Error, &up) == nil {
				d.Updated = fromMs(up)
				out[i].Deliveries = append(out[i].Deliveries, d)
			}
		}
		drows.Close()
	}
	return out, nil
}
