package signing

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/image/certsdtest"
)

// TestSignVerifyPrivateCA: a registry serving HTTPS with a private CA is
// signed and verified by a Remote with the default transport once the CA
// is in the registry's certs.d directory (and not before).
func TestSignVerifyPrivateCA(t *testing.T) {
	ctx := context.Background()
	ca := certsdtest.NewCA(t, "moat test registry CA")
	_, host := certsdtest.Serve(t, ggcrregistry.New(ggcrregistry.WithReferrersSupport(true),
		ggcrregistry.Logger(log.New(io.Discard, "", 0))), ca, nil)
	pusher := &testReg{name: "ggcr-https", host: host, remote: func() *Remote {
		return &Remote{Keychain: authn.NewMultiKeychain(), Transport: ca.Transport(nil)}
	}}
	ref, dig := pushRandom(t, pusher, "proj/tls")
	key, keys := mustKey(t, "")

	root := t.TempDir()
	t.Setenv(image.CertsDirsEnv, root)
	_, err := (&Remote{Keychain: authn.NewMultiKeychain()}).Sign(ctx, ref+":v1", key, SignOptions{})
	var ua x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &ua) {
		t.Fatalf("signing without the CA: want an unknown-authority error, got %v", err)
	}

	certsdtest.WriteDir(t, root, host, map[string][]byte{"ca.crt": ca.PEM})
	if _, err := (&Remote{Keychain: authn.NewMultiKeychain()}).Sign(ctx, ref+":v1", key, SignOptions{Annotations: map[string]string{"env": "tls"}}); err != nil {
		t.Fatalf("signing with certs.d/%s/ca.crt: %v", host, err)
	}
	res, err := (&Remote{Keychain: authn.NewMultiKeychain(), All: true}).Verify(ctx, ref+"@"+dig.String(), keys)
	if err != nil || !res.Verified || res.Digest != dig.String() {
		t.Fatalf("verify with certs.d/%s/ca.crt: %v %+v", host, err, res)
	}
}
