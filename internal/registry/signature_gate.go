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
	"github.com/moat-dev/moat/internal/signing"
	"github.com/moat-dev/moat/internal/store"
)

// checkPullSignature enforces the project's require-signature setting
// (Config.Signatures) before a manifest's content is served (GET; HEAD
// only reveals the digest, which signers need to sign): it answers 403
// DENIED and records a denied audit event when the image has no signature
// by a trusted key. It reports whether serving may go on.
func (s *Server) checkPullSignature(w http.ResponseWriter, r *http.Request, p *auth.Principal, rt route, repo *store.Repo, m *store.Manifest) bool {
	project, _, _ := strings.Cut(rt.name, "/")
	if !s.Signatures.Required(project) {
		return true
	}
	d, err := s.Signatures.Check(r.Context(), &storeSource{s: s, repoID: repo.ID}, project, rt.name, m.Digest, m.Content)
	if err != nil {
		internalError(w, fmt.Errorf("signature check: %w", err))
		return false
	}
	if d.Allowed {
		return true
	}
	msg := fmt.Sprintf("pull of %s@%s refused: %s", rt.name, m.Digest, d.Reason)
	if s.Audit != nil {
		e := audit.Event{Action: audit.ActionPull, Repository: rt.name, Digest: m.Digest, RemoteAddr: remoteIP(r),
			Allowed: false, Detail: "require-signature: " + d.Reason}
		if p != nil {
			e.Actor, e.ActorKind = p.Name, p.Kind
		}
		s.Audit.Record(e)
	}
	writeError(w, http.StatusForbidden, codeDenied, msg)
	return false
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
		return nil, signing.ErrNotFound
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
