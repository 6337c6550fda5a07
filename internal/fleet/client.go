package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client calls the fleet API with basic credentials (an agent: its robot
// account name and secret).
type Client struct {
	Server   string // "https://moat.example.com"
	Username string
	Password string
	HTTP     *http.Client
}

// StatusError is an HTTP error answer of the fleet API.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("server answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// IsAuthError reports whether err means the server refused the credentials.
func IsAuthError(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden)
}

// Do sends body (JSON-encoded unless it is []byte) to /api/v1/fleet/<path>
// and decodes the JSON answer into out.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/vnd.cyclonedx+json"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd, ctype = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Server, "/")+prefix+path, rd)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.SetBasicAuth(c.Username, c.Password)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Errors []apiError `json:"errors"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && len(e.Errors) > 0 {
			msg = e.Errors[0].Message
		}
		if len(msg) > 500 {
			msg = msg[:500]
		}
		return &StatusError{Status: resp.StatusCode, Message: msg}
	}
	if out != nil && len(raw) > 0 {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// Exposure asks which running containers are exposed to id.
func (c *Client) Exposure(ctx context.Context, id string) (*Exposure, error) {
	var ex Exposure
	return &ex, c.Do(ctx, http.MethodGet, "exposure/"+url.PathEscape(id), nil, &ex)
}

// Running lists running containers.
func (c *Client) Running(ctx context.Context) ([]RunningContainer, error) {
	var rc []RunningContainer
	return rc, c.Do(ctx, http.MethodGet, "running", nil, &rc)
}

// Events lists events after an ID.
func (c *Client) Events(ctx context.Context, after int64) ([]Event, error) {
	var evs []Event
	return evs, c.Do(ctx, http.MethodGet, fmt.Sprintf("events?after=%d", after), nil, &evs)
}
