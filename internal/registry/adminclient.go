package registry

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// AdminClient calls the admin REST API with basic credentials.
type AdminClient struct {
	Server   string // base URL, e.g. http://127.0.0.1:5000
	Username string
	Password string
	HTTP     *http.Client
}

// NewAdminClient returns a client; caFile (optional) adds a trusted CA,
// for example the certificate of `moat serve --dev`.
func NewAdminClient(server, user, password, caFile string) (*AdminClient, error) {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool, _ := x509.SystemCertPool()
		if pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificates", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &AdminClient{Server: strings.TrimRight(server, "/"), Username: user, Password: password,
		HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Minute}}, nil
}

// Do sends a JSON request to /api/v1/<path> and decodes the answer into out.
func (c *AdminClient) Do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.Server+"/api/v1/"+path, body)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.Username, c.Password)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
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
		if json.Unmarshal(raw, &e) == nil && len(e.Errors) > 0 {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Errors[0].Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(raw) > 0 {
		return json.Unmarshal(raw, out)
	}
	return nil
}
