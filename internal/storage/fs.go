package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FS stores blobs under root/<alg>/<hex[:2]>/<hex>.
type FS struct {
	root string
}

// NewFS returns a filesystem driver rooted at dir (created if missing).
func NewFS(dir string) (*FS, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create blob directory: %w", err)
	}
	return &FS{root: dir}, nil
}

func (f *FS) path(digest string) (string, error) {
	alg, h, err := ParseDigest(digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(f.root, alg, h[:2], h), nil
}

func (f *FS) Stat(_ context.Context, digest string) (int64, error) {
	p, err := f.path(digest)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (f *FS) Open(_ context.Context, digest string) (Content, error) {
	p, err := f.path(digest)
	if err != nil {
		return nil, err
	}
	fh, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return fh, err
}

// Commit fsyncs the verified file and renames it into place, then fsyncs
// the directory, so the blob is either fully present or absent after a
// crash. path must be on the same filesystem as the root for the rename to
// be atomic; otherwise the content is copied to a temp file first.
func (f *FS) Commit(_ context.Context, digest string, path string) error {
	dst, err := f.path(digest)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		// Content-addressed: identical content is already there.
		return os.Remove(path)
	}
	src, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := src.Sync(); err != nil {
		src.Close()
		return err
	}
	src.Close()
	if err := os.Rename(path, dst); err != nil {
		var le *os.LinkError
		if !errors.As(err, &le) {
			return err
		}
		if err := copyFileAtomic(path, dst); err != nil {
			return err
		}
		os.Remove(path)
	}
	return syncDir(filepath.Dir(dst))
}

func copyFileAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.ReadFrom(in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (f *FS) Delete(_ context.Context, digest string) error {
	p, err := f.path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (f *FS) Walk(ctx context.Context, fn func(string, int64, time.Time) error) error {
	for _, alg := range []string{"sha256", "sha512"} {
		base := filepath.Join(f.root, alg)
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if d.IsDir() {
				return nil
			}
			dg := alg + ":" + d.Name()
			if _, _, err := ParseDigest(dg); err != nil {
				return nil // temp files and strays are not blobs
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			return fn(dg, fi.Size(), fi.ModTime())
		})
		if err != nil {
			return err
		}
	}
	return nil
}
