package registry

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// The patterns are compiled on first use, not at process start (every moat
// command links this package).
var (
	nameRe = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	})
	tagRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`) })
)

// ValidateName checks a repository name against the distribution spec's
// grammar (which also rules out path traversal: no "..", no empty
// components, no leading slash).
func ValidateName(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("repository name is %d characters long, the limit is 255", len(name))
	}
	if !nameRe().MatchString(name) {
		return fmt.Errorf("invalid repository name %q: want lowercase components [a-z0-9] separated by '/', '.', '_', '__' or '-'", name)
	}
	return nil
}

// ValidateTag checks a tag.
func ValidateTag(tag string) error {
	if !tagRe().MatchString(tag) {
		return fmt.Errorf("invalid tag %q: want [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", tag)
	}
	return nil
}

// route is a parsed /v2/ path.
type route struct {
	kind string // base, catalog, manifest, blob, uploads, upload, tags, referrers
	name string
	ref  string // tag/digest, digest, or upload id
}

// parsePath splits a /v2/ URL path into the endpoint and repository name.
func parsePath(p string) (route, bool) {
	if p == "/v2/" || p == "/v2" {
		return route{kind: "base"}, true
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{}, false
	}
	if rest == "_catalog" {
		return route{kind: "catalog"}, true
	}
	c := strings.Split(rest, "/")
	n := len(c)
	switch {
	case n >= 4 && c[n-3] == "blobs" && c[n-2] == "uploads":
		if c[n-1] == "" {
			return route{kind: "uploads", name: strings.Join(c[:n-3], "/")}, true
		}
		return route{kind: "upload", name: strings.Join(c[:n-3], "/"), ref: c[n-1]}, true
	case n >= 3 && c[n-2] == "blobs" && c[n-1] == "uploads":
		return route{kind: "uploads", name: strings.Join(c[:n-2], "/")}, true
	case n >= 3 && c[n-2] == "tags" && c[n-1] == "list":
		return route{kind: "tags", name: strings.Join(c[:n-2], "/")}, true
	case n >= 3 && c[n-2] == "manifests":
		return route{kind: "manifest", name: strings.Join(c[:n-2], "/"), ref: c[n-1]}, true
	case n >= 3 && c[n-2] == "blobs":
		return route{kind: "blob", name: strings.Join(c[:n-2], "/"), ref: c[n-1]}, true
	case n >= 3 && c[n-2] == "referrers":
		return route{kind: "referrers", name: strings.Join(c[:n-2], "/"), ref: c[n-1]}, true
	}
	return route{}, false
}
