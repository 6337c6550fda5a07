package policy

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
)

// pattern is a glob: "*" matches within one path segment, "**" matches
// anything (including "/"), "?" one character; everything else literally.
type pattern struct {
	src string
	re  *regexp.Regexp
}

func compilePattern(s string) (pattern, error) {
	if strings.TrimSpace(s) != s || s == "" {
		return pattern{}, fmt.Errorf("pattern %q must not be empty or have surrounding spaces", s)
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*':
			if i+1 < len(s) && s[i+1] == '*' {
				b.WriteString(".*")
				i++
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return pattern{}, fmt.Errorf("pattern %q: %v", s, err)
	}
	return pattern{src: s, re: re}, nil
}

func (p pattern) match(s string) bool { return p.re.MatchString(s) }

type patterns []pattern

func (ps patterns) match(s string) (string, bool) {
	for _, p := range ps {
		if p.match(s) {
			return p.src, true
		}
	}
	return "", false
}

func (ps patterns) srcs() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.src
	}
	return out
}

// ImageRef is a parsed image reference.
type ImageRef struct {
	// Registry is the host ("docker.io" for Docker Hub).
	Registry string
	// Repository is the path in the registry ("library/nginx").
	Repository string
	Tag        string
	Digest     string
}

// Full is "registry/repository".
func (r ImageRef) Full() string { return r.Registry + "/" + r.Repository }

var refCache struct {
	sync.RWMutex
	m map[string]ImageRef
}

// ParseImageRef parses a reference as docker does: no registry means
// docker.io, no tag means latest. Valid references are cached.
func ParseImageRef(s string) (ImageRef, error) {
	refCache.RLock()
	r, ok := refCache.m[s]
	refCache.RUnlock()
	if ok {
		return r, nil
	}
	r, err := parseImageRef(s)
	if err != nil {
		return r, err
	}
	refCache.Lock()
	if refCache.m == nil || len(refCache.m) >= 10000 {
		refCache.m = map[string]ImageRef{}
	}
	refCache.m[s] = r
	refCache.Unlock()
	return r, nil
}

func parseImageRef(s string) (ImageRef, error) {
	if strings.TrimSpace(s) == "" {
		return ImageRef{}, fmt.Errorf("empty image reference")
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		return ImageRef{}, fmt.Errorf("image reference %q: %v", s, err)
	}
	r := ImageRef{Registry: ref.Context().RegistryStr(), Repository: ref.Context().RepositoryStr()}
	if r.Registry == name.DefaultRegistry {
		r.Registry = "docker.io"
	}
	// name keeps the tag when both tag and digest are given only in the
	// string; read them from the text.
	rest := s
	if i := strings.Index(rest, "@"); i >= 0 {
		r.Digest = rest[i+1:]
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		r.Tag = rest[i+1:]
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}
