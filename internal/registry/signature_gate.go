package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/store"
)

// PullGate decides whether a manifest's content may be served, for
// projects that require signatures. internal/signing/registrygate
// implements it with offline cosign signature verification.
type PullGate interface {
	// Required reports whether project requires signatures.
	Required(project string) bool
	// CheckPull decides for the manifest digest (with its content) of
	// repository repo in project; src reads the repository's artifacts.
	CheckPull(ctx context.Context, src ArtifactSource, project, repo, digest string, content []byte) (allowed bool, reason string, err error)
}

// ArtifactSource reads a repository's manifests, referrers and blobs from
// the registry's own storage (it has the method set of signing.Source).
type ArtifactSource interface {
	// Manifest returns the manifest a tag or digest names; an error whose
	// NotFound method reports true when there is none.
	Manifest(ctx context.Context, ref string) ([]byte, error)
	// Referrers lists the manifests whose subject is digest.
	Referrers(ctx context.Context, digest string) ([]v1.Descriptor, error)
	// Blob returns a blob's content; more than max bytes is an error.
	Blob(ctx context.Context, digest string, max int64) ([]byte, error)
}

// errArtifactNotFound is ArtifactSource's "no such manifest".
type errArtifactNotFound struct{ ref string }

func (e errArtifactNotFound) Error() string  { return "manifest " + e.ref + " not found" }
func (e errArtifactNotFound) NotFound() bool { return true }

// checkPullSignature enforces the project's require-signature setting
// (Config.Signatures) before a manifest's content is served (GET; HEAD
// only reveals the digest, which signers need to sign): it answers 403
// DENIED and records a denied audit event when the image has no signature
// by a trusted key. It reports whether serving may go on and, for a pull
// the trusted keys allowed, why (which key signed), for the pull's audit
// event. Principals who may push to the repository are exempt, so that
// publishers can sign what they pushed (with cosign or moat).
func (s *Server) checkPullSignature(w http.ResponseWriter, r *http.Request, p *auth.Principal, rt route, repo *store.Repo, m *store.Manifest) (bool, string) {
	project, _, _ := strings.Cut(rt.name, "/")
	if s.Signatures == nil || !s.Signatures.Required(project) {
		return true, ""
	}
	// A publisher (an account that may push to the repository) reads the
	// manifest of what it pushed in order to sign it (cosign sign GETs it
	// with a pull-only token first): requiring a signature there would
	// make signing impossible. Everyone else, the deployers, gets only
	// signed images.
	if p != nil && s.Auth != nil {
		acct := *p
		acct.Granted = nil // the account's rights, not this token's scope
		if ok, err := s.Auth.Can(r.Context(), &acct, rt.name, auth.ActionPush); err == nil && ok {
			return true, "require-signature: not enforced for " + p.Name + ", who may push to " + rt.name
		}
	}
	allowed, reason, err := s.Signatures.CheckPull(r.Context(), &storeSource{s: s, repoID: repo.ID}, project, rt.name, m.Digest, m.Content)
	if err != nil {
		internalError(w, fmt.Errorf("signature check: %w", err))
		return false, ""
	}
	if allowed {
		if reason != "" {
			return true, "require-signature: " + reason
		}
		return true, ""
	}
	msg := fmt.Sprintf("pull of %s@%s refused: %s", rt.name, m.Digest, reason)
	if s.Audit != nil {
		e := audit.Event{Action: audit.ActionPull, Repository: rt.name, Digest: m.Digest, RemoteAddr: remoteIP(r),
			Allowed: false, Detail: "require-signature: " + reason}
		if p != nil {
			e.Actor, e.ActorKind = p.Name, p.Kind
		}
		s.Audit.Record(e)
	}
	writeError(w, http.StatusForbidden, codeDenied, msg)
	return false, ""
}

// storeSource reads a repository's signatures from the registry's own
// metadata and blob storage (no HTTP round trip).
type storeSource struct {
	s      *Server
	repoID int64
}

func (src *storeSource) Manifest(ctx context.Context, ref string) ([]byte, error) {
	m, err := src.s.Store.GetManifest(ctx, src.repoID, ref, true)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errArtifactNotFound{ref}
	}
	if err != nil {
		return nil, err
	}
	return m.Content, nil
}

func (src *storeSource) Referrers(ctx context.Context, digest string) ([]v1.Descriptor, error) {
	ms, err := src.s.Store.Referrers(ctx, src.repoID, digest)
	if err != nil {
		return nil, err
	}
	out := make([]v1.Descriptor, 0, len(ms))
	for _, m := range ms {
		h, err := v1.NewHash(m.Digest)
		if err != nil {
			continue
		}
		d := v1.Descriptor{MediaType: types.MediaType(m.MediaType), Digest: h, Size: m.Size, ArtifactType: m.ArtifactType}
		if m.Annotations != "" {
			json.Unmarshal([]byte(m.Annotations), &d.Annotations)
		}
		out = append(out, d)
	}
	return out, nil
}

func (src *storeSource) Blob(ctx context.Context, digest string, max int64) ([]byte, error) {
	if _, err := src.s.Store.BlobSize(ctx, src.repoID, digest); err != nil {
		return nil, fmt.Errorf("blob %s is not in the repository: %w", digest, err)
	}
	rc, err := src.s.Blobs.Open(ctx, digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("more than %d bytes", max)
	}
	return data, nil
}
