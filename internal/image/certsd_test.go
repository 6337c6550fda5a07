package image_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/moat-dev/moat/internal/image"
	"github.com/moat-dev/moat/internal/image/certsdtest"
)

// httpsRegistry serves go-containerregistry's registry over HTTPS with a
// certificate from ca (requiring client certificates from clientCA when
// given) and pushes a small image to it; it returns the host and the
// image's reference and digest.
func httpsRegistry(t *testing.T, ca, clientCA *certsdtest.CA, client *certsdtest.Pair) (host, ref string, digest v1.Hash) {
	t.Helper()
	_, host = certsdtest.Serve(t, ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))), ca, clientCA)
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref = host + "/team/app:1.0"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithTransport(ca.Transport(client))); err != nil {
		t.Fatalf("push over HTTPS with an explicit transport: %v", err)
	}
	d, _ := img.Digest()
	return host, ref, d
}

// useCertsD points the default registry transport at root alone, through
// the environment variable users set.
func useCertsD(t *testing.T, root string) {
	t.Setenv(image.CertsDirsEnv, root)
}

func TestCertsDirPrivateCA(t *testing.T) {
	ctx := context.Background()
	ca := certsdtest.NewCA(t, "moat test registry CA")
	host, ref, dig := httpsRegistry(t, ca, nil, nil)
	root := filepath.Join(t.TempDir(), "certs.d")

	// (a) without a certs.d directory for the host: the system roots only
	useCertsD(t, root)
	_, err := image.Open(ctx, ref, image.Options{})
	var ua x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &ua) {
		t.Fatalf("without certs.d: want an unknown-authority error, got %v", err)
	}
	t.Logf("without certs.d: %v", err)
	if !strings.Contains(err.Error(), "certs.d/"+host+"/ca.crt") {
		t.Errorf("the error does not say where to put the CA: %v", err)
	}

	// (b) with <root>/127.0.0.1:PORT/ca.crt
	certsdtest.WriteDir(t, root, host, map[string][]byte{"ca.crt": ca.PEM})
	im, err := image.Open(ctx, ref, image.Options{})
	if err != nil {
		t.Fatalf("with certs.d/%s/ca.crt: %v", host, err)
	}
	defer im.Close()
	if im.Digest != dig.String() || len(im.Layers) != 2 {
		t.Fatalf("opened %s with %d layers, want %s with 2", im.Digest, len(im.Layers), dig)
	}
	// the layers are read through the same transport
	rc, err := im.Layers[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()

	// MOAT_CERTS_D takes a list: a directory without the host first
	useCertsD(t, t.TempDir()+string(filepath.ListSeparator)+root)
	if _, err := image.Open(ctx, ref, image.Options{}); err != nil {
		t.Fatalf("second directory of the list: %v", err)
	}
}

func TestCertsDirClientCertificate(t *testing.T) {
	ctx := context.Background()
	ca := certsdtest.NewCA(t, "moat test registry CA")
	clientCA := certsdtest.NewCA(t, "moat test client CA")
	client := clientCA.Client(t, "moat-tests")
	host, ref, dig := httpsRegistry(t, ca, clientCA, &client)
	root := t.TempDir()
	useCertsD(t, root)

	// the CA alone: the server refuses the handshake
	certsdtest.WriteDir(t, root, host, map[string][]byte{"ca.crt": ca.PEM})
	if _, err := image.Open(ctx, ref, image.Options{}); err == nil {
		t.Fatal("a server requiring client certificates accepted a client without one")
	}
	// (c) with client.cert + client.key
	certsdtest.WriteDir(t, root, host, map[string][]byte{"client.cert": client.CertPEM, "client.key": client.KeyPEM})
	im, err := image.Open(ctx, ref, image.Options{})
	if err != nil {
		t.Fatalf("with client.cert and client.key: %v", err)
	}
	im.Close()
	if im.Digest != dig.String() {
		t.Fatalf("digest %s, want %s", im.Digest, dig)
	}

	// A caller's --insecure transport keeps skipping verification, and
	// still presents the client certificate: no ca.crt needed.
	insecureRoot := t.TempDir()
	certsdtest.WriteDir(t, insecureRoot, host, map[string][]byte{"client.cert": client.CertPEM, "client.key": client.KeyPEM})
	base := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // what --insecure passes
	rt := &image.RegistryTransport{Base: base, Dirs: []string{insecureRoot}}
	if im, err := image.Open(ctx, ref, image.Options{Transport: rt}); err != nil {
		t.Fatalf("insecure base with a client certificate: %v", err)
	} else {
		im.Close()
	}
	// without the directory the insecure base alone has no client certificate
	rt = &image.RegistryTransport{Base: base, Dirs: []string{t.TempDir()}}
	if _, err := image.Open(ctx, ref, image.Options{Transport: rt}); err == nil {
		t.Fatal("insecure base without a client certificate was accepted")
	}
}

