package registry

import (
	"context"
	"fmt"
	"net/http"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/store"
)

// PushNotifier is told about every manifest a push committed (after the
// write, so it never blocks or fails the push). internal/guard implements
// it to queue scans.
type PushNotifier interface {
	ManifestPushed(ctx context.Context, repo string, repoID int64, m *store.Manifest)
}

// ImageGate decides whether a manifest's content may be served to p (for
// example refusing images with vulnerabilities). internal/guard
// implements it.
type ImageGate interface {
	CheckImagePull(ctx context.Context, p *auth.Principal, repo string, m *store.Manifest) (allowed bool, reason string, err error)
}

// notifyPush tells the PushNotifier about a committed manifest.
func (s *Server) notifyPush(r *http.Request, repo *store.Repo, name string, m *store.Manifest) {
	if s.OnPush != nil {
		s.OnPush.ManifestPushed(context.WithoutCancel(r.Context()), name, repo.ID, m)
	}
}

// checkImageGate enforces the ImageGate before a manifest's content is
// served: a refusal answers 403 DENIED with the gate's reason and is
// recorded as a denied audit event. It reports whether serving may go on.
func (s *Server) checkImageGate(w http.ResponseWriter, r *http.Request, p *auth.Principal, name string, m *store.Manifest) bool {
	if s.Gate == nil {
		return true
	}
	allowed, reason, err := s.Gate.CheckImagePull(r.Context(), p, name, m)
	if err != nil {
		internalError(w, fmt.Errorf("pull gate: %w", err))
		return false
	}
	if allowed {
		return true
	}
	if s.Audit != nil {
		e := audit.Event{Action: audit.ActionPull, Repository: name, Digest: m.Digest, RemoteAddr: remoteIP(r),
			Allowed: false, Detail: "pull gate: " + reason}
		if p != nil {
			e.Actor, e.ActorKind = p.Name, p.Kind
		}
		s.Audit.Record(e)
	}
	writeError(w, http.StatusForbidden, codeDenied, reason)
	return false
}
