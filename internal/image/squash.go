package image

import (
	"errors"
	"path"
	"sort"
	"strings"
)

// FS is the squashed view of an image: every path visible after applying
// the layers in order with their whiteouts, and the layer that last wrote it.
type FS struct {
	root *node
	n    int
}

type node struct {
	children map[string]*node
	entry    Entry
	layer    int
	present  bool
}

func (n *node) child(name string, create bool) *node {
	c := n.children[name]
	if c == nil && create {
		if n.children == nil {
			n.children = map[string]*node{}
		}
		c = &node{}
		n.children[name] = c
	}
	return c
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Squash applies the layers in order (results must be sorted by Index).
// Whiteouts and opaque markers of a layer hide lower layers' content only;
// entries of the same layer stay.
func Squash(layers []*LayerResult) *FS {
	fs := &FS{root: &node{present: true, entry: Entry{Path: "/", Kind: KindDir}}}
	for _, l := range layers {
		for _, d := range l.Opaque {
			if n := fs.lookupNode(d); n != nil {
				fs.n -= countPresent(n) - boolInt(n.present)
				n.children = nil
			}
		}
		for _, w := range l.Whiteouts {
			fs.remove(w)
		}
		for _, e := range l.Entries {
			fs.add(e, l.Index)
		}
	}
	return fs
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func countPresent(n *node) int {
	c := boolInt(n.present)
	for _, ch := range n.children {
		c += countPresent(ch)
	}
	return c
}

func (fs *FS) add(e Entry, layer int) {
	n := fs.root
	for _, part := range splitPath(e.Path) {
		n = n.child(part, true)
	}
	if e.Kind != KindDir && n.children != nil {
		// A file replaces a directory: everything below it goes.
		for _, ch := range n.children {
			fs.n -= countPresent(ch)
		}
		n.children = nil
	}
	if !n.present {
		fs.n++
	}
	n.present, n.entry, n.layer = true, e, layer
}

func (fs *FS) remove(p string) {
	parts := splitPath(p)
	if len(parts) == 0 {
		return
	}
	parent := fs.root
	for _, part := range parts[:len(parts)-1] {
		if parent = parent.child(part, false); parent == nil {
			return
		}
	}
	last := parts[len(parts)-1]
	if n := parent.children[last]; n != nil {
		fs.n -= countPresent(n)
		delete(parent.children, last)
	}
}

func (fs *FS) lookupNode(p string) *node {
	n := fs.root
	for _, part := range splitPath(p) {
		if n = n.child(part, false); n == nil {
			return nil
		}
	}
	return n
}

// Len is the number of visible paths.
func (fs *FS) Len() int { return fs.n }

// Lookup returns the visible entry at p (no symlink resolution) and the
// index of the layer that last wrote it.
func (fs *FS) Lookup(p string) (Entry, int, bool) {
	n := fs.lookupNode(p)
	if n == nil || !n.present {
		return Entry{}, 0, false
	}
	return n.entry, n.layer, true
}

// ErrSymlinkLoop is returned by Resolve for a chain of links that does not end.
var ErrSymlinkLoop = errors.New("too many levels of symbolic links")

// Resolve follows symbolic links in every component of p, relative to the
// image root (an absolute target is taken from the image root, never the
// host's), and returns the final path.
func (fs *FS) Resolve(p string) (string, error) {
	hops := 0
	parts := splitPath(path.Clean("/" + p))
	resolved := "/"
	for i := 0; i < len(parts); i++ {
		cand := path.Join(resolved, parts[i])
		e, _, ok := fs.Lookup(cand)
		if !ok || e.Kind != KindSymlink {
			resolved = cand
			continue
		}
		hops++
		if hops > 40 {
			return "", ErrSymlinkLoop
		}
		target := e.Linkname
		if !path.IsAbs(target) {
			target = path.Join(resolved, target)
		}
		rest := append(splitPath(path.Clean("/"+target)), parts[i+1:]...)
		parts, resolved, i = rest, "/", -1
	}
	return resolved, nil
}

// Walk calls fn for every visible path in lexical order.
func (fs *FS) Walk(fn func(e Entry, layer int)) {
	var rec func(n *node)
	rec = func(n *node) {
		names := make([]string, 0, len(n.children))
		for k := range n.children {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			c := n.children[k]
			if c.present {
				fn(c.entry, c.layer)
			}
			rec(c)
		}
	}
	rec(fs.root)
}

// DeletedIn reports whether layer l hides p from the layers below it.
func DeletedIn(l *LayerResult, p string) bool {
	for _, w := range l.Whiteouts {
		if p == w || strings.HasPrefix(p, w+"/") {
			return true
		}
	}
	for _, d := range l.Opaque {
		if strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}
