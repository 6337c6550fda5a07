package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/store"
)

// TrustStore manages the keys the server holds for signatures: each
// project's trusted public keys and the registry's own signing key (which
// signs scan-on-push attestations). internal/signing/registrygate
// implements it, storing the keys sealed under the server's master key.
type TrustStore interface {
	ListTrustedKeys(ctx context.Context, project string) ([]TrustedKey, error)
	// AddTrustedKey parses and stores a public key (PEM); an invalid key
	// is an error wrapping ErrInvalidKey.
	AddTrustedKey(ctx context.Context, project, name string, publicKeyPEM []byte, addedBy string) (*TrustedKey, error)
	RemoveTrustedKey(ctx context.Context, project, name string) error
	// Changed is told that a project's require-signature switch changed.
	Changed(ctx context.Context)
	// RegistryKey describes the registry's signing key; store.ErrNotFound
	// when the server has none.
	RegistryKey(ctx context.Context) (*RegistryKey, error)
}

// ErrInvalidKey is wrapped by TrustStore errors about the key given.
var ErrInvalidKey = errors.New("invalid key")

// TrustedKey is a project's trusted public key as the admin API shows it.
type TrustedKey struct {
	Project     string    `json:"project"`
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	Algorithm   string    `json:"algorithm"`
	PublicKey   string    `json:"public_key"`
	AddedBy     string    `json:"added_by,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// TrustedKeyRequest adds a trusted key to a project.
type TrustedKeyRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"` // PEM
}

// RegistryKey is the registry's public signing key.
type RegistryKey struct {
	Fingerprint string    `json:"fingerprint"`
	Algorithm   string    `json:"algorithm"`
	PublicKey   string    `json:"public_key"`
	CreatedAt   time.Time `json:"created_at"`
}

// serveSigning answers the signing endpoints of the admin API; it reports
// whether the request was one of them. GET signing/public-key (the
// registry key's PEM) needs no authentication: it is what users verify
// the registry's attestations with.
func (s *Server) serveSigning(w http.ResponseWriter, r *http.Request, parts []string) bool {
	if len(parts) != 2 || parts[0] != "signing" || (parts[1] != "public-key" && parts[1] != "registry-key") {
		return false
	}
	if r.Method != http.MethodGet {
		adminError(w, http.StatusMethodNotAllowed, "use GET")
		return true
	}
	if s.Trust == nil {
		adminError(w, http.StatusNotFound, "this server holds no registry signing key")
		return true
	}
	k, err := s.Trust.RegistryKey(r.Context())
	if errors.Is(err, store.ErrNotFound) {
		adminError(w, http.StatusNotFound, "this server has no registry signing key (moat serve --sign-attestations creates one)")
		return true
	}
	if err != nil {
		adminError(w, http.StatusInternalServerError, err.Error())
		return true
	}
	if parts[1] == "registry-key" {
		writeJSON(w, http.StatusOK, k)
		return true
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="registry.pub"`)
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(k.PublicKey))
	return true
}

// serveTrustedKeys answers /api/v1/projects/P/trusted-keys[/NAME]: members
// list, owners and administrators add and remove. It reports whether the
// request was one of these.
func (s *Server) serveTrustedKeys(w http.ResponseWriter, r *http.Request, p *auth.Principal, parts []string) bool {
	if len(parts) < 3 || len(parts) > 4 || parts[0] != "projects" || parts[2] != "trusted-keys" {
		return false
	}
	ctx := r.Context()
	project := parts[1]
	rec := func(action, detail string, allowed bool) {
		if s.Audit != nil {
			s.Audit.Record(audit.Event{Actor: p.Name, ActorKind: p.Kind, Action: action, RemoteAddr: remoteIP(r), Allowed: allowed, Detail: detail})
		}
	}
	owner := p.Admin || (p.Kind == auth.KindUser && p.Roles[project] == auth.RoleOwner)
	if s.Trust == nil {
		adminError(w, http.StatusNotImplemented, "this server does not manage trusted keys")
		return true
	}
	if _, err := s.Store.ProjectByName(ctx, project); err != nil {
		if errors.Is(err, store.ErrNotFound) && !p.Admin && p.Roles[project] == "" {
			adminError(w, http.StatusForbidden, "only members of "+project+" may see its trusted keys")
			return true
		}
		trustStoreErr(w, fmt.Errorf("project %s: %w", project, err))
		return true
	}
	switch {
	case r.Method == http.MethodGet && len(parts) == 3:
		if !p.Admin && p.Roles[project] == "" {
			adminError(w, http.StatusForbidden, "only members of "+project+" may list its trusted keys")
			return true
		}
		ks, err := s.Trust.ListTrustedKeys(ctx, project)
		if err != nil {
			trustStoreErr(w, err)
			return true
		}
		writeJSON(w, http.StatusOK, nonNil(ks))
	case r.Method == http.MethodPost && len(parts) == 3:
		if !owner {
			rec(audit.ActionTrustAdd, project, false)
			adminError(w, http.StatusForbidden, "only the project owner or an administrator may add trusted keys")
			return true
		}
		var req TrustedKeyRequest
		if err := decodeJSON(w, r, &req); err != nil {
			adminError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
			return true
		}
		if err := validKeyName(req.Name); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return true
		}
		k, err := s.Trust.AddTrustedKey(ctx, project, req.Name, []byte(req.PublicKey), p.Name)
		if err != nil {
			rec(audit.ActionTrustAdd, project+" "+req.Name, false)
			trustStoreErr(w, err)
			return true
		}
		rec(audit.ActionTrustAdd, fmt.Sprintf("%s %s %s", project, k.Name, k.Fingerprint), true)
		writeJSON(w, http.StatusCreated, k)
	case r.Method == http.MethodDelete && len(parts) == 4:
		if !owner {
			rec(audit.ActionTrustRemove, project+" "+parts[3], false)
			adminError(w, http.StatusForbidden, "only the project owner or an administrator may remove trusted keys")
			return true
		}
		if err := s.Trust.RemoveTrustedKey(ctx, project, parts[3]); err != nil {
			trustStoreErr(w, fmt.Errorf("trusted key %s of project %s: %w", parts[3], project, err))
			return true
		}
		rec(audit.ActionTrustRemove, project+" "+parts[3], true)
		w.WriteHeader(http.StatusNoContent)
	default:
		adminError(w, http.StatusMethodNotAllowed, "use GET or POST on trusted-keys, DELETE on trusted-keys/NAME")
	}
	return true
}

func trustStoreErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalidKey):
		adminError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrConflict):
		adminError(w, http.StatusConflict, err.Error()+": remove the existing key first, or choose another --name")
	case errors.Is(err, store.ErrNotFound):
		adminError(w, http.StatusNotFound, err.Error())
	default:
		adminError(w, http.StatusInternalServerError, err.Error())
	}
}

// validKeyName accepts names like account names: lowercase letters,
// digits, '-', '_' and '.', 1 to 64 characters.
func validKeyName(n string) error {
	if err := validAccountName(n); err != nil {
		return fmt.Errorf("key name: %w", err)
	}
	return nil
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v)
}
