// Package storage holds registry blob content addressed by digest behind a
// small Driver interface, with a filesystem and an S3-compatible
// implementation. Content is only ever committed after its digest has been
// verified by the caller: a Driver never exposes partial content.
package storage

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"
)

// ErrNotFound is returned when a blob is not stored.
var ErrNotFound = errors.New("blob not found")

// Content is an open blob that supports seeking (for HTTP Range requests).
type Content interface {
	io.ReadSeekCloser
}

// Driver stores verified blobs by digest ("sha256:<hex>" or "sha512:<hex>").
type Driver interface {
	// Stat returns the size of a stored blob or ErrNotFound.
	Stat(ctx context.Context, digest string) (int64, error)
	// Open opens a stored blob for reading or returns ErrNotFound.
	Open(ctx context.Context, digest string) (Content, error)
	// Commit moves the local file at path, whose content the caller has
	// verified to match digest, into storage atomically. The file is
	// consumed (renamed or removed) on success.
	Commit(ctx context.Context, digest string, path string) error
	// Delete removes a blob; deleting a missing blob is not an error.
	Delete(ctx context.Context, digest string) error
	// Walk calls fn for every stored blob.
	Walk(ctx context.Context, fn func(digest string, size int64, modTime time.Time) error) error
}

// ParseDigest validates a digest string and returns its algorithm and hex
// part. Only sha256 and sha512 are accepted, in lowercase hex of the exact
// length, so a digest is always safe to use as a path component.
func ParseDigest(d string) (alg, hexPart string, err error) {
	alg, hexPart, ok := strings.Cut(d, ":")
	if !ok {
		return "", "", fmt.Errorf("digest %q: missing algorithm prefix", d)
	}
	var want int
	switch alg {
	case "sha256":
		want = 64
	case "sha512":
		want = 128
	default:
		return "", "", fmt.Errorf("digest %q: unsupported algorithm %q (want sha256 or sha512)", d, alg)
	}
	if len(hexPart) != want {
		return "", "", fmt.Errorf("digest %q: %s needs %d hex characters, got %d", d, alg, want, len(hexPart))
	}
	for _, c := range hexPart {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", "", fmt.Errorf("digest %q: invalid character %q (want lowercase hex)", d, c)
		}
	}
	return alg, hexPart, nil
}

// NewHash returns a hash for a digest algorithm ("sha256" or "sha512").
func NewHash(alg string) (hash.Hash, error) {
	switch alg {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unsupported digest algorithm %q", alg)
}

// DigestOf computes the digest of b with the given algorithm.
func DigestOf(alg string, b []byte) string {
	switch alg {
	case "sha512":
		s := sha512.Sum512(b)
		return fmt.Sprintf("sha512:%x", s)
	default:
		s := sha256.Sum256(b)
		return fmt.Sprintf("sha256:%x", s)
	}
}
