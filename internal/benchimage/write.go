package benchimage

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
)

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only maps, slices and strings
	}
	return append(b, '\n')
}

type layerStats struct {
	files    int
	bytes    int64
	tarBytes int64
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// writeLayer writes layer i as a gzip-compressed tar (klauspost gzip,
// default level), entries sorted by path with their parent directories.
func (p *planner) writeLayer(ctx context.Context, i int, file string) (layerStats, error) {
	var st layerStats
	l := p.layers[i]
	f, err := os.Create(file)
	if err != nil {
		return st, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return st, err
	}
	cw := &countWriter{w: zw}
	tw := tar.NewWriter(cw)
	entries := append([]entry(nil), l.entries...)
	sort.SliceStable(entries, func(a, b int) bool { return entries[a].path < entries[b].path })
	dirs := map[string]bool{"/": true}
	var mkdir func(d string) error
	mkdir = func(d string) error {
		if dirs[d] {
			return nil
		}
		if err := mkdir(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755, ModTime: fixedTime, Uname: "root", Gname: "root"})
	}
	for n, e := range entries {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return st, err
			}
		}
		if err := mkdir(path.Dir(e.path)); err != nil {
			return st, err
		}
		hdr := &tar.Header{Name: e.path[1:], Mode: e.mode, ModTime: fixedTime, Uname: "root", Gname: "root"}
		switch e.kind {
		case 'l':
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
			if err := tw.WriteHeader(hdr); err != nil {
				return st, err
			}
			continue
		case 'w':
			hdr.Typeflag = tar.TypeReg
			if err := tw.WriteHeader(hdr); err != nil {
				return st, err
			}
			continue
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.size
		if err := tw.WriteHeader(hdr); err != nil {
			return st, fmt.Errorf("%s: %w", e.path, err)
		}
		if e.data != nil {
			_, err = tw.Write(e.data)
		} else {
			err = p.pl.writeContent(tw, p.seed, e.path, e.pool, e.size)
		}
		if err != nil {
			return st, fmt.Errorf("%s: %w", e.path, err)
		}
		st.files++
		st.bytes += e.size
	}
	if err := tw.Close(); err != nil {
		return st, err
	}
	if err := zw.Close(); err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	st.tarBytes = cw.n
	return st, f.Close()
}

// writeArchive assembles the layers into an image and writes it as a docker
// save tarball.
func writeArchive(layerFiles, createdBy []string, tag, out string) error {
	cfg := &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: fixedTime},
		Config: v1.Config{
			Env:        []string{"PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "NODE_ENV=production"},
			Cmd:        []string{"node", "dist/server.js"},
			WorkingDir: "/app",
			Labels:     map[string]string{"org.opencontainers.image.title": "moat-bench"},
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return err
	}
	for i, lf := range layerFiles {
		l, err := tarball.LayerFromFile(lf)
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: createdBy[i], Created: v1.Time{Time: fixedTime}}})
		if err != nil {
			return err
		}
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, img)
}

// writeLayout copies the docker archive into an OCI image layout.
func writeLayout(archive, dir string) error {
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return err
	}
	tmp := strings.TrimSuffix(dir, "/") + ".tmp"
	os.RemoveAll(tmp)
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendImage(img); err != nil {
		return err
	}
	os.RemoveAll(dir)
	return os.Rename(tmp, dir)
}
