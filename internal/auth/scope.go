package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Actions on repositories.
const (
	ActionPull   = "pull"
	ActionPush   = "push"
	ActionDelete = "delete"
	ActionAll    = "*"
)

// Roles in a project.
const (
	RoleReader = "reader"
	RoleWriter = "writer"
	RoleOwner  = "owner"
	// RoleScanner pulls like a reader and, for robot accounts, is exempt
	// from the vulnerability pull gate (scanners must read what is refused).
	RoleScanner = "scanner"
)

// ValidRole reports whether r is a known project role.
func ValidRole(r string) bool {
	return r == RoleReader || r == RoleWriter || r == RoleOwner || r == RoleScanner
}

// RoleActions returns the repository actions a role grants.
func RoleActions(role string) []string {
	switch role {
	case RoleReader, RoleScanner:
		return []string{ActionPull}
	case RoleWriter:
		return []string{ActionPull, ActionPush}
	case RoleOwner:
		return []string{ActionPull, ActionPush, ActionDelete}
	}
	return nil
}

// Access is one entry of a token's "access" claim (Docker token spec).
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// ParseScope parses "repository:name:pull,push" (the name may contain
// colons only in the "registry" type's resource, e.g. registry:catalog:*).
func ParseScope(s string) (Access, error) {
	first := strings.Index(s, ":")
	last := strings.LastIndex(s, ":")
	if first <= 0 || last == first || last == len(s)-1 {
		return Access{}, fmt.Errorf("scope %q: want type:name:actions", s)
	}
	a := Access{Type: s[:first], Name: s[first+1 : last]}
	for _, act := range strings.Split(s[last+1:], ",") {
		if act != "" && !slices.Contains(a.Actions, act) {
			a.Actions = append(a.Actions, act)
		}
	}
	if a.Name == "" || len(a.Actions) == 0 {
		return Access{}, fmt.Errorf("scope %q: empty name or actions", s)
	}
	return a, nil
}

// String formats an access as a scope.
func (a Access) String() string {
	return a.Type + ":" + a.Name + ":" + strings.Join(a.Actions, ",")
}

// ProjectOf returns the project of a repository name: its first component.
func ProjectOf(repo string) string {
	p, _, _ := strings.Cut(repo, "/")
	return p
}
