package signing

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/moat-dev/moat/internal/image"
)

// Media and artifact types of cosign's registry formats.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	DSSEMediaType          = "application/vnd.dsse.envelope.v1+json"
	// SignatureArtifactType is what cosign (--registry-referrers-mode
	// oci-1-1) gives signature referrers; moat uses the same.
	SignatureArtifactType = "application/vnd.dev.cosign.artifact.sig.v1+json"
	// AttestationArtifactType is what cosign gives attestation referrers.
	AttestationArtifactType = "application/vnd.in-toto+json"
	// SignatureAnnotation holds the base64 signature on a signature layer.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// PredicateTypeAnnotation names an attestation layer's predicate type.
	PredicateTypeAnnotation = "predicateType"
)

// Limits on what verification examines, so that a registry listing
// thousands of artifacts cannot make moat do unbounded work.
const (
	MaxReferrers  = 1000 // referrer descriptors examined per image
	MaxSignatures = 1000 // signature layers examined per image (tag + referrers)
	maxManifest   = 4 << 20
)

// Remote says how to reach registries.
type Remote struct {
	// Insecure allows plain HTTP (and unverified TLS) registries: HTTPS is
	// tried first, then HTTP.
	Insecure bool
	// PlainHTTP speaks plain HTTP to the registries the references name,
	// without first trying HTTPS (for a registry known to serve HTTP, such
	// as one on 127.0.0.1).
	PlainHTTP bool
	// Keychain resolves credentials; nil means the docker config keychain.
	Keychain authn.Keychain
	// Transport overrides the HTTP transport; nil means one made (and then
	// kept) on first use, which reads the certs.d directories
	// (image.RegistryTransport).
	Transport http.RoundTripper
	// Tag and Referrers choose where signatures are stored and looked up;
	// both false means both true.
	NoTag, NoReferrers bool
	// All makes Verify read both places for every image. By default the
	// referrers API is read only when the cosign tag holds no valid
	// signature: the verdict is the same (one valid signature by a
	// trusted key suffices), half the requests when the tag has one.
	All bool

	mu     sync.Mutex // guards Transport, puller and shared: a Remote may verify several images at once
	puller *remote.Puller
	shared map[string]*remote.Puller // registry -> puller over one prepared, authenticated transport
	plain  sync.Map                  // registry hosts reached over plain HTTP (PlainHTTP)
}

func (r *Remote) nameOpts() []name.Option {
	if r.Insecure || r.PlainHTTP {
		return []name.Option{name.Insecure}
	}
	return nil
}

// parse parses an image reference and, with PlainHTTP, marks its registry
// as one to reach over plain HTTP.
func (r *Remote) parse(ref string) (name.Reference, error) {
	nr, err := name.ParseReference(ref, r.nameOpts()...)
	if err == nil && r.PlainHTTP {
		r.plain.Store(nr.Context().RegistryStr(), true)
	}
	return nr, err
}

// plainHTTP sends requests for the registries in hosts over plain HTTP, so
// that go-containerregistry's HTTPS-first probe of an insecure registry
// costs no TLS attempt.
type plainHTTP struct {
	base  http.RoundTripper
	hosts *sync.Map
}

func (p plainHTTP) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "https" {
		if _, ok := p.hosts.Load(req.URL.Host); ok {
			req = req.Clone(req.Context())
			req.URL.Scheme = "http"
		}
	}
	return p.base.RoundTrip(req)
}

func (r *Remote) options(ctx context.Context) []remote.Option {
	kc := r.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Transport == nil {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.MaxIdleConnsPerHost = 16
		if r.Insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure asked for it
		}
		// CA roots and client certificates of the registries' certs.d
		// directories, as docker and podman read them; --insecure's
		// unverified TLS is kept by the per-host clones.
		r.Transport = image.NewRegistryTransport(t)
		if r.PlainHTTP {
			r.Transport = plainHTTP{base: r.Transport, hosts: &r.plain}
		}
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(r.Transport),
		remote.WithUserAgent("moat"), remote.WithJobs(4)}
}

