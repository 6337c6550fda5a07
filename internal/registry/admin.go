package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/internal/audit"
	"github.com/moat-dev/moat/internal/auth"
	"github.com/moat-dev/moat/internal/store"
)

// Admin API request bodies.
type (
	// UserRequest creates a user; an empty password gets a generated one.
	UserRequest struct {
		Name     string `json:"name"`
		Password string `json:"password,omitempty"`
		Admin    bool   `json:"admin,omitempty"`
	}
	// UserCreated answers a user creation; Password is set only when generated.
	UserCreated struct {
		store.User
		Password string `json:"password,omitempty"`
	}
	// ProjectRequest creates or updates a project.
	ProjectRequest struct {
		Name          string `json:"name"`
		Public        *bool  `json:"public,omitempty"`
		ImmutableTags *bool  `json:"immutable_tags,omitempty"`
		QuotaBytes    *int64 `json:"quota_bytes,omitempty"`
		// RequireSignature refuses pulls of images not signed by one of
		// the project's trusted keys (see /projects/P/trusted-keys).
		RequireSignature *bool `json:"require_signature,omitempty"`
	}
	// MemberRequest sets a member's role.
	MemberRequest struct {
		Role string `json:"role"`
	}
	// RobotRequest creates a robot account.
	RobotRequest struct {
		Name        string            `json:"name"`
		Description string            `json:"description,omitempty"`
		ExpiresAt   time.Time         `json:"expires_at,omitzero"`
		Permissions map[string]string `json:"permissions"`
	}
	// RobotCreated answers a robot creation with its one-time secret.
	RobotCreated struct {
		store.Robot
		Secret string `json:"secret"`
	}
	// GCReport is the result of a garbage collection.
	GCReport struct {
		DryRun       bool     `json:"dry_run"`
		Blobs        []string `json:"blobs"`
		Bytes        int64    `json:"bytes"`
		Orphans      []string `json:"orphans"`
		Uploads      int      `json:"stale_uploads"`
		GraceSeconds int64    `json:"grace_seconds"`
	}
)

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"errors": []apiError{{Code: http.StatusText(status), Message: msg}}})
}