func TestCertsDirBadFiles(t *testing.T) {
	ctx := context.Background()
	ca := certsdtest.NewCA(t, "moat test registry CA")
	host, ref, _ := httpsRegistry(t, ca, nil, nil)
	client := ca.Client(t, "moat-tests")
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		file  string // the file the error must name
		say   string
	}{
		{"corrupt ca.crt", map[string][]byte{"ca.crt": []byte("this is not a certificate\n")}, "ca.crt", "no PEM CERTIFICATE"},
		{"damaged base64", map[string][]byte{"ca.crt": append([]byte("-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK\n-----END CERTIFICATE-----\n"), ca.PEM...)}, "ca.crt", "1 of its 2 CERTIFICATE blocks are not valid PEM"},
		{"not DER", map[string][]byte{"ca.crt": append(append([]byte{}, ca.PEM...), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"...)}, "ca.crt", "PEM block 2"},
		{"cert without key", map[string][]byte{"ca.crt": ca.PEM, "client.cert": client.CertPEM}, "client.cert", "no key client.key"},
		{"key without cert", map[string][]byte{"ca.crt": ca.PEM, "client.key": client.KeyPEM}, "client.key", "no client certificate"},
		{"key of another cert", map[string][]byte{"ca.crt": ca.PEM, "client.cert": client.CertPEM, "client.key": ca.Client(t, "other").KeyPEM}, "client.key", "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := certsdtest.WriteDir(t, root, host, tc.files)
			useCertsD(t, root)
			_, err := image.Open(ctx, ref, image.Options{})
			if err == nil {
				t.Fatal("opened the image despite the bad file")
			}
			t.Logf("%v", err)
			if want := filepath.Join(dir, tc.file); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.say) {
				t.Fatalf("error %q does not name %s and say %q", err, want, tc.say)
			}
		})
	}
}

// TestCertsDirHostNames: the directory for a registry is HOST:PORT, and
// for port 443 also the bare HOST, as docker names them; an unknown host
// is reached through the base transport unchanged.
func TestCertsDirHostNames(t *testing.T) {
	root := t.TempDir()
	ca := certsdtest.NewCA(t, "moat test registry CA")
	certsdtest.WriteDir(t, root, "registry.example", map[string][]byte{"ca.crt": ca.PEM})
	certsdtest.WriteDir(t, root, "registry.example:5000", map[string][]byte{"ca.crt": []byte("bad")})
	rt := &image.RegistryTransport{Dirs: []string{root}}
	try := func(url string) error {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		// a cancelled context: the transport is chosen, no connection is made
		ctx, cancel := context.WithCancel(req.Context())
		cancel()
		_, err := rt.RoundTrip(req.WithContext(ctx))
		return err
	}
	for _, u := range []string{"https://registry.example/v2/", "https://registry.example:443/v2/", "http://registry.example:5000/v2/", "https://other.example:5000/v2/"} {
		if err := try(u); err == nil || strings.Contains(err.Error(), "registry certificates") {
			t.Errorf("%s: want only the cancelled request's error, got %v", u, err)
		}
	}
	if err := try("https://registry.example:5000/v2/"); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "registry.example:5000", "ca.crt")) {
		t.Errorf("registry.example:5000 did not use its own directory: %v", err)
	}
}
