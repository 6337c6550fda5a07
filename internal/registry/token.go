package registry

import (
	"net/http"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
)

// handleToken implements the Docker registry token endpoint: GET with
// optional basic credentials, and the OAuth2 password grant over POST.
// There are no refresh tokens: clients authenticate again when a token
// expires.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	var user, pass string
	var hasCreds bool
	var scopeParams []string
	switch r.Method {
	case http.MethodGet:
		user, pass, hasCreds = r.BasicAuth()
		scopeParams = r.URL.Query()["scope"]
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
			return
		}
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type", "error_description": "only grant_type=password is supported (no refresh tokens)"})
			return
		}
		user, pass, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
		scopeParams = r.PostForm["scope"]
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "use GET or POST")
		return
	}
	if svc := r.FormValue("service"); svc != "" && svc != s.Auth.ServiceName {
		writeError(w, http.StatusBadRequest, codeUnsupported, "unknown service "+svc)
		return
	}
	var scopes []auth.Access
	for _, sp := range scopeParams {
		for _, one := range strings.Fields(sp) {
			a, err := auth.ParseScope(one)
			if err != nil {
				writeError(w, http.StatusBadRequest, codeUnsupported, err.Error())
				return
			}
			scopes = append(scopes, a)
		}
	}
	p := auth.Anonymous
	if hasCreds {
		var err error
		p, err = s.Auth.Authenticate(r.Context(), user, pass)
		if err != nil {
			if s.Audit != nil {
				s.Audit.Record(audit.Event{Actor: user, ActorKind: kindOf(user), Action: audit.ActionLogin, RemoteAddr: remoteIP(r), Allowed: false, Detail: "invalid credentials or disabled account"})
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="moat"`)
			writeError(w, http.StatusUnauthorized, codeUnauthorized, "invalid username or password, or the account is disabled or expired")
			return
		}
	} else if !s.Auth.AllowAnonymous {
		w.Header().Set("WWW-Authenticate", `Basic realm="moat"`)
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "authentication required: anonymous access is disabled")
		return
	}
	tok, issued, err := s.Auth.IssueToken(r.Context(), p, scopes)
	if err != nil {
		internalError(w, err)
		return
	}
	if info, _ := r.Context().Value(ctxKey{}).(*reqInfo); info != nil {
		info.actor = p.Name
	}
	if s.Audit != nil && hasCreds {
		var sc []string
		for _, a := range scopes {
			sc = append(sc, a.String())
		}
		s.Audit.Record(audit.Event{Actor: p.Name, ActorKind: p.Kind, Action: audit.ActionLogin, RemoteAddr: remoteIP(r), Allowed: true, Detail: strings.Join(sc, " ")})
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"token": tok, "access_token": tok,
		"expires_in": int(s.Auth.TokenTTL / time.Second),
		"issued_at":  issued.UTC().Format(time.RFC3339),
	})
}

func kindOf(name string) string {
	if strings.HasPrefix(name, auth.RobotPrefix) {
		return auth.KindRobot
	}
	return auth.KindUser
}
