package signing

import (
	"bufio"
	"context"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// tlsCounting counts connections whose first byte is a TLS handshake
// record (0x16): HTTPS attempts against a plain-HTTP server.
type tlsCounting struct {
	net.Listener
	tls *atomic.Int64
}

func (l tlsCounting) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &peekConn{Conn: c, r: bufio.NewReader(c), tls: l.tls}, nil
}

type peekConn struct {
	net.Conn
	r      *bufio.Reader
	tls    *atomic.Int64
	peeked bool
}

func (c *peekConn) Read(p []byte) (int, error) {
	if !c.peeked {
		c.peeked = true
		if b, err := c.r.Peek(1); err == nil && b[0] == 0x16 {
			c.tls.Add(1)
		}
	}
	return c.r.Read(p)
}

// TestPlainHTTPSkipsTLSProbe: with PlainHTTP, signing and verifying reach a
// plain-HTTP registry without the HTTPS attempt that Insecure makes first,
// and give the same result.
func TestPlainHTTPSkipsTLSProbe(t *testing.T) {
	ctx := context.Background()
	var tlsTries atomic.Int64
	ts := httptest.NewUnstartedServer(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true),
		ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	ts.Listener = tlsCounting{Listener: ts.Listener, tls: &tlsTries}
	ts.Start()
	t.Cleanup(ts.Close)
	host := strings.TrimPrefix(ts.URL, "http://")
	reg := &testReg{name: "ggcr", host: host, remote: func() *Remote {
		return &Remote{Insecure: true, Keychain: authn.NewMultiKeychain()}
	}}
	ref, dig := pushRandom(t, reg, "proj/plain")
	key, keys := mustKey(t, "")
	plain := &Remote{PlainHTTP: true, Keychain: authn.NewMultiKeychain()}
	tlsTries.Store(0)
	if _, err := plain.Sign(ctx, ref+":v1", key, SignOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := plain.Verify(ctx, ref+"@"+dig.String(), keys)
	if err != nil || !res.Verified {
		t.Fatalf("verify over plain HTTP: %v %+v", err, res)
	}
	if n := tlsTries.Load(); n != 0 {
		t.Fatalf("PlainHTTP made %d HTTPS attempts", n)
	}
	// The same with Insecure tries HTTPS first (what PlainHTTP avoids).
	res2, err := (&Remote{Insecure: true, Keychain: authn.NewMultiKeychain()}).Verify(ctx, ref+"@"+dig.String(), keys)
	if err != nil || !res2.Verified || len(res2.Signatures) != len(res.Signatures) {
		t.Fatalf("verify with Insecure: %v %+v", err, res2)
	}
	if tlsTries.Load() == 0 {
		t.Fatal("expected Insecure to try HTTPS first; the probe counter may be broken")
	}
}
