package image

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func openRemote(ctx context.Context, ref string, opts Options) (*Image, error) {
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("not a valid image reference: %w", err)
	}
	want, err := opts.platform()
	if err != nil {
		return nil, err
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	rt := opts.Transport
	if rt == nil {
		rt = NewRegistryTransport(nil) // certs.d CAs and client certificates
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithPlatform(*want), remote.WithTransport(rt)}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return nil, explainRemote(r, err)
	}
	im := &Image{Source: "registry", Reference: r.Name()}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, explainRemote(r, err)
		}
		imf, err := idx.IndexManifest()
		if err != nil {
			return nil, explainRemote(r, err)
		}
		child := func(h v1Hash) (*v1IndexManifest, error) {
			sub, err := idx.ImageIndex(h)
			if err != nil {
				return nil, err
			}
			return sub.IndexManifest()
		}
		d, err := selectPlatform(imf, want, child)
		if err != nil {
			return nil, err
		}
		img, err := remote.Image(r.Context().Digest(d.Digest.String()), ropts...)
		if err != nil {
			return nil, explainRemote(r, err)
		}
		im.Digest = d.Digest.String()
		if err := fromV1(img, im); err != nil {
			return nil, err
		}
		return im, nil
	}
	img, err := desc.Image()
	if err != nil {
		return nil, explainRemote(r, err)
	}
	im.Digest = desc.Digest.String()
	if err := fromV1(img, im); err != nil {
		return nil, err
	}
	return im, nil
}

// explainRemote turns registry errors into messages that say what to do.
func explainRemote(r name.Reference, err error) error {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Errorf("registry %s presented a certificate signed by an unknown authority: put its CA certificate in %s/%s/ca.crt (or /etc/docker/certs.d, or a directory listed in $%s): %w",
			r.Context().RegistryStr(), "/etc/containers/certs.d", r.Context().RegistryStr(), CertsDirsEnv, err)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("registry %s refused access (%d): log in with `docker login %s` or check your permissions: %w", r.Context().RegistryStr(), te.StatusCode, r.Context().RegistryStr(), err)
		case http.StatusNotFound:
			return fmt.Errorf("%s not found in registry %s: %w", r.Name(), r.Context().RegistryStr(), err)
		}
		if te.StatusCode >= 500 {
			return fmt.Errorf("registry %s failed (%d); try again later: %w", r.Context().RegistryStr(), te.StatusCode, err)
		}
	}
	return err
}