func (r *Remote) pull(ctx context.Context, reg name.Registry) ([]remote.Option, error) {
	opts := r.options(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.shared[reg.RegistryStr()]; p != nil {
		return append(opts, remote.Reuse(p)), nil
	}
	if r.puller == nil {
		p, err := remote.NewPuller(opts...)
		if err != nil {
			return nil, err
		}
		r.puller = p
	}
	return append(opts, remote.Reuse(r.puller)), nil
}

// Prepare readies, for each registry the references name, one
// authenticated connection for all their repositories: one ping and one
// token (with a pull scope per repository) instead of one per repository.
// Verifying many images then costs the registry one authentication. A
// registry that cannot be prepared is left to the usual per-repository
// handshake.
func (r *Remote) Prepare(ctx context.Context, refs []string) {
	byReg := map[string][]string{}
	regs := map[string]name.Registry{}
	for _, ref := range refs {
		nr, err := r.parse(ref)
		if err != nil {
			continue
		}
		repo := nr.Context()
		key := repo.RegistryStr()
		regs[key] = repo.Registry
		scope := repo.Scope(transport.PullScope)
		dup := false
		for _, s := range byReg[key] {
			dup = dup || s == scope
		}
		if !dup {
			byReg[key] = append(byReg[key], scope)
		}
	}
	opts := r.options(ctx)
	kc := r.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	for key, scopes := range byReg {
		reg := regs[key]
		auth, err := authn.Resolve(ctx, kc, reg)
		if err != nil {
			continue
		}
		tr, err := transport.NewWithContext(ctx, reg, auth, transport.NewUserAgent(r.Transport, "moat"), scopes)
		if err != nil {
			continue
		}
		p, err := remote.NewPuller(append(opts, remote.WithTransport(tr))...)
		if err != nil {
			continue
		}
		r.mu.Lock()
		if r.shared == nil {
			r.shared = map[string]*remote.Puller{}
		}
		r.shared[key] = p
		r.mu.Unlock()
	}
}

// Subject is a resolved image: its repository, digest and descriptor.
type Subject struct {
	Ref        name.Digest
	Descriptor v1.Descriptor
}

// Resolve turns REF (tag or digest) into the image manifest digest with a
// HEAD request (GET when the registry does not answer HEAD). Signing always
// works on the digest, never on a tag.
func (r *Remote) Resolve(ctx context.Context, ref string) (*Subject, error) {
	nr, err := r.parse(ref)
	if err != nil {
		return nil, fmt.Errorf("parse reference %q: %w", ref, err)
	}
	opts, err := r.pull(ctx, nr.Context().Registry)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Head(nr, opts...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("image %s not found", ref)
		}
		full, gerr := remote.Get(nr, opts...)
		if gerr != nil {
			return nil, fmt.Errorf("resolve %s: %w", ref, gerr)
		}
		desc = &full.Descriptor
	}
	if d, ok := nr.(name.Digest); ok && d.DigestStr() != desc.Digest.String() {
		return nil, fmt.Errorf("registry answered digest %s for %s", desc.Digest, ref)
	}
	return &Subject{Ref: nr.Context().Digest(desc.Digest.String()),
		Descriptor: v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}}, nil
}

// subjectFromDigest parses REF and, when it already names a digest, avoids
// the round trip to the registry (verification only needs the digest).
func (r *Remote) subjectFromRef(ctx context.Context, ref string) (*Subject, error) {
	nr, err := r.parse(ref)
	if err != nil {
		return nil, fmt.Errorf("parse reference %q: %w", ref, err)
	}
	if d, ok := nr.(name.Digest); ok {
		h, err := v1.NewHash(d.DigestStr())
		if err != nil {
			return nil, fmt.Errorf("reference %q: %w", ref, err)
		}
		return &Subject{Ref: d, Descriptor: v1.Descriptor{Digest: h}}, nil
	}
	return r.Resolve(ctx, ref)
}

// cosignTag is the tag cosign uses for an attachment of digest d:
// "sha256-<hex>.<suffix>".
func cosignTag(d name.Digest, suffix string) name.Tag {
	return d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + "." + suffix)
}

func isNotFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return true
			}
		}
	}
	return false
}

// Layers returns the layer digests and media types of the image manifest
// subj names (for an index, of its first image).
func (r *Remote) Layers(ctx context.Context, subj *Subject) ([]ProvenanceLayer, error) {
	opts, err := r.pull(ctx, subj.Ref.Context().Registry)
	if err != nil {
		return nil, err
	}
	d, err := remote.Get(subj.Ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", subj.Ref, err)
	}
	var m v1.Manifest
	if d.MediaType.IsIndex() {
		return nil, nil // a multi-platform index: its layers belong to each platform's manifest
	}
	if err := json.Unmarshal(d.Manifest, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", subj.Ref, err)
	}
	var out []ProvenanceLayer
	for _, l := range m.Layers {
		out = append(out, ProvenanceLayer{Digest: l.Digest.String(), MediaType: string(l.MediaType)})
	}
	return out, nil
}