// handleAdmin serves /api/v1/... for authenticated accounts.
func (s *Server) handleAdmin(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/v1/"), "/"), "/")
	if s.serveSigning(w, r, parts) {
		return
	}
	p, err := s.principal(r)
	if err != nil || p.Kind == auth.KindAnonymous {
		w.Header().Set("WWW-Authenticate", `Basic realm="moat"`)
		adminError(w, http.StatusUnauthorized, "authentication required")
		return
	}
	if s.serveTrustedKeys(w, r, p, parts) {
		return
	}
	ctx := r.Context()
	decode := func(v any) bool {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
			adminError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
			return false
		}
		return true
	}
	requireAdmin := func() bool {
		if !p.Admin {
			adminError(w, http.StatusForbidden, "only the system administrator may do this")
			return false
		}
		return true
	}
	ownerOf := func(project string) bool {
		return p.Admin || (p.Kind == auth.KindUser && p.Roles[project] == auth.RoleOwner)
	}
	rec := func(action, detail string, allowed bool) {
		if s.Audit != nil {
			s.Audit.Record(audit.Event{Actor: p.Name, ActorKind: p.Kind, Action: action, RemoteAddr: remoteIP(r), Allowed: allowed, Detail: detail})
		}
	}
	storeErr := func(err error) {
		switch {
		case errors.Is(err, store.ErrConflict):
			adminError(w, http.StatusConflict, err.Error())
		case errors.Is(err, store.ErrNotFound):
			adminError(w, http.StatusNotFound, err.Error())
		default:
			adminError(w, http.StatusInternalServerError, err.Error())
		}
	}
	route := r.Method + " " + parts[0]
	switch {
	case route == "GET whoami":
		writeJSON(w, http.StatusOK, map[string]any{"name": p.Name, "kind": p.Kind, "admin": p.Admin, "roles": p.Roles})

	case route == "GET users" && len(parts) == 1:
		if !requireAdmin() {
			return
		}
		us, err := s.Store.ListUsers(ctx)
		if err != nil {
			storeErr(err)
			return
		}
		writeJSON(w, http.StatusOK, nonNil(us))
	case route == "POST users" && len(parts) == 1:
		if !requireAdmin() {
			return
		}
		var req UserRequest
		if !decode(&req) {
			return
		}
		if err := validAccountName(req.Name); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		out := UserCreated{}
		pw := req.Password
		if pw == "" {
			pw = auth.RandomSecret(18)
			out.Password = pw
		}
		hash, err := auth.HashPassword(pw)
		if err != nil {
			storeErr(err)
			return
		}
		u, err := s.Store.CreateUser(ctx, req.Name, hash, req.Admin)
		if err != nil {
			rec(audit.ActionUserCreate, req.Name, false)
			storeErr(err)
			return
		}
		rec(audit.ActionUserCreate, req.Name, true)
		out.User = *u
		writeJSON(w, http.StatusCreated, out)
	case r.Method == "POST" && parts[0] == "users" && len(parts) == 3 && (parts[2] == "disable" || parts[2] == "enable"):
		if !requireAdmin() {
			return
		}
		disable := parts[2] == "disable"
		if disable && parts[1] == p.Name {
			adminError(w, http.StatusBadRequest, "you cannot disable your own account")
			return
		}
		if err := s.Store.SetUserDisabled(ctx, parts[1], disable); err != nil {
			storeErr(err)
			return
		}
		s.Auth.Invalidate()
		act := audit.ActionUserEnable
		if disable {
			act = audit.ActionUserDisable
		}
		rec(act, parts[1], true)
		w.WriteHeader(http.StatusNoContent)

	case route == "GET projects" && len(parts) == 1:
		ps, err := s.Store.ListProjects(ctx)
		if err != nil {
			storeErr(err)
			return
		}
		var vis []store.Project
		for _, pr := range ps {
			if p.Admin || p.Roles[pr.Name] != "" || pr.Public {
				vis = append(vis, pr)
			}
		}
		writeJSON(w, http.StatusOK, nonNil(vis))
	case route == "POST projects" && len(parts) == 1:
		if !requireAdmin() {
			return
		}
		var req ProjectRequest
		if !decode(&req) {
			return
		}
		if err := ValidateName(req.Name); err != nil || strings.Contains(req.Name, "/") {
			adminError(w, http.StatusBadRequest, fmt.Sprintf("invalid project name %q: one lowercase path component", req.Name))
			return
		}
		pr := store.Project{Name: req.Name}
		applyProject(&pr, req)
		out, err := s.Store.CreateProject(ctx, pr)
		if err != nil {
			storeErr(err)
			return
		}
		s.Auth.Invalidate()
		rec(audit.ActionProjectCreate, req.Name, true)
		writeJSON(w, http.StatusCreated, out)
	case r.Method == "PATCH" && parts[0] == "projects" && len(parts) == 2:
		if !ownerOf(parts[1]) {
			adminError(w, http.StatusForbidden, "only the project owner or an administrator may change settings")
			return
		}
		var req ProjectRequest
		if !decode(&req) {
			return
		}
		if req.RequireSignature != nil && s.Trust == nil {
			adminError(w, http.StatusNotImplemented, "this server does not enforce signatures")
			return
		}
		pr, err := s.Store.ProjectByName(ctx, parts[1])
		if err != nil {
			storeErr(err)
			return
		}
		wasRequired := pr.RequireSignature
		applyProject(pr, req)
		if err := s.Store.UpdateProject(ctx, *pr); err != nil {
			storeErr(err)
			return
		}
		s.Auth.Invalidate()
		detail := parts[1]
		if pr.RequireSignature != wasRequired {
			s.Trust.Changed(ctx)
			detail += fmt.Sprintf(" require_signature=%v", pr.RequireSignature)
		}
		rec(audit.ActionProjectUpdate, detail, true)
		writeJSON(w, http.StatusOK, pr)
	case r.Method == "GET" && parts[0] == "projects" && len(parts) == 3 && parts[2] == "members":
		if !p.Admin && (p.Kind != auth.KindUser || p.Roles[parts[1]] == "") {
			adminError(w, http.StatusForbidden, "only members (people, not robots) may list a project's members")
			return
		}
		ms, err := s.Store.ListMembers(ctx, parts[1])
		if err != nil {
			storeErr(err)
			return
		}
		writeJSON(w, http.StatusOK, nonNil(ms))
	case (r.Method == "PUT" || r.Method == "DELETE") && parts[0] == "projects" && len(parts) == 4 && parts[2] == "members":
		if !ownerOf(parts[1]) {
			rec(audit.ActionMemberAdd, parts[1]+" "+parts[3], false)
			adminError(w, http.StatusForbidden, "only the project owner or an administrator may manage members")
			return
		}
		if r.Method == "DELETE" {
			if err := s.Store.RemoveMember(ctx, parts[1], parts[3]); err != nil {
				storeErr(err)
				return
			}
			s.Auth.Invalidate()
			rec(audit.ActionMemberRemove, parts[1]+" "+parts[3], true)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		var req MemberRequest
		if !decode(&req) {
			return
		}
		if !auth.ValidRole(req.Role) {
			adminError(w, http.StatusBadRequest, fmt.Sprintf("unknown role %q: want reader, writer or owner", req.Role))
			return
		}
		if err := s.Store.SetMember(ctx, parts[1], parts[3], req.Role); err != nil {
			storeErr(err)
			return
		}
		s.Auth.Invalidate()
		rec(audit.ActionMemberAdd, parts[1]+" "+parts[3]+" "+req.Role, true)
		writeJSON(w, http.StatusOK, store.Member{Project: parts[1], User: parts[3], Role: req.Role})

	case route == "GET robots" && len(parts) == 1:
		rs, err := s.Store.ListRobots(ctx)
		if err != nil {
			storeErr(err)
			return
		}
		var vis []store.Robot
		for _, rb := range rs {
			all := p.Admin || len(rb.Permissions) > 0
			for proj := range rb.Permissions {
				all = all && ownerOf(proj)
			}
			if all {
				vis = append(vis, rb)
			}
		}
		writeJSON(w, http.StatusOK, nonNil(vis))
	case route == "POST robots" && len(parts) == 1:
		var req RobotRequest
		if !decode(&req) {
			return
		}
		name := req.Name
		if !strings.HasPrefix(name, auth.RobotPrefix) {
			name = auth.RobotPrefix + name
		}
		if err := validAccountName(strings.TrimPrefix(name, auth.RobotPrefix)); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		if len(req.Permissions) == 0 {
			adminError(w, http.StatusBadRequest, "a robot needs at least one project permission")
			return
		}
		for proj, role := range req.Permissions {
			if !auth.ValidRole(role) {
				adminError(w, http.StatusBadRequest, fmt.Sprintf("unknown role %q for project %s", role, proj))
				return
			}
			if !ownerOf(proj) {
				rec(audit.ActionRobotCreate, name, false)
				adminError(w, http.StatusForbidden, "only owners of every listed project (or an administrator) may create this robot")
				return
			}
		}
		secret := auth.RandomSecret(24)
		hash, err := auth.HashPassword(secret)
		if err != nil {
			storeErr(err)
			return
		}
		rb, err := s.Store.CreateRobot(ctx, store.Robot{Name: name, Description: req.Description, SecretHash: hash,
			ExpiresAt: req.ExpiresAt, CreatedBy: p.Name, Permissions: req.Permissions})
		if err != nil {
			storeErr(err)
			return
		}
		rec(audit.ActionRobotCreate, name, true)
		writeJSON(w, http.StatusCreated, RobotCreated{Robot: *rb, Secret: secret})
	case r.Method == "DELETE" && parts[0] == "robots" && len(parts) == 2:
		rb, err := s.Store.RobotByName(ctx, parts[1])
		if err != nil {
			storeErr(err)
			return
		}
		for proj := range rb.Permissions {
			if !ownerOf(proj) {
				adminError(w, http.StatusForbidden, "only owners of the robot's projects (or an administrator) may revoke it")
				return
			}
		}
		if err := s.Store.RevokeRobot(ctx, parts[1]); err != nil {
			storeErr(err)
			return
		}
		s.Auth.Invalidate()
		rec(audit.ActionRobotRevoke, parts[1], true)
		w.WriteHeader(http.StatusNoContent)

	case route == "POST gc":
		if !requireAdmin() {
			return
		}
		q := r.URL.Query()
		dry := q.Get("dry_run") == "true" || q.Get("dry_run") == "1"
		grace := time.Hour
		if g := q.Get("grace"); g != "" {
			d, err := time.ParseDuration(g)
			if err != nil || d < 0 {
				adminError(w, http.StatusBadRequest, "grace: want a duration like 1h")
				return
			}
			grace = d
		}
		rep, err := s.GC(ctx, dry, grace)
		if err != nil {
			adminError(w, http.StatusInternalServerError, err.Error())
			return
		}
		rec(audit.ActionGarbageCollect, fmt.Sprintf("dry_run=%v blobs=%d bytes=%d", dry, len(rep.Blobs), rep.Bytes), true)
		writeJSON(w, http.StatusOK, rep)

	case route == "GET audit":
		if !requireAdmin() {
			return
		}
		q := r.URL.Query()
		after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
		limit, _ := strconv.Atoi(q.Get("limit"))
		if limit <= 0 || limit > 10000 {
			limit = 1000
		}
		if s.Audit != nil {
			s.Audit.Flush()
		}
		evs, err := s.Store.ListEvents(ctx, store.EventFilter{Actor: q.Get("actor"), Action: q.Get("action"), Repository: q.Get("repository"), AfterID: after, Limit: limit})
		if err != nil {
			storeErr(err)
			return
		}
		writeJSON(w, http.StatusOK, nonNil(evs))
	default:
		adminError(w, http.StatusNotFound, "unknown admin endpoint "+r.Method+" "+r.URL.Path)
	}
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func applyProject(pr *store.Project, req ProjectRequest) {
	if req.Public != nil {
		pr.Public = *req.Public
	}
	if req.ImmutableTags != nil {
		pr.ImmutableTags = *req.ImmutableTags
	}
	if req.QuotaBytes != nil {
		pr.QuotaBytes = *req.QuotaBytes
	}
	if req.RequireSignature != nil {
		pr.RequireSignature = *req.RequireSignature
	}
}

func validAccountName(n string) error {
	if n == "" || len(n) > 64 {
		return fmt.Errorf("invalid name %q: 1 to 64 characters", n)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("invalid name %q: use lowercase letters, digits, '-', '_' and '.'", n)
		}
	}
	return nil
}
