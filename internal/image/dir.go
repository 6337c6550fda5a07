package image

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
)

func openDir(p string) (*Image, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, err
	}
	return &Image{Source: "dir", Reference: abs, Dir: abs}, nil
}

// WalkDir reads a root filesystem directory as if it were one layer (index
// -1). Symbolic links are recorded, never followed, so loops cannot trap it;
// unreadable files become warnings.
func (w *Walker) WalkDir(ctx context.Context, root string) (*LayerResult, error) {
	res := &LayerResult{Index: -1, Parsed: map[string]*ParsedFile{}, Captured: map[string][]byte{}}
	rootDev := deviceOf(root)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		rel, rerr := filepath.Rel(root, p)
		if rerr != nil {
			return rerr
		}
		ip := path.Clean("/" + filepath.ToSlash(rel))
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %v", ip, err))
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if ip == "/" {
			return nil
		}
		if d.IsDir() && pseudoFS(ip, p, rootDev) {
			return fs.SkipDir // /proc, /sys, /dev of a live system
		}
		info, err := d.Info()
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %v", ip, err))
			return nil
		}
		e := Entry{Path: ip, Mode: info.Mode(), Size: info.Size()}
		switch {
		case info.Mode().IsRegular():
			e.Kind = KindFile
		case info.IsDir():
			e.Kind = KindDir
		case info.Mode()&fs.ModeSymlink != 0:
			e.Kind = KindSymlink
			e.Linkname, _ = os.Readlink(p)
		default:
			e.Kind = KindOther
		}
		res.Entries = append(res.Entries, e)
		if e.Kind != KindFile {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %v", ip, err))
			return nil
		}
		defer f.Close()
		n, err := w.visitFile(ctx, res, io.LimitReader(f, e.Size), e, nil)
		res.Bytes += n
		if w.BytesRead != nil {
			w.BytesRead.Add(n)
		}
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %v", ip, err))
		}
		return nil
	})
	return res, err
}

// pseudoFS reports whether a top-level /proc, /sys or /dev is a mount of
// another filesystem (a live system's kernel views, not image content).
func pseudoFS(ip, p string, rootDev uint64) bool {
	switch ip {
	case "/proc", "/sys", "/dev":
		return deviceOf(p) != rootDev
	}
	return false
}

func deviceOf(p string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return 0
	}
	return uint64(st.Dev)
}
